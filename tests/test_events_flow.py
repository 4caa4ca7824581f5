"""The case flow (every change a history row, illegal steps refused) and dispatch rules
(routing, urgency, working-hour deadlines over weekends, holidays and 调休 days)."""
from __future__ import annotations

import pandas as pd
import pytest

from workbench.events import dispatch as dp
from workbench.events import flow
from workbench.store import hub
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS

T = pd.Timestamp


def put_event(eng, event_id="E1", status=flow.INTAKE, department=None, ts="2026-01-19 01:00"):
    row = pd.DataFrame([{"event_id": event_id, "ts": T(ts), "updated_at": T(ts), "event_class": "暴露垃圾",
                         "status": status, "department": department, "lat": 27.86, "lon": 113.17,
                         "deadline": T(ts) + pd.Timedelta(hours=30)}])
    with eng.begin() as conn:
        insert_new(conn, DATASETS["city_events"], row)


def test_the_whole_flow_writes_history(hub_engine):
    put_event(hub_engine)
    steps = [("accept", {}), ("dispatch", {"department": "城市管理和综合执法局"}), ("handle", {}),
             ("feedback", {"note": "已清运，上传处置后照片"}), ("close", {}), ("evaluate", {"note": "满意"})]
    for action, kw in steps:
        flow.act(hub_engine, "E1", action, actor="张三", **kw)
    ev = hub.read("city_events", eng=hub_engine).iloc[0]
    assert ev["status"] == flow.EVALUATED and ev["department"] == "城市管理和综合执法局"
    assert pd.notna(ev["closed_at"])
    h = hub.read("event_history", where={"event_id": "E1"}, eng=hub_engine)
    assert h["status"].tolist() == [flow.CASE, flow.DISPATCH, flow.HANDLING, flow.FEEDBACK, flow.CLOSED,
                                    flow.EVALUATED]
    assert h["actor"].eq("张三").all() and h["ts"].is_monotonic_increasing
    assert "派遣至城市管理和综合执法局" in h["note"].iloc[1] and h["note"].iloc[3] == "已清运，上传处置后照片"
    # reopened after closing: back to work, closed_at cleared
    flow.act(hub_engine, "E1", "reopen", actor="12345热线", note="市民反映问题复现")
    ev = hub.read("city_events", eng=hub_engine).iloc[0]
    assert ev["status"] == flow.REOPENED and pd.isna(ev["closed_at"])


def test_illegal_steps_are_refused_with_a_clear_message(hub_engine):
    put_event(hub_engine)
    with pytest.raises(flow.FlowError, match="城市事件 E1 当前为“信息收集”，不能转为“核查结案”；可转为：案卷建立、不予立案、重复件、任务处理$"):
        flow.act(hub_engine, "E1", "close", actor="张三")
    flow.act(hub_engine, "E1", "accept", actor="张三")
    with pytest.raises(flow.FlowError, match="需要指定责任部门"):
        flow.act(hub_engine, "E1", "dispatch", actor="张三")
    with pytest.raises(flow.FlowError, match="需要指定主案卷编号"):
        flow.act(hub_engine, "E1", "duplicate", actor="张三")
    with pytest.raises(flow.FlowError, match="找不到案件 NOPE"):
        flow.act(hub_engine, "NOPE", "accept", actor="张三")
    with pytest.raises(flow.FlowError, match="未知的操作"):
        flow.act(hub_engine, "E1", "teleport", actor="张三")
    # nothing was written by the refused steps
    assert hub.read("event_history", eng=hub_engine)["status"].tolist() == [flow.CASE]
    assert hub.read("city_events", eng=hub_engine)["status"].iloc[0] == flow.CASE


def test_a_stale_change_is_refused(sqlite_hub):
    """Two people on the board: the second one's step is checked against the status now."""
    put_event(sqlite_hub, status=flow.FEEDBACK, department="水务")
    flow.act(sqlite_hub, "E1", "close", actor="甲")
    with pytest.raises(flow.FlowError, match="当前为“核查结案”"):
        flow.act(sqlite_hub, "E1", "close", actor="乙")
    assert len(hub.read("event_history", eng=sqlite_hub)) == 1
    # a board that still shows the old status is refused even where the step would be legal now
    with pytest.raises(flow.FlowError, match="已被他人改为“核查结案”（您看到的是“处理反馈”），请刷新后重试"):
        flow.act(sqlite_hub, "E1", "evaluate", actor="乙", expected=flow.FEEDBACK)
    assert len(hub.read("event_history", eng=sqlite_hub)) == 1
    assert hub.read("city_events", eng=sqlite_hub)["status"].iloc[0] == flow.CLOSED


