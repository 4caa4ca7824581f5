"""明厨亮灶 in the hub: live event upserts (SQLite + PostgreSQL), each violation's rectification
case in the case engine, alerts through the alert API (camera offline, critical violations),
MQTT on the real broker, compliance scores on school days, repeat offenders and the case flow."""
from __future__ import annotations

import datetime as dt
import json
import socket
import threading

import pandas as pd
import pytest

from workbench import alerts, cases
from workbench.canteen import compliance as cp
from workbench.canteen import rectification as rect
from workbench.canteen.detector import Detections
from workbench.canteen.events import CameraEngine
from workbench.canteen.rules import camera_rules
from workbench.canteen.sinks import HubSink, MqttSink, events_topic
from workbench.store import hub
from workbench.store.schema import DATASETS

DAY = dt.datetime(2026, 11, 26, 2, 0)


def _event(cls="未戴厨师帽"):
    import numpy as np

    e = CameraEngine(camera_rules("ST-HT-001-C1", {"canteen_id": "ST-HT-001", "district": "荷塘区"}))
    rows = [("person", 0.9, 300, 100, 380, 320), ("no_chef_hat", 0.8, 320, 100, 360, 140)]
    img = np.zeros((360, 640, 3), np.uint8)
    out = []
    for i in range(40):
        for ch in e.observe(i / 2, DAY + dt.timedelta(seconds=i / 2), img, Detections.from_rows(rows)):
            out.append((ch.kind, ch.event.record(), ch.event.message(ch.kind)))  # as the watcher sends them
    return out + [(ch.kind, ch.event.record(), ch.event.message(ch.kind)) for ch in e.close()]


def test_events_upsert_live_and_keep_the_case_status(hub_engine):
    sink = HubSink(hub_engine)
    changes = _event()
    kind, rec, _ = changes[0]
    assert kind == "new" and [c[0] for c in changes[1:]] == ["update", "end"]
    sink.event("new", rec)
    got = hub.read("canteen_violations", eng=hub_engine)
    assert len(got) == 1 and "status" not in got and pd.isna(got.iloc[0]["ts_end"])
    # the new violation opened its rectification case (case engine), intake step written
    case = hub.read("cases", eng=hub_engine).iloc[0]
    assert case["case_id"] == rec["violation_id"] and case["case_type"] == "canteen_rectification"
    assert case["status"] == "待处理" and case["department"] == "市场监管局" and case["district"] == "荷塘区"
    assert case["subject"] == f"canteen_violations:{rec['violation_id']}" and "未戴厨师帽" in case["title"]
    assert case["deadline"] == pd.Timestamp(DAY) + pd.Timedelta(hours=72)
    assert hub.read("alerts", eng=hub_engine).empty  # a warning-class violation raises no alert
    # the dashboard moves the case while the event is still open …
    cp.set_case_status(rec["violation_id"], "notify", actor="市场监管局", expected="待处理", eng=hub_engine)
    for kind, rec, _ in changes[1:]:
        sink.event(kind, rec)
    got = hub.read("canteen_violations", eng=hub_engine).iloc[0]
    # … and the camera's later updates do not undo it, nor open a second case
    assert cp.load(eng=hub_engine).violations.iloc[0]["status"] == "已通知"
    assert len(hub.read("cases", eng=hub_engine)) == 1
    assert list(cases.history(rec["violation_id"], eng=hub_engine)["status"]) == ["待处理", "已通知"]
    assert got["ts_end"] == pd.Timestamp(DAY + dt.timedelta(seconds=19.5))
    assert got["frames"] >= 30 and got["track_ids"] == "1" and got["canteen_id"] == "ST-HT-001"
    assert got["district"] == "荷塘区" and got["source"] == "明厨亮灶AI"
    assert sink.written["new"] == 1 and sink.written["end"] == 1


