"""The 城市事件调度 page in a real browser (Voilà + headless Chromium), signed in as a staff member
of 市城市运行管理服务中心, over the sample city's events plus the cases of test_events_page.fill:
the top cards and the board's agree; the board's rows follow the order its caption states; the
list pages over every open case with the count shown; 派往 is pre-filled with the routed
department; a step shows in the deadline table at once, without reloading."""
from __future__ import annotations

import re

import pytest

from workbench import config
from workbench.events import board as bd
from workbench.events import flow
from workbench.store import hub

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCREENSHOTS = config.ROOT / "tests" / "output" / "screenshots"
CENTER = "市城市运行管理服务中心"


@pytest.fixture(scope="module")
def events_page_server(tmp_path_factory, voila):
    pytest.importorskip("playwright.sync_api")
    from test_events_board import fill_sample_events
    from test_events_page import fill

    root = tmp_path_factory.mktemp("events-page")
    env = {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data")}
    fill_sample_events(env["WORKBENCH_DB_URL"])
    fill(hub.engine(env["WORKBENCH_DB_URL"]))
    hub.dispose(env["WORKBENCH_DB_URL"])
    with voila(env, "events-page", role="staff", department=CENTER) as srv:
        yield srv, env


def _card(page, scope: str, title: str) -> int:
    card = page.locator(f"{scope} .wb-card", has=page.locator(".wb-card-title", has_text=title)).first
    return int(re.sub(r"\D", "", card.locator(".wb-card-value").inner_text()))


def test_counts_order_paging_prefill_and_fresh_tables(chromium, events_page_server):
    from workbench.ui.browser import check, render

    srv, env = events_page_server
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = chromium.new_page(viewport={"width": 1600, "height": 1000}, locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        res = render(page, srv.url("events.ipynb") + "?poll=120", timeout=240)
        assert not res.errors + res.console_errors, res.errors + res.console_errors
        page.screenshot(path=str(SCREENSHOTS / "events-page.png"), full_page=True)
        # one row of cards: the board repeats none of the top's (it counts only a picked department)
        assert page.locator(".wb-events-cards .wb-card").count() == 0
        n_open = _card(page, ".wb-events-top", "在办事件")
        # 派往 is empty while no case is picked (a quick click cannot send a case anywhere)
        assert page.locator(".wb-events-pick select").evaluate("s => s.selectedIndex") == -1
        assert page.locator(".wb-events-to select").evaluate("s => s.selectedIndex") == -1
        # the caption states the order, and the rows follow it: 待受理 first
        assert bd.BOARD_ORDER in res.text
        statuses = page.locator(".wb-events-board tbody tr td:nth-child(8)").all_inner_texts()
        assert statuses and flow.INTAKE in statuses[0]
        k = sum(1 for s in statuses if flow.INTAKE in s)
        assert all(flow.INTAKE in s for s in statuses[:k]) and not any(flow.INTAKE in s for s in statuses[k:])
        # every open case, paged, the count shown
        pager = page.locator(".wb-events-pager").inner_text()
        m = re.search(r"共 ([\d,]+) 件在办", pager)
        assert m and int(m.group(1).replace(",", "")) >= n_open and "第 1 / " in pager, pager
        assert len(statuses) == 50 < int(m.group(1).replace(",", ""))
        first_row = page.locator(".wb-events-board tbody tr").first.inner_text()
        page.locator(".wb-events-next button, button.wb-events-next").first.click()
        page.wait_for_function("() => document.querySelector('.wb-events-pager').innerText.includes('第 2 / ')",
                               timeout=30_000)
        assert page.locator(".wb-events-board tbody tr").first.inner_text() != first_row
        page.locator(".wb-events-prev button, button.wb-events-prev").first.click()
        page.wait_for_function("() => document.querySelector('.wb-events-pager').innerText.includes('第 1 / ')",
                               timeout=30_000)
        # 派往 starts at the routed department: a 违章停车 case goes to 公安交警
        pick = page.locator(".wb-events-pick select")
        pick.select_option(value=pick.locator("option", has_text="E-WAIT-2").first.get_attribute("value"))
        page.wait_for_function("() => { const s = document.querySelector('.wb-events-to select');"
                               " const o = s && s.selectedIndex >= 0 && s.options[s.selectedIndex];"
                               " return o && o.text === '公安交警'; }", timeout=20_000)
        # a step shows in the overdue table without reloading
        row = page.locator(".wb-events-overdue tbody tr", has_text="E-OLD-1")
        assert flow.DISPATCH in row.inner_text()
        pick.select_option(value=pick.locator("option", has_text="E-OLD-1").first.get_attribute("value"))
        page.locator(".wb-act-handle").click()
        page.locator(".wb-events-done").wait_for(timeout=20_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.wb-events-overdue tbody tr')].some("
            f"r => r.innerText.includes('E-OLD-1') && r.innerText.includes('{flow.HANDLING}'))", timeout=20_000)
        eng = hub.engine(env["WORKBENCH_DB_URL"])
        assert hub.read("city_events", where={"event_id": "E-OLD-1"}, eng=eng)["status"].iloc[0] == flow.HANDLING
        hub.dispose(env["WORKBENCH_DB_URL"])
        # the map: real districts with names, the hotspots named, no bare coordinates
        assert page.locator(".wb-map .js-plotly-plot, .wb-map .plot-container").count() >= 1
        assert "荷塘" in page.locator(".wb-map").inner_text()
        assert "中心（纬度, 经度）" not in res.text and "校正后 p 值" not in page.locator(".wb-events").inner_text()
        assert not check(page)
    finally:
        page.close()
