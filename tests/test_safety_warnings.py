"""Cold-weather warnings: threshold edges by hand, data quality, episodes, tasks, the hub."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from workbench.safety import tasks as tk
from workbench.safety import warnings as A
from workbench.safety import weather as W
from workbench.store import hub
from workbench.store.ingest import insert_new
from workbench.store.schema import DATASETS

T0 = pd.Timestamp("2026-01-10 00:00")  # UTC


def grid(values, n=None) -> pd.DataFrame:
    """One station's hourly series as a grid (hours × stations)."""
    values = np.asarray(values, float)
    return pd.DataFrame({"S1": values}, index=pd.date_range(T0, periods=len(values), freq="h"))


def days(*temps) -> list[float]:
    """A temperature series, each value held for 24 hours."""
    return [t for t in temps for _ in range(24)]


def weather(n=72, station="QX-HT", district="荷塘区", **cols) -> pd.DataFrame:
    """Observed hourly rows; columns default to a mild, calm, dry January."""
    ts = pd.date_range(T0, periods=n, freq="h")
    base = {"temperature": 8.0 + 0.1 * (np.arange(n) % 7), "precipitation": 0.0, "wind_speed": 2.0 + 0.1 * (np.arange(n) % 5),
            "road_temperature": np.nan, "humidity": 70.0 + np.arange(n) % 9}
    base.update(cols)
    return pd.DataFrame({"station_id": station, "ts": ts, "issued_at": ts, "kind": "observed", "district": district,
                         "lat": 27.86, "lon": 113.17, **{k: np.broadcast_to(v, n).astype(float) if np.ndim(v) == 0 else
                                                         np.asarray(v, float) for k, v in base.items()},
                         "source": "测试"})


# ------------------------------------------------------------------------------ 寒潮

@pytest.mark.parametrize("temps, wind, level", [
    # yellow: falls ≥ 10 in 24 h to ≤ 4, wind ≥ 10.8
    ((20, 14.0, 4.0), 10.8, 2),
    ((20, 14.1, 4.0), 10.8, 2),  # just over the drop
    ((20, 13.9, 4.0), 10.8, 1),  # drop just under 10: still blue (≥ 8 within 48 h)
    ((20, 14.1, 4.1), 10.8, 0),  # minimum just over 4: nothing
    ((20, 14.0, 4.0), 10.7, 1),  # wind just under force 6: blue (force 5 enough)
    ((20, 14.0, 4.0), 10.9, 2),
    # orange: falls ≥ 12 in 24 h to ≤ 0, wind ≥ 10.8
    ((20, 12.0, 0.0), 10.8, 3),
    ((20, 11.9, 0.0), 10.8, 2),  # drop just under 12: yellow
    ((20, 12.2, 0.1), 10.8, 2),  # minimum just over 0: yellow
    ((20, 12.1, 0.0), 10.9, 3),
    ((20, 12.0, 0.0), 10.7, 1),
    # red: falls ≥ 16 in 24 h to ≤ 0, wind ≥ 10.8
    ((20, 16.0, 0.0), 10.8, 4),
    ((20, 15.9, 0.0), 10.8, 3),  # just under 16: orange
    ((20, 16.1, 0.1), 10.8, 2),  # minimum just over 0: yellow
    ((20, 16.1, -0.1), 10.9, 4),
    ((20, 16.0, 0.0), 10.7, 1),
    # blue: falls ≥ 8 within 48 h to ≤ 4, wind ≥ 8.0
    ((12.0, 9.0, 4.0), 8.0, 1),
    ((11.9, 9.0, 4.0), 8.0, 0),  # 7.9 in 48 h
    ((12.1, 9.0, 4.0), 8.1, 1),
    ((12.1, 9.0, 4.1), 8.0, 0),  # minimum just over 4
    ((12.0, 9.0, 4.0), 7.9, 0),  # wind just under force 5
    ((5.0, 12.0, 4.0), 8.0, 1),  # the 24-h fall alone is 8
])
def test_cold_wave_threshold_edges(temps, wind, level):
    T = grid(days(*temps))
    Wd = grid([wind] * 72)
    lv, m = A.cold_wave(T, Wd)
    assert lv[-1, 0] == level, {k: v.iat[-1, 0] for k, v in m.items()}


