"""城市运行总览 and 城市运行日报: the GB/T 30428.4-style indicators against hand-computed values,
the overview's data on a small hub made through the case engine and the alert API (SQLite and
PostgreSQL), the page in the real browser (Voilà + Chromium; clicking a district filters; the
hub-unreachable message; screenshots in tests/output/screenshots/), and the daily report
through papermill."""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd
import pytest

from workbench import alerts, cases, geo
from workbench.cases import EXTENDED, CaseType
from workbench.cockpit import indicators as ind
from workbench.cockpit import overview

T = pd.Timestamp
TYPE = CaseType.from_dict("ov_event", {
    "label": "测试事件", "department": "城市管理和综合执法局", "intake": "受理", "store": "cases",
    "transitions": {"受理": ["派遣", "缓办"], "缓办": ["派遣"], "派遣": ["处置"], "处置": ["核查"],
                    "核查": ["结案", "重新办理"], "重新办理": ["处置"], "不予立案": []},
    "closed": ["结案", "不予立案"], "rework": ["重新办理"], "deferred": "缓办", "void": ["不予立案"],
})
TYPES = {TYPE.name: TYPE}
SINCE, UNTIL = T("2026-01-10"), T("2026-01-17")


def _case(cid, dept, opened, deadline=None, closed_at=None, status=None):
    closed = closed_at is not None
    return {"case_id": cid, "case_type": TYPE.name, "department": dept, "district": "荷塘区",
            "status": status or ("结案" if closed else "处置"), "opened": T(opened),
            "deadline": T(deadline) if deadline else pd.NaT, "closed_at": T(closed_at) if closed else pd.NaT,
            "closed": closed}


