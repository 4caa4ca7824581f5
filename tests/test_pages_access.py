"""Issue 13 on the pages (events, safety, overview): every page acts as its signed-in user.

A district user's data functions return only the district's rows (the filter is in the hub's
queries); a read-only role's step is refused with the reason and its controls are disabled;
a staff step records the identity as its actor; the caller's originals are revealed only with a
reason, for an allowed role, and audited; a page without a user shows 请先登录 only; a hub that
does not answer shows 数据暂不可用（自 … 起）. Real hubs (SQLite, PostgreSQL), no mocks.
"""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from workbench import access, audit, cases, users
from workbench.events import board as bd
from workbench.events import flow
from workbench.store import hub
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS, personal_data
from workbench.ui import events_page, layout, overview_page, safety_page

CENTER = "市城市运行管理服务中心"
T0 = pd.Timestamp("2026-01-14 02:00")
PW = "long-enough-pass"


def _users(eng):
    made = {
        "center": dict(role="staff", name="调度张", department=CENTER),
        "water": dict(role="staff", name="水务李", department="市水务局"),
        "hetang": dict(role="district", name="荷塘王", district="荷塘区"),
        "analyst": dict(role="analyst", name="分析赵"),
        "leader": dict(role="leader", name="市领导钱"),
    }
    for u, kw in made.items():
        users.create(u, PW, eng=eng, **kw)
    return {u: users.principal(u, eng) for u in made}


def _events(eng):
    """Six open city events: four in 荷塘区, two in 芦淞区."""
    rows = [("E-HT-1", "荷塘区", 27.86, 113.17), ("E-HT-2", "荷塘区", 27.87, 113.18), ("E-HT-3", "荷塘区", 27.86, 113.16),
            ("E-HT-4", "荷塘区", 27.85, 113.17), ("E-LS-1", "芦淞区", 27.80, 113.15), ("E-LS-2", "芦淞区", 27.81, 113.16)]
    for i, (eid, district, lat, lon) in enumerate(rows):
        cases.open_case(eng, flow.CASE_TYPE, eid, actor="12345热线", ts=T0 + pd.Timedelta(hours=i), department=CENTER,
                        event_class="暴露垃圾", description="路边垃圾堆积，请联系138****5678", district=district,
                        street="测试街道", lat=lat, lon=lon, source="12345热线")


@pytest.fixture
def city(hub_engine):
    who = _users(hub_engine)
    _events(hub_engine)
    return hub_engine, who


# ------------------------------------------------------------------ row-level scope: events

def test_district_user_reads_only_its_district_on_the_events_page(city):
    eng, who = city
    d = access.district_filter(who["hetang"])
    assert d == "荷塘区" and access.district_filter(who["center"]) is None
    rows = bd.board_rows(eng, district=d)
    assert set(rows["district"]) == {"荷塘区"} and len(rows) == 4
    assert set(bd.load_events(None, eng=eng, district=d)["district"]) == {"荷塘区"}
    counts = bd.board_counts(eng, district=d)
    assert int(counts["n"].sum()) == 4
    assert bd.count_since(None, eng, d) == 4 and bd.count_since(None, eng) == 6

    view = events_page.load(eng=eng, who=who["hetang"])
    assert set(view.snap.events["district"]) == {"荷塘区"} and len(view.snap.states) == 4
    board = events_page.LiveBoard(view, eng=eng)
    assert set(board.rows()["district"]) == {"荷塘区"}
    assert {v for _, v in board.pick.options} == {"E-HT-1", "E-HT-2", "E-HT-3", "E-HT-4"}
    # the numbers at the top and on the board agree (the board's cards: one department picked)
    top = events_page.kpis_html(view)
    assert ">4<" in top and board.cards.value == ""
    board.dept.value = CENTER
    assert ">4<" in board.cards.value
    assert "E-LS-1" not in board.table.value and "芦淞区" not in events_page.body(view).children[1].children[1].value

    everyone = events_page.load(eng=eng, who=who["leader"])
    assert len(everyone.snap.events) == 6


