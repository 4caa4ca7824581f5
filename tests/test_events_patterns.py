"""Patterns: hotspots tested against the city's rate, repeat locations, volumes by hour and
weekday, and the forecast with intervals beating seasonal naive on a weekly series."""
from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from workbench.events import patterns as pt


def scattered(n, rng, start="2026-01-01"):
    return pd.DataFrame({
        "event_id": [f"S{i}" for i in range(n)],
        "ts": pd.Timestamp(start) + pd.to_timedelta(rng.uniform(0, 30 * 24, n), unit="h"),
        "lat": 27.80 + rng.uniform(0, 0.09, n), "lon": 113.10 + rng.uniform(0, 0.09, n),
        "event_class": rng.choice(["暴露垃圾", "占道经营", "违章停车"], n), "district": "荷塘区",
        "street": "月塘街道", "address": "某路",
    })


def test_a_planted_hotspot_is_significant_and_the_uniform_background_is_not():
    rng = np.random.default_rng(3)
    bg = scattered(2000, rng)
    hot = scattered(60, rng).assign(lat=27.8312 + rng.uniform(0, 0.002, 60), lon=113.1412 + rng.uniform(0, 0.002, 60),
                                    event_class="暴露垃圾", event_id=[f"H{i}" for i in range(60)])
    hs = pt.hotspots(pd.concat([bg, hot], ignore_index=True), cell_m=500)
    sig = hs[hs["significant"]]
    assert len(sig) >= 1 and len(sig) <= 2
    top = sig.iloc[0]
    assert abs(top["lat"] - 27.832) < 0.005 and abs(top["lon"] - 113.142) < 0.006
    assert top["count"] >= 60 and top["q_value"] < 0.001 and top["top_class"] == "暴露垃圾"
    # without the plant nothing is significant (the test is against the city's rate)
    assert not pt.hotspots(bg, cell_m=500)["significant"].any()


def test_one_district_and_the_city_cut_the_same_cells():
    """The cells are sized at the city's latitude (lat0), not the events' mean: a district's
    view and the city's give a place the same cell and the same count (before, the district
    user saw 59 where the leader saw 64 for one grid's hotspot)."""
    rng = np.random.default_rng(5)
    north = scattered(800, rng)                                              # 27.80–27.89 N
    south = scattered(800, rng).assign(lat=lambda d: d["lat"] - 1.2, district="炎陵县",
                                       event_id=[f"T{i}" for i in range(800)])   # 26.6 N
    lat0 = 27.2
    city = pt.hotspots(pd.concat([north, south], ignore_index=True), lat0=lat0).set_index(["cy", "cx"])["count"]
    alone = pt.hotspots(north, lat0=lat0).set_index(["cy", "cx"])["count"]
    assert len(alone) > 50 and city.reindex(alone.index).eq(alone).all()
    moved = pt.hotspots(north).set_index(["cy", "cx"])["count"]          # sized at the district's own mean
    assert not city.reindex(moved.index).eq(moved).all()


def test_repeat_locations():
    rng = np.random.default_rng(4)
    bg = scattered(300, rng)
    rep = bg.head(4).assign(lat=27.85, lon=113.15, event_class="井盖破损", event_id=["R1", "R2", "R3", "R4"])
    out = pt.repeat_locations(pd.concat([bg, rep]), radius_m=50, min_count=3, days=90)
    assert out.iloc[0]["event_class"] == "井盖破损" and out.iloc[0]["count"] == 4
    assert "R1" in out.iloc[0]["event_ids"]


def test_hour_weekday_in_local_time():
    ev = pd.DataFrame({"ts": [pd.Timestamp("2026-01-18 16:30")]})  # Sunday 16:30 UTC = Monday 00:30 Beijing
    m = pt.hour_weekday(ev)
    assert m.loc["周一", 0] == 1 and m.values.sum() == 1


def weekly_series(days=140, seed=5):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2025-09-01", periods=days, freq="D")
    mu = 40 * np.where(idx.day_of_week >= 5, 0.6, 1.0) * (1 + 0.002 * np.arange(days))
    return pd.DataFrame({"暴露垃圾": rng.poisson(mu), "违章停车": rng.poisson(mu / 2)}, index=idx)


def test_forecast_has_intervals_around_the_expected_volume():
    d = weekly_series()
    f = pt.forecast(d, level=0.9).set_index("series")
    tomorrow = d.index[-1] + pd.Timedelta(days=1)
    expect = 40 * (0.6 if tomorrow.day_of_week >= 5 else 1.0) * (1 + 0.002 * 140)
    r = f.loc["暴露垃圾"]
    assert r["tomorrow_lo"] < r["tomorrow"] < r["tomorrow_hi"]
    assert abs(r["tomorrow"] - expect) < 0.15 * expect
    assert r["week_lo"] < r["week"] < r["week_hi"] and 6 * 30 < r["week"] < 7 * 50