def hand_cases() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Nine cases of two departments and their marker steps (see test_indicators_by_hand)."""
    A, B = "城管", "水务"
    rows = [
        _case("c1", A, "2026-01-10", "2026-01-12", "2026-01-11"),   # due, closed on time
        _case("c2", A, "2026-01-10", "2026-01-13", "2026-01-14"),   # due, closed late
        _case("c3", A, "2026-01-11", "2026-01-15"),                 # due, open
        _case("c4", A, "2026-01-12", "2026-01-20"),                 # opened, due later; extended
        _case("c5", A, "2026-01-05", "2026-01-11", "2026-01-10"),   # opened before, due, on time, reworked
        _case("c6", A, "2026-01-12", "2026-01-14", "2026-01-16"),   # due, closed late but deferred (缓办)
        _case("c7", A, "2026-01-13", "2026-01-16", "2026-01-18"),   # due, closed after the period
        _case("d1", B, "2026-01-10", None, "2026-01-11"),           # no deadline: due when opened, on time
        _case("d2", B, "2026-01-01", "2026-01-05"),                 # outside the period entirely
        {**_case("d3", B, "2026-01-10", "2026-01-12", "2026-01-10"), "status": "不予立案"},  # never a case
    ]
    marks = pd.DataFrame([
        {"store": "cases", "case_id": "c4", "status": EXTENDED},
        {"store": "cases", "case_id": "c5", "status": "重新办理"},
        {"store": "cases", "case_id": "c6", "status": "缓办"},
        {"store": "cases", "case_id": "c9", "status": "重新办理"},   # a case not in the frame: ignored
        {"store": "city_events", "case_id": "c1", "status": "重新办理"},  # same id, other store: ignored
    ])
    return pd.DataFrame(rows), marks


def test_indicators_by_hand():
    frame, marks = hand_cases()
    t = ind.indicators(frame, SINCE, UNTIL, marks=marks, types=TYPES).set_index("department")
    assert list(t.index) == ["城管", "水务", ind.CITY]
    a = t.loc["城管"]
    # 立案 c1 c2 c3 c4 c6 c7; 应结 c1 c2 c3 c5 c6 c7; 结案 c1 c2 c5 c6; 缓办 c6; 按期 c1 c5; 返工 c5; 延期 c4
    assert (a.opened, a.due, a.closed, a.deferred, a.on_time, a.reworked, a.extended) == (6, 6, 4, 1, 2, 1, 1)
    assert math.isclose(a.closed_rate, 4 / 6) and math.isclose(a.on_time_rate, 2 / 5)
    assert math.isclose(a.rework_rate, 1 / 4) and math.isclose(a.extension_rate, 1 / 6)
    # 40·(0.667/0.9) + 40·(0.4/0.7) + 0 (返工 25 % ≥ 10 %) + 0 (延期 16.7 % ≥ 10 %) = 29.63 + 22.86
    assert a.score == 52.5
    b = t.loc["水务"]
    assert (b.opened, b.due, b.closed, b.on_time) == (1, 1, 1, 1) and b.score == 100.0
    c = t.loc[ind.CITY]
    assert (c.opened, c.due, c.closed, c.deferred, c.on_time, c.reworked, c.extended) == (7, 7, 5, 1, 3, 1, 1)
    assert math.isclose(c.on_time_rate, 3 / 6) and math.isclose(c.rework_rate, 1 / 5)
    assert c.score == round(40 * (5 / 7) / 0.9 + 40 * 0.5 / 0.7, 1) == 60.3


def test_score_weights():
    assert ind.score(0.90, 0.70, 0.0, 0.0) == 100.0          # DOMAIN.md: full marks at 90 % / 70 %
    assert ind.score(1.0, 1.0, 0.05, 0.0) == 95.0            # half the rework points
    assert ind.score(0.45, 0.35, 0.0, 0.0) == 60.0
    assert math.isnan(ind.score(float("nan"), float("nan"), float("nan"), float("nan")))
    assert ind.score(1.0, float("nan"), float("nan"), float("nan")) == 100.0  # all deferred, nothing closed wrong


def test_deferred_now_counts_without_history():
    frame = pd.DataFrame([_case("x", "城管", "2026-01-10", "2026-01-12", status="缓办")])
    t = ind.indicators(frame, SINCE, UNTIL, types=TYPES)
    row = t.iloc[0]
    assert row.deferred == 1 and row.due == 1 and math.isnan(row.on_time_rate)


def test_indicators_of_nothing():
    assert ind.indicators(pd.DataFrame(), SINCE, UNTIL, types=TYPES).empty
    frame, _ = hand_cases()
    t = ind.indicators(frame, T("2030-01-01"), T("2030-01-02"), types=TYPES)
    assert list(t["department"]) == [ind.CITY] and t.iloc[0].due == 0 and math.isnan(t.iloc[0].score)


# ------------------------------------------------------------------ filters

def test_filters_default_and_bad_input():
    today = dt.date(2026, 3, 10)
    f = overview.parse_filters({}, data_until=None, today=today)
    assert (f.start, f.end, f.district) == (dt.date(2026, 3, 3), dt.date(2026, 3, 9), None)  # today excluded
    f = overview.parse_filters({}, data_until=T("2026-01-20 10:00"), today=today)  # old data: its last week
    assert (f.start, f.end) == (dt.date(2026, 1, 14), dt.date(2026, 1, 20))
    f = overview.parse_filters({"district": "430202", "start": "2026-02-01", "end": "2026-02-03"}, today=today)
    assert (f.district, f.days, f.default) == ("荷塘区", 3, False)
    assert f.since == T("2026-01-31 16:00") and f.until == T("2026-02-03 16:00")  # local days in UTC
    assert f.query(district="芦淞区") == "start=2026-02-01&end=2026-02-03&district=%E8%8A%A6%E6%B7%9E%E5%8C%BA"
    bad = overview.parse_filters({"district": "长沙", "start": "昨天"}, today=today)
    assert bad.district is None and bad.default and len(bad.problems) == 2
    assert "长沙" in bad.problems[0] and "YYYY-MM-DD" in bad.problems[1]
    swapped = overview.parse_filters({"start": "2026-02-05", "end": "2026-02-01"}, today=today)
    assert (swapped.start, swapped.end) == (dt.date(2026, 2, 1), dt.date(2026, 2, 5)) and swapped.problems


# ------------------------------------------------------------------ the overview on a small hub

def _same_keys(rows: list[dict]) -> list[dict]:
    keys = {k for r in rows for k in r}
    return [{k: r.get(k) for k in keys} for r in rows]


@pytest.fixture
def small_hub(hub_engine, monkeypatch):
    """A few cases opened and moved through the case engine, alerts through the alert API,
    rapid tests, canteens, violations and hazards inserted as a department's ingest would."""
    from workbench.store.schema import DATASETS

    cases._ensure_registered()
    monkeypatch.setitem(cases.TYPES, TYPE.name, TYPE)
    eng = hub_engine
    E = "测试员"
    mk = dict(actor=E, department="城管")
    cases.open_case(eng, TYPE.name, "c1", ts=T("2026-01-10 02:00"), deadline=T("2026-01-12"), district="荷塘区", **mk)
    for s, ts in (("派遣", "2026-01-10 03:00"), ("处置", "2026-01-10 04:00"), ("核查", "2026-01-10 05:00"),
                  ("重新办理", "2026-01-10 06:00"), ("处置", "2026-01-10 07:00"), ("核查", "2026-01-10 08:00"),
                  ("结案", "2026-01-11 01:00")):
        cases.transition(eng, "c1", s, actor=E, ts=T(ts))
    cases.open_case(eng, TYPE.name, "c2", ts=T("2026-01-11 02:00"), deadline=T("2026-01-13"), district="芦淞区",
                    alert_id="A-2", **mk)
    cases.transition(eng, "c2", "缓办", actor=E, ts=T("2026-01-11 03:00"))
    cases.open_case(eng, TYPE.name, "c3", ts=T("2026-01-12 02:00"), deadline=T("2026-01-20"), district="荷塘区", **mk)
    cases.extend(eng, "c3", T("2026-01-25"), actor=E)
    with eng.begin() as conn:
        conn.execute(DATASETS["rapid_tests"].table.insert(), [
            {"test_id": f"R{i}", "ts": T("2026-01-12 01:00").to_pydatetime(), "market_id": "M1", "commodity": "韭菜",
             "test_item": "农药残留", "result": "阳性" if i < 2 else "阴性", "district": "荷塘区"} for i in range(8)])
        conn.execute(DATASETS["hazards"].table.insert(), _same_keys([
            {"hazard_id": "H1", "site_id": "S1", "hazard_type": "燃气", "level": "重大", "district": "芦淞区",
             "ts": T("2026-01-02").to_pydatetime(), "deadline": T("2026-01-09").to_pydatetime()},
            {"hazard_id": "H2", "site_id": "S1", "hazard_type": "消防", "level": "一般", "district": "芦淞区",
             "ts": T("2026-01-02").to_pydatetime()},
            {"hazard_id": "H3", "site_id": "S2", "hazard_type": "消防", "level": "重大", "district": "荷塘区",
             "ts": T("2026-01-02").to_pydatetime(), "verified_at": T("2026-01-05").to_pydatetime(),
             "rectified_at": T("2026-01-04").to_pydatetime()},
        ]))
        conn.execute(DATASETS["canteens"].table.insert(), [
            {"canteen_id": f"C{i}", "name": f"食堂{i}", "district": "荷塘区"} for i in range(4)])
        conn.execute(DATASETS["canteen_violations"].table.insert(), [
            {"violation_id": f"V{i}", "ts": T("2026-01-13 01:00").to_pydatetime(), "camera_id": "K1",
             "canteen_id": "C1", "district": "荷塘区", "violation_class": "老鼠" if i == 0 else "未戴口罩",
             "severity": "critical" if i == 0 else "warning"} for i in range(3)])
    alerts.raise_alert(eng, alert_id="A-1", ts=T("2026-01-14 01:00"), department="应急管理局", category="寒潮",
                       severity="warning", title="寒潮黄色预警", level="黄色", district=None, status=alerts.ACTIVE)
    alerts.raise_alert(eng, alert_id="A-2", ts=T("2026-01-11 01:00"), department="市场监管局", category="快检阳性",
                       severity="critical", title="韭菜农药残留阳性", district="芦淞区", status=alerts.ACTIVE)
    return eng