# ------------------------------------------------------------------ acting as the signed-in user

def test_read_only_roles_are_refused_with_the_reason(city):
    eng, who = city
    view = events_page.load(eng=eng, who=who["analyst"])
    board = events_page.LiveBoard(view, eng=eng)
    assert all(b.disabled for b in board.buttons.values()) and board.to_dept.disabled
    assert "数据分析员只能查看，不能办理案件" in board.readonly.value
    assert not board.may_reveal and not hasattr(board, "actor")   # no 办理人 text box any more
    board.pick.value = "E-HT-1"
    board.act("accept")
    assert "未执行" in board.message.value and "数据分析员只能查看" in board.message.value
    with pytest.raises(access.AccessDenied, match="数据分析员只能查看，不能"):
        flow.act(eng, "E-HT-1", "accept", actor=who["analyst"])
    assert layout.read_only_reason(who["leader"]) == "市领导只能查看，不能办理案件"
    assert hub.read("city_events", where={"event_id": "E-HT-1"}, eng=eng)["status"].iloc[0] == flow.INTAKE


def test_staff_step_records_the_identity_and_dispatch_works(city):
    eng, who = city
    view = events_page.load(eng=eng, who=who["center"])
    board = events_page.LiveBoard(view, eng=eng)
    assert not board.readonly.value and not any(b.disabled for b in board.buttons.values())
    assert "调度张（center）" in board.user.value
    board.pick.value = "E-LS-1"
    board.act("accept")
    assert "wb-events-done" in board.message.value, board.message.value
    board.to_dept.options = [("市水务局", "市水务局")]
    board.act("dispatch")
    assert "任务派遣" in board.message.value, board.message.value
    h = hub.read("event_history", where={"event_id": "E-LS-1"}, eng=eng)
    assert h["status"].tolist() == [flow.INTAKE, flow.CASE, flow.DISPATCH]
    assert h["actor"].tolist()[1:] == ["调度张（center）"] * 2
    assert hub.read("city_events", where={"event_id": "E-LS-1"}, eng=eng)["department"].iloc[0] == "市水务局"
    steps = audit.frame(eng=eng, action="case.step")
    assert (steps["actor"] == "调度张（center）").sum() >= 2
    # the water bureau now acts on it; the district user of another district may not
    flow.act(eng, "E-LS-1", "handle", actor=who["water"])
    with pytest.raises(access.AccessDenied, match="芦淞区"):
        flow.act(eng, "E-LS-1", "feedback", actor=who["hetang"])
    # a district user's step on its own district's case is written with its name
    ch = flow.act(eng, "E-HT-2", "accept", actor=who["hetang"])
    assert ch.actor == "荷塘王（hetang）"


def test_events_cli_acts_as_the_user(city, monkeypatch):
    from workbench.cli import main

    monkeypatch.delenv("WORKBENCH_USER", raising=False)   # --user sets it for the process
    eng, _ = city
    run = CliRunner()
    r = run.invoke(main, ["--user", "analyst", "events", "act", "E-HT-3", "accept"])
    assert r.exit_code == 2 and "数据分析员只能查看" in r.output
    r = run.invoke(main, ["--user", "center", "events", "act", "E-HT-3", "accept", "--note", "受理"])
    assert r.exit_code == 0, r.output
    assert hub.read("event_history", where={"event_id": "E-HT-3"}, eng=eng)["actor"].iloc[-1] == "调度张（center）"
    monkeypatch.delenv("WORKBENCH_USER", raising=False)
    r = run.invoke(main, ["events", "act", "E-HT-3", "dispatch", "--actor", "随便写"])
    assert r.exit_code == 2 and "--actor" in r.output          # no such option any more
    r = run.invoke(main, ["--user", "nobody", "events", "act", "E-HT-3", "dispatch"])
    assert r.exit_code == 2 and "nobody" in r.output
    r = run.invoke(main, ["--user", "leader", "events", "dispatch"])
    assert r.exit_code == 2 and "市领导只能查看" in r.output
    monkeypatch.delenv("WORKBENCH_USER", raising=False)
    r = run.invoke(main, ["events", "dispatch"])               # the operator: automatic routing, as the system
    assert r.exit_code == 0 and "已立案并派遣" in r.output, r.output
    h = hub.read("event_history", where={"event_id": "E-HT-4"}, eng=eng)
    assert h["actor"].iloc[-1] == bd.AUTO_DISPATCH and h["status"].iloc[-1] == flow.DISPATCH