def test_cold_wave_needs_18_hours_of_the_last_24():
    temps = np.array(days(20, 14, 4), float)
    temps[-7:] = np.nan  # 17 hours left in the last day
    lv, _ = A.cold_wave(grid(temps), grid([12.0] * 72))
    assert lv[-1, 0] == 0
    temps[-7] = 4.0  # 18 hours
    lv, _ = A.cold_wave(grid(temps), grid([12.0] * 72))
    assert lv[-1, 0] == 2


# ------------------------------------------------------------------------------ 暴雪

@pytest.mark.parametrize("mm, hours, level", [
    (3.9, 12, 0), (4.0, 12, 1), (4.1, 12, 1),  # blue ≥ 4 mm in 12 h
    (5.9, 12, 1), (6.0, 12, 2), (6.1, 12, 2),  # yellow ≥ 6 mm in 12 h
    (9.9, 6, 2), (10.0, 6, 3), (10.1, 6, 3),  # orange ≥ 10 mm in 6 h
    (14.9, 6, 3), (15.0, 6, 4), (15.1, 6, 4),  # red ≥ 15 mm in 6 h
    (10.0, 12, 2),  # 10 mm spread over 12 h is yellow, not orange
])
def test_snowstorm_threshold_edges(mm, hours, level):
    p = np.zeros(24)
    per = np.round(np.full(hours, round(mm / hours, 4)), 4)
    per[-1] = round(mm - per[:-1].sum(), 4)
    p[-hours:] = per
    lv, _ = A.snowstorm(grid(np.full(24, -1.0)), grid(p))
    assert lv[-1, 0] == level


@pytest.mark.parametrize("air, level", [(1.0, 2), (0.9, 2), (1.1, 0)])
def test_snow_is_precipitation_at_or_below_one_degree(air, level):
    lv, _ = A.snowstorm(grid(np.full(12, air)), grid(np.full(12, 0.5)))
    assert lv[-1, 0] == level


# ------------------------------------------------------------------------------ 道路结冰

@pytest.mark.parametrize("road, air, precip, level", [
    (-0.1, 3.0, 0.1, 4),  # observed icing: counts as within 2 h
    (0.0, -3.0, 0.5, 0),  # surface not below 0
    (0.1, -3.0, 0.5, 0),
    (-2.0, 3.0, 0.0, 0),  # no precipitation
    (-2.0, 3.0, 0.09, 0),  # below the measurable 0.1 mm
    (np.nan, -0.1, 0.2, 4),  # no road sensor this hour: air temperature stands in
    (np.nan, 0.0, 0.2, 0),
])
def test_observed_icing_edges(road, air, precip, level):
    lv, _ = A.road_icing(grid([air]), grid([precip]), grid([road]), pd.DataFrame(), grid([0]).index, ["S1"])
    assert lv[0, 0] == level


def forecast(lead_hours, issued=T0 + pd.Timedelta(hours=5), road=-1.5, precip=0.4, station="S1"):
    """One forecast issue: dry and mild except an icing hour `lead_hours` after issuance."""
    ts = pd.date_range(issued, periods=24, freq="h")
    r = np.full(24, 3.0)
    p = np.zeros(24)
    if lead_hours is not None:
        r[lead_hours] = road
        p[lead_hours] = precip
    return pd.DataFrame({"station_id": station, "ts": ts, "issued_at": issued, "kind": "forecast",
                         "temperature": 2.0, "road_temperature": r, "precipitation": p})


@pytest.mark.parametrize("lead, level", [
    (0, 4), (1, 4), (2, 4), (3, 3),  # red: within 2 h
    (5, 3), (6, 3), (7, 2),  # orange: within 6 h
    (11, 2), (12, 2), (13, 0),  # yellow: within 12 h
    (None, 0),
])
def test_forecast_icing_lead_edges(lead, level):
    hours = pd.date_range(T0, periods=24, freq="h")
    fc = forecast(lead)
    nan = pd.DataFrame({"S1": np.nan}, index=hours)
    lv, m = A.road_icing(nan, nan, nan, fc, hours, ["S1"])
    assert lv[5, 0] == level  # at the issue hour
    assert lv[4, 0] == 0  # nothing before the forecast was issued
    if lead is not None and lead <= 12:
        assert lv[5 + lead, 0] == level  # held until the expected icing hour …
        if 5 + lead + 1 < 24:
            assert lv[5 + lead + 1, 0] == 0  # … and not after it