def test_a_burst_is_not_extrapolated_to_billions():
    """道路结冰 seen only in the last days of a cold snap: the weekday and trend model ran off to
    3 billion events a week on the events page; a weekday without events drops to a level."""
    idx = pd.date_range("2026-01-01", periods=21, freq="D")
    y = np.zeros(21)
    y[-3:] = [2, 6, 9]
    r = pt.forecast(pd.DataFrame({"道路结冰": y}, index=idx), min_total=14).set_index("series").loc["道路结冰"]
    assert abs(r["tomorrow"] - 17 / 21) < 1e-6 and abs(r["week"] - 7 * 17 / 21) < 1e-6
    assert r["tomorrow_hi"] <= 3 * 9 and r["week_hi"] <= 7 * 3 * 9
    # a steady series keeps its weekdays and trend (the weekly test above), and a source closed at
    # weekends (no Saturday or Sunday to estimate) keeps its weekdays
    d = weekly_series()
    weekends = [t for t in d.index if t.day_of_week >= 5]
    shut = d.copy()
    shut.loc[weekends] = 0
    f = pt.forecast(shut, closed=weekends).set_index("series")
    monday = d.index[-1] + pd.Timedelta(days=(7 - d.index[-1].day_of_week) % 7 or 7)
    mu, _ = pt.predict(shut["暴露垃圾"], 7, closed=weekends + [t for t in pd.date_range(d.index[-1], periods=8)
                                                               if t.day_of_week >= 5])
    assert mu[monday] > 40 and f.loc["暴露垃圾", "week"] > 5 * 40
    # … and one that takes no reports at weekends without saying so (zeros, not closures)
    mu, _ = pt.predict(shut["暴露垃圾"], 7)
    assert mu[monday] > 40 and all(mu[t] < 1 for t in mu.index if t.day_of_week >= 5)


def test_backtest_beats_seasonal_naive_on_a_weekly_series():
    bt = pt.backtest(weekly_series(), origins=28).set_index("series")
    for s in ("暴露垃圾", "违章停车"):
        assert bt.loc[s, "days"] == 28
        assert bt.loc[s, "mape_model"] < bt.loc[s, "mape_seasonal_naive"]
        assert 0.75 <= bt.loc[s, "coverage"] <= 1.0


def test_grid_hotspots_against_the_city_rate_per_resident():
    """Two grids with equal counts: the one with a tenth of the residents is the hotspot."""
    grids = pd.DataFrame({"grid_id": ["G1", "G2", "G3", "G4"], "district": "荷塘区", "street": "月塘街道",
                          "lat": [27.80, 27.81, 27.82, 27.83], "lon": [113.10, 113.10, 113.10, 113.10],
                          "population": [5000, 500, 5000, 5000]})
    rng = np.random.default_rng(6)
    parts = []
    for gid, lat, n in (("G1", 27.80, 60), ("G2", 27.81, 60), ("G3", 27.82, 55), ("G4", 27.83, 65)):
        parts.append(pd.DataFrame({"event_id": [f"{gid}-{i}" for i in range(n)], "lat": lat + rng.normal(0, 0.0005, n),
                                   "lon": 113.10 + rng.normal(0, 0.0005, n), "event_class": "暴露垃圾"}))
    ev = pd.concat(parts, ignore_index=True)  # no grid_id: each event goes to the nearest grid centre
    hs = pt.grid_hotspots(ev, grids).set_index("grid_id")
    assert hs.loc[["G1", "G2", "G3", "G4"], "count"].tolist() == [60, 60, 55, 65]
    assert hs["significant"].tolist().count(True) == 1 and hs.loc["G2", "significant"]
    assert hs.loc["G2", "per_10k"] == 1200 and hs.loc["G2", "ratio"] > 5


# ------------------------------------------------------------------ the precision there is (issue 12)

