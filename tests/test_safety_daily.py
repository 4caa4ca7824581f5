"""Daily weather: recognised as daily (a profile's `resolution: daily`, or one record per station
and local day), judged by the criteria days support (寒潮 by GB/T 21987-2017 on the daily minimum,
暴雪 by the level a day's snow water proves), never read as hours; 道路结冰 says in one line why
it cannot be judged. The corpus files are written here in the shapes their sources use."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.safety import warnings as A
from workbench.safety import weather as W
from workbench.store import hub, ingest

RULES = A.WarningRules()  # Asia/Shanghai: a date is the city's local day


def ghcn_csv(path, rows, columns=("STATION", "NAME", "DATE", "PRCP", "SNOW", "SNWD", "TMAX", "TMIN")):
    """A NOAA Climate Data Online "Daily Summaries" CSV, units=metric: every value quoted."""
    lines = [",".join(f'"{c}"' for c in columns)]
    lines += [",".join(f'"{v}"' for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Changsha in the snow and ice of January 2008 (values written for this test, in GHCN's shape):
# a cold front on the 13th (minimum 6.5 → −2.0 ℃), snow on the 14th–16th (8.5 and 15.2 mm of water).
CHANGSHA = [  # DATE, PRCP mm, SNOW mm (new snow depth), SNWD mm, TMAX ℃, TMIN ℃
    ("2008-01-10", "0.0", "0", "0", "14.0", "6.0"),
    ("2008-01-11", "0.0", "0", "0", "13.0", "5.5"),
    ("2008-01-12", "0.0", "0", "0", "12.0", "6.5"),
    ("2008-01-13", "2.0", "0", "0", "5.0", "-2.0"),
    ("2008-01-14", "8.5", "60", "50", "-0.5", "-3.0"),
    ("2008-01-15", "15.2", "120", "150", "-1.0", "-4.0"),
    ("2008-01-16", "3.0", "20", "140", "2.0", "-3.5"),
    ("2008-01-17", "0.0", "0", "100", "6.0", "-1.0"),
]


def changsha(tmp_path):
    return ghcn_csv(tmp_path / "ghcnd_CHM00057679.csv",
                    [("CHM00057679", "CHANGSHA, CH", d, p, s, sd, tx, tn) for d, p, s, sd, tx, tn in CHANGSHA])


# ------------------------------------------------------------------------------ through the hub

def test_ghcn_daily_through_its_profile_is_judged_as_days(hub_engine, tmp_path):
    s = ingest.ingest_file("weather", changsha(tmp_path), hub_engine, profile="ghcn_daily_metric")
    assert (s.rows_read, s.loaded, s.quarantined) == (8, 8, 0) and s.unknown_columns == ["NAME"]
    w = hub.read("weather", eng=hub_engine)
    assert set(w.resolution) == {"daily"} and w.snowfall.isna().all()  # SNOW is depth, not 降雪量
    assert w.sort_values("ts").temperature_min.tolist() == [6.0, 5.5, 6.5, -2.0, -3.0, -4.0, -3.5, -1.0]
    kept = ingest.extras("weather", hub_engine)
    assert sorted(kept["SNOW"].astype(float)) == [0, 0, 0, 0, 0, 20, 60, 120]  # kept with its row

    run = A.run_engine(hub_engine, linkage=False)
    assert run.daily == 8 and run.observations == 8 and run.stations == 1
    assert run.findings.empty  # no 23-hour "gaps" between days, nothing implausible
    a = run.warnings.alerts.set_index("category")
    assert set(a.index) == {"寒潮", "暴雪"}
    # 寒潮: the 13th's minimum fell 8.5 ℃ in 24 h to −2.0 ℃: GB/T 21987 寒潮 → 蓝色, held over that day
    assert a.loc["寒潮", "alert_id"] == "W-HS-CHM00057679-2008011300" and a.loc["寒潮", "level"] == "蓝色"
    assert a.loc["寒潮", "valid_from"] == pd.Timestamp("2008-01-12 16:00")  # local midnight, in UTC
    # 暴雪: 8.5 mm of snow water on the 14th (蓝色), 15.2 mm on the 15th (黄色). Read as one hour's,
    # 15.2 mm would be a 6-h sum ≥ 15: 红色. A day proves only a 12-h ≥ 7.6 and a 6-h ≥ 3.8 mm.
    assert a.loc["暴雪", "level"] == "黄色"
    h = run.warnings.history
    bx = h[h.alert_id == a.loc["暴雪", "alert_id"]]
    assert bx.action.tolist() == ["发布", "升级", "解除"] and bx.level.tolist()[:2] == ["蓝色", "黄色"]
    assert "2008-01-15 24小时降雪量 15.2mm（日值）" in bx.note.iloc[1]
    ev = json.loads(a.loc["暴雪", "evidence"])
    assert "日值判据" in ev and ev["触发观测"][0]["资料"] == "日值"
    hs = json.loads(a.loc["寒潮", "evidence"])
    assert hs["触发观测"][0]["日最低气温24小时降温"] == 8.5 and "GB/T 21987" in hs["日值判据"]
    # what days cannot tell, in one line
    assert any(n.startswith("道路结冰：CHM00057679 为日值资料，无法判定") for n in run.notes)
    assert run.summary()["notes"] == run.notes


def test_an_hourly_file_is_not_told_it_is_daily(hub_engine, tmp_path):
    """Hourly observations without a hint stay unlabelled and the summary says nothing of days."""
    f = tmp_path / "逐时.csv"
    rows = "".join(f"57780,2008-01-25 {h:02d}:00,{1.0 + h / 10:.1f}\n" for h in range(24))
    f.write_text("站号,观测时间,气温\n" + rows, encoding="utf-8")
    s = ingest.ingest_file("weather", f, hub_engine)
    assert s.loaded == 24 and not any("日值" in w for w in s.warnings)
    assert hub.read("weather", eng=hub_engine).resolution.isna().all()


def test_a_daily_file_without_a_resolution_hint_is_recognised(hub_engine, tmp_path):
    """A Chinese daily export (one row a day, 降雪量 = melted water) with no profile: nothing in the
    file says daily; one record per station and day does."""
    f = tmp_path / "日值.csv"
    f.write_text("站号,观测时间,日最低气温,日最高气温,降水量,降雪量\n"
                 "57780,2008-01-25,1.0,4.0,0.0,0\n57780,2008-01-26,-3.0,-1.0,15.2,15.0\n"
                 "57780,2008-01-27,-4.0,0.5,3.0,3.0\n57780,2008-01-28,-3.5,1.5,0.0,0\n", encoding="utf-8")
    s = ingest.ingest_file("weather", f, hub_engine)
    assert s.loaded == 4
    # not accepted without a word: the summary says the file was recognised as daily, and what
    # the warnings can judge on days; the records are stored as daily
    assert "识别为日值资料：站点 57780 的 4 条记录未标注时间分辨率，每日一条（间隔中位数 24 小时），按日值判定" in s.warnings
    assert any(w.startswith("按日值资料接入：寒潮按日最低气温") for w in s.warnings)
    assert set(hub.read("weather", eng=hub_engine).resolution) == {"daily"}
    run = A.run_engine(hub_engine, linkage=False)
    assert run.daily == 4
    assert run.findings.empty
    a = run.warnings.alerts
    assert a[a.category == "暴雪"].level.tolist() == ["黄色"]  # not 红色: 15 mm is a day's, not an hour's
    assert (a.category != "道路结冰").all()


def test_hourly_and_daily_stations_in_one_hub(hub_engine, tmp_path):
    """An hourly station goes on being judged by the hour beside a daily one; the daily one adds
    no gaps; a station that has both is judged on its hours only."""
    ingest.ingest_file("weather", changsha(tmp_path), hub_engine, profile="ghcn_daily_metric")
    hours = pd.date_range("2008-01-12 16:00", periods=72, freq="h")
    wiggle = 0.1 * (np.arange(72) % 5)  # honest sensors never repeat for long
    temp = np.r_[np.full(24, 10.0), np.full(24, 4.0), np.full(24, -2.0)] + wiggle  # ≈ 12 ℃ fall in 48 h
    hourly = pd.DataFrame({"station_id": "57780", "ts": hours, "issued_at": hours, "kind": "observed",
                           "district": "荷塘区", "temperature": temp, "wind_speed": 9.0 + wiggle, "precipitation": 0.0,
                           "resolution": "hourly"})
    both = pd.DataFrame({"station_id": "57780", "ts": [pd.Timestamp("2008-01-13 16:00")], "kind": "observed",
                         "temperature_min": [-2.0], "resolution": "daily"})
    wx = pd.concat([hub.read("weather", eng=hub_engine), hourly, both], ignore_index=True)
    rep = W.check_weather(wx, W.QualityRules.configured(wx))
    assert set(rep.daily.station_id) == {"CHM00057679", "57780"}
    assert set(rep.clean.station_id) == {"57780"}
    grid = A.signal_grid(rep.clean, RULES, rep.daily)
    assert grid.daily == {"CHM00057679"}
    assert "站点 57780 同时有逐时与日值记录，按逐时记录判定，日值不重复判定" in grid.notes
    out = A.episodes(grid, RULES)
    areas = set(zip(out.alerts.area, out.alerts.category))
    assert ("荷塘区", "寒潮") in areas and ("CHM00057679", "寒潮") in areas


# ------------------------------------------------------------------------------ the daily rules

def daily_frame(tmin=None, tmax=None, precip=None, snow=None, station="D1") -> pd.DataFrame:
    n = len(next(v for v in (tmin, tmax, precip, snow) if v is not None))
    days = pd.date_range("2026-01-01", periods=n, freq="D")
    ts = days.tz_localize(RULES.tz).tz_convert("UTC").tz_localize(None)
    cols = {"temperature_min": tmin, "temperature_max": tmax, "precipitation": precip, "snowfall": snow}
    return pd.DataFrame({"station_id": station, "ts": ts, "kind": "observed", "resolution": "daily",
                         **{k: (np.nan if v is None else np.asarray(v, float)) for k, v in cols.items()}})


def last_day_level(frame: pd.DataFrame, signal: str) -> int:
    g = A.daily_grid(frame, RULES)
    return int(g.levels[signal][-1, 0])


@pytest.mark.parametrize("tmin, level", [
    ((10, 2.0), 1),         # 24 h fall 8 to ≤ 4: 寒潮
    ((10, 2.1), 0),         # 7.9: nothing
    ((10, 4.1), 0),         # fell 5.9
    ((12.1, 4.1), 0),       # fall 8 but the minimum is over 4
    ((14, 4.0), 1),         # fall 10 but not ≤ 2: still 寒潮
    ((12, 2.0), 2),         # fall 10 to ≤ 2: 强寒潮 → 黄色
    ((12, 0.1), 2),         # fall 11.9 to 0.1: 强寒潮
    ((12, 0.0), 3),         # fall 12 to ≤ 0: 特强寒潮 → 橙色
    ((16, 6, 4.0), 1),      # within 48 h: fall 12 to 4 (≥ 10): 寒潮 only (not ≤ 2)
    ((14, 10, 6, 2.0), 1),  # within 72 h: fall 12 to 2: 寒潮 (强寒潮 needs 14)
    ((16, 10, 6, 2.0), 2),  # within 72 h: fall 14 to ≤ 2: 强寒潮
    ((16, 10, 6, 0.0), 3),  # within 72 h: fall 16 to ≤ 0: 特强寒潮
    ((20, 12, 8, 0.0, 0.0), 1),  # the 72 h before hold a minimum of 12: a fall of 12 to 0 (寒潮)
    ((20, 0.0, 0.0, 0.0, 0.0), 0),  # cold and steady: no fall against the three days before
])
def test_cold_wave_grades_of_gb_t_21987_on_the_daily_minimum(tmin, level):
    assert last_day_level(daily_frame(tmin=tmin), "寒潮") == level


def test_cold_waves_from_days_are_never_red():
    assert last_day_level(daily_frame(tmin=(25, 0.0)), "寒潮") == 3  # 25 ℃ in a day: 特强寒潮, still 橙色


@pytest.mark.parametrize("snow, level", [(7.9, 0), (8.0, 1), (11.9, 1), (12.0, 2), (39.9, 2), (40.0, 3),
                                         (59.9, 3), (60.0, 4)])
def test_snowstorm_levels_a_day_of_snow_water_proves(snow, level):
    assert last_day_level(daily_frame(snow=(0.0, snow)), "暴雪") == level


@pytest.mark.parametrize("tmax, level", [(1.0, 2), (-5.0, 2), (1.1, 0)])
def test_without_snowfall_a_cold_days_precipitation_counts_as_snow(tmax, level):
    """15 mm of precipitation on a day whose maximum stayed ≤ 1 ℃ is snow by the hourly rule's own
    threshold in every hour; a day that went above it may have been rain."""
    assert last_day_level(daily_frame(precip=(0.0, 15.0), tmax=(3.0, tmax)), "暴雪") == level


def test_a_reported_snowfall_is_taken_over_precipitation():
    assert last_day_level(daily_frame(precip=(0.0, 30.0), tmax=(0.0, -3.0), snow=(0.0, 0.0)), "暴雪") == 0


def test_what_days_cannot_tell_is_said_once():
    g = A.daily_grid(daily_frame(precip=(0.0, 5.0), station="D9"), RULES)
    assert not g.levels["道路结冰"].any()
    assert g.notes == ["寒潮：D9 的日值资料没有日最低气温，无法判定",
                       "暴雪：D9 的日值资料没有降雪量，也没有降水量与日最高气温，无法判定",
                       g.notes[2]]
    assert g.notes[2].startswith("道路结冰：D9 为日值资料，无法判定")


# ------------------------------------------------------------------------------ daily data quality

def test_daily_data_quality():
    f = daily_frame(tmin=(1, -999.9, 2, 3, 4, 5), tmax=(5, 6, 1, 9, 10, 11), precip=(0, 0, 0, 700, 0, 0))
    f = f.drop(index=4)  # one missing day
    rep = W.check_weather(f, W.QualityRules())
    assert rep.clean.empty and len(rep.daily) == 5
    kinds = rep.findings.set_index("finding_id").kind
    sent = [i for i in kinds.index if "-SENT-TN-" in i]
    assert len(sent) == 1 and sent[0].endswith("-D") and kinds[sent[0]] == "传感器故障值"
    order = rep.excluded[rep.excluded.finding_id.str.contains("-ORDER-")]
    assert sorted(order.variable) == ["temperature_max", "temperature_min"]  # 2 ℃ above 1 ℃: both out
    rng = rep.findings[rep.findings.finding_id.str.contains("-RANGE-P-")]
    assert len(rng) == 1 and "[0.0, 500.0]" in rng.reason.iloc[0]  # plausible.yaml's weather_daily
    gap = rep.findings[rep.findings.kind == "缺测"]
    assert gap.reason.tolist() == ["站点 D1 日值缺测 1 天（2026-01-05 至 2026-01-05），这些日期不参与预警判定"]
    d = rep.daily.set_index(rep.daily.ts.dt.day)
    assert np.isnan(d.temperature_min.iloc[1]) and np.isnan(d.precipitation.iloc[3])


# ------------------------------------------------------------------------------ hourly snowfall

def test_an_hours_reported_snowfall_is_taken_over_the_temperature_rule():
    """An hourly 降雪量 (melted water) is the snow of that hour, even at +1.5 ℃ (wet snow), and
    a reported 0 overrides cold precipitation (freezing rain is no snow)."""
    n = 12
    ts = pd.date_range("2026-01-10", periods=n, freq="h")
    base = {"station_id": "H1", "ts": ts, "issued_at": ts, "kind": "observed", "resolution": "hourly",
            "wind_speed": 2.0 + 0.1 * (np.arange(n) % 5)}
    p = 0.6 + 0.1 * (np.arange(n) % 2)  # 0.6, 0.7 …: 7.8 mm in 12 h
    wet_snow = pd.DataFrame({**base, "temperature": 1.5 + 0.1 * (np.arange(n) % 3), "precipitation": p,
                             "snowfall": p})
    rain = pd.DataFrame({**base, "temperature": -0.5 - 0.1 * (np.arange(n) % 3), "precipitation": p,
                         "snowfall": 0.0})
    for frame, level in ((wet_snow, 2), (rain, 0), (rain.drop(columns="snowfall"), 2)):
        rep = W.check_weather(frame, W.QualityRules())
        assert rep.findings.empty
        assert A.signal_grid(rep.clean, RULES).levels["暴雪"][-1, 0] == level  # 7.8 mm in 12 h: 黄色


def test_days_read_in_another_time_zone_are_pointed_out():
    """Dates loaded as Beijing midnights but warned on in New York time would slip a day: said."""
    f = daily_frame(tmin=(10, 2.0))
    assert not any("零点" in n for n in A.daily_grid(f, RULES).notes)
    notes = A.daily_grid(f, A.WarningRules(tz="America/New_York")).notes
    assert notes[-1] == ("D1 的日值记录不在 America/New_York 的零点（接入时所用时区不同？），"
                         "日期按 America/New_York 计，可能差一天")


def test_a_day_of_23_hours_in_new_york_keeps_its_level_all_day():
    """2013-03-10, when New York's clocks spring forward: the day's level covers its 23 hours."""
    ny = A.WarningRules(tz="America/New_York")
    days = pd.date_range("2013-03-08", periods=4, freq="D")
    ts = days.tz_localize(ny.tz).tz_convert("UTC").tz_localize(None)
    f = pd.DataFrame({"station_id": "USW00094789", "ts": ts, "kind": "observed", "resolution": "daily",
                      "temperature_min": [6.0, 7.0, -2.0, -1.0]})
    g = A.daily_grid(f, ny)
    assert not any("零点" in n for n in g.notes)
    assert len(g.hours) == 24 * 4 - 1
    cold = pd.Series(g.levels["寒潮"][:, 0], index=g.hours)
    assert cold[cold > 0].index.tolist() == list(pd.date_range("2013-03-10 05:00", "2013-03-11 03:00", freq="h"))
    assert set(cold[cold > 0]) == {1}  # fell 9 ℃ in 24 h to −2 ℃: 寒潮, 蓝色