def test_a_later_forecast_replaces_the_earlier():
    hours = pd.date_range(T0, periods=24, freq="h")
    fc = pd.concat([forecast(10, issued=T0 + pd.Timedelta(hours=2)),
                    forecast(None, issued=T0 + pd.Timedelta(hours=6))])
    nan = pd.DataFrame({"S1": np.nan}, index=hours)
    lv, _ = A.road_icing(nan, nan, nan, fc, hours, ["S1"])
    assert lv[2:6, 0].tolist() == [2, 2, 2, 2]
    assert lv[6:, 0].max() == 0  # the new issue no longer expects icing


# ------------------------------------------------------------------------------ data quality

def test_quality_findings_are_recorded_and_excluded():
    n = 24 * 6
    w = weather(n)
    w.loc[10, "temperature"] = 999.9  # sentinel
    w.loc[20, "temperature"] = 60.0  # 60 °C in January
    w.loc[40:51, "humidity"] = 83.0  # stuck for 12 readings
    w.loc[60, "wind_speed"] = 468.7  # the 1048 mph kind
    w = w.drop(index=[100, 101, 102])  # three missing hours
    rep = W.check_weather(w)
    kinds = rep.findings.set_index("kind")
    assert set(kinds.index) == {"传感器故障值", "数值不合理", "传感器卡滞", "缺测"}
    gap = kinds.loc["缺测"]
    assert gap.rows == 3 and gap.ts_from == T0 + pd.Timedelta(hours=100)
    assert kinds.loc["传感器卡滞"].rows == 12
    assert len(kinds.loc[["数值不合理"]]) == 2  # 60 °C and 468.7 m/s
    ex = rep.excluded
    assert len(ex) == 1 + 1 + 12 + 1
    assert set(ex.finding_id) <= set(rep.findings.finding_id) and ex.reason.str.len().min() > 5
    clean = rep.clean.set_index("ts")
    assert np.isnan(clean.loc[T0 + pd.Timedelta(hours=10), "temperature"])
    assert np.isnan(clean.loc[T0 + pd.Timedelta(hours=60), "wind_speed"])
    assert clean.temperature.notna().sum() == len(w) - 2
    for e in rep.findings.evidence:
        json.loads(e)
    # deterministic ids
    assert W.check_weather(w).findings.finding_id.tolist() == rep.findings.finding_id.tolist()


def test_calm_and_dry_repeats_are_not_stuck():
    w = weather(48, wind_speed=0.0, precipitation=0.0, humidity=100.0)
    assert W.check_weather(w).findings.empty


def four_stations(n=24 * 40) -> pd.DataFrame:
    """Neighbours share the weather: a common wind, each station with its own exposure and noise."""
    rng = np.random.default_rng(1)
    common = rng.gamma(3, 0.9, n)
    parts = []
    for i, (sid, d) in enumerate([("QX-HT", "荷塘区"), ("QX-LS", "芦淞区"), ("QX-SF", "石峰区"), ("QX-TY", "天元区")]):
        wind = common * (0.9 + 0.07 * i) * rng.lognormal(0, 0.25, n)
        parts.append(weather(n, station=sid, district=d, wind_speed=np.round(wind, 1),
                             temperature=np.round(8 + rng.normal(0, 1, n), 1)))
    return pd.concat(parts, ignore_index=True)