def test_overview_on_a_small_hub(small_hub):
    params = {"start": "2026-01-10", "end": "2026-01-16"}
    o = overview.load(params, eng=small_hub, now=T("2026-01-17 04:00"))
    assert o.data_until == T("2026-01-14 01:00")             # the newest record: alert A-1
    assert o.filters.since == T("2026-01-09 16:00")
    dept = o.indicators.set_index("department").loc["城管"]
    # c1 due & on time (reworked), c2 due & deferred, c3 opened & extended (due later)
    assert (dept.opened, dept.due, dept.closed, dept.deferred, dept.on_time, dept.reworked, dept.extended) == \
        (3, 2, 1, 1, 1, 1, 1)
    assert dept.closed_rate == 0.5 and dept.on_time_rate == 1.0 and dept.rework_rate == 1.0
    assert o.kpis["open"] == 2 and o.kpis["opened"] == 3
    assert o.kpis["market"] == {"tests": 8, "positives": 2, "positive_rate": 0.25}
    assert o.kpis["major_hazards"] == 1 and o.kpis["major_hazards_overdue"] == 1
    canteen = o.kpis["canteen"]
    assert (canteen["violations"], canteen["critical"], canteen["canteens"]) == (3, 1, 4)
    assert canteen["per_canteen"] == 0.75
    assert list(o.warnings[["level", "n"]].itertuples(index=False, name=None)) == [("黄色", 1)]
    d = o.districts.set_index("district")
    assert d.loc["荷塘区", "open"] == 1 and d.loc["芦淞区", "open"] == 1 and d.loc["芦淞区", "hazards"] == 1
    assert d.loc["芦淞区", "alerts"] == 1 and len(d) == 9
    assert list(o.feed["alert_id"]) == ["A-1", "A-2"]
    became = o.feed.set_index("alert_id")["cases"]
    assert became["A-1"] == [] and [c["case_id"] for c in became["A-2"]] == ["c2"]
    assert became["A-2"][0]["status"] == "缓办" and became["A-2"][0]["type_label"] == "测试事件"