# ------------------------------------------------------------------ personal data

def _keep_caller(eng, eid):
    now = dt.datetime(2026, 1, 14, 3, 0)
    with eng.begin() as conn:
        conn.execute(personal_data.insert(), [
            {"dataset": "city_events", "row_key": events_page.row_key(eid), "field": f, "value": v, "stored_at": now}
            for f, v in (("reporter_name", "王小明"), ("reporter_phone", "13812345678"),
                         ("description", "路边垃圾堆积，请联系13812345678"))])


def test_reveal_needs_a_reason_and_an_allowed_role_and_is_audited(city):
    eng, who = city
    _keep_caller(eng, "E-HT-1")
    assert events_page.row_key("E-HT-1") == '["E-HT-1"]'
    # the board shows only the masked text
    view = events_page.load(eng=eng, who=who["hetang"])
    board = events_page.LiveBoard(view, eng=eng)
    assert "13812345678" not in board.table.value and "138****5678" in board.table.value
    assert board.may_reveal
    board.pick.value = "E-HT-1"
    board.reveal()                                    # no reason
    assert "不能查看" in board.revealed.value and "事由" in board.revealed.value
    board.reason.value = "回访核实诉求"
    board.reveal()
    assert "王小明" in board.revealed.value and "13812345678" in board.revealed.value
    assert board.reason.value == ""
    log = audit.frame(eng=eng)
    row = log[log["action"] == "unmask"].iloc[0]
    assert row["actor"] == "荷塘王（hetang）" and "E-HT-1" in row["target"] and "回访核实诉求" in row["detail"]
    # an analyst has no control, and the function refuses it; another district's user too
    with pytest.raises(access.AccessDenied, match="数据分析员不能查看个人信息原文"):
        from workbench import privacy
        privacy.reveal(who["analyst"], "city_events", events_page.row_key("E-HT-1"), "想看看", eng=eng)
    _keep_caller(eng, "E-LS-2")
    with pytest.raises(access.AccessDenied, match="不属于荷塘区"):
        privacy.reveal(who["hetang"], "city_events", events_page.row_key("E-LS-2"), "回访核实", eng=eng)
    assert (audit.frame(eng=eng)["action"] == "unmask").sum() == 1


# ------------------------------------------------------------------ safety and overview