def test_camera_offline_becomes_an_alert_and_is_lifted(hub_engine):
    sink = HubSink(hub_engine)
    aid = sink.camera_offline("ST-HT-001-C2", "无法连接视频流：rtsp://10.0.0.1/x", DAY, "荷塘区")
    assert sink.camera_offline("ST-HT-001-C2", "again", DAY) == aid  # one alert while it stays down
    a = hub.read("alerts", eng=hub_engine)
    assert list(a["category"]) == ["摄像头离线"] and a.iloc[0]["status"] == "生效中"
    assert "ST-HT-001-C2" in a.iloc[0]["title"] and "rtsp://10.0.0.1/x" in a.iloc[0]["evidence"]
    assert a.iloc[0]["subject"] == "cameras:ST-HT-001-C2"
    assert alerts.attrs_of(a.iloc[0]["attrs"]) == {"camera_id": "ST-HT-001-C2", "district": "荷塘区"}
    # a watcher started again while the camera is still down finds the alert it raised
    assert HubSink(hub_engine).camera_offline("ST-HT-001-C2", "again", DAY) == aid
    sink.camera_online("ST-HT-001-C2", DAY + dt.timedelta(minutes=5))
    a = hub.read("alerts", eng=hub_engine).iloc[0]
    assert a["status"] == "已解除" and a["valid_to"] == pd.Timestamp(DAY + dt.timedelta(minutes=5))
    assert list(hub.read("alert_history", eng=hub_engine)["action"]) == ["发布", "解除"]


def _broker_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _broker_up(), reason="no MQTT broker on 127.0.0.1:1883")
def test_events_published_on_mqtt():
    import paho.mqtt.client as mqtt

    got, ready = [], threading.Event()
    done = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, u, f, rc, p: (c.subscribe("workbench/canteen/+/events", qos=1), ready.set())
    sub.on_message = lambda c, u, m: (got.append((m.topic, json.loads(m.payload))),
                                      done.set() if len(got) >= 2 else None)
    sub.connect("127.0.0.1", 1883)
    sub.loop_start()
    try:
        assert ready.wait(10)
        import time

        time.sleep(0.3)  # the subscription is in place
        pub = MqttSink()
        assert pub.error is None
        changes = _event()
        pub.event("new", changes[0][2])
        pub.event("end", changes[-1][2])
        pub.close()
        assert done.wait(10), got
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert [t for t, _ in got] == [events_topic("ST-HT-001-C1")] * 2
    assert [m["type"] for _, m in got] == ["new", "end"]
    assert got[1][1]["label"] == "未戴厨师帽" and got[1][1]["end_time"] is not None


def test_unreachable_broker_is_reported_not_fatal():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = MqttSink("127.0.0.1", port)
    assert sink.error and str(port) in sink.error
    sink.event("new", {"camera": "C1"})  # dropped, no exception
    sink.close()


# ------------------------------------------------------------------ compliance

def _data(rows, canteens=None):
    v = pd.DataFrame(rows, columns=["violation_id", "ts", "canteen_id", "violation_class", "severity", "status"])
    can = pd.DataFrame(canteens or [
        {"canteen_id": "A", "name": "甲小学食堂", "district": "荷塘区", "school_type": "小学", "staff_hours": "06:00-14:00"},
        {"canteen_id": "B", "name": "乙中学食堂", "district": "芦淞区", "school_type": "初中", "staff_hours": "06:00-10:00"},
    ])
    return cp.CanteenData(can, pd.DataFrame(), cp.with_local_date(v), pd.DataFrame())


def test_daily_score_is_severity_weighted_violations_per_kitchen_hour():
    # Wed 2026-11-25, 10:00 Beijing = 02:00 UTC
    d = _data([("V1", "2026-11-25 02:00", "A", "未戴口罩", "warning", "待处理"),
               ("V2", "2026-11-25 03:00", "A", "老鼠", "critical", "待处理"),
               ("V3", "2026-11-25 02:00", "B", "未戴口罩", "warning", "已复核")])
    daily = cp.daily_scores(d).set_index("canteen_id")
    assert daily.loc["A", "weighted"] == 7 and daily.loc["A", "hours"] == 8
    assert daily.loc["A", "score"] == pytest.approx(100 - 20 * 7 / 8)   # 82.5
    assert daily.loc["B", "score"] == pytest.approx(100 - 20 * 2 / 4)   # 90: a shorter kitchen day weighs more
    assert cp.kitchen_hours("06:30-13:30,15:30-17:30") == 9 and cp.kitchen_hours(None) == 8