def test_deferred_cases_return_to_handling(sqlite_hub):
    """缓办 is reachable from 任务派遣 and 任务处理 and goes back to 任务处理 only."""
    put_event(sqlite_hub, status=flow.DISPATCH, department="水务")
    flow.act(sqlite_hub, "E1", "defer", actor="水务", note="等待管网停水窗口")
    with pytest.raises(flow.FlowError, match="当前为“缓办”，不能转为“处理反馈”；可转为：任务处理$"):
        flow.act(sqlite_hub, "E1", "feedback", actor="水务")
    flow.act(sqlite_hub, "E1", "handle", actor="水务")
    flow.act(sqlite_hub, "E1", "defer", actor="水务")
    h = hub.read("event_history", eng=sqlite_hub)
    assert h["status"].tolist() == [flow.DEFERRED, flow.HANDLING, flow.DEFERRED]
    assert h["department"].eq("水务").all()
    assert flow.DEFERRED in flow.OPEN_STATUSES and flow.ACTION_LABELS["defer"] == "缓办"


def test_every_status_has_a_way_forward_or_is_closed():
    for s in flow.STATUSES:
        assert flow.TRANSITIONS.get(s), s
    assert set(flow.OPEN_STATUSES) | set(flow.CLOSED_STATUSES) == set(flow.STATUSES)


# ------------------------------------------------------------------ dispatch rules

def frame(**cols):
    n = max(len(v) for v in cols.values())
    return pd.DataFrame({k: v if len(v) == n else v * n for k, v in cols.items()})


def test_routing_rules_first_match_and_default():
    rules = dp.load_rules()
    ev = frame(event_class=["燃气泄漏", "施工噪音", "施工噪音", "暴露垃圾", "暴露垃圾", "垃圾满溢"],
               description=["闻到燃气味", "夜间施工", "白天施工", "垃圾", "垃圾", "满溢"],
               district=["荷塘区", "荷塘区", "荷塘区", "醴陵市", "荷塘区", "荷塘区"],
               street=["月塘街道", "月塘街道", "月塘街道", "西山街道", "月塘街道", "月塘街道"])
    ev.loc[5, "event_class"] = "不认识的类"
    r = dp.route(ev, rules)
    assert r["department"].tolist() == ["燃气", "生态环境局", "城市管理和综合执法局", "西山街道办事处",
                                        "城市管理和综合执法局", rules.default_department]
    assert r["rule"].iloc[-1] == -1 and (r["rule"].iloc[:-1] >= 0).all()
    assert r["event_group"].iloc[3] == "市容环境"


def test_urgency_by_class_and_keywords():
    rules = dp.load_rules()
    ev = frame(event_class=["路面塌陷", "井盖破损", "井盖破损"], description=["塌陷", "井盖缺失，幼儿园门口", "井盖破损"])
    assert dp.urgency(ev, rules).tolist() == ["紧急", "紧急", "一般"]


@pytest.mark.parametrize("local_ts, hours, expected", [
    ("2026-01-16 17:00", 8, "2026-01-19 17:00"),    # Friday evening: the weekend does not count
    ("2026-01-17 10:00", 8, "2026-01-19 18:30"),    # reported on Saturday: all of Monday
    ("2026-01-19 12:30", 1, "2026-01-19 14:30"),    # lunch break does not count
    ("2025-12-31 17:00", 8, "2026-01-04 17:00"),    # New Year holidays out, the 调休 Sunday in
    ("2026-02-13 18:00", 16, "2026-02-24 18:00"),   # Spring Festival: 0.5 h Fri, Sat 14 (调休), Tue 24
])
def test_deadlines_in_working_hours(local_ts, hours, expected):
    rules = dp.load_rules()
    utc = T(local_ts) - pd.Timedelta(hours=8)
    got = dp.add_working_hours(pd.Series([utc]), hours, rules).iloc[0] + pd.Timedelta(hours=8)
    assert got == T(expected)
    back = dp.working_hours_between(pd.Series([utc]), pd.Series([got - pd.Timedelta(hours=8)]), rules).iloc[0]
    assert back == pytest.approx(hours)


def test_urgent_deadlines_are_clock_hours():
    rules = dp.load_rules()
    ev = frame(event_class=["燃气泄漏", "暴露垃圾"], urgency=["紧急", "一般"], ts=[T("2026-01-17 02:00")] * 2)
    d = dp.deadlines(ev, rules)
    assert d.iloc[0] == T("2026-01-17 03:00")
    assert d.iloc[1] == T("2026-01-19 10:30")  # Saturday → Monday 18:30 local


def test_bad_rules_file(tmp_path):
    p = tmp_path / "city.yaml"
    p.write_text("city: x\nbounds: {lat: [1, 2]}\n", encoding="utf-8")
    with pytest.raises(dp.RulesError, match="city.yaml: 规则不完整"):
        dp.load_rules(p)
    with pytest.raises(dp.RulesError, match="找不到城市规则文件"):
        dp.load_rules("atlantis")
