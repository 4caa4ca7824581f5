"""Patterns: hotspots tested against the city's rate, repeat locations, volumes by hour and
weekday, and the forecast with intervals beating seasonal naive on a weekly series."""
from __future__ import annotations

import numpy as np
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