def test_canteens_ranked_and_repeat_offenders():
    rows = []
    for i, day in enumerate(["2026-11-23", "2026-11-24", "2026-11-25"]):  # Mon–Wed
        rows.append((f"A{i}", f"{day} 02:00", "A", "未戴厨师帽", "warning", "退回整改" if i == 2 else "已复核"))
    rows.append(("B1", "2026-11-25 02:00", "B", "垃圾桶未盖", "info", "已整改"))
    d = _data(rows)
    ranked = cp.canteen_scores(d, days=5)
    assert list(ranked["canteen_id"]) == ["A", "B"] and list(ranked["rank"]) == [1, 2]
    a = ranked.iloc[0]
    assert a["violations"] == 3 and a["repeat"] and a["top_class"] == "未戴厨师帽" and a["open_cases"] == 1
    assert ranked.iloc[1]["open_cases"] == 1 and not ranked.iloc[1]["repeat"]
    # 5 school days: A has three days at 95 and two clean ones
    assert a["score"] == pytest.approx((3 * 95 + 2 * 100) / 5)
    rep = cp.repeat_offenders(d)
    assert list(rep["canteen_id"]) == ["A"] and rep.iloc[0]["days"] == 3
    assert cp.canteen_scores(_data([]), days=5)["score"].eq(100).all()


def _violation(vid, cls="老鼠", sev="critical", **more):
    return {"violation_id": vid, "ts": DAY, "camera_id": "C1", "canteen_id": "A", "district": "荷塘区",
            "violation_class": cls, "severity": sev, **more}


def _load(eng, rows):
    with eng.begin() as conn:
        return rect.load_violations(conn, DATASETS["canteen_violations"], pd.DataFrame(rows))


