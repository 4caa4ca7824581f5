"""City event intake on a real hub (SQLite and PostgreSQL): Open311 JSON, NYC 311 CSV, a
Chinese GBK table; bad records quarantined with their reason; an external id never loaded
twice; older updates ignored; duplicates merged into one case; per-city bounds."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench.events import dispatch as dp
from workbench.events import flow, intake
from workbench.store import hub
from workbench.store.ingest import IngestError

NOW = pd.Timestamp.now(tz="Asia/Shanghai").floor("s")


def iso(delta_hours: float) -> str:
    return (NOW - pd.Timedelta(hours=delta_hours)).isoformat()


def o311(rid, cls="暴露垃圾", lat=27.86, lon=113.17, hours_ago=5.0, updated_ago=None, status="open", **kw):
    rec = {"service_request_id": rid, "service_code": cls, "description": "月塘路12号路边有生活垃圾堆放",
           "requested_datetime": iso(hours_ago), "updated_datetime": iso(hours_ago if updated_ago is None else updated_ago),
           "lat": lat, "long": lon, "status": status, "address": "荷塘区月塘街道新华东路12号", "district": "荷塘区",
           "street": "月塘街道"}
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not None}


def write_json(path, records):
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def reasons(eng) -> dict:
    q = hub.quarantine_rows("city_events", eng=eng)
    return q["reason"].value_counts().to_dict()


def test_open311_intake_quarantines_bad_records_and_dispatches_good_ones(hub_engine, tmp_path):
    recs = [
        o311("R1"),
        o311("R2", cls="燃气泄漏", lat=27.80, lon=113.16, description="小区楼道闻到明显燃气味"),
        o311("R3", cls="施工噪音", lat=27.90, lon=113.12, description="工地夜间施工噪音扰民"),
        o311(None),                                      # no id
        o311("B2", lat=None, long=None, address=None, district=None, street=None),  # no place at all
        o311("P1", lat=None, long=None),                 # no coordinates, an address: placed by its street
        o311("B3", lat=39.90, lon=116.40),               # Beijing: outside the city
        o311("B4", hours_ago=-48),                       # two days in the future
        o311("B5", requested_datetime="1999-12-31T10:00:00+08:00", updated_datetime="1999-12-31T10:00:00+08:00"),
        o311("B6", cls="外星人入侵"),                     # unknown class
        o311("B7", hours_ago=5, updated_ago=8),          # updated before created
        "not a record",
    ]
    s = intake.intake_file(write_json(tmp_path / "requests.json", recs), eng=hub_engine)
    assert (s.rows_read, s.loaded, s.quarantined) == (12, 4, 8)
    assert s.dispatched == 4
    r = reasons(hub_engine)
    for reason in (intake.NO_ID, intake.NO_LOCATION, intake.OUT_OF_CITY, intake.IN_FUTURE, intake.TOO_OLD,
                   intake.UNKNOWN_CLASS, "更新时间早于上报时间", intake.NOT_RECORD):
        assert r.get(reason) == 1, (reason, r)
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev.loc["R2", "department"] == "燃气" and ev.loc["R2", "urgency"] == "紧急"
    assert ev.loc["R3", "department"] == "生态环境局"          # the 夜间 keyword rule
    assert ev.loc["R1", "department"] == "城市管理和综合执法局" and ev.loc["R1", "urgency"] == "一般"
    assert (ev["status"] == flow.DISPATCH).all() and ev["source"].eq("Open311").all()
    assert ev.loc["P1", "loc_precision"] == "street" and ev.loc["R1", "loc_precision"] == "point"
    assert pd.isna(ev.loc["P1", "lat"]) and ev.loc["P1", "district"] == "荷塘区"
    assert (pd.to_datetime(ev["updated_at"]) >= pd.to_datetime(ev["ts"])).all()
    # urgent: clock hours (燃气泄漏 1 h); routine: 8 working hours, at least 8 h later
    gap = pd.to_datetime(ev["deadline"]) - pd.to_datetime(ev["ts"])
    assert gap["R2"] == pd.Timedelta(hours=1) and gap["R1"] >= pd.Timedelta(hours=8)
    h = hub.read("event_history", where={"event_id": "R2"}, eng=hub_engine)
    assert h["status"].tolist() == [flow.INTAKE, flow.CASE, flow.DISPATCH]
    assert h["actor"].iloc[0] == "Open311" and "燃气" in h["note"].iloc[-1]
    # the quarantined row keeps what came in, with the offending values
    q = hub.quarantine_rows("city_events", eng=hub_engine).set_index("reason")
    assert "39.9" in q.loc[intake.OUT_OF_CITY, "detail"] and "B3" in q.loc[intake.OUT_OF_CITY, "row_json"]


def test_external_ids_load_once_and_older_updates_are_ignored(hub_engine, tmp_path):
    f1 = write_json(tmp_path / "a.json", [o311("R1", hours_ago=10, updated_ago=10), o311("R2")])
    assert intake.intake_file(f1, eng=hub_engine).loaded == 2
    again = intake.intake_file(f1, eng=hub_engine)
    assert again.skipped and again.loaded == 0
    # the same records in another file: duplicates; a newer version of R1 closes it; an older one is ignored
    f2 = write_json(tmp_path / "b.json", [o311("R2"), o311("R1", hours_ago=10, updated_ago=2, status="closed"),
                                          o311("R1", hours_ago=10, updated_ago=9, status="open")])
    s = intake.intake_file(f2, eng=hub_engine)
    assert (s.loaded, s.updated, s.duplicates, s.older) == (0, 1, 1, 1)
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert len(ev) == 2 and ev.loc["R1", "status"] == flow.CLOSED and pd.notna(ev.loc["R1", "closed_at"])
    f3 = write_json(tmp_path / "c.json", [o311("R1", hours_ago=10, updated_ago=6, status="open")])  # stale
    assert intake.intake_file(f3, eng=hub_engine).older == 1
    assert hub.read("city_events", where={"event_id": "R1"}, eng=hub_engine)["status"].iloc[0] == flow.CLOSED
    h = hub.read("event_history", where={"event_id": "R1"}, eng=hub_engine)
    assert h["status"].tolist()[-1] == flow.CLOSED and "来源系统状态同步" in h["note"].iloc[-1]
    # the same external id under another event id is the same event
    f4 = write_json(tmp_path / "d.json", [{**o311("R1", hours_ago=10, updated_ago=1), "service_request_id": None,
                                           "event_id": "OTHER-1", "external_id": "R1", "source": "Open311"}])
    s4 = intake.intake_file(f4, eng=hub_engine, fmt="table")
    assert s4.loaded == 0 and s4.updated == 1
    assert len(hub.read("city_events", eng=hub_engine)) == 2


def test_a_flood_of_duplicates_is_merged_into_one_case(hub_engine, tmp_path):
    flood = [o311(f"F{i:03d}", lat=27.86 + (i % 5) * 0.0001, lon=113.17, hours_ago=6 - i * 0.05) for i in range(60)]
    others = [o311("X1", cls="违章停车"),                          # another class at the same place
              o311("X2", lat=27.86 + 0.005, lon=113.17),          # the same class 550 m away
              o311("X3", hours_ago=40)]                           # the same place, 34 h earlier: outside the window
    s = intake.intake_file(write_json(tmp_path / "flood.json", flood + others), eng=hub_engine)
    assert s.loaded == 63 and s.merged == 59
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    dup = ev[ev["status"] == flow.DUPLICATE]
    assert len(dup) == 59 and set(dup["duplicate_of"]) == {"F000"}
    assert ev.loc["F000", "status"] == flow.DISPATCH and pd.isna(ev.loc["F000", "duplicate_of"])
    assert ev.loc[["X1", "X2", "X3"], "status"].eq(flow.DISPATCH).all()
    # a later report repeating the case (in another file) joins the same case
    later = intake.intake_file(write_json(tmp_path / "later.json", [o311("F999", hours_ago=1)]), eng=hub_engine)
    assert later.merged == 1
    assert hub.read("city_events", where={"event_id": "F999"}, eng=hub_engine)["duplicate_of"].iloc[0] == "F000"
    h = hub.read("event_history", where={"event_id": "F999"}, eng=hub_engine)
    assert h["status"].tolist() == [flow.INTAKE, flow.DUPLICATE] and "F000" in h["note"].iloc[-1]


NYC_HEADER = ("Unique Key,Created Date,Closed Date,Agency,Agency Name,Complaint Type,Descriptor,Incident Zip,"
              "Incident Address,Status,Due Date,Resolution Action Updated Date,Borough,Latitude,Longitude\n")


def test_nyc311_csv_with_its_own_city_rules(hub_engine, tmp_path):
    rows = [
        '40000001,01/05/2017 09:15:00 AM,01/05/2017 11:40:00 AM,NYPD,New York City Police Department,Noise - Street/Sidewalk,'
        'Loud Music/Party,10027,200 W 125 ST,Closed,01/05/2017 05:15:00 PM,01/05/2017 11:40:00 AM,MANHATTAN,40.8099,-73.9497',
        '40000002,01/05/2017 10:00:00 AM,,DOT,Department of Transportation,Street Light Condition,Street Light Out,11201,'
        '1 MAIN ST,Open,,01/05/2017 10:00:00 AM,BROOKLYN,40.7033,-73.9903',
        '40000003,01/05/2017 10:30:00 AM,,DSNY,Department of Sanitation,Dirty Conditions,Trash,,,Open,,,,,',
        '40000004,01/05/2017 11:00:00 AM,,DEP,Department of Environmental Protection,Water System,Leak,,,Open,,,'
        'QUEENS,27.86,113.17',
    ]
    path = tmp_path / "311_Service_Requests.csv"
    path.write_text(NYC_HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    assert intake.detect_format(path) == "nyc311"
    s = intake.intake_file(path, rules=dp.load_rules("nyc"), eng=hub_engine)
    assert (s.loaded, s.quarantined) == (2, 2)
    assert reasons(hub_engine) == {intake.NO_LOCATION: 1, intake.OUT_OF_CITY: 1}
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    a = ev.loc["NYC311-40000001"]
    assert a["external_id"] == "40000001" and a["department"] == "NYPD" and a["status"] == flow.CLOSED
    assert pd.Timestamp(a["ts"]) == pd.Timestamp("2017-01-05 14:15")       # 09:15 EST is 14:15 UTC
    assert pd.Timestamp(a["closed_at"]) == pd.Timestamp("2017-01-05 16:40")
    assert ev.loc["NYC311-40000002", "event_class"] == "Street Light Condition"
    assert ev.loc["NYC311-40000002", "status"] == flow.DISPATCH  # its agency is given: dispatched at once


def test_chinese_gbk_table_and_unreadable_files(hub_engine, tmp_path):
    t = (NOW - pd.Timedelta(hours=3)).tz_localize(None)
    csv = ("事件编号,上报时间,事件来源,事件小类,问题描述,区县,街道,纬度,经度\n"
           f"AJ1,{t:%Y年%m月%d日 %H:%M},网格员,占道经营,早市占道摆卖,芦淞区,建设街道,２７.８０１,113.16\n"
           f"AJ2,{t:%Y/%m/%d %H:%M},12345热线,路灯不亮,一排路灯不亮,天元区,嵩山路街道,27.80,\n")
    path = tmp_path / "网格上报.csv"
    path.write_bytes(csv.encode("gbk"))
    s = intake.intake_file(path, eng=hub_engine)
    assert (s.loaded, s.quarantined) == (2, 0)     # AJ2 has no longitude: placed by its street
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev.loc["AJ2", "loc_precision"] == "street" and ev.loc["AJ2", "street"] == "嵩山路街道"
    ev = ev.reset_index().iloc[0]
    assert ev["lat"] == pytest.approx(27.801) and ev["source"] == "网格员"
    assert pd.Timestamp(ev["ts"]) == t.floor("min") - pd.Timedelta(hours=8)
    bad = tmp_path / "broken.json"
    bad.write_text('[{"service_request_id": "R1",', encoding="utf-8")
    with pytest.raises(IngestError, match="broken.json: JSON 格式错误"):
        intake.intake_file(bad, eng=hub_engine)
    log = hub.ingest_log(eng=hub_engine)
    assert log.iloc[0]["status"] == "failed" and "JSON" in log.iloc[0]["message"]


def test_city_bounds_are_per_city(sqlite_hub, tmp_path):
    """Minneapolis coordinates are outside Zhuzhou, inside Minneapolis."""
    rec = [{"event_id": "MPD-1", "ts": "2017-03-01T15:00:00Z", "event_class": "traffic", "lat": 44.9666,
            "lon": -93.2465, "district": "1"}]
    path = write_json(tmp_path / "stops.json", rec)
    zz = intake.intake_file(path, eng=sqlite_hub)
    assert zz.loaded == 0 and zz.reasons == {intake.OUT_OF_CITY: 1, intake.UNKNOWN_CLASS: 1}
    mpls = intake.intake_file(path, rules=dp.load_rules("minneapolis"), eng=sqlite_hub, force=True)
    assert mpls.loaded == 1
    ev = hub.read("city_events", eng=sqlite_hub).iloc[0]
    assert ev["department"] == "Precinct 1" and ev["source"] == "MPD"


def test_messages_malformed_and_good(sqlite_hub):
    good = json.dumps(o311("M1"), ensure_ascii=False).encode()
    s = intake.message_batch([good, b"{oops", b"42", json.dumps([o311("M2"), o311("M3")]).encode()],
                             topic="city/events", rules=dp.load_rules(), eng=sqlite_hub)
    assert (s.loaded, s.quarantined) == (3, 2)
    q = hub.quarantine_rows("city_events", eng=sqlite_hub)
    assert set(q["reason"]) == {intake.BAD_JSON, intake.NOT_RECORD}
    assert set(q["filename"]) == {"mqtt:city/events"} and "{oops" in " ".join(q["row_json"])
