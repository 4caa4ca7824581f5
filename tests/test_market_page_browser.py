"""The 农贸市场快检 page in a real browser (issue 15): at 1280, 1600 and 1920 px the KPI cards do
not overlap and none is cut, the tables (产地 among them) fit their box, and the face carries no
method names or p-values (they are behind 说明, which opens); how long the first render took is
written to tests/output/market_first_render.txt."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUTPUT = Path(__file__).parent / "output"
JARGON = re.compile(r"EARS|surveillance::|Bonferroni|优势比|odds|p\s*=|p 值|CUSUM|Wilson|置信区间")

BOXES = """() => {
  const r = e => { const b = e.getBoundingClientRect(); return {x: b.left, y: b.top, w: b.width, h: b.height}; };
  const cards = [...document.querySelectorAll('.wb-market-cards > .wb-card')].map(e => ({...r(e),
      sw: e.scrollWidth, cw: e.clientWidth}));
  const row = document.querySelector('.wb-market-cards');
  const tables = [...document.querySelectorAll('.wb-market .wb-table-wrap')].map(e => ({...r(e),
      sw: e.scrollWidth, cw: e.clientWidth, head: (e.querySelector('th') || {}).innerText || ''}));
  return {cards, row: row ? r(row) : null, tables, vw: document.documentElement.clientWidth};
}"""


def _overlap(a, b) -> bool:
    return a["x"] < b["x"] + b["w"] - 0.5 and b["x"] < a["x"] + a["w"] - 0.5 and \
        a["y"] < b["y"] + b["h"] - 0.5 and b["y"] < a["y"] + a["h"] - 0.5


@pytest.fixture(scope="module")
def market_server(sample_city_env, voila):
    with voila({k: sample_city_env[k] for k in ("WORKBENCH_DB_URL", "WORKBENCH_DATA_DIR")}, "market-page") as srv:
        yield srv


def test_cards_tables_and_plain_words_at_three_widths(chromium, market_server):
    from workbench.ui.browser import render

    OUTPUT.mkdir(parents=True, exist_ok=True)
    lines = []
    for width in (1280, 1600, 1920):
        page = chromium.new_page(viewport={"width": width, "height": 1000}, locale="zh-CN", timezone_id="Asia/Shanghai")
        try:
            res = render(page, market_server.url("market.ipynb"), timeout=240)
            assert not res.errors + res.console_errors, res.errors + res.console_errors
            lines.append(f"{width}px: {res.seconds:.2f} s")
            page.wait_for_timeout(500)
            got = page.evaluate(BOXES)
            cards = got["cards"]
            assert len(cards) == 7
            for i, a in enumerate(cards):
                assert a["x"] >= got["row"]["x"] - 0.5 and a["x"] + a["w"] <= got["row"]["x"] + got["row"]["w"] + 0.5, \
                    f"{width}px: card {i} outside its row"
                assert a["sw"] <= a["cw"] + 1, f"{width}px: card {i} content cut"
                for j, b in enumerate(cards[i + 1:], i + 1):
                    assert not _overlap(a, b), f"{width}px: cards {i} and {j} overlap"
            for t in got["tables"]:
                assert t["x"] + t["w"] <= got["vw"] + 0.5, f"{width}px: table {t['head']} runs off the page"
                assert t["sw"] <= t["cw"] + 1, f"{width}px: table {t['head']} cut (scrolls sideways)"
            assert any(t["head"] == "产地" for t in got["tables"]), "the 产地 table is on the page"
            face = page.inner_text(".wb-market")
            assert not JARGON.search(face), JARGON.search(face).group(0)
            # the methods are there, behind 说明
            page.locator("details.wb-explain summary").first.click()
            assert "Wilson" in page.inner_text(".wb-market")
            page.screenshot(path=str(OUTPUT / f"market-{width}.png"), full_page=False)
        finally:
            page.close()
    (OUTPUT / "market_first_render.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
