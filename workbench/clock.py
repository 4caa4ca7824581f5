"""Time for the whole workbench: UTC in the store, Asia/Shanghai on screens.

- `now()`: the current time as naive UTC (how the hub stores `ts` columns).
- `to_local` / `to_utc`: naive UTC ↔ naive local time (Asia/Shanghai), Series or scalars.
- `local_day(ts)`: the local calendar day of UTC times; `local_day_sql(col, dialect)` the same
  inside a query (SQLite and PostgreSQL).
- `day_bounds(start, end)`: local days [start, end] as a half-open UTC interval.
- `is_workday(day)` / `is_holiday(day)`: China's public holidays and 调休 make-up working days
  from PyPI `chinese-calendar` (the State Council's notices, 2004 … the newest year it ships);
  a year past its data falls back to Monday–Friday and `calendar_covers(day)` says so.
"""
from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pandas as pd

TZ = "Asia/Shanghai"


def now() -> pd.Timestamp:
    """Now, as naive UTC to the microsecond (the store's convention)."""
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")


def _as_ts(x):
    return x if isinstance(x, (pd.Series, pd.DatetimeIndex)) else pd.Timestamp(x)


def to_local(ts, tz: str = TZ):
    """Naive UTC → naive local time (Series, DatetimeIndex or scalar); aware input is converted."""
    x = _as_ts(ts)
    if isinstance(x, pd.Series):
        x = pd.to_datetime(x)
        return (x.dt.tz_localize("UTC") if x.dt.tz is None else x).dt.tz_convert(tz).dt.tz_localize(None)
    if pd.isna(x):
        return pd.NaT
    return (x.tz_localize("UTC") if x.tzinfo is None else x).tz_convert(tz).tz_localize(None)


def to_utc(ts, tz: str = TZ):
    """Naive local time (Asia/Shanghai unless `tz`) → naive UTC; aware input is converted.
    A local time that does not exist or is ambiguous (a DST change elsewhere) raises."""
    x = _as_ts(ts)
    if isinstance(x, pd.Series):
        x = pd.to_datetime(x)
        loc = x.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise") if x.dt.tz is None else x
        return loc.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.isna(x):
        return pd.NaT
    loc = x.tz_localize(tz, ambiguous="raise", nonexistent="raise") if x.tzinfo is None else x
    return loc.tz_convert("UTC").tz_localize(None)


def local_day(ts, tz: str = TZ):
    """The local calendar day (as a midnight Timestamp) of naive UTC times."""
    loc = to_local(ts, tz)
    return loc.dt.normalize() if isinstance(loc, pd.Series) else (loc.normalize() if not pd.isna(loc) else pd.NaT)


def today(tz: str = TZ) -> dt.date:
    """Today's local date."""
    return pd.Timestamp.now(tz=tz).date()


def day_bounds(start, end=None, tz: str = TZ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Local days `start` … `end` (inclusive; default one day) as [since, until) in naive UTC."""
    s = pd.Timestamp(start).normalize()
    e = pd.Timestamp(end if end is not None else start).normalize() + pd.Timedelta(days=1)
    return to_utc(s, tz), to_utc(e, tz)


def local_day_sql(col, dialect: str):
    """SQL for the local (UTC+8) calendar day of a naive-UTC column, for `dialect`."""
    import sqlalchemy as sa

    if dialect == "postgresql":
        return sa.func.date(col + sa.literal_column("interval '8 hours'"))
    return sa.func.date(col, "+8 hours")  # SQLite


@lru_cache(maxsize=1)
def _calendar_years() -> tuple[int, int]:
    import chinese_calendar as cc

    years = sorted({d.year for d in cc.holidays})
    return years[0], years[-1]


def calendar_covers(day) -> bool:
    """Whether China's official holiday calendar is known for `day`'s year."""
    lo, hi = _calendar_years()
    return lo <= pd.Timestamp(day).year <= hi


def is_workday(day) -> bool:
    """An official working day: Mon–Fri outside public holidays, plus 调休 make-up days.
    Past the years `chinese-calendar` knows: Monday to Friday."""
    d = pd.Timestamp(day).date()
    if calendar_covers(d):
        import chinese_calendar as cc

        return bool(cc.is_workday(d))
    return d.weekday() < 5


def is_holiday(day) -> bool:
    """A public holiday or weekend that is not a make-up working day."""
    return not is_workday(day)


def holidays_between(start, end) -> list[dt.date]:
    """The official public holidays (not plain weekends) between two dates, inclusive."""
    import chinese_calendar as cc

    s, e = pd.Timestamp(start).date(), pd.Timestamp(end).date()
    return sorted(d for d in cc.holidays if s <= d <= e)


def makeup_workdays_between(start, end) -> list[dt.date]:
    """The 调休 weekend days that are working days, between two dates, inclusive."""
    import chinese_calendar as cc

    s, e = pd.Timestamp(start).date(), pd.Timestamp(end).date()
    return sorted(d for d in cc.workdays if s <= d <= e)
