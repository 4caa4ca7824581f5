"""City events on the spine: one ingest path (`workbench events intake` and `workbench ingest
city_events` give the same hub for the same file), source history through the engine, an
escalation alert lifted when its case is closed, working days from China's official calendar."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from workbench import alerts, cases
from workbench.cli import main
from workbench.events import board as bd
from workbench.events import dispatch as dp
from workbench.events import flow, sla
from workbench.store import hub

NOW = pd.Timestamp.now(tz="Asia/Shanghai").floor("s")


def iso(hours_ago: float) -> str:
    return (NOW - pd.Timedelta(hours=hours_ago)).isoformat()


def o311(rid, cls="暴露垃圾", lat=27.86, lon=113.17, hours_ago=5.0, updated_ago=None, status="open", **kw):
    rec = {"service_request_id": rid, "service_code": cls, "description": "路边有生活垃圾堆放",
           "requested_datetime": iso(hours_ago), "updated_datetime": iso(hours_ago if updated_ago is None else updated_ago),
           "lat": lat, "long": lon, "status": status, "district": "荷塘区", "street": "月塘街道"}
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not None}


def open311_file(path):
    recs = [o311("R1"), o311("R2", cls="燃气泄漏", lat=27.80, lon=113.16, description="楼道燃气味"),
            o311("R3", lat=27.86005),                                      # repeats R1 nearby: merged
            o311("R4", hours_ago=30, updated_ago=2, status="closed"),      # closed at the source
            o311("R5", hours_ago=8, updated_ago=8), o311("R5", hours_ago=8, updated_ago=3, status="closed"),
            o311("R6", hours_ago=4), o311("R6", hours_ago=4),               # the same version twice
            o311(None), o311("B1", lat=39.9, lon=116.4), o311("B2", cls="外星人入侵"), o311("B3", hours_ago=-30),
            "not a record"]
    path.write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    return path


def table_file(path):
    t = (NOW - pd.Timedelta(hours=3)).tz_localize(None)
    csv = ("事件编号,上报时间,事件来源,事件小类,问题描述,区县,街道,纬度,经度,办理状态\n"
           f"AJ1,{t:%Y年%m月%d日 %H:%M},网格员,占道经营,早市占道摆卖,芦淞区,建设街道,２７.８０１,113.16,\n"
           f"AJ2,{t:%Y/%m/%d %H:%M},12345热线,路灯不亮,一排路灯不亮,天元区,嵩山路街道,27.80,,\n"
           f"AJ3,{t:%Y-%m-%d %H:%M},网格员,暴露垃圾,垃圾,荷塘区,月塘街道,27.86,113.17,已办结\n"
           f"AJ4,{t:%Y-%m-%d %H:%M},网格员,暴露垃圾,垃圾,荷塘区,月塘街道,27.86,113.17,飞走了\n")
    path.write_bytes(csv.encode("gbk"))
    return path


def snapshot(eng) -> dict:
    ev = hub.read("city_events", eng=eng).sort_values("event_id").reset_index(drop=True)
    h = hub.read("event_history", eng=eng).sort_values(["event_id", "ts"]).reset_index(drop=True)
    q = hub.quarantine_rows("city_events", eng=eng)[["line", "reason", "detail", "row_json", "filename"]]
    return {"events": ev, "history": h, "quarantine": q.sort_values("line").reset_index(drop=True)}


@pytest.mark.parametrize("make", [open311_file, table_file], ids=["open311", "gbk-table"])
def test_events_intake_and_hub_ingest_give_the_same_hub(make, tmp_path, monkeypatch):
    src = make(tmp_path / ("requests.json" if make is open311_file else "网格上报.csv"))
    runner = CliRunner()
    hubs = {}
    for name, args in (("intake", ["events", "intake", "--no-progress", str(src)]),
                       ("ingest", ["ingest", "city_events", str(src)])):
        url = f"sqlite:///{tmp_path / (name + '.db')}"
        monkeypatch.setenv("WORKBENCH_DB_URL", url)
        monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / f"data-{name}"))
        res = runner.invoke(main, args, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        eng = hub.engine(url)
        hubs[name] = snapshot(eng)
        hub.dispose(url)
    a, b = hubs["intake"], hubs["ingest"]
    assert len(a["events"]) > 0 and len(a["history"]) > len(a["events"]) and len(a["quarantine"]) > 0
    for part in ("events", "history", "quarantine"):
        pd.testing.assert_frame_equal(a[part], b[part], check_dtype=False, obj=part)
    ev = a["events"].set_index("event_id")
    if make is open311_file:
        assert ev.loc["R3", "status"] == flow.DUPLICATE and ev.loc["R3", "duplicate_of"] == "R1"
        assert ev.loc["R4", "status"] == flow.CLOSED and ev.loc["R5", "status"] == flow.CLOSED
        assert ev.loc["R2", "status"] == flow.DISPATCH and ev.loc["R2", "department"] == "燃气"
        assert set(ev["case_type"]) == {flow.CASE_TYPE}
        assert "R6" in ev.index and set(ev.index) == {"R1", "R2", "R3", "R4", "R5", "R6"}
        assert sorted(a["quarantine"]["reason"]) == sorted(
            ["缺少事件编号", "位置不在城市范围内", "未知的事件类型", "上报时间在未来", "记录不是对象", "文件内主键重复"])
        h = a["history"]
        assert h[h["event_id"] == "R4"]["status"].tolist() == [flow.INTAKE, flow.CLOSED]
        assert h[h["event_id"] == "R4"]["note"].iloc[-1] == "来源系统导入状态"
    else:
        assert set(ev.index) == {"AJ1", "AJ2", "AJ3"} and ev.loc["AJ3", "status"] == flow.CLOSED
        assert ev.loc["AJ2", "loc_precision"] == "street" and ev.loc["AJ1", "loc_precision"] == "point"
        assert sorted(a["quarantine"]["reason"]) == ["办理状态无法识别"]


def test_source_history_goes_through_the_engine(sqlite_hub, tmp_path):
    t0 = pd.Timestamp("2026-01-19 01:00")
    cases.open_case(sqlite_hub, flow.CASE_TYPE, "H1", actor="网格员", ts=t0, event_class="暴露垃圾", lat=27.86, lon=113.17)
    csv = ("事件编号,办理时间,环节,办理人,办理意见\n"
           "H1,2026-01-19 10:00,案卷建立,值班长,来源系统记录\nH1,2026-01-19 10:00,案卷建立,值班长,来源系统记录\n")
    p = tmp_path / "流转记录.csv"
    p.write_text(csv, encoding="utf-8")
    s = hub_ingest("event_history", p, sqlite_hub)
    assert (s.loaded, s.quarantined) == (1, 1)
    assert cases.history("H1", sqlite_hub, store="city_events")["status"].tolist() == [flow.INTAKE, flow.CASE]


def hub_ingest(dataset, path, eng):
    from workbench.store.ingest import ingest_file

    return ingest_file(dataset, path, eng)


def test_an_escalation_is_lifted_when_the_case_is_closed_on_the_board(hub_engine):
    t0 = pd.Timestamp("2026-01-19 01:00")
    cases.open_case(hub_engine, flow.CASE_TYPE, "E9", actor="12345热线", ts=t0, department="水务",
                    event_class="供水管爆裂", lat=27.86, lon=113.17, district="荷塘区",
                    deadline=t0 + pd.Timedelta(hours=4))
    flow.act(hub_engine, "E9", "accept", actor="值班长", expected=flow.INTAKE)
    flow.act(hub_engine, "E9", "dispatch", actor="值班长", department="水务", expected=flow.CASE)
    snap = bd.load(eng=hub_engine, now=t0 + pd.Timedelta(hours=6))
    with hub_engine.begin() as conn:
        assert sla.save_escalations(conn, sla.escalations(snap.states)) == 1
    a = hub.read("alerts", eng=hub_engine).iloc[0]
    assert a["status"] == alerts.ACTIVE and a["subject"] == "city_events:E9" and a["category"] == sla.ESCALATION_CATEGORY
    assert alerts.attrs_of(a["attrs"]) == {"event_id": "E9", "district": "荷塘区", "department": "水务"}
    # a stale board (it still shows 任务派遣 after someone started the work) is refused
    flow.act(hub_engine, "E9", "handle", actor="水务抢修队", expected=flow.DISPATCH)
    with pytest.raises(flow.FlowError, match="请刷新后重试"):
        flow.act(hub_engine, "E9", "handle", actor="另一名值班员", expected=flow.DISPATCH)
    flow.act(hub_engine, "E9", "feedback", actor="水务抢修队", expected=flow.HANDLING)
    assert hub.read("alerts", eng=hub_engine)["status"].iloc[0] == alerts.ACTIVE   # not closed yet
    flow.act(hub_engine, "E9", "close", actor="值班长", expected=flow.FEEDBACK)
    a = hub.read("alerts", eng=hub_engine).iloc[0]
    assert a["status"] == alerts.LIFTED
    assert alerts.history("EVT-ESC-E9", hub_engine)["action"].tolist() == [alerts.RAISE, alerts.LIFT]


def test_board_counts_keep_inspection_tasks_apart(sqlite_hub):
    t0 = pd.Timestamp("2026-01-19 01:00")
    cases.open_case(sqlite_hub, flow.CASE_TYPE, "C1", actor="网格员", ts=t0, event_class="暴露垃圾", lat=27.86, lon=113.17)
    try:
        cases.case_type(bd.INSPECTION)
    except Exception:
        pytest.skip("safety's inspection_task type is not registered in this checkout")
    cases.open_case(sqlite_hub, bd.INSPECTION, "T1", actor="预警联动", ts=t0, event_class="道路结冰", lat=27.86,
                    lon=113.17)
    c = bd.board_counts(sqlite_hub, now=t0)
    assert c.groupby("case_type")["n"].sum().to_dict() == {flow.CASE_TYPE: 1, bd.INSPECTION: 1}
    before = hub.read("city_events", where={"event_id": "T1"}, eng=sqlite_hub)["status"].iloc[0]
    assert bd.dispatch_waiting(eng=sqlite_hub) == (1, 0)            # the city event only
    assert hub.read("city_events", where={"event_id": "T1"}, eng=sqlite_hub)["status"].iloc[0] == before


@pytest.mark.parametrize("local_ts, hours, expected", [
    ("2024-09-30 17:00", 8, "2024-10-08 17:00"),    # National Day 2024 (not in any hand-kept list)
    ("2024-09-29 17:00", 1, "2024-09-29 18:00"),    # a 调休 Sunday is a working day
    ("2027-03-05 17:00", 8, "2027-03-08 17:00"),    # past the official calendar: Monday to Friday
])
def test_working_days_come_from_the_official_calendar(local_ts, hours, expected):
    rules = dp.load_rules()
    assert rules.calendar == "china" and not rules.holidays
    utc = pd.Timestamp(local_ts) - pd.Timedelta(hours=8)
    got = dp.add_working_hours(pd.Series([utc]), hours, rules).iloc[0] + pd.Timedelta(hours=8)
    assert got == pd.Timestamp(expected)


def test_a_citys_own_days_off_are_added_to_the_calendar():
    import dataclasses

    rules = dataclasses.replace(dp.load_rules(), holidays=frozenset({pd.Timestamp("2026-01-20").date()}))
    utc = pd.Timestamp("2026-01-19 17:00") - pd.Timedelta(hours=8)   # Monday; Tuesday is the city's day off
    got = dp.add_working_hours(pd.Series([utc]), 8, rules).iloc[0] + pd.Timedelta(hours=8)
    assert got == pd.Timestamp("2026-01-21 17:00")
    assert dp.load_rules("nyc").calendar == "weekdays"
