"""The city's calendar: the date range, public holidays, school terms, working days.

Dates are local (Asia/Shanghai). Lunar holidays come from a small table of known
Spring Festival dates; outside it a rough date is used, which only shifts the school
winter holiday by a few days.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.config import TZ

# 春节 (Spring Festival, 正月初一), known dates.
SPRING_FESTIVAL = {
    2015: "2015-02-19", 2016: "2016-02-08", 2017: "2017-01-28", 2018: "2018-02-16",
    2019: "2019-02-05", 2020: "2020-01-25", 2021: "2021-02-12", 2022: "2022-02-01",
    2023: "2023-01-22", 2024: "2024-02-10", 2025: "2025-01-29", 2026: "2026-02-17",
    2027: "2027-02-06", 2028: "2028-01-26", 2029: "2029-02-13", 2030: "2030-02-03",
    2031: "2031-01-23", 2032: "2032-02-11", 2033: "2033-01-31", 2034: "2034-02-19",
    2035: "2035-02-08",
}
# 端午节 and 中秋节 where known (a day each; the statutory break around them is short).
DRAGON_BOAT = ["2020-06-25", "2021-06-14", "2022-06-03", "2023-06-22", "2024-06-10",
               "2025-05-31", "2026-06-19"]
MID_AUTUMN = ["2020-10-01", "2021-09-21", "2022-09-10", "2023-09-29", "2024-09-17",
              "2025-10-06", "2026-09-25"]


def yesterday_local() -> dt.date:
    """Yesterday in Asia/Shanghai (the default last day of a synthetic city)."""
    return (pd.Timestamp.now(tz=TZ) - pd.Timedelta(days=1)).date()


def spring_festival(year: int) -> dt.date:
    return dt.date.fromisoformat(SPRING_FESTIVAL.get(year, f"{year}-02-05"))


@dataclass
class CityCalendar:
    """Per-day facts for the range [start, end] (inclusive, local dates)."""

    start: dt.date
    end: dt.date

    def __post_init__(self):
        self.dates = pd.date_range(self.start, self.end, freq="D")  # naive local midnight
        self.n = len(self.dates)
        d = self.dates
        self.dow = d.day_of_week.to_numpy()  # Monday=0
        self.doy = d.day_of_year.to_numpy()
        self.month = d.month.to_numpy()
        holidays: set[dt.date] = set()
        spring: set[dt.date] = set()
        winter: set[dt.date] = set()
        for year in range(self.start.year - 1, self.end.year + 2):
            sf = spring_festival(year)
            for k in range(-1, 7):  # 除夕 to 初六
                spring.add(sf + dt.timedelta(days=k))
            for k in range(-14, 16):  # school winter holiday around the festival
                winter.add(sf + dt.timedelta(days=k))
            holidays.add(dt.date(year, 1, 1))
            holidays.update(dt.date(year, 4, k) for k in (4, 5, 6))
            holidays.update(dt.date(year, 5, k) for k in range(1, 6))
            holidays.update(dt.date(year, 10, k) for k in range(1, 8))
        for s in DRAGON_BOAT + MID_AUTUMN:
            holidays.add(dt.date.fromisoformat(s))
        holidays |= spring
        days = [x.date() for x in d]
        self.holiday = np.array([x in holidays for x in days])
        self.spring_festival = np.array([x in spring for x in days])
        self.summer = np.array([(x.month == 7 and x.day >= 4) or x.month == 8 for x in days])
        self.winter = np.array([x in winter for x in days])
        self.weekend = self.dow >= 5
        self.workday = ~self.weekend & ~self.holiday
        # school days: working days outside the winter and summer holidays
        self.school_day = self.workday & ~self.summer & ~self.winter
        # a canteen may run on holiday working days (summer classes, staff) — lightly
        self.holiday_term = self.workday & (self.summer | self.winter)

    @property
    def now(self) -> pd.Timestamp:
        """The moment of the export: midnight after the last day (local, naive)."""
        return pd.Timestamp(self.end) + pd.Timedelta(days=1)

    def index_of(self, day) -> int:
        return int((pd.Timestamp(day) - pd.Timestamp(self.start)).days)


def add_workdays(ts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """`ts` (datetime64[m]) moved forward by `n` working days (Mon–Fri), same time of day."""
    days = ts.astype("datetime64[D]")
    tod = ts - days.astype("datetime64[m]")
    moved = np.busday_offset(days, n.astype(np.int64), roll="forward")
    return moved.astype("datetime64[m]") + tod
