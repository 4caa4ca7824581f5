"""The 农贸市场快检 page pieces, without a browser (tests/test_dashboards.py opens the real page)."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from workbench.market import analysis as ma
from workbench.ui import charts
from workbench.ui import market_page as mp

pytestmark = pytest.mark.slow  # a 28-day city is generated and analysed once (~8 s)


@pytest.fixture(scope="module")
def snap():
    from workbench.synth.city import generate

    city = generate(28, 5, dt.date(2026, 3, 1))
    t = city["frames"]["rapid_tests"].copy()
    for c in ("ts", "sampled_at"):
        t[c] = pd.to_datetime(t[c]) - pd.Timedelta(hours=8)
    q = pd.DataFrame({"dataset": ["rapid_tests"], "reason": ["百分比读数超过 100%"], "rows": [1]})
    an = ma.analyse(t, city["frames"]["markets"], city["frames"]["market_followups"])
    return mp.MarketSnapshot(pd.Timestamp("2026-03-02"), an, q)


def test_page_builds_and_the_market_picker_redraws(snap):
    page = mp.page(snap)
    assert page.children
    picker = mp.market_picker(snap.an, mp.names(snap.an))
    dropdown, holder = picker.children
    title = lambda: holder.children[0].outputs[0]["data"][charts.PLOTLY_MIME]["layout"]["title"]["text"]  # noqa: E731
    before = title()
    dropdown.value = dropdown.options[-1][1]
    assert title() != before and dropdown.options[-1][1] in dropdown.value  # the other market's chart, no error box
    assert "wb-error" not in str(holder.children[0])


def test_tables_speak_chinese_and_count_the_quarantine(snap):
    assert "百分比读数超过 100%" in mp.quarantine_table(snap.quarantine)
    assert "农贸市场快检" in mp.quarantine_table(snap.quarantine)
    html = mp.periods_table(snap.an)
    assert "本月累计" in html and "本年累计" in html and "项次阳性率（可能范围）" in html and "Wilson" not in html
    assert "暂无快检预警" in mp.alerts_table(snap.an.alerts.iloc[:0])
    fu = snap.an.followups
    assert (~fu["closed"]).any(), "the sample city leaves positives awaiting follow-up"
    assert "处置状态" in mp.followup_table(fu, mp.names(snap.an))
    assert "暂无待处置的阳性" in mp.followup_table(fu[fu["closed"]], mp.names(snap.an))


def test_the_face_has_no_method_names_and_the_cards_wrap(snap):
    """Issue 15: method names and p-values behind 说明; the cards are one flex row that wraps."""
    import re

    page = mp.page(snap)
    html = "".join(v for w in _walk(page) if isinstance(v := getattr(w, "value", ""), str))
    face = re.sub(r"<details.*?</details>", "", html, flags=re.S)
    for term in ("EARS", "surveillance::", "Bonferroni", "优势比", "p 值", "CUSUM", "Wilson", "p="):
        assert term not in face, term
    assert "Bonferroni" in html and "wb-explain" in html  # behind the toggle
    assert 'class="wb-cards wb-market-cards"' in mp.kpis_html(snap)


def _walk(w):
    yield w
    for c in getattr(w, "children", ()):
        yield from _walk(c)
