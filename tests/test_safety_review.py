"""Overdue as one definition (issue 15: 城市安全 counted 0 overdue inspection tasks while 131 were
past their deadline; a hazard due hours ago still showed 待整改), and the risk review's summary:
its numbers, hand-counted."""
from __future__ import annotations


import pandas as pd

from workbench import clock, reports
from workbench.safety import review
from workbench.safety import tasks as tk
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS
from workbench.ui import safety_page as sp

T = pd.Timestamp


# ------------------------------------------------------------------ inspection tasks

def task_rows(now: pd.Timestamp) -> pd.DataFrame:
    """Tasks at every step of inspection_task, with deadlines either side of `now`."""
    h = pd.Timedelta(hours=1)
    rows = [  # event_id, status, deadline, closed_at, department
        ("T-DISPATCH", "任务派遣", now - 5 * h, None, "供电公司"),
        ("T-HANDLING", "任务处理", now - 30 * h, None, "燃气"),       # not 任务派遣: still overdue
        ("T-FEEDBACK", "处理反馈", now - 2 * h, None, "燃气"),
        ("T-REDO", "重新办理", now - 1 * h, None, "街道办事处"),
        ("T-CASE", "案卷建立", now - 3 * h, None, "街道办事处"),
        ("T-AHEAD", "任务派遣", now + 3 * h, None, "供电公司"),       # deadline still ahead
        ("T-CLOSED", "核查结案", now - 10 * h, now - 12 * h, "燃气"),  # closed in time
        ("T-LATE", "核查结案", now - 10 * h, now - 2 * h, "燃气"),     # closed, after its deadline
        ("T-NODL", "任务派遣", None, None, "燃气"),                   # no deadline: never overdue
    ]
    return pd.DataFrame([{"event_id": e, "ts": now - 40 * h, "source": "预警联动", "external_id": "W1",
                          "event_group": "突发事件", "event_class": "电力线路巡查", "description": "巡查",
                          "district": "荷塘区", "status": s, "department": d, "urgency": "紧急", "deadline": dl,
                          "closed_at": c, "case_type": "inspection_task", "alert_id": "W1"}
                         for e, s, dl, c, d in rows])


def test_task_overdue_is_every_open_step_past_its_deadline():
    now = T("2026-01-20 10:00")
    st = tk.task_states(task_rows(now), now).set_index("event_id")
    assert set(st.index[st.overdue]) == {"T-DISPATCH", "T-HANDLING", "T-FEEDBACK", "T-REDO", "T-CASE"}
    assert st.loc["T-HANDLING", "state"] == tk.TASK_OVERDUE and st.loc["T-HANDLING", "hours_overdue"] == 30
    assert st.loc["T-AHEAD", "state"] == tk.TASK_OPEN and st.loc["T-NODL", "state"] == tk.TASK_OPEN
    assert st.loc["T-CLOSED", "state"] == tk.TASK_DONE and not st.loc["T-CLOSED", "closed_late"]
    assert st.loc["T-LATE", "closed_late"] and not st.loc["T-LATE", "overdue"]
    s = tk.task_summary(st, now)
    assert (s.total, s.open, s.overdue, s.done, s.done_late) == (9, 7, 5, 2, 1)
    # the same moment given as Beijing time (aware): the same answer, not eight hours off
    aware = pd.Timestamp("2026-01-20 18:00", tz="Asia/Shanghai")
    assert tk.task_summary(tk.task_states(task_rows(now), aware), aware).overdue == 5
    # before the closing time, a task closed later was still open (a report as of a past moment)
    earlier = tk.task_states(task_rows(now), now - pd.Timedelta(hours=3)).set_index("event_id")
    assert earlier.loc["T-LATE", "state"] == tk.TASK_OVERDUE
    by = tk.overdue_by(st, "department")
    assert by.to_dict("list") == {"department": ["燃气", "街道办事处", "供电公司"], "overdue": [2, 2, 1],
                                  "open": [3, 2, 2], "longest_hours": [30.0, 3.0, 5.0]}


# ------------------------------------------------------------------ on the page, through the hub

