"""The 城市事件调度 dashboard in a real browser (Voilà + headless Chromium) over a hub filled
with the sample city's events: new events appear on the board without reloading, and the
board's buttons move a case through the flow, written to the hub as the signed-in user (a
staff member of 市城市运行管理服务中心)."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from workbench import config
from workbench.events import dispatch as dp
from workbench.events import flow, intake
from workbench.store import hub
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SCREENSHOTS = config.ROOT / "tests" / "output" / "screenshots"
CENTER = "市城市运行管理服务中心"


def fill_sample_events(url: str, days: int = 21, end=dt.date(2026, 1, 20)) -> None:
    """The sample city's events and flow records (workbench.synth), in UTC, into `url`."""
    from workbench.synth.city import generate

    frames = generate(days, 3, end)["frames"]
    eng = hub.engine(url)
    ev = frames["city_events"].drop(columns=["_stuck"], errors="ignore")
    h = frames["event_history"]
    for df in (ev, h):
        for c in ("ts", "updated_at", "deadline", "closed_at"):
            if c in df:
                df[c] = pd.to_datetime(df[c]) - pd.Timedelta(hours=8)
    with eng.begin() as conn:
        insert_new(conn, DATASETS["grids"], frames["grids"])
        insert_new(conn, DATASETS["city_events"], ev)
        insert_new(conn, DATASETS["event_history"], h)
    hub.dispose(url)


@pytest.fixture(scope="module")
def events_server(tmp_path_factory, voila):
    pytest.importorskip("playwright.sync_api")
    root = tmp_path_factory.mktemp("events-board")
    env = {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data")}
    fill_sample_events(env["WORKBENCH_DB_URL"])
    with voila(env, "events-board", role="staff", department=CENTER) as srv:
        yield srv, env


def test_new_events_appear_and_buttons_write_to_the_hub(chromium, events_server):
    from workbench.ui.browser import render

    srv, env = events_server
    page = chromium.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai")
    try:
        res = render(page, srv.url("events.ipynb") + "?poll=1", timeout=180)
        assert not res.errors + res.console_errors, res.errors + res.console_errors
        for text in ("城市事件调度", "调度台", "事件热点地图", "超期未办结", "各部门按期办结率", "办结时长", "事件规律"):
            assert text in res.text, text
        # a new report arrives while the page is open
        eng = hub.engine(env["WORKBENCH_DB_URL"])
        now = pd.Timestamp.now(tz="Asia/Shanghai").floor("s")
        rec = pd.DataFrame([{"event_id": "LIVE-0001", "ts": now.isoformat(), "event_class": "不认识的类型",
                             "description": "路口有不明液体流出", "lat": "27.861", "lon": "113.171",
                             "source": "12345热线", "district": "荷塘区"}])
        rules = dp.load_rules()
        rules = dp.CityRules(**{**rules.__dict__, "unknown_class": "accept"})
        s = intake.take_in(rec, origin=intake.Origin("test", "0" * 64), rules=rules, eng=eng)
        assert s.loaded == 1
        board = page.locator(".wb-events-board")
        board.get_by_text("LIVE-0001").wait_for(timeout=30_000)   # no reload
        page.screenshot(path=str(SCREENSHOTS / "events-live.png"), full_page=True)
        # accept it from the board, then try an illegal step
        pick = page.locator(".wb-events-pick select")
        value = pick.locator("option", has_text="LIVE-0001").first.get_attribute("value")
        pick.select_option(value=value)
        assert "办理人" not in [page.locator(".wb-events-live input").nth(i).get_attribute("placeholder") or ""
                                for i in range(page.locator(".wb-events-live input").count())]
        assert f"办理人：{srv.user}" in page.locator(".wb-events-actor").inner_text()
        page.locator(".wb-act-accept").click()
        page.locator(".wb-events-done").wait_for(timeout=20_000)
        assert hub.read("city_events", where={"event_id": "LIVE-0001"}, eng=eng)["status"].iloc[0] == flow.CASE
        page.locator(".wb-act-close").click()
        page.locator(".wb-events-refused").wait_for(timeout=20_000)
        assert "不能转为“核查结案”" in page.locator(".wb-events-refused").inner_text()
        page.locator(".wb-act-dispatch").click()
        page.wait_for_function("() => document.querySelector('.wb-events-done') && "
                               "document.querySelector('.wb-events-done').innerText.includes('任务派遣')",
                               timeout=20_000)
        h = hub.read("event_history", where={"event_id": "LIVE-0001"}, eng=eng)
        assert h["status"].tolist() == [flow.INTAKE, flow.CASE, flow.DISPATCH]
        assert h["actor"].tolist()[1:] == [srv.user] * 2      # the signed-in user, no name typed
        hub.dispose(env["WORKBENCH_DB_URL"])
    finally:
        page.close()