def test_alert_feed_shows_an_open_case_past_its_deadline_as_overdue(small_hub, monkeypatch):
    """A case type with an overdue_label (隐患整改: 逾期未整改) shows it in the feed for an open case
    past its deadline, not the step it is at (the defect: 重大隐患逾期 → 隐患整改 HZ-…（待整改）)."""
    import dataclasses

    monkeypatch.setitem(cases.TYPES, TYPE.name, dataclasses.replace(TYPE, overdue_label="逾期未办结"))
    o = overview.load({"start": "2026-01-10", "end": "2026-01-16"}, eng=small_hub, now=T("2026-01-17 04:00"))
    became = o.feed.set_index("alert_id")["cases"]
    assert [(c["case_id"], c["status"]) for c in became["A-2"]] == [("c2", "逾期未办结")]   # due 01-13, still 缓办


def test_overview_district_filter(small_hub):
    o = overview.load({"start": "2026-01-10", "end": "2026-01-16", "district": "芦淞"}, eng=small_hub,
                      now=T("2026-01-17 04:00"))
    assert o.filters.district == "芦淞区"
    dept = o.indicators.set_index("department").loc["城管"]
    assert (dept.opened, dept.due, dept.deferred) == (1, 1, 1)
    assert o.kpis["market"]["tests"] == 0 and o.kpis["canteen"]["canteens"] == 0
    assert o.kpis["major_hazards"] == 1
    assert o.districts.set_index("district").loc["荷塘区", "open"] == 1  # the map still shows the whole city
    assert list(o.feed["alert_id"]) == ["A-1", "A-2"]  # city-wide warnings stay in a district's feed
    quiet = overview.load({"start": "2026-01-10", "end": "2026-01-16", "district": "炎陵县"}, eng=small_hub,
                          now=T("2026-01-17 04:00"))
    assert quiet.indicators.empty and quiet.city()["opened"] == 0 and math.isnan(quiet.city()["closed_rate"])