def _city(eng, now: pd.Timestamp) -> None:
    """A ledger whose newest record is a day old, one hazard due three hours ago, one due
    tomorrow; and the inspection tasks above."""
    day = pd.Timedelta(days=1)
    sites = pd.DataFrame([{"site_id": "S1", "site_type": "养老院", "name": "荷塘敬老院", "district": "荷塘区",
                           "street": "月塘街道", "grid_id": "HT-YT-001", "lat": 27.86, "lon": 113.17}])
    hz = pd.DataFrame([
        {"hazard_id": "H-DUE", "site_id": "S1", "hazard_type": "消防通道堵塞", "level": "一般", "ts": now - 5 * day,
         "deadline": now - pd.Timedelta(hours=3), "status": "整改中", "district": "荷塘区", "department": "应急管理局"},
        {"hazard_id": "H-AHEAD", "site_id": "S1", "hazard_type": "电气线路老化", "level": "一般", "ts": now - day,
         "deadline": now + day, "status": "整改中", "district": "荷塘区", "department": "应急管理局"},
    ])
    with eng.begin() as conn:
        insert_new(conn, DATASETS["hazard_sites"], sites)
        insert_new(conn, DATASETS["hazards"], hz)
        insert_new(conn, DATASETS["city_events"], task_rows(now))


def test_the_page_counts_what_is_past_its_deadline_now(hub_engine):
    now = clock.now().floor("s")
    _city(hub_engine, now)
    snap = sp.load(eng=hub_engine)
    assert snap.data_to == now - pd.Timedelta(days=1)           # the ledger's newest record ...
    assert snap.as_of >= now                                     # ... but judged as of now
    st = snap.states.set_index("hazard_id")
    assert st.loc["H-DUE", "state"] == "逾期未整改" and st.loc["H-DUE", "days_overdue"] == 1
    assert st.loc["H-AHEAD", "state"] == "待整改"
    cards = [c.value for c in sp.kpis(snap).children]
    overdue_card = next(c for c in cards if "逾期未整改" in c and "重大" not in c)
    assert ">1<" in overdue_card
    task_card = next(c for c in cards if "巡查任务逾期未办结" in c)
    assert ">5<" in task_card and "未办结 7 项，共派发 9 项" in task_card
    table = sp.tasks_table(snap.tasks, snap.warnings)
    assert table.count("逾期 ") == 5 and "逾期 1 天 6 小时" in table
    assert table.index("逾期 1 天 6 小时") < table.index("逾期 5 小时") < table.index("逾期 1 小时")  # longest first
    assert "逾期未整改" in sp.open_table(snap.states) and "H-DUE" in sp.overdue_table(snap.states)


# ------------------------------------------------------------------ the review's summary

