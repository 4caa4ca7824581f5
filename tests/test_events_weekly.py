"""The weekly bulletin's summary (workbench.events.weekly) states the right numbers: reported,
merged, closed and closed on time, overdue and seriously overdue at the period's end, each against
the period before; the classes that rose; what needs a decision. Safety's inspection tasks in the
same table are not city events and are not counted."""
from __future__ import annotations

import pandas as pd

from workbench.events import flow, weekly
from workbench.reports import period

H = pd.Timedelta(hours=1)


def _row(eid, cls, dept, ts, *, deadline=None, closed_at=None, status=None, case_type=flow.CASE_TYPE):
    ts = pd.Timestamp(ts)
    st = status or (flow.CLOSED if closed_at is not None else flow.DISPATCH)
    return {"event_id": eid, "event_class": cls, "department": dept, "ts": ts, "deadline": deadline,
            "closed_at": closed_at, "status": st, "case_type": case_type, "district": "荷塘区", "street": "月塘街道"}


def sample() -> pd.DataFrame:
    rows = []
    # this week (2026-01-12 … 01-18, Beijing): 12 违章停车 to 公安交警, 6 of them closed (3 late, 3 on time)
    for i in range(12):
        ts = pd.Timestamp("2026-01-12 02:00") + i * H
        if i < 6:
            rows.append(_row(f"P{i}", "违章停车", "公安交警", ts, deadline=ts + (2 if i < 3 else 5) * H,
                             closed_at=ts + 3 * H))
        else:
            rows.append(_row(f"P{i}", "违章停车", "公安交警", ts, deadline=ts + 1000 * H))
    # … and 5 暴露垃圾 to 城管: 4 closed on time, 1 merged into another case (重复件: not a case)
    for i in range(4):
        ts = pd.Timestamp("2026-01-13 02:00") + i * H
        rows.append(_row(f"B{i}", "暴露垃圾", "城管", ts, deadline=ts + 10 * H, closed_at=ts + 2 * H))
    rows.append(_row("B4", "暴露垃圾", "城管", pd.Timestamp("2026-01-13 09:00"), closed_at=pd.Timestamp("2026-01-13 10:00"),
                     status=flow.DUPLICATE))
    # the week before (01-05 … 01-11): 2 + 5 + 3 reports, all closed on time within it
    for i, cls in enumerate(["违章停车"] * 2 + ["暴露垃圾"] * 5 + ["施工噪音"] * 3):
        ts = pd.Timestamp("2026-01-05 02:00") + i * H
        rows.append(_row(f"Q{i}", cls, "城管", ts, deadline=ts + 10 * H, closed_at=ts + 2 * H))
    # open and overdue, reported before both weeks: O1 since before the week before (and seriously:
    # overdue by more than its 8 hours); O2, O3 fall overdue this week
    rows.append(_row("O1", "暴露垃圾", "城管", "2026-01-01 00:00", deadline=pd.Timestamp("2026-01-01 08:00")))
    rows.append(_row("O2", "暴露垃圾", "城管", "2026-01-03 00:00", deadline=pd.Timestamp("2026-01-12 00:00")))
    rows.append(_row("O3", "暴露垃圾", "城管", "2026-01-03 01:00", deadline=pd.Timestamp("2026-01-15 00:00")))
    # safety's inspection task in the same table, open and overdue: not a city event
    rows.append(_row("T1", "道路结冰巡查", "应急管理局", "2026-01-13 00:00", deadline=pd.Timestamp("2026-01-13 04:00"),
                     case_type="inspection_task"))
    df = pd.DataFrame(rows)
    for c in ("ts", "deadline", "closed_at"):
        df[c] = pd.to_datetime(df[c])
    return df


def test_summary_states_the_right_numbers():
    p = period(7, "2026-01-18")
    s = weekly.summarize(sample(), p)
    assert (s.now.reported, s.now.merged, s.now.closed, s.now.closed_on_time) == (17, 1, 10, 7)
    assert (s.before.reported, s.before.closed, s.before.closed_on_time) == (10, 10, 10)
    assert (s.now.overdue, s.now.severe, s.before.overdue) == (3, 1, 1)
    assert s.lines[0] == "全市本期（2026-01-12 至 2026-01-18）上报城市事件 17 件，较上期增加 7 件（+70.0%）；其中合并重复件 1 件。"
    assert s.lines[1] == "本期办结 10 件，其中按期办结 7 件，按期办结率 70.0%，上期 100.0%。"
    assert s.lines[2] == "截至本期末，超期未办结 3 件，较上期末增加 2 件（+200.0%）；其中严重超期（超过处置时限一倍以上）1 件。"
    assert s.lines[3] == "上升明显的事件类型：违章停车 12 件（上期 2 件）。"
    assert s.decisions == [
        "城管有 1 件严重超期未办结，请决定是否提级督办。",
        "公安交警本期按期办结率 50.0%（办结 6 件），低于 80%，请决定是否约谈或调整派遣。",
        "违章停车较上期明显增多（2 → 12 件），请决定是否组织专项整治。",
    ]
    cls = s.classes.set_index("event_class")
    assert cls.loc["违章停车"].tolist() == [12, 2, 10] and cls.loc["施工噪音"].tolist() == [0, 3, -3]


def test_a_quiet_week_needs_no_decision():
    df = sample()
    df = df[df["event_id"].str.startswith("Q")]
    s = weekly.summarize(df, period(7, "2026-01-18"))
    assert s.now.reported == 0 and s.decisions == []
    assert s.lines[1] == "本期没有办结的案件。"
    assert s.lines[0].startswith("全市本期（2026-01-12 至 2026-01-18）上报城市事件 0 件，较上期减少 10 件")
