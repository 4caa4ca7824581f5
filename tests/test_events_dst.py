"""A US city's records on its own wall clock (Minneapolis, America/Chicago) across both DST
changes of 2017, through the shipped profile (minneapolis_stops) and the Minneapolis rules:
UTC values asserted; the hour the clock skips and the hour it repeats are quarantined with
their reason unless the profile declares a policy; never shifted silently. Files and MQTT."""
from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from workbench.events import dispatch as dp
from workbench.events import intake
from workbench.store import hub, profiles
from workbench.store.ingest import AMBIGUOUS_TIME, NONEXISTENT_TIME

HEADER = "OBJECTID,masterIncidentNumber,responseDate,reason,problem,lat,long,policePrecinct,neighborhood\n"
# local wall clock → UTC (2017: DST from 12 March 02:00 to 5 November 02:00)
STOPS = [
    ("MP-1", "2017-01-15 12:00:00", "2017-01-15 18:00:00"),   # winter, CST (UTC-6)
    ("MP-2", "2017-03-12 01:30:00", "2017-03-12 07:30:00"),   # the last half hour of CST
    ("MP-3", "2017-03-12 02:30:00", None),                    # skipped: does not exist
    ("MP-4", "2017-03-12 03:30:00", "2017-03-12 08:30:00"),   # CDT (UTC-5)
    ("MP-5", "2017-07-01 12:00:00", "2017-07-01 17:00:00"),   # summer
    ("MP-6", "2017-11-05 00:30:00", "2017-11-05 05:30:00"),   # CDT still
    ("MP-7", "2017-11-05 01:30:00", None),                    # repeated: ambiguous
    ("MP-8", "2017-11-05 02:30:00", "2017-11-05 08:30:00"),   # CST again
]


def stops_file(path):
    rows = [f"{i},{eid},{t},Moving Violation,traffic,44.9666,-93.2465,1,Downtown West" for i, (eid, t, _) in
            enumerate(STOPS, start=1)]
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def utc_times(eng) -> dict:
    ev = hub.read("city_events", eng=eng)
    return {e: pd.Timestamp(t) for e, t in zip(ev["event_id"], ev["ts"])}


def test_a_us_city_across_both_dst_changes(hub_engine, tmp_path):
    s = intake.intake_file(stops_file(tmp_path / "stops.csv"), rules=dp.load_rules("minneapolis"), eng=hub_engine,
                           profile="minneapolis_stops")
    assert (s.rows_read, s.loaded, s.quarantined) == (8, 6, 2)
    assert s.reasons == {NONEXISTENT_TIME: 1, AMBIGUOUS_TIME: 1}
    want = {e: pd.Timestamp(u) for e, _, u in STOPS if u}
    assert utc_times(hub_engine) == want
    q = hub.quarantine_rows("city_events", eng=hub_engine).set_index("reason")
    assert "MP-3" in q.loc[NONEXISTENT_TIME, "row_json"] and "America/Chicago" in q.loc[NONEXISTENT_TIME, "detail"]
    assert "2017-11-05 01:30:00" in q.loc[AMBIGUOUS_TIME, "detail"]
    ev = hub.read("city_events", eng=hub_engine).set_index("event_id")
    assert ev.loc["MP-1", "department"] == "Precinct 1" and ev.loc["MP-1", "loc_precision"] == "point"
    # the columns the profile keeps aside stay with their rows
    assert "reason" in set(s.hub.unknown_columns)


@pytest.mark.parametrize("ambiguous, nonexistent, mp3, mp7", [
    ("earliest", "shift_forward", "2017-03-12 08:00:00", "2017-11-05 06:30:00"),   # 03:00 CDT; 01:30 CDT
    ("latest", "shift_backward", "2017-03-12 07:59:59.999999", "2017-11-05 07:30:00"),  # 01:59:59.999999 CST (the hub keeps µs); 01:30 CST
])
def test_a_declared_policy_places_the_dst_hours(sqlite_hub, tmp_path, ambiguous, nonexistent, mp3, mp7):
    prof = dataclasses.replace(profiles.load("minneapolis_stops"), name="mpls_policy", ambiguous=ambiguous,
                               nonexistent=nonexistent)
    s = intake.intake_file(stops_file(tmp_path / "stops.csv"), rules=dp.load_rules("minneapolis"), eng=sqlite_hub,
                           profile=prof)
    assert (s.loaded, s.quarantined) == (8, 0)
    got = utc_times(sqlite_hub)
    assert got["MP-3"] == pd.Timestamp(mp3) and got["MP-7"] == pd.Timestamp(mp7)
    assert got["MP-4"] == pd.Timestamp("2017-03-12 08:30:00") and got["MP-8"] == pd.Timestamp("2017-11-05 08:30:00")


def test_city_rules_alone_read_naive_times_in_the_citys_zone(sqlite_hub, tmp_path):
    """Without a profile, `--city minneapolis` is enough: its zone, the quarantine policy."""
    path = tmp_path / "plain.csv"
    path.write_text("event_id,ts,event_class,lat,lon,district\n"
                    "A1,2017-07-01 12:00:00,traffic,44.9666,-93.2465,1\n"
                    "A2,2017-11-05 01:30:00,traffic,44.9666,-93.2465,1\n", encoding="utf-8")
    s = intake.intake_file(path, rules=dp.load_rules("minneapolis"), eng=sqlite_hub)
    assert (s.loaded, s.quarantined) == (1, 1) and s.reasons == {AMBIGUOUS_TIME: 1}
    assert utc_times(sqlite_hub) == {"A1": pd.Timestamp("2017-07-01 17:00:00")}


def test_mqtt_messages_follow_the_citys_zone(sqlite_hub):
    msgs = [json.dumps({"event_id": e, "ts": t, "event_class": "traffic", "lat": 44.9666, "lon": -93.2465,
                        "district": "1"}).encode() for e, t, _ in STOPS]
    s = intake.message_batch(msgs, topic="mpls/stops", rules=dp.load_rules("minneapolis"), eng=sqlite_hub)
    assert (s.loaded, s.quarantined) == (6, 2) and s.reasons == {NONEXISTENT_TIME: 1, AMBIGUOUS_TIME: 1}
    assert utc_times(sqlite_hub) == {e: pd.Timestamp(u) for e, _, u in STOPS if u}


def test_the_generic_ingest_reads_a_source_with_the_city_its_profile_names(hub_engine, tmp_path):
    """`workbench ingest city_events FILE --profile minneapolis_stops` = the events intake with
    --city minneapolis: the profile's options name the city, so Minneapolis's bounds, classes
    and routing apply (not Zhuzhou's, which would quarantine every stop as outside the city);
    the next file without such a profile is read with the default city again."""
    from workbench.store.ingest import ingest_file

    s = ingest_file("city_events", stops_file(tmp_path / "stops.csv"), hub_engine, profile="minneapolis_stops")
    assert (s.rows_read, s.loaded, s.quarantined) == (8, 6, 2)
    assert utc_times(hub_engine) == {e: pd.Timestamp(u) for e, _, u in STOPS if u}
    assert hub.read("city_events", eng=hub_engine).set_index("event_id").loc["MP-1", "department"] == "Precinct 1"
    assert intake.active_rules().name == "株洲市"   # the profile's city held for its file only
    z = tmp_path / "zz.csv"
    z.write_text("事件编号,上报时间,小类,纬度,经度\nZ1,2017-01-15 12:00,暴露垃圾,27.86,113.17\n", encoding="utf-8")
    s2 = ingest_file("city_events", z, hub_engine)
    assert (s2.loaded, s2.quarantined) == (1, 0) and intake.active_rules().name == "株洲市"