def ledger_frames():
    """Two weeks of a hand-made ledger; every time 02:00 UTC (10:00 Beijing)."""
    def at(day, hour=2):
        return T(f"2026-01-{day:02d} {hour:02d}:00")
    sites = pd.DataFrame([{"site_id": "S1", "site_type": "养老院", "name": "荷塘敬老院", "district": "荷塘区",
                           "street": "月塘街道", "grid_id": "HT-YT-001"},
                          {"site_id": "S2", "site_type": "自建房", "name": "建宁自建房", "district": "芦淞区",
                           "street": "建宁街道", "grid_id": "LS-JN-001"}])
    rows = [  # id, site, level, found, deadline, rectified, district
        ("H1", "S1", "重大", at(15), at(18), None, "荷塘区"),       # this week, major, overdue at the end
        ("H2", "S1", "一般", at(16), at(30), None, "荷塘区"),       # this week, open in time
        ("H6", "S2", "一般", at(19), at(20), None, "芦淞区"),       # this week, due hours before the end
        ("H3", "S1", "一般", at(10), at(12), at(13), "荷塘区"),     # last week, rectified late last week
        ("H4", "S2", "一般", at(9), at(15), at(17), "芦淞区"),      # last week, rectified this week
        ("H5", "S1", "一般", at(8), at(13), None, "荷塘区"),        # last week, overdue ever since
    ]
    hz = pd.DataFrame([{"hazard_id": h, "site_id": s, "hazard_type": "消防", "level": lv, "ts": f, "deadline": d,
                        "rectified_at": r, "verified_at": None, "status": "整改中", "district": dist,
                        "department": "应急管理局", "description": None} for h, s, lv, f, d, r, dist in rows])
    tasks = pd.DataFrame([
        {"event_id": "T1", "ts": at(18), "deadline": at(18, 6), "status": "任务处理", "closed_at": None,
         "department": "供电公司", "district": "荷塘区", "external_id": "W1"},
        {"event_id": "T2", "ts": at(18), "deadline": at(18, 6), "status": "核查结案", "closed_at": at(18, 5),
         "department": "燃气", "district": "荷塘区", "external_id": "W1"},
        {"event_id": "T3", "ts": at(18), "deadline": at(21), "status": "处理反馈", "closed_at": None,
         "department": "燃气", "district": "芦淞区", "external_id": "W1"},
        {"event_id": "T4", "ts": at(18), "deadline": at(19), "status": "重新办理", "closed_at": None,
         "department": "燃气", "district": "芦淞区", "external_id": "W1"},
    ])
    warnings = pd.DataFrame([{"alert_id": "W1", "ts": at(17), "district": None, "area": "株洲市", "title": "寒潮黄色预警"}])
    return hz, sites, tasks, warnings


def test_the_summary_states_the_hand_counted_numbers():
    hz, sites, tasks, warnings = ledger_frames()
    p = reports.period(7, "2026-01-20")   # 2026-01-14 .. 2026-01-20, Beijing
    s = review.summarize(hz, sites, tasks, warnings, p)
    c, b = s.current, s.previous
    assert (c.found, c.found_major, c.rectified, c.open, c.overdue, c.major_overdue) == (3, 1, 1, 4, 3, 1)
    assert (c.warnings, c.tasks, c.tasks_overdue) == (1, 4, 2)
    assert (b.found, b.rectified, b.overdue) == (3, 1, 1)   # at the end of the 13th: H5 past its deadline
    assert s.lines == [
        "本周全市新发现隐患 3 项（其中重大 1 项），较上周持平；整改完成 1 项，较上周持平。",
        "截至期末，未整改隐患 4 项，其中逾期未整改 3 项（重大 1 项），逾期数较上周增加 2 项（+200.0%）。",
        "本周发布寒潮、道路结冰、暴雪预警 1 条，联动派发巡查任务 4 项；截至期末逾期未办结的巡查任务 2 项。",
    ]
    assert s.overdue_by_district.to_dict("list") == {"district": ["荷塘区", "芦淞区"], "overdue": [2, 1],
                                                     "major": [1, 0], "longest_days": [8, 1]}
    assert s.decisions[0].startswith("逾期未整改隐患 3 项，分布在荷塘区 2 项、芦淞区 1 项")
    assert "重大隐患逾期未整改 1 项：荷塘敬老院（消防，逾期 3 天）" in s.decisions[1] and "挂牌督办" in s.decisions[1]
    assert s.decisions[2].startswith("预警联动巡查任务逾期未办结 2 项（供电公司 1 项、燃气 1 项）")
    one = review.summarize(hz, sites, tasks, warnings, p, district="芦淞区")
    assert one.lines[0].startswith("本周芦淞区新发现隐患 1 项（其中重大 0 项），较上周持平")   # H6 vs H4
    assert (one.current.overdue, one.current.tasks_overdue) == (1, 1)


def test_nothing_to_decide_is_said_as_such():
    hz, sites, tasks, warnings = ledger_frames()
    p = reports.period(7, "2026-01-07")   # before anything happened
    s = review.summarize(hz, sites, tasks, warnings, p)
    assert s.decisions == [] and s.lines[2] == "本周没有发布寒潮、道路结冰、暴雪预警，没有逾期未办结的巡查任务。"
    assert s.lines[0] == "本周全市新发现隐患 0 项（其中重大 0 项），较上周持平；整改完成 0 项，较上周持平。"