def _safety(eng):
    grids = pd.DataFrame([{"grid_id": "G-HT", "district": "荷塘区", "street": "月塘街道", "lat": 27.86, "lon": 113.17,
                           "population": 5000},
                          {"grid_id": "G-LS", "district": "芦淞区", "street": "建宁街道", "lat": 27.80, "lon": 113.15,
                           "population": 4000}])
    sites = pd.DataFrame([{"site_id": "S-HT", "site_type": "养老院", "name": "荷塘养老院", "district": "荷塘区",
                           "street": "月塘街道", "grid_id": "G-HT", "lat": 27.86, "lon": 113.17, "owner": "张建国",
                           "phone": "13912345678"},
                          {"site_id": "S-LS", "site_type": "自建房", "name": "芦淞自建房", "district": "芦淞区",
                           "street": "建宁街道", "grid_id": "G-LS", "lat": 27.80, "lon": 113.15, "owner": "李四海",
                           "phone": "13712345678"}])
    base = {"hazard_type": "消防", "level": "重大", "ts": dt.datetime(2026, 1, 2), "deadline": dt.datetime(2026, 1, 9),
            "status": "待整改", "department": "应急管理局"}
    hazards = pd.DataFrame([{**base, "hazard_id": "H-HT-1", "site_id": "S-HT", "district": "荷塘区"},
                            {**base, "hazard_id": "H-HT-2", "site_id": "S-HT", "district": "荷塘区", "level": "一般"},
                            {**base, "hazard_id": "H-LS-1", "site_id": "S-LS", "district": "芦淞区"}])
    with eng.begin() as conn:
        insert_new(conn, DATASETS["grids"], grids)
        insert_new(conn, DATASETS["hazard_sites"], sites)
        insert_new(conn, DATASETS["hazards"], hazards)


def test_safety_page_is_the_district_s_for_a_district_user(city):
    eng, who = city
    _safety(eng)
    snap = safety_page.load(eng=eng, who=who["hetang"])
    assert snap.scope == "荷塘区"
    assert set(snap.states["hazard_id"]) == {"H-HT-1", "H-HT-2"}
    assert set(snap.ledger.sites["district"]) == {"荷塘区"} and set(snap.grids["grid_id"]) == {"G-HT"}
    assert set(snap.risk["district"]) == {"荷塘区"}
    assert safety_page.district_options(snap) == [("荷塘区", "荷塘区")]
    w = safety_page.page(snap)
    pick = w.children[0].children[0]
    assert pick.disabled and pick.value == "荷塘区"
    first = safety_page.kpis(snap).children[0].value       # 未整改隐患: the district's two
    assert "未整改隐患" in first and ">2<" in first
    assert ">3<" in safety_page.kpis(safety_page.load(eng=eng, who=who["leader"])).children[0].value
    table = safety_page.open_table(snap.states)
    assert "H-HT-1" in table and "H-LS-1" not in table
    # personal data of the sites is masked
    assert set(snap.ledger.sites["owner"]) == {"张**"} and "13912345678" not in snap.ledger.sites.to_string()
    assert "张建国" not in safety_page.overdue_table(snap.states)
    full = safety_page.load(eng=eng, who=who["leader"])
    assert set(full.states["hazard_id"]) == {"H-HT-1", "H-HT-2", "H-LS-1"} and full.scope is None


def test_overview_is_the_district_s_for_a_district_user(city):
    eng, who = city
    page = overview_page.view({"district": "芦淞区"}, who=who["hetang"], eng=eng, autostart=False)
    assert page.snapshot is not None and page.snapshot.filters.district == "荷塘区"
    assert list(page.snapshot.districts["district"]) == ["荷塘区"]
    assert "芦淞区" not in page.w["map"].value
    assert 'value="荷塘区"' in overview_page.filter_html(page.snapshot.filters, only="荷塘区")
    assert "全市" not in overview_page.filter_html(page.snapshot.filters, only="荷塘区").split("<select")[1].split("</select>")[0]
    assert page.snapshot.kpis["open"] == 4
    everyone = overview_page.view({}, who=who["leader"], eng=eng, autostart=False)
    assert len(everyone.snapshot.districts) == 9 and everyone.snapshot.kpis["open"] == 6


# ------------------------------------------------------------------ the page's gate