def test_an_ended_periods_evaluation_is_kept_for_an_hour(small_hub):
    """The department evaluation of a period that has ended is computed once and read again for
    EVALUATION_MAX_AGE (at 10 M events reading the week's cases is most of the overview); a late
    report shows after that; each district has its own; a period not ended is computed each time."""
    from workbench.ui import overview_page

    params = {"start": "2026-01-10", "end": "2026-01-16"}
    now = T("2026-01-17 04:00")
    f = overview.parse_filters(params, None, dt.date(2026, 1, 17))
    first = overview.evaluation(small_hub, f, now)
    assert not first.kept and first.computed == now and first.opened == 3
    # a late report of a case opened in the period
    cases.open_case(small_hub, TYPE.name, "c9", ts=T("2026-01-15 02:00"), deadline=T("2026-01-16"), district="荷塘区",
                    actor="测试员", department="城管")
    soon = now + pd.Timedelta(minutes=20)
    again = overview.evaluation(small_hub, f, soon)
    assert again.kept and again.computed == now and again.opened == 3
    pd.testing.assert_frame_equal(again.indicators, first.indicators)
    o = overview.load(params, eng=small_hub, now=soon)
    assert o.evaluated == now and o.kpis["opened"] == 3
    assert "按 12:00（北京时间）的办理情况计算" in overview_page.indicators_html(o)   # 04:00 UTC
    later = overview.evaluation(small_hub, f, now + overview.EVALUATION_MAX_AGE + pd.Timedelta(minutes=1))
    assert not later.kept and later.opened == 4
    assert later.indicators.set_index("department").loc["城管", "opened"] == 4
    assert overview_page.evaluated_html(overview.load(params, eng=small_hub, now=later.computed)) == ""
    # a district's evaluation is its own
    fd = overview.parse_filters({**params, "district": "芦淞区"}, None, dt.date(2026, 1, 17))
    assert not overview.evaluation(small_hub, fd, later.computed).kept
    assert overview.evaluation(small_hub, fd, later.computed).kept
    # a period that has not ended (its last day is today, Beijing time) is computed every time
    today = overview.parse_filters({"start": "2026-01-16", "end": "2026-01-17"}, None, dt.date(2026, 1, 17))
    assert today.until > now
    assert not overview.evaluation(small_hub, today, now).kept
    assert not overview.evaluation(small_hub, today, soon).kept


def test_overview_hub_unreachable(tmp_path):
    import sqlalchemy as sa

    bad = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    with pytest.raises(overview.HubUnreachable) as err:
        overview.load({}, eng=bad)
    assert "暂时无法连接数据中台" in err.value.problem


# ------------------------------------------------------------------ the page in the real browser

def _closing_path(ct: CaseType) -> list[str]:
    """The shortest chain of steps from a type's intake to a closing status (breadth first)."""
    todo, seen = [[ct.intake]], {ct.intake}
    while todo:
        path = todo.pop(0)
        if path[-1] in ct.closed:
            return path[1:]
        for nxt in ct.allowed(path[-1]):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(path + [nxt])
    return []