def test_case_flow_with_history(hub_engine):
    assert _load(hub_engine, [_violation("V1")]) == 1
    a = hub.read("alerts", eng=hub_engine)
    assert list(a["category"]) == ["明厨亮灶严重违规"] and a.iloc[0]["severity"] == "critical"
    assert a.iloc[0]["subject"] == "canteen_violations:V1" and a.iloc[0]["status"] == "生效中"
    assert alerts.attrs_of(a.iloc[0]["attrs"]) == {"violation_id": "V1", "canteen_id": "A", "camera_id": "C1",
                                                   "violation_class": "老鼠", "district": "荷塘区"}
    with pytest.raises(cp.CaseError, match="不能转为“已复核”；可转为：已通知"):
        cp.set_case_status("V1", "verified", actor="张三", eng=hub_engine)
    with pytest.raises(cp.CaseError, match="没有办理人"):
        cp.set_case_status("V1", "notify", actor=" ", eng=hub_engine)
    with pytest.raises(cp.CaseError, match="已被他人改为"):  # the screen showed a status that is stale
        cp.set_case_status("V1", "notify", actor="张三", expected="已整改", eng=hub_engine)
    for i, s in enumerate(["notify", "rectify", "reject-fix", "已整改"]):
        res = cp.set_case_status("V1", s, actor="张三", note=f"第{i}步", ts=DAY + dt.timedelta(hours=i + 1),
                                 eng=hub_engine)
    assert res == {"violation_id": "V1", "from": "退回整改", "to": "已整改", "ts": pd.Timestamp(DAY + dt.timedelta(hours=4)),
                   "actor": "张三"}
    assert hub.read("alerts", eng=hub_engine).iloc[0]["status"] == "生效中"  # not closed yet
    cp.set_case_status("V1", "verify", actor="李四", expected="已整改", ts=DAY + dt.timedelta(hours=5), eng=hub_engine)
    with pytest.raises(cp.CaseError, match="无（已办结）"):
        cp.set_case_status("V1", "reject-fix", actor="张三", eng=hub_engine)
    with pytest.raises(cp.CaseError, match="找不到案件 NOPE"):
        cp.set_case_status("NOPE", "notify", actor="张三", eng=hub_engine)
    with pytest.raises(cp.CaseError, match="未知的整改状态或操作“whatever”"):
        cp.set_case_status("V1", "whatever", actor="张三", eng=hub_engine)
    h = cases.history("V1", eng=hub_engine)
    assert list(h["status"]) == ["待处理", "已通知", "已整改", "退回整改", "已整改", "已复核"]
    assert list(h["actor"])[1:] == ["张三"] * 4 + ["李四"] and set(h["department"]) == {"市场监管局"}
    c = hub.read("cases", eng=hub_engine).iloc[0]
    assert c["status"] == "已复核" and c["closed_at"] == pd.Timestamp(DAY + dt.timedelta(hours=5))
    # verified: the critical violation's alert is lifted, with its history
    a = hub.read("alerts", eng=hub_engine).iloc[0]
    assert a["status"] == "已解除" and a["valid_to"] == pd.Timestamp(DAY + dt.timedelta(hours=5))
    assert list(alerts.history(a["alert_id"], eng=hub_engine)["action"]) == ["发布", "解除"]
    data = cp.load(eng=hub_engine)
    assert cp.cases(data).empty and len(cp.cases(data, statuses=None)) == 1
    assert list(data.history["status"]) == list(h["status"]) and set(data.history["violation_id"]) == {"V1"}
    # the engine's rework and closing statuses are what the readers use
    ct = cp.case_type()
    assert ct.rework == frozenset({"退回整改"}) and ct.closed == frozenset({"已复核"}) and ct.default_hours == 72


def test_loader_applies_a_reported_status_forward_only(hub_engine, tmp_path):
    from workbench.store.ingest import ingest_file

    head = "违规编号,开始时间,结束时间,摄像头编号,食堂编号,区县,违规类型,严重程度,整改状态\n"
    f1 = tmp_path / "明厨亮灶告警_1.csv"
    f1.write_text(head + "M1,2026-11-25 10:00:00,2026-11-25 10:01:00,C1,A,荷塘区,抽烟,critical,verified\n"
                  "M2,2026-11-25 11:00:00,2026-11-25 11:02:00,C1,A,荷塘区,未戴口罩,warning,notified\n"
                  "M3,2026-11-25 12:00:00,,C1,A,荷塘区,老鼠,critical,\n"
                  "M4,2026-11-25 12:00:00,,C1,A,荷塘区,老鼠,critical,整改完了\n", encoding="utf-8")
    s = ingest_file("canteen_violations", f1, eng=hub_engine)
    assert (s.loaded, s.quarantined) == (3, 1) and "整改状态取值不在" in next(iter(s.reasons))
    got = hub.read("cases", eng=hub_engine).set_index("case_id")
    assert got["status"].to_dict() == {"M1": "已复核", "M2": "已通知", "M3": "待处理"}
    # the step's time is the violation's end (Beijing 10:01 = 02:01 UTC); closed then
    assert got.loc["M1", "closed_at"] == pd.Timestamp("2026-11-25 02:01:00")
    h = cases.history("M1", eng=hub_engine)
    assert list(h["status"]) == ["待处理", "已复核"] and h.iloc[1]["actor"] == "明厨亮灶平台"
    # critical violations raise alerts; the one already verified is lifted at its closing
    a = hub.read("alerts", eng=hub_engine).set_index("alert_id")
    assert a["status"].to_dict() == {"CV-M1": "已解除", "CV-M3": "生效中"}
    assert list(alerts.history("CV-M1", eng=hub_engine)["action"]) == ["发布", "解除"]
    # a later export moves M2 on; an older one read again moves nothing back
    cp.set_case_status("M3", "notify", actor="张三", eng=hub_engine)
    f2 = tmp_path / "明厨亮灶告警_2.csv"
    f2.write_text(head + "M2,2026-11-25 11:00:00,2026-11-25 11:02:00,C1,A,荷塘区,未戴口罩,warning,已整改\n"
                  "M3,2026-11-25 12:00:00,,C1,A,荷塘区,老鼠,critical,open\n", encoding="utf-8")
    s = ingest_file("canteen_violations", f2, eng=hub_engine)
    assert (s.loaded, s.duplicates) == (0, 2)
    got = hub.read("cases", eng=hub_engine).set_index("case_id")["status"].to_dict()
    assert got == {"M1": "已复核", "M2": "已整改", "M3": "已通知"}
    assert len(hub.read("alerts", eng=hub_engine)) == 2  # nothing raised twice


