"""The events page's patterns over its window (hotspots, areas, deadlines kept, resolution time,
volumes, hours of the week, forecast, repeat places), computed once and kept between visits.

The live parts of the page (the board, the open cases and their counts) are read on every visit
and every poll. The patterns need the window's rows (90 days: a year's sample city 20 k rows,
a city of 10 M events 821 k) and seconds of pandas and statsmodels, which a first visit must not
wait for (issue 15: < 3 s; issue 14: the hub at city scale). So `analyse` computes them,
`workbench events analyse` (run by `make demo` and the schedule) keeps the city-wide result
(workbench.store.kept), and the page reads what is kept:
- kept and current (no event reported since): shown as is;
- kept but older (events arrived since): shown, said up to when it holds, and analysed again
  after the visit's page is drawn, for the next visitor;
- none kept: analysed at the visit and kept.
A district user's patterns are their district's: analysed at the visit, never kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from workbench.events import board as bd
from workbench.events import patterns as pt
from workbench.events import sla

KEPT = "events_patterns"
VERSION = 1
DAYS = 90          # the page's window
MAX_AGE = pd.Timedelta(hours=1)   # kept patterns older than this are analysed again (after the visit)


@dataclass
class Patterns:
    now: pd.Timestamp            # deadlines judged at (naive UTC)
    latest: pd.Timestamp | None  # the newest report in the window: what "current" is checked against
    days: int
    events: int                  # events in the window
    first: pd.Timestamp | None   # the oldest of them
    hot: pd.DataFrame            # patterns.hotspots (500 m cells), the significant ones named (place, street, grid_id)
    grid_hot: pd.DataFrame       # patterns.grid_hotspots
    street_hot: pd.DataFrame     # patterns.street_hotspots
    placement: str               # patterns.placement_note
    on_time: pd.DataFrame        # sla.on_time by department
    km: pd.DataFrame             # sla.resolution_km over all cases (one row)
    km_by: pd.DataFrame          # sla.resolution_km by department
    km_curves: dict              # sla.km_curves by department (top 6)
    volumes: pd.Series           # events per class
    hour_weekday: pd.DataFrame   # patterns.hour_weekday
    forecast: pd.DataFrame       # patterns.forecast of the daily counts (empty: too little history)
    repeats: pd.DataFrame        # patterns.repeat_locations

    @property
    def empty(self) -> bool:
        return not self.events

    @property
    def span_days(self) -> int:
        return int((self.now - self.first).days) + 1 if self.first is not None else 0


def analyse(snap: bd.Snapshot, grids: pd.DataFrame, days: int = DAYS) -> Patterns:
    """The patterns of a board.Snapshot's window of `days` days (`grids`: the hub's grids, of the
    district in view)."""
    ev, st, now = snap.events, snap.states, snap.now
    tz = snap.rules.timezone
    lat0 = sum(snap.rules.lat) / 2   # the city's cells, whatever part of it is in view
    hot = pt.hotspots(ev, cell_m=500, lat0=lat0) if len(ev) else pt.hotspots(ev)
    if len(hot) and hot["significant"].any():
        named = pt.place_names(hot[hot["significant"]], grids)
        hot = hot.assign(place=named["place"], street=named["street"], grid_id=named["grid_id"])
    else:
        hot = hot.assign(place=None, street=None, grid_id=None)
    if len(ev):
        fc = pt.forecast(pt.daily_counts(ev, tz=tz, total="全部"))
        km_all, km_by = sla.resolution_km(st, now), sla.resolution_km(st, now, by="department")
        curves, on_time = sla.km_curves(st, now, by="department", top=6), sla.on_time(st)
        repeats = pt.repeat_locations(ev)
    else:
        fc = km_all = km_by = on_time = repeats = pd.DataFrame()
        curves = {}
    return Patterns(now=pd.Timestamp(now), latest=ev["ts"].max() if len(ev) else None, days=days,
                    events=len(ev), first=ev["ts"].min() if len(ev) else None, hot=hot,
                    grid_hot=pt.grid_hotspots(ev, grids), street_hot=pt.street_hotspots(ev, grids),
                    placement=pt.placement_note(ev), on_time=on_time, km=km_all, km_by=km_by, km_curves=curves,
                    volumes=pt.volumes(ev, "event_class"), hour_weekday=pt.hour_weekday(ev, tz), forecast=fc,
                    repeats=repeats)


def run(days: int = DAYS, eng=None, city: str | None = None) -> Patterns:
    """The city-wide patterns of the last `days` days, analysed now and kept (the page reads them)."""
    from workbench.events import dispatch as dp
    from workbench.store import hub

    snap = bd.load(dp.load_rules(city), days=days, eng=eng)
    pat = analyse(snap, hub.read("grids", eng=eng), days)
    keep(pat, eng)
    return pat


def keep(pat: Patterns, eng=None) -> None:
    from workbench.store import kept

    kept.save(KEPT, pat, VERSION, eng)


def load_kept(eng=None) -> tuple[Patterns | None, pd.Timestamp | None]:
    """(the kept city-wide patterns, when they were analysed) or (None, None)."""
    from workbench.store import kept

    return kept.load(KEPT, VERSION, eng)


def current(pat: Patterns, latest, analysed=None, now=None) -> bool:
    """Whether kept patterns are current: nothing reported since (the hub's newest report
    `latest`), and analysed within MAX_AGE before `now` (cases close without new reports)."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    if analysed is not None and now - pd.Timestamp(analysed) > MAX_AGE:
        return False
    if latest is None or pd.isna(latest):
        return pat.latest is None
    return pat.latest is not None and pd.Timestamp(pat.latest) >= pd.Timestamp(latest)


__all__ = ["KEPT", "VERSION", "DAYS", "MAX_AGE", "Patterns", "analyse", "run", "keep", "load_kept", "current"]