def test_wind_in_kmh_is_found_and_excluded():
    w = four_stations()
    bad = (w.station_id == "QX-SF") & (w.ts >= T0 + pd.Timedelta(days=10)) & (w.ts < T0 + pd.Timedelta(days=26))
    w.loc[bad, "wind_speed"] = (w.loc[bad, "wind_speed"] * 3.6).round(1)
    rep = W.check_weather(w)
    unit = rep.findings[rep.findings.kind == "风速单位疑似错误"]
    assert len(unit) == 1 and unit.subject.iloc[0] == "QX-SF"
    ev = json.loads(unit.evidence.iloc[0])
    assert ev["疑似单位"] == "km/h" and 3.0 < ev["风速比值"] < 4.2
    hit = rep.excluded[rep.excluded.kind == "风速单位疑似错误"]
    flagged = set(hit.ts.dt.floor("D"))
    truth = set(w.loc[bad, "ts"].dt.floor("D"))
    assert len(flagged & truth) >= 12 and len(flagged - truth) <= 1
    assert W.check_weather(four_stations()).findings.empty  # honest stations: nothing


def test_excluded_values_do_not_raise_warnings():
    """A stuck-high wind sensor would make a drop to 4 °C a yellow cold wave; excluded, it is blue."""
    w = weather(72, temperature=np.array(days(20, 14, 4)) + np.tile([0.0, 0.1], 36),
                wind_speed=np.r_[np.full(48, 9.0) + np.tile([0, 0.1], 24), np.full(24, 11.0)])
    rep = W.check_weather(w)
    assert "传感器卡滞" in set(rep.findings.kind)
    out = A.warnings_from(rep.clean)
    assert out.alerts.level.tolist() == ["蓝色"]
    raw = A.warnings_from(W.prepare(w))
    assert raw.alerts.level.tolist() == ["黄色"]


# ------------------------------------------------------------------------------ episodes

def level_grid(levels, signal="暴雪") -> A.SignalGrid:
    hours = pd.date_range(T0, periods=len(levels), freq="h")
    st = pd.DataFrame({"station_id": ["QX-HT"], "area": ["荷塘区"], "district": ["荷塘区"], "lat": [27.86],
                       "lon": [113.17], "last_hour": [hours[-1]]})
    return A.SignalGrid(hours, st, {signal: np.asarray(levels, np.int8)[:, None]}, {signal: {}})