def test_a_page_without_a_user_shows_only_sign_in(sqlite_hub, monkeypatch):
    users.create("zhou", PW, role="staff", name="周", department=CENTER, eng=sqlite_hub)
    monkeypatch.setenv("VOILA_KERNEL_ID", "test-kernel")      # as in a Voilà kernel
    monkeypatch.delenv("VOILA_PREHEAT", raising=False)
    monkeypatch.delenv(access.USER_ENV, raising=False)
    gate = layout.open_page(events_page.load)
    assert not gate.ok and gate.problem == "signin" and "请先登录" in gate.top.value and gate.data is None
    assert gate.show(lambda: 1 / 0) is None                  # nothing else runs
    monkeypatch.setenv(access.USER_ENV, "zhou|9999999999|forged")
    assert layout.open_page().problem == "signin"
    monkeypatch.setenv(access.USER_ENV, access.sign("zhou"))
    gate = layout.open_page(events_page.load)
    assert gate.ok and gate.who.username == "zhou" and gate.data.who == gate.who
    assert "当前用户：周" in gate.top.value


def test_the_board_says_so_when_the_hub_goes_away(sqlite_hub, tmp_path):
    users.create("center", PW, role="staff", name="调度张", department=CENTER, eng=sqlite_hub)
    _events(sqlite_hub)
    who = users.principal("center", sqlite_hub)
    board = events_page.LiveBoard(events_page.load(eng=sqlite_hub, who=who), eng=sqlite_hub)
    board.pick.value = "E-HT-1"
    (tmp_path / "gone.db").mkdir()                               # a hub file that cannot be opened
    board.eng = sa.create_engine(f"sqlite:///{tmp_path / 'gone.db'}")
    board.act("accept")
    assert "未执行：数据暂不可用（自 " in board.message.value
    board.dept.value = CENTER                                    # a redraw: said in the status line
    assert "数据暂不可用（自 " in board.status.value
    board.reason.value = "回访核实"
    board.reveal()
    assert "数据暂不可用（自 " in board.revealed.value
    board.eng.dispose()
    assert hub.read("city_events", where={"event_id": "E-HT-1"}, eng=sqlite_hub)["status"].iloc[0] == flow.INTAKE


