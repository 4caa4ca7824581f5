"""Issue 16 on a department's half-year export, shaped as the market system sends it:
six markets, three inspectors each, ~26k tests in 26 weeks, gb18030 CSV read through the
`market_export` profile into a hub, then `analysis.run` as `workbench market analyse` does.

The export is SYNTHETIC (workbench/synth/market_export.py, separate from the sample city;
no real records are available here). Planted as the issue describes: a five-fold rise of
one vegetable (芹菜, a sixth of its market's vegetable tests) at one market, an inspector
logging a result every two minutes on the ten-minute enzyme method, and 采样时间 written
as the registration time on every device (the reaction rule broken everywhere)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.market import analysis as ma
from workbench.store.ingest import ingest_file
from workbench.synth.market_export import write_export

pytestmark = pytest.mark.slow  # ~26k rows generated, ingested and analysed once (~1 min)


@pytest.fixture(scope="module")
def halfyear(tmp_path_factory):
    from workbench.store import hub

    tmp = tmp_path_factory.mktemp("halfyear")
    url = f"sqlite:///{tmp / 'hub.db'}"
    eng = hub.engine(url)
    exp = write_export(tmp / "导出", seed=16)
    p = exp["paths"]
    assert ingest_file("markets", p["markets"], eng).loaded == 6
    assert ingest_file("stalls", p["stalls"], eng).quarantined == 0
    s = ingest_file("rapid_tests", p["rapid_tests"], eng, profile="market_export")
    an, written = ma.run(eng, write=True)
    yield exp, s, an, written
    hub.dispose(url)


def test_the_export_loads_whole(halfyear):
    exp, s, an, _ = halfyear
    assert s.rows_read == exp["rows"] > 25000 and s.quarantined == 0 and s.loaded == exp["rows"]
    assert an.tests["market_id"].nunique() == 6 and an.tests["inspector_id"].nunique() == 18


def test_the_vegetable_rise_is_found_within_three_weeks_and_named(halfyear):
    exp, _, an, _ = halfyear
    plan = exp["plan"]
    a = an.alerts[an.alerts["category"] == "快检阳性率上升"]
    assert len(a) == 1, a[["alert_id", "title"]]  # nothing else: no market-wide alarm, no city-wide one
    r = a.iloc[0]
    assert json.loads(r["attrs"])["market_id"] == plan["rise_market"]
    assert plan["rise_commodity"] in r["title"] and r["title"].startswith("南岭农贸市场")
    first = pd.Timestamp(an.scheme.market_episodes.iloc[0]["first"])
    weeks = (first - pd.Timestamp(plan["onset"])).days // 7 + 1
    assert 1 <= weeks <= 3, (first, plan["onset"])  # issue 16: ~30 days with the market × item CUSUM


def test_integrity_singles_out_the_fast_inspector_and_says_the_procedure_once(halfyear):
    exp, _, an, written = halfyear
    fd = an.integrity.findings
    assert sorted(zip(fd["kind"], fd["subject"])) == sorted([
        ("出具结果过快", f"INS-{exp['plan']['fast_inspector']}"),
        ("规程问题", "PROC-反应时间不足-酶抑制法"),
    ])
    proc = fd[fd["kind"] == "规程问题"].iloc[0]
    assert "12 台" in proc["reason"] and "不再按设备逐台列出" in proc["reason"]
    assert written["findings_new"] == 2
