"""Deadlines: overdue and nearly overdue cases, escalation alerts written once, on-time
rates, and Kaplan–Meier resolution time that counts open cases as censored."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.events import flow, sla
from workbench.store import hub

T = pd.Timestamp
NOW = T("2026-01-20 08:00")


def events() -> pd.DataFrame:
    rows = [  # id, dept, status, ts, deadline, closed_at
        ("A", "水务", flow.DISPATCH, "2026-01-19 00:00", "2026-01-19 04:00", None),   # overdue 28 h > span 4 h: level 2
        ("B", "水务", flow.HANDLING, "2026-01-19 20:00", "2026-01-20 07:00", None),   # overdue 1 h: level 1
        ("C", "水务", flow.CASE, "2026-01-19 10:00", "2026-01-20 09:00", None),       # 1 h of 23 left: near due
        ("D", "水务", flow.CLOSED, "2026-01-18 00:00", "2026-01-18 10:00", "2026-01-18 09:00"),  # on time
        ("E", "燃气", flow.EVALUATED, "2026-01-18 00:00", "2026-01-18 01:00", "2026-01-18 03:00"),  # late
        ("F", "燃气", flow.DISPATCH, "2026-01-20 06:00", "2026-01-21 06:00", None),   # plenty of time
        ("G", "燃气", flow.DUPLICATE, "2026-01-19 00:00", "2026-01-19 01:00", "2026-01-19 00:00"),  # not a case
    ]
    df = pd.DataFrame(rows, columns=["event_id", "department", "status", "ts", "deadline", "closed_at"])
    for c in ("ts", "deadline", "closed_at"):
        df[c] = pd.to_datetime(df[c])
    return df.assign(event_class="供水管爆裂", district="荷塘区", street="月塘街道", address="新华东路1号")


def test_overdue_near_due_and_escalation_levels():
    st = sla.case_states(events(), NOW).set_index("event_id")
    assert st["overdue"].to_dict() == {"A": True, "B": True, "C": False, "D": False, "E": False, "F": False,
                                       "G": False}
    assert st.loc["C", "near_due"] and not st.loc["F", "near_due"]
    assert st.loc["A", "escalation"] == 2 and st.loc["B", "escalation"] == 1 and st.loc["F", "escalation"] == 0
    assert st.loc["A", "overdue_hours"] == pytest.approx(28)
    assert sla.overdue(st.reset_index())["event_id"].tolist() == ["A", "B"]


def test_on_time_rate_per_department():
    ot = sla.on_time(sla.case_states(events(), NOW)).set_index("department")
    assert ot.loc["水务", ["cases", "closed", "closed_on_time", "open", "open_overdue", "near_due"]].tolist() == \
        [4, 1, 1, 3, 2, 1]
    assert ot.loc["水务", "on_time_rate"] == 1.0
    assert ot.loc["燃气", "cases"] == 2 and ot.loc["燃气", "on_time_rate"] == 0.0  # G, a duplicate, is no case


def test_escalations_are_written_once(hub_engine):
    """One alert per overdue case, through the alert API: a rerun adds nothing; a case
    that becomes seriously overdue is the same alert raised a level (升级)."""
    st = sla.case_states(events(), NOW)
    al = sla.escalations(st)
    assert sorted(al["alert_id"]) == ["EVT-ESC-A", "EVT-ESC-B"]
    a = al.set_index("alert_id").loc["EVT-ESC-A"]
    assert a["severity"] == "critical" and a["subject"] == "city_events:A"
    assert a["attrs"] == {"event_id": "A", "district": "荷塘区", "department": "水务"}
    with hub_engine.begin() as conn:
        assert sla.save_escalations(conn, al) == 2
    with hub_engine.begin() as conn:
        assert sla.save_escalations(conn, sla.escalations(sla.case_states(events(), NOW + pd.Timedelta(hours=1)))) == 0
    got = hub.read("alerts", eng=hub_engine).set_index("alert_id")
    assert set(got["category"]) == {sla.ESCALATION_CATEGORY} and got["department"].eq("水务").all()
    assert got.loc["EVT-ESC-B", "subject"] == "city_events:B" and got.loc["EVT-ESC-B", "severity"] == "warning"
    assert len(hub.read("alert_history", eng=hub_engine)) == 2          # two 发布, nothing for the rerun
    # B stays open past twice its allowed time (11 h): the same alert, raised to critical;
    # C is now overdue too: its first alert
    later = sla.case_states(events(), T("2026-01-20 19:00"))
    with hub_engine.begin() as conn:
        assert sla.save_escalations(conn, sla.escalations(later)) == 1
    b = hub.read("alerts", where={"alert_id": "EVT-ESC-B"}, eng=hub_engine).iloc[0]
    assert b["severity"] == "critical"
    h = hub.read("alert_history", where={"alert_id": "EVT-ESC-B"}, eng=hub_engine).sort_values("ts")
    assert h["action"].tolist() == ["发布", "升级"]


def test_kaplan_meier_counts_open_cases_instead_of_dropping_them():
    """Half the cases close fast; the rest are still open after 100 h. Dropping the open
    ones says the median is ~2 h; counting them as censored says it is at least 100 h."""
    rng = np.random.default_rng(1)
    n = 200
    ts = NOW - pd.to_timedelta(np.full(n, 100.0), unit="h")
    closed = np.arange(n) < 90
    closed_at = pd.Series(ts + pd.to_timedelta(rng.uniform(1, 3, n), unit="h")).where(closed)
    df = pd.DataFrame({"event_id": [f"K{i}" for i in range(n)], "department": "城管", "status":
                       np.where(closed, flow.CLOSED, flow.HANDLING), "ts": ts, "deadline": ts + pd.Timedelta(hours=8),
                       "closed_at": closed_at})
    km = sla.resolution_km(sla.case_states(df, NOW), NOW).iloc[0]
    assert km["cases"] == 200 and km["closed"] == 90 and km["censored"] == 110
    assert 1 <= km["naive_median_h"] <= 3
    assert np.isnan(km["median_h"])  # never reached: more than half are still open
    assert km["p90_h"] != km["p90_h"]
    # with most closed, KM and naive agree closely
    df2 = df.assign(status=flow.CLOSED, closed_at=ts + pd.to_timedelta(rng.uniform(1, 3, n), unit="h"))
    km2 = sla.resolution_km(sla.case_states(df2, NOW), NOW).iloc[0]
    assert km2["median_h"] == pytest.approx(km2["naive_median_h"], rel=0.05)
    assert km2["median_lo"] <= km2["median_h"] <= km2["median_hi"]
