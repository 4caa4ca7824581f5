"""Cold-weather warnings over ten years of hourly observations at 50 stations (~4.4M rows).

Synthetic, numpy-generated weather (seasonal and daily cycles, persistent anomalies,
cold fronts, wet spells) runs through the whole engine except the database: data
quality (`check_weather`), the hourly signal grid and the episodes. Prints the time of
each stage, rows/s and the process's peak resident memory.

    .venv/bin/python benchmarks/warnings_bench.py [--years 10] [--stations 50]
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np
import pandas as pd

from workbench.synth.weather import climate_mean


def synthetic_weather(years: int, stations: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2015-01-01", periods=years * 8760, freq="h")
    n = len(ts)
    hour = ts.hour.to_numpy()
    doy = ts.day_of_year.to_numpy()
    season = climate_mean(doy)
    diurnal = -4 * np.cos(2 * np.pi * (hour - 3) / 24)
    days = n // 24
    anom = np.zeros(days)  # city-wide daily anomaly with fronts: sudden drops of 8–16 °C
    shock = rng.normal(0, 1.9, days) - (rng.random(days) < 0.01) * rng.uniform(6, 12, days)
    for i in range(1, days):
        anom[i] = 0.75 * anom[i - 1] + shock[i]
    anom_h = np.repeat(anom, 24)
    wet = np.repeat(rng.random(days) < 0.35, 24)
    parts = []
    for s in range(stations):
        temp = season + diurnal + anom_h + rng.normal(0, 0.4, n) + rng.normal(0, 0.5)
        wind = rng.gamma(3, 1.0, n) * (1 + 0.8 * (np.diff(np.r_[anom_h[0], anom_h]) < -0.2))
        precip = np.where(wet & (rng.random(n) < 0.4), rng.gamma(0.8, 1.5, n), 0.0)
        parts.append(pd.DataFrame({
            "station_id": f"ST{s:03d}", "ts": ts, "issued_at": ts, "kind": "observed",
            "district": f"区{s % 10}", "lat": 27.8, "lon": 113.1,
            "temperature": temp.round(1), "precipitation": precip.round(1), "wind_speed": wind.round(1),
            "road_temperature": (temp + np.where((hour >= 9) & (hour <= 16), 3, -1)).round(1),
            "humidity": np.clip(80 - 10 * np.sin(2 * np.pi * hour / 24) + rng.normal(0, 5, n), 20, 100).round(),
        }))
    return pd.concat(parts, ignore_index=True)


def synthetic_daily(years: int, stations: int, seed: int = 2) -> pd.DataFrame:
    """Daily records (resolution daily: minimum, maximum, precipitation; no snowfall column, so a
    cold day's precipitation counts as snow), each date at the city's local midnight in UTC."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2015-01-01", periods=years * 365, freq="D")
    ts = days - pd.Timedelta(hours=8)
    season = climate_mean(days.day_of_year.to_numpy())
    anom = np.zeros(len(days))
    shock = rng.normal(0, 1.9, len(days)) - (rng.random(len(days)) < 0.01) * rng.uniform(6, 12, len(days))
    for i in range(1, len(days)):
        anom[i] = 0.75 * anom[i - 1] + shock[i]
    parts = []
    for s in range(stations):
        tmin = season - 4 + anom + rng.normal(0, 0.6, len(days))
        parts.append(pd.DataFrame({
            "station_id": f"D{s:03d}", "ts": ts, "issued_at": ts, "kind": "observed", "resolution": "daily",
            "district": f"区{s % 10}", "temperature_min": tmin.round(1),
            "temperature_max": (tmin + rng.uniform(4, 10, len(days))).round(1),
            "precipitation": np.where(rng.random(len(days)) < 0.35, rng.gamma(0.8, 8, len(days)), 0.0).round(1)}))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--stations", type=int, default=50)
    args = ap.parse_args()

    from workbench.safety import warnings as A
    from workbench.safety import weather as W

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
          f"pandas {pd.__version__}, numpy {np.__version__}")
    t = time.perf_counter()
    wx = synthetic_weather(args.years, args.stations)
    gen = time.perf_counter() - t
    print(f"generated {len(wx):,} hourly rows ({args.stations} stations × {args.years} years) in {gen:.1f} s")
    times = {}
    t = time.perf_counter()
    rep = W.check_weather(wx)
    times["data quality"] = time.perf_counter() - t
    del wx
    t = time.perf_counter()
    grid = A.signal_grid(rep.clean)
    times["signals (hourly grid)"] = time.perf_counter() - t
    t = time.perf_counter()
    out = A.episodes(grid)
    times["episodes + history"] = time.perf_counter() - t
    total = sum(times.values())
    n = len(rep.clean)
    for k, v in times.items():
        print(f"  {k:24s} {v:7.1f} s")
    print(f"  {'total':24s} {total:7.1f} s   {n / total:,.0f} rows/s")
    print(f"findings {len(rep.findings)}, excluded values {len(rep.excluded)}, "
          f"episodes {len(out.alerts)} ({out.alerts.category.value_counts().to_dict()}), "
          f"history rows {len(out.history)}")
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")

    del rep, grid, out
    daily = synthetic_daily(args.years, args.stations)
    t = time.perf_counter()
    rep = W.check_weather(daily)
    out = A.warnings_from(rep.clean, daily=rep.daily)
    took = time.perf_counter() - t
    print(f"daily: {len(daily):,} records ({args.stations} stations × {args.years} years), DQ + signals + "
          f"episodes {took:.1f} s ({len(daily) / took:,.0f} records/s), episodes "
          f"{out.alerts.category.value_counts().to_dict()}")


if __name__ == "__main__":
    main()