def test_points_make_the_cells_and_address_only_events_count_by_street():
    """30 events with coordinates in one street, 90 hotline work orders placed by address only
    to another street, 12 only to a district, 5 to nothing: the 500 m cells count the 30 points
    and nothing else; the streets count points and addresses alike, and find the address-only
    street as the hotspot it is; the note says what the map leaves out."""
    rng = np.random.default_rng(8)
    pts = pd.DataFrame({"event_id": [f"P{i}" for i in range(30)], "lat": 27.86 + rng.normal(0, 0.003, 30),
                        "lon": 113.17 + rng.normal(0, 0.003, 30), "district": "荷塘区", "street": "月塘街道",
                        "loc_precision": "point", "event_class": "暴露垃圾"})
    by_addr = pd.DataFrame({"event_id": [f"A{i}" for i in range(90)], "lat": np.nan, "lon": np.nan,
                            "district": "荷塘区", "street": "桂花街道", "loc_precision": "street",
                            "event_class": "暴露垃圾"})
    dist = pd.DataFrame({"event_id": [f"D{i}" for i in range(12)], "lat": np.nan, "lon": np.nan,
                         "district": "芦淞区", "street": None, "loc_precision": "district", "event_class": "路灯不亮"})
    city = pd.DataFrame({"event_id": [f"C{i}" for i in range(5)], "lat": np.nan, "lon": np.nan, "district": None,
                         "street": None, "loc_precision": "city", "event_class": "施工噪音"})
    ev = pd.concat([pts, by_addr, dist, city], ignore_index=True)
    hot = pt.hotspots(ev, cell_m=500)
    assert hot["count"].sum() == 30                                  # only points are in cells
    assert pt.placement(ev).to_dict() == {"point": 30, "street": 90, "district": 12, "city": 5}
    note = pt.placement_note(ev)
    assert "30 条有坐标" in note and "90 条只定位到街道" in note and "12 条只定位到区县" in note and "5 条无法定位" in note
    streets = pt.area_counts(ev, "street")
    assert streets["count"].sum() == len(ev)                         # nothing dropped
    s = streets.set_index("street", drop=False)
    assert s.loc["桂花街道", ["count", "at_point", "at_street"]].tolist() == [90, 0, 90]
    assert s.loc["月塘街道", ["count", "at_point"]].tolist() == [30, 30]
    assert streets[streets["street"].isna()]["count"].sum() == 17     # 12 district + 5 city: not guessed
    districts = pt.area_counts(ev, "district").set_index("district")
    assert districts.loc["荷塘区", "count"] == 120 and districts.loc["芦淞区", "at_district"] == 12
    grids = pd.DataFrame({"grid_id": ["G1", "G2", "G3"], "district": ["荷塘区", "荷塘区", "芦淞区"],
                          "street": ["月塘街道", "桂花街道", "建设街道"], "lat": [27.86, 27.87, 27.80],
                          "lon": [113.17, 113.18, 113.16], "population": [20000, 20000, 20000]})
    sh = pt.street_hotspots(ev, grids).set_index("street")
    assert sh.loc["桂花街道", "significant"] and sh.loc["桂花街道", "by_address"] == 90
    assert not sh.loc["月塘街道", "significant"] and sh.loc["建设街道", "count"] == 0
    assert sh["count"].sum() == 120                                   # district- and city-level ones not counted
    # rows written before loc_precision existed: inferred from their columns
    assert pt.precision(ev.drop(columns="loc_precision")).value_counts().to_dict() == \
        {"street": 90, "point": 30, "district": 12, "city": 5}


# ------------------------------------------------------------------ forecast: days, closed days (issue 12)

def test_forecast_refuses_a_series_finer_than_a_day():
    hourly = pd.DataFrame({"全部": np.arange(24 * 30) % 7}, index=pd.date_range("2026-01-01", periods=24 * 30, freq="h"))
    for call in (pt.forecast, pt.backtest):
        with pytest.raises(pt.ForecastError, match="间隔为 1 小时.*细于一天.*daily_counts"):
            call(hourly)
    # the same events counted per day are fine
    ev = pd.DataFrame({"ts": hourly.index.repeat(hourly["全部"]), "event_class": "暴露垃圾"})
    assert len(pt.forecast(pt.daily_counts(ev, tz="UTC"))) == 1


def test_closed_days_are_closed_not_zero_demand():
    """A source closed on the National Day holiday (official holidays, chinese-calendar) and one
    extra closure: the fit leaves those zeros out, so the days after are forecast at the usual
    level (with the zeros taken as demand the level drops), a closed tomorrow is forecast as closed,
    and the backtest does not score closed days."""
    rng = np.random.default_rng(11)
    days = pd.date_range("2025-08-11", "2025-10-08", freq="D")
    y = pd.Series(rng.poisson(40, len(days)).astype(float), index=days)
    closed = pt.closed_days(days[0], days[-1] + pd.Timedelta(days=7), extra=["2025-09-15"])
    assert pd.Timestamp("2025-10-01") in closed and pd.Timestamp("2025-10-08") in closed
    assert pd.Timestamp("2025-09-15") in closed and pd.Timestamp("2025-09-13") not in closed  # a weekend is not a closure
    y[[d in closed for d in days]] = 0.0
    daily = y.iloc[:-1].to_frame("全部")                               # up to 7 October; the 8th is closed
    f_closed = pt.forecast(daily, closed=closed).iloc[0]
    f_naive = pt.forecast(daily).iloc[0]
    assert f_closed["tomorrow_closed"] and f_closed["tomorrow"] == 0 and f_closed["tomorrow_hi"] == 0
    assert f_closed["open_days"] == 6
    daily9 = y.to_frame("全部")                                        # up to the 8th: the 9th is open
    mu_closed, _ = pt.predict(daily9["全部"], 1, closed=closed)
    mu_naive, _ = pt.predict(daily9["全部"], 1)
    assert abs(mu_closed.iloc[0] - 40) < 0.2 * 40                      # the usual level (trend noise aside)
    assert mu_naive.iloc[0] < 0.9 * mu_closed.iloc[0]                  # zeros as demand drag it down
    assert not f_naive["tomorrow_closed"]
    bt = pt.backtest(daily9, origins=28, closed=closed).iloc[0]
    assert bt["days"] == 28 - 9                                        # 15 September, 1–8 October not scored
    bt_naive = pt.backtest(daily9, origins=28).iloc[0]
    assert bt_naive["days"] == 28 and bt_naive["coverage"] < bt["coverage"]
