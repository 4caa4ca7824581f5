"""The 城市事件调度 page's numbers, order, 派往 and redraws, on a real hub (SQLite and PostgreSQL):
the top cards and the board count the same open cases (safety's inspection tasks apart in both,
old open cases in both); the board's order is the one its caption states, paged over every open
case; 派往 starts at the department the routing rules give; a step redraws the deadline tables."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from workbench import access, cases, users
from workbench.events import board as bd
from workbench.events import flow
from workbench.ui import events_page as ep

CENTER = "市城市运行管理服务中心"
T0 = pd.Timestamp("2026-01-14 02:00")     # naive UTC; the hub's newest report is near it
PW = "long-enough-pass"


def _open(eng, eid, *, cls="暴露垃圾", ts, deadline=None, steps=(), case_type=flow.CASE_TYPE, district="荷塘区",
          street="月塘街道", department=CENTER, description="路边垃圾堆积"):
    cases.open_case(eng, case_type, eid, actor="12345热线", ts=ts, department=department, event_class=cls,
                    description=description, district=district, street=street, lat=27.86, lon=113.17,
                    source="12345热线", deadline=deadline, steps=steps)


ACCEPTED = [(flow.CASE, "立案")]
DISPATCHED = [(flow.CASE, "立案"), (flow.DISPATCH, "派遣")]


def fill(eng) -> dict:
    """Open city events in the window, an open overdue one from 200 days ago (outside the page's
    90-day window), closed ones, and safety's inspection tasks (open, overdue). Returns what the
    counts must be at T0."""
    h = pd.Timedelta(hours=1)
    _open(eng, "E-WAIT-1", ts=T0 - 2 * h, deadline=T0 + 6 * h)                        # waiting, in time
    _open(eng, "E-WAIT-2", cls="违章停车", ts=T0 - 1 * h, deadline=T0 - 0.5 * h)         # waiting, overdue
    _open(eng, "E-CASE-1", ts=T0 - 30 * h, deadline=T0 - 20 * h, steps=ACCEPTED)        # accepted, overdue
    _open(eng, "E-DISP-1", ts=T0 - 5 * h, deadline=T0 + 3 * h, steps=DISPATCHED)        # dispatched, in time
    _open(eng, "E-DISP-2", ts=T0 - 5 * h, steps=DISPATCHED)                             # no deadline
    _open(eng, "E-OLD-1", ts=T0 - pd.Timedelta(days=200), deadline=T0 - pd.Timedelta(days=199),
          steps=DISPATCHED)                                                              # old, overdue
    _open(eng, "E-TOWN-1", ts=T0 - 3 * h, deadline=T0 + 9 * h, district="渌口区", street="南洲镇")  # waiting
    _open(eng, "E-DONE-1", ts=T0 - 50 * h, deadline=T0 - 40 * h,
          steps=DISPATCHED + [(flow.HANDLING, "处置"), (flow.FEEDBACK, "反馈"), (flow.CLOSED, "结案")])
    for i in range(3):                                                                   # closed, old
        _open(eng, f"E-DONE-{i + 2}", ts=T0 - pd.Timedelta(days=10 + i), deadline=T0 - pd.Timedelta(days=9),
              steps=DISPATCHED + [(flow.HANDLING, "处置"), (flow.FEEDBACK, "反馈"), (flow.CLOSED, "结案")])
    tasks = 0
    try:
        cases.case_type(bd.INSPECTION)
        for i in range(2):
            cases.open_case(eng, bd.INSPECTION, f"T-{i}", actor="预警联动", ts=T0 - 4 * h, department="应急管理局",
                            event_class="道路结冰巡查", district="荷塘区", street="月塘街道", lat=27.86, lon=113.17,
                            deadline=T0 - 2 * h, steps=[(flow.CASE, "立案"), (flow.DISPATCH, "派遣")])
        tasks = 2
    except cases.CaseError:
        pass
    return {"open": 7, "overdue": 3, "waiting": 3, "tasks": tasks}


@pytest.fixture
def page_hub(hub_engine):
    want = fill(hub_engine)
    users.create("center", PW, role="staff", name="调度张", department=CENTER, eng=hub_engine)
    return hub_engine, users.principal("center", hub_engine), want


def _card(html: str, title: str) -> int:
    m = re.search(rf'wb-card-title">{title}</div><div class="wb-card-value">([\d,]+)<', html)
    assert m, (title, html[:400])
    return int(m.group(1).replace(",", ""))


def test_top_cards_and_board_count_the_same_open_cases(page_hub):
    eng, who, want = page_hub
    view = ep.load(eng=eng, who=who, now=T0)
    board = ep.LiveBoard(view, eng=eng)
    board.view.snap.now = T0
    board.refresh()
    top = board.top.value
    assert _card(top, "在办事件") == want["open"] and _card(top, "超期未办结") == want["overdue"]
    assert _card(ep.kpis_html(view), "在办事件") == want["open"]       # the page's first draw, the same count
    if want["tasks"]:
        assert _card(top, "预警巡查任务") == want["tasks"] and "另计，其中超期 2 件" in top
    # all departments: the board repeats no card of the top row
    assert board.cards.value == ""
    # one department picked: the board counts that department, from the same board_counts
    counts = bd.board_counts(eng, now=T0)
    depts = [v for _, v in board.dept.options if v]
    assert CENTER in depts
    for dept in depts:
        board.dept.value = dept
        tot = bd.board_total(counts, dept)
        assert _card(board.cards.value, f"{dept}在办") == tot["open"]
        assert _card(board.cards.value, "其中超期") == tot["overdue"]
    board.dept.value = ep.ALL
    assert board.cards.value == ""
    # the old open case (outside the 90-day window) is in the count and in the overdue table
    assert "E-OLD-1" in board.overdue.value and "E-OLD-1" not in set(view.snap.events["event_id"])
    assert f"共 {want['open'] + want['tasks']} 件在办" in board.pager.value


def test_board_order_is_the_one_its_caption_states_and_pages_cover_every_case(page_hub):
    eng, who, want = page_hub
    rows = bd.board_rows(eng, limit=1000)
    assert len(rows) == want["open"] + want["tasks"]
    waiting = rows["status"] == flow.INTAKE
    assert waiting.iloc[:waiting.sum()].all(), "待受理 first"
    for part in (rows[waiting], rows[~waiting]):   # within each group: deadline, earliest first, none last
        dl = part["deadline"]
        assert dl.dropna().is_monotonic_increasing
        assert dl.isna().cumsum().iloc[-1] == 0 or dl.iloc[-int(dl.isna().sum()):].isna().all()
    assert rows["event_id"].iloc[0] == "E-WAIT-2"                  # waiting and overdue: on top
    assert rows[~waiting]["event_id"].iloc[0] == "E-OLD-1"         # the most overdue of the rest
    assert rows["event_id"].iloc[-1] == "E-DISP-2"                 # no deadline: last
    assert "超期最久的在最上" in bd.BOARD_ORDER and "待受理" in bd.BOARD_ORDER
    # pages of 3: every case once, in the same order
    paged = pd.concat([bd.board_rows(eng, limit=3, offset=k) for k in range(0, len(rows) + 3, 3)])
    assert paged["event_id"].tolist() == rows["event_id"].tolist()
    view = ep.load(eng=eng, who=who, now=T0)
    board = ep.LiveBoard(view, eng=eng, page_rows=3)
    assert "第 1 / " in board.pager.value and board.prev_page.disabled and not board.next_page.disabled
    first = [v for _, v in board.pick.options]
    board.turn(1)
    assert "第 2 / " in board.pager.value and [v for _, v in board.pick.options] != first
    assert [v for _, v in board.pick.options] == rows["event_id"].iloc[3:6].tolist()


def test_dispatch_to_starts_at_the_routed_department(page_hub):
    eng, who, _ = page_hub
    view = ep.load(eng=eng, who=who, now=T0)
    board = ep.LiveBoard(view, eng=eng)
    board.pick.value = None                    # no case picked: 派往 is empty, a dispatch is refused
    assert board.to_dept.value is None
    board.act("dispatch")
    assert "请先选择" in board.message.value
    board.pick.value = "E-WAIT-2"              # 违章停车: the rules send it to 公安交警
    assert board.to_dept.value == "公安交警"
    board.pick.value = "E-TOWN-1"              # 暴露垃圾 in 渌口区: the township's office
    assert board.to_dept.value == "南洲镇办事处"
    board.to_dept.value = CENTER               # a person's own choice survives a redraw
    board.refresh()
    assert board.to_dept.value == CENTER
    board.pick.value = "E-WAIT-2"
    board.act("accept")
    board.act("dispatch")
    assert cases.history("E-WAIT-2", eng)["department"].iloc[-1] == "公安交警"


def test_a_step_redraws_the_deadline_tables_and_the_cards(page_hub):
    eng, who, want = page_hub
    view = ep.load(eng=eng, who=who, now=T0)
    board = ep.LiveBoard(view, eng=eng)
    row = re.search(r"E-CASE-1.*?</tr>", board.overdue.value, re.S).group(0)
    assert flow.CASE in row
    board.pick.value = "E-CASE-1"
    board.act("dispatch")
    assert "wb-events-done" in board.message.value, board.message.value
    row = re.search(r"E-CASE-1.*?</tr>", board.overdue.value, re.S).group(0)
    assert flow.DISPATCH in row and flow.CASE not in row
    board.pick.value = "E-WAIT-1"
    board.act("reject")                        # 不予立案 closes it: one fewer open, waiting
    assert _card(board.top.value, "在办事件") == want["open"] - 1
    assert "待受理 2 件" in board.top.value


def test_a_district_user_sees_only_its_districts_name_on_the_map(page_hub):
    eng, _, _ = page_hub
    users.create("hetang", PW, role="district", name="荷塘王", district="荷塘区", eng=eng)
    view = ep.load(eng=eng, who=users.principal("hetang", eng), now=T0)
    spec = ep.events_map(view).outputs[0]["data"][ep.charts.PLOTLY_MIME]
    written = [t for tr in spec["data"] if tr.get("mode") == "text" for t in tr["text"] if t]
    assert written and all("荷塘" in t for t in written), written
    assert access.district_filter(view.who) == "荷塘区"
    assert view.scope == "荷塘区"   # its hotspots are the district's, compared with the district's average


def test_open_states_reads_the_most_overdue_and_every_case_in_time(page_hub):
    eng, who, want = page_hub
    every = bd.open_states(eng, T0, overdue_limit=None)
    some = bd.open_states(eng, T0, overdue_limit=2)
    n_od = int(every["overdue"].sum())
    assert n_od == want["overdue"] + want["tasks"] and int(some["overdue"].sum()) == 2
    assert set(some.loc[some["overdue"], "event_id"]) == {"E-OLD-1", "E-CASE-1"}          # the most overdue
    assert set(some.loc[~some["overdue"], "event_id"]) == set(every.loc[~every["overdue"], "event_id"])
    html = ep.overdue_table(some, total=n_od)
    assert f"超期未办结共 {n_od} 件，按超期时长列出最久的 2 件" in html


# ------------------------------------------------------------------ the kept patterns (a first visit reads no window)

def test_a_city_wide_visit_reads_the_kept_patterns_and_a_new_report_makes_them_analysed_again(page_hub):
    from workbench.events import analysis as ea
    from workbench.store import kept

    eng, who, _want = page_hub
    fresh = ep.load(eng=eng, who=who)                 # nothing kept: analysed at the visit, and kept
    assert fresh.analysed is None and fresh.snap is not None and not fresh.stale
    pat, analysed = ea.load_kept(eng)
    assert pat is not None and analysed is not None and pat.events == len(fresh.snap.events)
    visit = ep.load(eng=eng, who=who)                 # kept and current: no window read
    assert visit.snap is None and visit.analysed == analysed and not visit.stale
    assert visit.pat.events == fresh.pat.events and visit.pat.on_time.equals(fresh.pat.on_time)
    assert ep.kpis_html(visit) == ep.kpis_html(fresh)                    # the same cards either way
    assert ep.refresh_kept(visit) is None                                # current: nothing to analyse
    # the board's first draw uses the page's counts; its departments come without the window's rows
    board = ep.LiveBoard(visit, eng=eng)
    assert CENTER in {v for _, v in board.dept.options}
    # a new report: the kept patterns are shown (said up to when) and analysed again after the visit
    _open(eng, "E-NEW-1", ts=T0 + pd.Timedelta(minutes=30), deadline=T0 + pd.Timedelta(hours=8))
    stale = ep.load(eng=eng, who=who)
    assert stale.stale and stale.snap is None and stale.pat.events == fresh.pat.events
    note = ep.analysed_note(stale)
    assert "正在后台重新分析" in note and "截至" in note
    ep.refresh_kept(stale, delay=0).join(60)
    again, _ = ea.load_kept(eng)
    assert again.events == fresh.pat.events + 1 and again.latest == T0 + pd.Timedelta(minutes=30)
    assert not ep.load(eng=eng, who=who).stale
    # a district user's patterns are their district's: analysed at the visit, never the city's kept ones
    district = ep.load(eng=eng, who=access.Principal("hetang", role="district", district="荷塘区"))
    assert district.analysed is None and set(district.snap.events["district"]) == {"荷塘区"}
    # an unreadable kept file reads as none: analysed again, nothing lost
    kept.path(ea.KEPT, eng).write_bytes(b"not a pickle")
    assert ea.load_kept(eng) == (None, None)
    assert ep.load(eng=eng, who=who).analysed is None


def test_kept_patterns_older_than_an_hour_are_not_current():
    from workbench.events import analysis as ea

    pat = ea.Patterns(now=T0, latest=T0, days=90, events=1, first=T0, hot=pd.DataFrame(), grid_hot=pd.DataFrame(),
                      street_hot=pd.DataFrame(), placement="", on_time=pd.DataFrame(), km=pd.DataFrame(),
                      km_by=pd.DataFrame(), km_curves={}, volumes=pd.Series(dtype=int), hour_weekday=pd.DataFrame(),
                      forecast=pd.DataFrame(), repeats=pd.DataFrame())
    assert ea.current(pat, T0, analysed=T0, now=T0 + pd.Timedelta(minutes=59))
    assert not ea.current(pat, T0, analysed=T0, now=T0 + pd.Timedelta(minutes=61))
    assert not ea.current(pat, T0 + pd.Timedelta(seconds=1), analysed=T0, now=T0)


def test_events_analyse_keeps_what_the_page_then_reads(page_hub):
    from click.testing import CliRunner

    from workbench.cli import main
    from workbench.events import analysis as ea

    eng, who, _want = page_hub
    r = CliRunner().invoke(main, ["events", "analyse"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    pat, analysed = ea.load_kept(eng)
    assert f"近 90 天事件 {pat.events:,} 件" in r.output and "已保存供页面读取" in r.output
    view = ep.load(eng=eng, who=who)
    assert view.analysed == analysed and view.snap is None
    assert "E-CASE-1" in ep.overdue_table(view.open)          # the live parts are read at the visit all the same


def test_hub_read_takes_a_list_of_values(page_hub):
    from workbench.store import hub

    eng, _who, _want = page_hub
    rows = hub.read("city_events", where={"event_id": ["E-WAIT-1", "E-TOWN-1", "nope"]}, columns=["event_id"], eng=eng)
    assert sorted(rows["event_id"]) == ["E-TOWN-1", "E-WAIT-1"]
    assert len(hub.read("city_events", where={"event_id": []}, eng=eng)) == 0


def test_only_one_kernel_analyses_old_kept_patterns_again(page_hub):
    from workbench.events import analysis as ea
    from workbench.store import kept

    eng, who, _want = page_hub
    ep.load(eng=eng, who=who)                                          # kept
    _open(eng, "E-NEW-2", ts=T0 + pd.Timedelta(minutes=40), deadline=T0 + pd.Timedelta(hours=8))
    first, second = ep.load(eng=eng, who=who), ep.load(eng=eng, who=who)
    assert first.stale and second.stale
    held = kept.claim(ea.KEPT, eng)                                    # another kernel is at it
    assert held is not None and kept.claim(ea.KEPT, eng) is None
    ep.refresh_kept(first, delay=0).join(60)
    assert ea.load_kept(eng)[0].latest < T0 + pd.Timedelta(minutes=40)   # left to the holder
    kept.release(held)
    ep.refresh_kept(second, delay=0).join(60)
    assert ea.load_kept(eng)[0].latest == T0 + pd.Timedelta(minutes=40)
    assert not kept.path(ea.KEPT, eng).with_suffix(".claim").exists()     # released
    # a claim whose holder died lapses
    stale_claim = kept.claim(ea.KEPT, eng)
    assert kept.claim(ea.KEPT, eng, ttl=0) is not None
    kept.release(stale_claim)


def test_a_districts_weekly_report_analyses_that_districts_events_once(page_hub):
    """The weekly report of one district: its view, patterns (hotspots, on-time rates, Kaplan–
    Meier, repeats, forecast) and open cases are the district's, analysed once in load_weekly
    (the notebook renders them); before, the patterns were the whole city's under a district's
    title."""
    eng, _who, _want = page_hub
    town = ep.load_weekly(days=7, end="2026-01-14", district="渌口区", eng=eng)
    assert set(town.view.snap.events["district"]) == {"渌口区"}
    assert town.view.pat.events == 1 and len(town.week) == 1
    assert set(town.view.open["district"]) == {"渌口区"}
    assert town.view.pat.on_time["cases"].sum() == 1   # the district's one case, not the city's
    # what the hotspots were compared against is said: the district's average, not the city's
    assert town.view.scope == town.where == "渌口区"
    assert "渌口区平均水平" in ep.hotspot_table(town.view.pat.hot, scope=town.view.scope)
    assert "占渌口区的比例" in ep.area_method(town.view.scope)
    city = ep.load_weekly(days=7, end="2026-01-14", eng=eng)
    assert city.view.pat.events > town.view.pat.events
    assert city.view.pat.on_time["cases"].sum() > 1
    assert city.view.scope == "全市"