def build_browser_hub(url: str) -> dict:
    """A small hub for the browser: cases of a registered type in the spine's `cases` store
    (opened through the engine in the last days), one closed, one alert that became a case."""
    from workbench import clock
    from workbench.store import hub

    cases._ensure_registered()
    ct = next(t for t in cases.TYPES.values() if t.store == "cases" and _closing_path(t))
    eng = hub.engine(url)
    now = clock.now().floor("h")
    # yesterday at noon, Beijing time, whatever the hour of the run (the daily report reads yesterday)
    yesterday_noon = clock.to_utc(clock.local_day(clock.now()) - pd.Timedelta(days=1) + pd.Timedelta(hours=12))
    alerts.raise_alert(eng, alert_id="OV-A1", ts=yesterday_noon, department="市场监管局",
                       category="快检阳性", severity="critical", title="测试市场韭菜农药残留阳性", district="芦淞区",
                       status=alerts.ACTIVE)
    plan = [("OV-1", "荷塘区", None), ("OV-2", "荷塘区", None), ("OV-3", "荷塘区", None), ("OV-4", "芦淞区", "OV-A1"),
            ("OV-5", "芦淞区", None)]
    for i, (cid, district, alert) in enumerate(plan):
        opened = now - pd.Timedelta(hours=40 - i)
        cases.open_case(eng, ct.name, cid, actor="测试员", ts=opened, district=district, alert_id=alert,
                        deadline=opened + pd.Timedelta(hours=24), title=f"测试案件 {cid}")
    for k, step in enumerate(_closing_path(ct)):
        cases.transition(eng, "OV-5", step, actor="测试员", ts=now - pd.Timedelta(hours=20 - k))
    hub.dispose(url)
    return {"case_type": ct.name}


@pytest.fixture(scope="module")
def browser_hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("overview-hub")
    url = f"sqlite:///{root / 'city.db'}"
    info = build_browser_hub(url)
    return {"WORKBENCH_DB_URL": url, "WORKBENCH_DATA_DIR": str(root / "data"), **info}


def _overview_only(tmp_path_factory, name: str) -> Path:
    """A folder holding only the overview (one kernel pool on a small machine)."""
    import shutil

    from workbench.ui import server

    folder = tmp_path_factory.mktemp(f"dash-{name}")
    shutil.copy(server.DASHBOARDS / server.FRONT_PAGE, folder / server.FRONT_PAGE)
    return folder


OUTPUT = Path(__file__).parent / "output"
SCREENSHOTS = OUTPUT / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}
RENDER_TIMEOUT = 180


@pytest.fixture(scope="module")
def overview_server(browser_hub, tmp_path_factory, voila):
    hub_vars = {k: browser_hub[k] for k in ("WORKBENCH_DB_URL", "WORKBENCH_DATA_DIR")}
    with voila(hub_vars, "overview-small", folder=_overview_only(tmp_path_factory, "small"), preheat=1) as srv:
        yield srv