def test_episode_upgrades_downgrades_and_lifts():
    lv = [0, 1, 1, 3, 0, 3, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    out = A.episodes(level_grid(lv), A.WarningRules(clear_hours=3))
    h = out.history
    assert h.action.tolist() == ["发布", "升级", "降级", "解除"]
    assert h.level.tolist() == ["蓝色", "橙色", "黄色", "黄色"]
    assert (h.ts - T0).dt.total_seconds().div(3600).astype(int).tolist() == [1, 3, 8, 15]
    a = out.alerts.iloc[0]
    assert a.alert_id == "W-BX-HT-2026011009"  # local (UTC+8) start hour
    assert (a.status, a.level, a.severity, a.title) == ("已解除", "橙色", "critical", "荷塘区暴雪橙色预警")
    assert a.valid_to == T0 + pd.Timedelta(hours=15) and a.updated_at == a.valid_to


def test_episode_still_active_at_the_end_of_the_data():
    out = A.episodes(level_grid([0, 2, 2, 0, 0]), A.WarningRules(clear_hours=6))
    a = out.alerts.iloc[0]
    assert (a.status, a.level, a.severity) == ("生效中", "黄色", "warning") and pd.isna(a.valid_to)
    assert out.history.action.tolist() == ["发布"]


def test_two_episodes_apart_are_two_alerts():
    out = A.episodes(level_grid([2] * 3 + [0] * 8 + [1] * 2 + [0] * 8), A.WarningRules(clear_hours=6))
    assert len(out.alerts) == 2 and out.alerts.alert_id.is_unique
    assert out.history.groupby("alert_id").action.apply(list).tolist() == [["发布", "解除"]] * 2


def test_inspection_tasks_by_signal_and_level():
    out = A.episodes(level_grid([0, 2, 2, 4, 4] + [0] * 10, signal="寒潮"), A.WarningRules(clear_hours=3))
    streets = pd.DataFrame({"district": ["荷塘区", "荷塘区", "芦淞区"], "street": ["月塘街道", "仙庾镇", "建设街道"],
                            "lat": [27.87, 27.9, 27.8], "lon": [113.17, 113.2, 113.16]})
    ev = tk.inspection_tasks(out.alerts, out.history, streets)
    issue = ev[ev.ts == T0 + pd.Timedelta(hours=1)]
    assert sorted(issue.department) == ["供电公司", "燃气", "街道办事处", "街道办事处"]
    assert set(issue[issue.department == "街道办事处"].street) == {"月塘街道", "仙庾镇"}
    assert (issue.deadline - issue.ts == pd.Timedelta(hours=24)).all()
    red = ev[ev.ts == T0 + pd.Timedelta(hours=3)]  # upgraded to red: roads and traffic too, 2-h deadlines
    assert {"城市管理和综合执法局", "公安交警", "供电公司", "燃气", "街道办事处"} == set(red.department)
    assert (red.deadline - red.ts == pd.Timedelta(hours=2)).all()
    assert ev.event_id.is_unique and (ev.external_id == out.alerts.alert_id.iloc[0]).all()
    assert (ev.alert_id == ev.external_id).all()
    # the engine takes each task through 案卷建立 to 任务派遣 (to the task's department)
    assert (ev.source == "预警联动").all() and (ev.urgency == "紧急").all()
    assert all([s for s, _ in st] == ["案卷建立", "任务派遣"] for st in ev.steps)
    assert all(st[1][1].startswith(f"派遣至{d}") for st, d in zip(ev.steps, ev.department))
    assert ev.lat.notna().all()
    icy = A.episodes(level_grid([2, 2] + [0] * 8, signal="道路结冰"), A.WarningRules(clear_hours=3))
    ev2 = tk.inspection_tasks(icy.alerts, icy.history, streets)
    assert sorted(ev2.department) == ["公安交警", "城市管理和综合执法局"]


# ------------------------------------------------------------------------------ the hub

def cold_front(n=24 * 7) -> pd.DataFrame:
    """Two districts: a yellow cold wave on day 3 (14 → 4 °C, force 6) in one of them, then milder."""
    temps = np.array(days(16, 15, 14, 4, 4, 12, 12)) + np.tile([0.0, 0.1, 0.2], n // 3)
    wind = np.r_[np.full(72, 3.0), np.full(24, 11.5), np.full(72, 3.0)] + np.tile([0, 0.1, 0.2, 0.3], n // 4)
    return pd.concat([weather(n, temperature=temps, wind_speed=wind),
                      weather(n, station="QX-LS", district="芦淞区")], ignore_index=True)


def table(name, eng):
    return hub.read(name, eng=eng)


def test_engine_on_the_hub_is_idempotent_and_continues(hub_engine):
    w = cold_front()
    cut = T0 + pd.Timedelta(hours=80)
    with hub_engine.begin() as conn:
        insert_new(conn, DATASETS["weather"], w[w.ts < cut])
    first = A.run_engine(hub_engine)
    a1 = table("alerts", hub_engine)
    assert a1.alert_id.tolist() == ["W-HS-HT-2026011308"] or len(a1) == 1
    assert a1.status.iloc[0] == "生效中" and a1.district.iloc[0] == "荷塘区"
    n_events = len(table("city_events", hub_engine))
    assert n_events == first.summary()["tasks"] > 0

    again = A.run_engine(hub_engine)  # same data: nothing changes
    assert again.written == {"findings_new": 0, "findings_updated": 0, "alerts_new": 0, "alerts_updated": 0,
                             "alert_history_new": 0, "events_new": 0, "event_history_new": 0,
                             "hazard_cases_new": 0, "hazard_case_steps": 0, "overdue_alerts_new": 0,
                             "overdue_alerts_lifted": 0}

    with hub_engine.begin() as conn:  # more data: the same episode goes on, and is lifted
        insert_new(conn, DATASETS["weather"], w[w.ts >= cut])
    more = A.run_engine(hub_engine)
    a2 = table("alerts", hub_engine)
    assert len(a2) == 1 and a2.alert_id.iloc[0] == a1.alert_id.iloc[0]
    assert more.written["alerts_updated"] == 1 and a2.status.iloc[0] == "已解除" and a2.valid_to.notna().all()
    h = table("alert_history", hub_engine)
    assert h.action.tolist()[0] == "发布" and h.action.tolist()[-1] == "解除"
    assert len(table("city_events", hub_engine)) == n_events  # no new tasks for a lift

    # the same history as one run over everything
    whole = A.warnings_from(W.check_weather(w).clean)
    assert sorted(whole.history.action) == sorted(h.action)
    e = table("city_events", hub_engine)
    assert e.event_id.is_unique and set(e.external_id) == set(a2.alert_id)
    # opened by the case engine: inspection tasks of their warning, at 任务派遣 after intake
    assert (e.case_type == "inspection_task").all() and (e.alert_id == e.external_id).all()
    assert (e.status == "任务派遣").all() and e.closed_at.isna().all()
    eh = table("event_history", hub_engine).sort_values(["event_id", "ts"])
    assert len(eh) == 3 * len(e)
    assert all(st == ["信息收集", "案卷建立", "任务派遣"] for st in eh.groupby("event_id").status.apply(list))
    assert set(eh.groupby("event_id").department.last()) == set(e.department)
    assert (a2.subject == "district:荷塘区").all()
    assert json.loads(a2["attrs"].iloc[0]) == {"district": "荷塘区", "area": "荷塘区"}
    assert set(h.actor) == {"气象预警"}


def test_sample_city_raises_the_planted_cold_wave(sample_city):
    import yaml
    from pathlib import Path

    plants = yaml.safe_load((Path(sample_city["WORKBENCH_DATA_DIR"]) / "synth" / "plants.yaml").read_text("utf-8"))
    cold = next(p for p in plants["plants"] if p["name"] == "cold_wave")
    front = pd.Timestamp(cold["front_day"])
    run = A.run_engine()
    a = hub.read("alerts")
    mine = a[a.source == A.SOURCE]
    hs = mine[mine.category == "寒潮"]
    districts = set(hub.read("weather").district)
    assert set(hs.district) == districts and len(hs) == len(districts)  # one episode per district
    assert set(hs.level) == {"黄色"}  # peak level: the planted yellow
    local = hs.valid_from + pd.Timedelta(hours=8)
    assert (local.dt.normalize() == front).all()
    hist = hub.read("alert_history")
    assert (hist[hist.alert_id.isin(hs.alert_id)].level.isin(["蓝色", "黄色"])).all()
    # nothing spurious: icing and snow only where the observations show them (the cold wet spell)
    wx = hub.read("weather")
    for r in mine[mine.category != "寒潮"].itertuples():
        ev = json.loads(r.evidence)
        o = ev["触发观测"][0]
        row = wx[(wx.station_id == o["站点"]) & (wx.ts == pd.Timestamp(o["时间"]) - pd.Timedelta(hours=8))].iloc[0]
        if r.category == "道路结冰":
            assert row.road_temperature < 0 and row.precipitation >= 0.1
        else:
            assert ev["最高等级"] in ("蓝色", "黄色") and o["12小时降雪量"] >= 4
    # the three 999.9 values were set aside at ingest (quarantined with their reason), their hours
    # loaded with the other values: no gap for the warnings' quality check to report
    assert run.summary()["findings"] == {}
    faults = sum(d["rows"] for d in plants["dirt"] if d["dataset"] == "weather")
    assert faults == 3 and int(wx.temperature.isna().sum()) == faults
    q = hub.quarantine_rows(dataset="weather", limit=100)
    assert len(q) == faults and q.reason.str.contains("气温").all()
    tasks = hub.read("city_events", where={"source": "预警联动"})
    assert set(tasks.external_id) == set(mine.alert_id)
    assert A.run_engine().written["events_new"] == 0


def test_cli_warn_prints_a_chinese_summary_and_json(hub_engine):
    from click.testing import CliRunner

    from workbench.cli import main

    with hub_engine.begin() as conn:
        insert_new(conn, DATASETS["weather"], cold_front())
    res = CliRunner().invoke(main, ["safety", "warn", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "预警过程 1 个" in res.output and "寒潮黄色预警 × 1" in res.output and "联动巡查任务" in res.output
    res = CliRunner().invoke(main, ["safety", "warn", "--json"])
    s = json.loads(res.output)
    assert s["episodes"] == 1 and s["written"]["alerts_new"] == 0 and s["written"]["events_new"] == 0
    res = CliRunner().invoke(main, ["safety", "weather-check"])
    assert res.exit_code == 0 and "数据质量问题 0 项" in res.output