def test_school_days_follow_the_official_calendar():
    from workbench import clock

    # National Day 2026: Oct 1–7 off; the make-up working days of that year's notice are school days
    days = cp.school_days("2026-09-28", "2026-10-11")
    assert pd.Timestamp("2026-10-01") not in days and pd.Timestamp("2026-10-02") not in days
    makeup = clock.makeup_workdays_between("2026-09-28", "2026-10-11")
    assert makeup and all(pd.Timestamp(d) in days for d in makeup)  # a Saturday that is a school day
    assert all(clock.is_workday(d) for d in days)
    assert len(days) == sum(clock.is_workday(d) for d in pd.date_range("2026-09-28", "2026-10-11"))


def test_case_cli(hub_engine, monkeypatch):
    """`workbench canteen case` acts as the identity (--user, else the operator), never as typed text."""
    from click.testing import CliRunner

    from workbench import users
    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_USER", "")   # restored after the test (--user sets it)
    users.create("li", "long-enough-pw", role="staff", name="李四", department="市场监管局", eng=hub_engine)
    users.create("zhao", "long-enough-pw", role="analyst", name="赵六", eng=hub_engine)
    _load(hub_engine, [_violation("V9", "抽烟")])
    r = CliRunner().invoke(main, ["--user", "li", "canteen", "case", "V9", "notify"])
    assert r.exit_code == 0 and "待处理 → 已通知（李四（li））" in r.output
    r = CliRunner().invoke(main, ["--user", "li", "canteen", "case", "V9", "verified"])
    assert r.exit_code == 2 and "不能转为" in r.output
    r = CliRunner().invoke(main, ["--user", "zhao", "canteen", "case", "V9", "rectify"])
    assert r.exit_code == 2 and "数据分析员只能查看" in r.output
    r = CliRunner().invoke(main, ["--user", "li", "canteen", "case", "V9", "rectify", "--expected", "待处理"])
    assert r.exit_code == 2 and "已被他人改为“已通知”" in r.output
    r = CliRunner().invoke(main, ["--user", "li", "canteen", "case", "V9", "rectify", "--actor", "王五"])
    assert r.exit_code == 2 and "--actor" in r.output   # no actor text any more
    assert list(cases.history("V9", eng=hub_engine)["actor"])[1:] == ["李四（li）"]


def test_scores_on_the_sample_city(sample_city):
    data = cp.load()
    ranked = cp.canteen_scores(data, days=15)
    assert len(ranked) == len(data.canteens) and ranked["score"].between(0, 100).all()
    assert ranked["score"].is_monotonic_increasing
    rep = cp.repeat_offenders(data)
    # the planted canteen with six times the city's violation rate is near the bottom, and a repeat offender
    import yaml

    from workbench import config

    doc = yaml.safe_load((config.data_dir() / "synth" / "plants.yaml").read_text(encoding="utf-8"))
    plants = doc["plants"] if isinstance(doc, dict) else doc
    planted = next(p["canteen_id"] for p in plants if p.get("name") == "recurring_canteen")
    assert planted in set(ranked.head(5)["canteen_id"])
    assert planted in set(rep["canteen_id"])