def test_an_unreachable_hub_says_since_when(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WORKBENCH_DB_URL", "postgresql+psycopg://nobody@127.0.0.1:1/nohub")
    monkeypatch.delenv("VOILA_KERNEL_ID", raising=False)
    monkeypatch.delenv("WORKBENCH_USER", raising=False)
    first = layout.open_page(events_page.load)
    assert first.problem == "unavailable" and not first.ok
    since = layout.hub_down_since()
    assert since is not None and (tmp_path / "data" / layout.DOWN_FILE).is_file()
    from workbench.ui.tables import format_time
    text = f"数据暂不可用（自 {format_time(since)} 起）"
    assert text in first.top.value and "Traceback" not in first.top.value
    # a later look keeps the first failure's time
    (tmp_path / "data" / layout.DOWN_FILE).write_text("2026-01-05T06:03:00")
    again = layout.open_page(safety_page.load)
    assert "数据暂不可用（自 2026-01-05 14:03 起）" in again.top.value   # Beijing time
    # a failure while a page is drawn shows the same message
    ok = layout.Gate(ok=True)
    shown = ok.show(lambda: hub.query("select 1", eng=hub.engine(migrate=False)))
    assert "数据暂不可用（自 2026-01-05 14:03 起）" in shown.value
    # other errors are not hidden
    with pytest.raises(ZeroDivisionError):
        ok.show(lambda: 1 / 0)
    # the hub answers again: forgotten
    monkeypatch.setenv("WORKBENCH_DB_URL", f"sqlite:///{tmp_path / 'city.db'}")
    back = layout.open_page(events_page.load)
    assert back.ok and layout.hub_down_since() is None
    hub.dispose()


# ------------------------------------------------------------------ in a real browser

@pytest.mark.browser
@pytest.mark.slow
def test_browser_district_user_sees_its_district_and_a_staff_step_writes_its_name(chromium, voila, hub_user,
                                                                                 tmp_path_factory):
    """The sample city's events served with sign-in: 荷塘区's district user sees only 荷塘区 on the
    events page; the staff user's 受理立案 is written with its name."""
    from conftest import TEST_PASSWORD
    from test_events_board import fill_sample_events

    from workbench import geo
    from workbench.ui.browser import check, render, sign_in

    root = tmp_path_factory.mktemp("pages-access")
    env = {"WORKBENCH_DB_URL": f"sqlite:///{root / 'city.db'}", "WORKBENCH_DATA_DIR": str(root / "data")}
    fill_sample_events(env["WORKBENCH_DB_URL"])
    shots = config_root() / "tests" / "output" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with voila(env, "pages-access", role="staff", department=CENTER) as srv:
        hub_user(srv.env, "hetang", "district", district="荷塘区", name="荷塘王")
        ctx = chromium.new_context(locale="zh-CN", timezone_id="Asia/Shanghai", viewport={"width": 1440, "height": 900})
        try:
            page = ctx.new_page()
            sign_in(page, srv.base_url, "hetang", TEST_PASSWORD, next_url=srv.url("events.ipynb"))
            res = render(page, srv.url("events.ipynb") + "?poll=60", timeout=180)
            page.screenshot(path=str(shots / "events-district-user.png"), full_page=True)
            assert not res.errors + res.console_errors, res.errors + res.console_errors
            assert "当前用户：荷塘王 · 区县人员 · 荷塘区（仅本区县数据）" in res.text
            rows = page.locator(".wb-events-board tbody tr").all_inner_texts()
            assert rows and all("荷塘区" in r for r in rows), rows[:5]
            others = [d for d in geo.NAMES if d != "荷塘区"]
            body = page.locator(".wb-events").inner_text()
            assert not [d for d in others if d in body], [d for d in others if d in body]
            picks = page.locator(".wb-events-pick select option").all_inner_texts()
            eng = hub.engine(env["WORKBENCH_DB_URL"])
            ht = set(hub.read("city_events", where={"district": "荷塘区"}, columns=["event_id"], eng=eng)["event_id"])
            assert picks and all(p.replace("\xa0", " ").split(" · ")[0] in ht for p in picks)
            assert not check(page)
        finally:
            ctx.close()
        # the staff user (srv.user) accepts a waiting case: the step carries its name
        waiting = hub.read("city_events", where={"status": flow.INTAKE}, columns=["event_id", "district"], eng=eng)
        assert len(waiting), "the sample city has events waiting at 信息收集"
        eid = waiting["event_id"].iloc[0]
        page = chromium.new_page(viewport={"width": 1440, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai")
        try:
            res = render(page, srv.url("events.ipynb") + "?poll=60", timeout=180)
            assert not res.errors + res.console_errors, res.errors + res.console_errors
            pick = page.locator(".wb-events-pick select")
            pick.select_option(value=pick.locator("option", has_text=eid).first.get_attribute("value"))
            page.locator(".wb-act-accept").click()
            page.locator(".wb-events-done").wait_for(timeout=30_000)
            h = hub.read("event_history", where={"event_id": eid}, eng=eng)
            assert h.sort_values("ts")["actor"].iloc[-1] == srv.user and h.sort_values("ts")["status"].iloc[-1] == flow.CASE
        finally:
            page.close()
        hub.dispose(env["WORKBENCH_DB_URL"])


def config_root():
    from workbench import config

    return config.ROOT


def test_safety_cli_takes_the_identity(city, monkeypatch):
    from workbench.cli import main

    monkeypatch.delenv("WORKBENCH_USER", raising=False)   # --user sets it for the process
    r = CliRunner().invoke(main, ["--user", "analyst", "safety", "warn", "--no-progress"])
    assert r.exit_code == 2 and "数据分析员只能查看，不能运行预警引擎" in r.output
    monkeypatch.delenv("WORKBENCH_USER", raising=False)
    r = CliRunner().invoke(main, ["safety", "warn", "--no-progress", "--json"])   # the operator: the system
    assert r.exit_code == 0, r.output