def _page(chromium):
    return chromium.new_page(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai")


@pytest.mark.browser
@pytest.mark.slow
def test_front_door_opens_the_overview_and_a_district_click_filters(chromium, overview_server):
    from workbench.ui.browser import render

    page = _page(chromium)
    try:
        result = render(page, overview_server.front_url(), timeout=RENDER_TIMEOUT)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "overview-small.png"), full_page=True)
        assert not result.errors + result.console_errors, "\n".join(result.errors + result.console_errors) + \
            overview_server.log()[-3000:]
        assert page.url.split("?")[0].endswith("/voila/render/overview.ipynb")   # / is the overview
        assert page.title() == "城市运行总览"
        for text in ("城市运行总览", "数据截至", "城市运行关键指标", "区县分布", "各部门办理考核", "最新告警与联动案件",
                     "说明", "按期结案数 ÷（应结案数 − 缓办数）", "测试市场韭菜农药残留阳性", "OV-4",
                     "各部门看板"):
            assert text in result.text, f"页面上没有“{text}”"
        assert "全市 ·" in page.locator(".wb-ov-status").inner_text()
        assert page.locator("svg.wb-ov-svg a").count() == 18          # the city, and the centre enlarged
        names = set(page.eval_on_selector_all("svg.wb-ov-svg a", "els => els.map(e => e.dataset.district)"))
        assert names == set(geo.NAMES)
        svg_text = page.locator("svg.wb-ov-svg").text_content()
        assert "荷塘区 3" in svg_text and all(n in svg_text for n in geo.NAMES)   # every district named
        # clicking a district on the map reloads the page filtered to it
        page.locator('svg.wb-ov-svg a[data-district="醴陵市"] path').first.click()
        page.wait_for_url("**district=*", timeout=30_000)
        page.wait_for_selector(".wb-footer", state="visible", timeout=RENDER_TIMEOUT * 1000)
        page.wait_for_function("() => document.querySelector('.wb-ov-status') && "
                               "document.querySelector('.wb-ov-status').innerText.includes('醴陵市 ·')", timeout=60_000)
        page.screenshot(path=str(SCREENSHOTS / "overview-district.png"), full_page=True)
        assert "%E9%86%B4%E9%99%B5%E5%B8%82" in page.url or "醴陵市" in page.url
        # a district of the table: 芦淞区, whose alert became case OV-4
        page.locator(".wb-ov-map table a", has_text="芦淞区").click()
        page.wait_for_function("() => document.querySelector('.wb-ov-status') && "
                               "document.querySelector('.wb-ov-status').innerText.includes('芦淞区 ·')", timeout=60_000)
        assert "OV-4" in page.inner_text("body")
        dept = page.locator(".wb-ov-cards a").first.get_attribute("href")
        assert dept is None or "district=" in dept
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.slow
def test_overview_refreshes_while_open(chromium, overview_server, browser_hub):
    """?refresh=5: the page re-reads the hub every 5 s; a case opened meanwhile shows on the map."""
    from workbench import clock
    from workbench.store import hub
    from workbench.ui.browser import render

    page = _page(chromium)
    try:
        result = render(page, overview_server.url("overview") + "?refresh=5", timeout=RENDER_TIMEOUT)
        assert result.ok, result.errors
        before = page.locator(".wb-ov-refreshed").inner_text()
        url = browser_hub["WORKBENCH_DB_URL"]
        cases.open_case(hub.engine(url), browser_hub["case_type"], "OV-NEW", actor="测试员",
                        ts=clock.now() - pd.Timedelta(hours=30), district="荷塘区", title="刷新测试")
        hub.dispose(url)
        page.wait_for_function("() => document.querySelector('svg.wb-ov-svg').textContent.includes('荷塘区 4')",
                               timeout=30_000)
        assert page.locator(".wb-ov-refreshed").inner_text() != before
        page.screenshot(path=str(SCREENSHOTS / "overview-refreshed.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.slow
def test_overview_says_so_when_the_hub_is_unreachable(chromium, tmp_path_factory, voila):
    """Signed in while the hub answers; then its database cannot be opened (a folder where the
    file was): the page says 数据暂不可用（自 … 起） with the first failure's Beijing time, no
    traceback; when the hub answers again the page is back and the failure forgotten."""
    import shutil

    from workbench.store import hub
    from workbench.ui import layout
    from workbench.ui.browser import render

    root = tmp_path_factory.mktemp("down")
    db = root / "city.db"
    env = {"WORKBENCH_DB_URL": f"sqlite:///{db}", "WORKBENCH_DATA_DIR": str(root / "data")}
    with voila(env, "overview-down", folder=_overview_only(tmp_path_factory, "down"), preheat=0) as srv:
        page = _page(chromium)
        try:
            result = render(page, srv.front_url(), timeout=RENDER_TIMEOUT)   # signs in; the hub answers
            assert result.ok, result.errors
            hub.dispose(env["WORKBENCH_DB_URL"])
            aside = root / "aside"
            aside.mkdir()
            for f in root.glob("city.db*"):
                shutil.move(str(f), aside / f.name)
            db.mkdir()                                   # the hub's file cannot be opened any more
            result = render(page, srv.front_url(), timeout=RENDER_TIMEOUT, ready=".wb-unavailable")
            page.screenshot(path=str(SCREENSHOTS / "overview-hub-down.png"), full_page=True)
            assert not result.errors, "\n".join(result.errors) + srv.log()[-3000:]
            assert "数据暂不可用（自 " in result.text and "起）" in result.text and "请稍后刷新" in result.text
            assert "Traceback" not in result.text and "OperationalError" not in result.text
            since = (root / "data" / layout.DOWN_FILE).read_text()
            assert layout.unavailable_text(pd.Timestamp(since)) in result.text
            db.rmdir()
            for f in aside.iterdir():
                shutil.move(str(f), root / f.name)
            result = render(page, srv.front_url(), timeout=RENDER_TIMEOUT)
            assert result.ok and "城市运行关键指标" in result.text and "数据暂不可用" not in result.text
            assert not (root / "data" / layout.DOWN_FILE).exists()
        finally:
            page.close()


# ------------------------------------------------------------------ 城市运行日报

def test_daily_decisions_rank_by_severity_then_overdue():
    from workbench.cockpit import daily

    at = T("2026-01-16")
    frame, _ = hand_cases()
    frame["type_label"] = "测试事件"
    hazards = pd.DataFrame([{"hazard_id": "H1", "district": "芦淞区", "hazard_type": "燃气", "deadline": T("2026-01-10")},
                            {"hazard_id": "H2", "district": "荷塘区", "hazard_type": "消防", "deadline": T("2026-02-10")}])
    active = pd.DataFrame([{"alert_id": "W1", "level": "黄色", "category": "寒潮", "title": "寒潮黄色预警", "district": None},
                           {"alert_id": "W2", "level": "红色", "category": "道路结冰", "title": "道路结冰红色预警",
                            "district": None}])
    uncased = pd.DataFrame([{"alert_id": "A9", "ts": T("2026-01-15"), "department": "市场监管局", "category": "快检阳性",
                             "title": "瘦肉精阳性", "district": "荷塘区"}])
    d = daily.decisions(frame, hazards, active, uncased, at)
    assert list(d["kind"]) == ["红色预警", "逾期重大隐患", "严重告警未立案", "超期案件", "超期案件"]
    assert d.loc[1, "title"].startswith("重大隐患 H1") and round(d.loc[1, "days"]) == 6
    # the two most overdue cases open at 01-16 00:00: d2 (deadline 01-05), c6 (01-14, closed only at 01-16);
    # c3 (01-15) is one day late, c7 is due later
    assert [t.split()[-1] for t in d["title"][3:]] == ["d2", "c6"]
    assert list(d["rank"]) == [1, 2, 3, 4, 5]
    assert daily.parse_day("", dt.date(2026, 3, 2)) == dt.date(2026, 3, 1)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        daily.parse_day("上周")


@pytest.mark.slow
def test_city_daily_report_runs_through_papermill(tmp_path, monkeypatch):
    """notebooks/city_daily.ipynb through workbench.reports (papermill), HTML without code."""
    from workbench import clock, reports

    url = f"sqlite:///{tmp_path / 'city.db'}"
    build_browser_hub(url)
    monkeypatch.setenv("WORKBENCH_DB_URL", url)
    monkeypatch.setenv("WORKBENCH_REPORTS_OUT", str(tmp_path / "reports"))
    assert "city_daily" in reports.available()
    assert any(r["notebook"] == "city_daily" and r["cron"] == "30 7 * * *" for r in reports.load_schedule())
    day = (clock.local_day(clock.now()) - pd.Timedelta(days=1)).date()
    run = reports.run("city_daily", {"day": ""}, progress=False, out_name="city_daily")
    html = run.html.read_text(encoding="utf-8")
    for text in (f"城市运行日报（{day:%Y年%m月%d日}）", "需要决策的五件事", "昨日新立案件", "较上周同日", "超期未办结",
                 "近 7 天各部门办理考核", "快检阳性"):
        assert text in html, text
    assert "daily.report(" not in html and "import " not in html  # no code cells in the printed report
    assert "Traceback" not in html
