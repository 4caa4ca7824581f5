"""What the 农贸市场快检 page and the weekly bulletin show, as data (workbench/ui only renders).

The first visit must not analyse a year of rows (issue 15: < 3 s). So:
- the bulletin figures (city, periods, per market, category and origin, the city's daily
  series, the funnel) are summed in the hub from market_daily (workbench.market.daily, kept
  on write): live, and a few hundred rows at most whatever the hub's size (issue 14);
- the surveillance, integrity and follow-up results come from the last analysis
  (`workbench market analyse`, analysis.run, which the sample city and the schedule run): a
  snapshot of it without its rows is kept in the data folder (`save_snapshot`); the page reads it
  and says up to when it holds. No snapshot yet: the page analyses once and keeps it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from workbench.market import daily as D
from workbench.market import figures as fg
from workbench.market import surveillance as sv
from workbench.store import kept

RECENT_DAYS = 30  # the page's per-market, category and origin figures: the last 30 days with data
SNAPSHOT_VERSION = 1


# ------------------------------------------------------------------ the analysis snapshot

KEPT = "market_analysis"


def slim(an):
    """The analysis without its rows (tests, prepared records): what the page needs of it."""
    return replace(an, tests=an.tests.iloc[:0], prep=an.prep.iloc[:0])


def save_snapshot(an, eng=None) -> Path:
    return kept.save(KEPT, slim(an), SNAPSHOT_VERSION, eng)


def load_snapshot(eng=None):
    """(the slim analysis, when it was saved) or (None, None)."""
    return kept.load(KEPT, SNAPSHOT_VERSION, eng)


# ------------------------------------------------------------------ the figures (SQL sums)

@dataclass
class Figures:
    last_day: pd.Timestamp | None   # the last Beijing day with tests
    first_recent: pd.Timestamp | None
    city: pd.DataFrame              # the year to date, one row
    periods: pd.DataFrame           # 本期 (7 days) / 本月累计 / 本年累计, one row each
    by_market: pd.DataFrame         # last RECENT_DAYS days
    by_category: pd.DataFrame
    by_origin: pd.DataFrame
    city_n: pd.Series               # items per day (last 120 days): the p chart
    city_x: pd.Series
    funnel: pd.DataFrame            # markets against the city (last RECENT_DAYS days)
    rules: sv.Rules

    @property
    def empty(self) -> bool:
        return self.last_day is None

    @property
    def recent_text(self) -> str:
        return "" if self.empty else f"{self.first_recent:%Y-%m-%d} 至 {self.last_day:%Y-%m-%d}"


def page_figures(eng=None, district: str | None = None, rules: sv.Rules = sv.Rules(), chart_days: int = 120) -> Figures:
    last = D.last_day(eng, district)
    if last is None:
        return _empty(rules)
    first = last - pd.Timedelta(days=RECENT_DAYS - 1)
    q = dict(eng=eng, district=district)
    parts = []
    for p in fg.periods(last - pd.Timedelta(days=6), last):
        parts.append(D.figures(by=None, first_day=p.first_day, last_day=p.last_day, **q)
                     .assign(period=f"{p.name}（{p.text}）"))
    periods = pd.concat(parts, ignore_index=True).drop(columns="scope")
    city = periods.iloc[[-1]].drop(columns="period").assign(scope="全市")  # 本年累计 (no query over every year held)
    by_market = D.figures(by="market", first_day=first, last_day=last, **q)
    by_category = D.figures(by="category", first_day=first, last_day=last, **q)
    by_origin = D.figures(by="origin", first_day=first, last_day=last, **q)
    daily = D.sums(eng, "day", last - pd.Timedelta(days=chart_days - 1), last, district)
    idx = pd.date_range(last - pd.Timedelta(days=chart_days - 1), last, freq="D")
    n = daily.set_index("day")["items"].reindex(idx, fill_value=0)
    x = daily.set_index("day")["positive_items"].reindex(idx, fill_value=0)
    n, x = n[n.cumsum() > 0], x[n.cumsum() > 0]  # from the first day with tests
    items = by_market["items"].sum()
    p_city = float(by_market["positive_items"].sum() / items) if items else 0.0
    fun = sv.funnel(by_market, p_city, rules.funnel_levels) if len(by_market) else by_market
    return Figures(last, first, city, periods, by_market, by_category, by_origin, n, x, fun, rules)


def figures_from_prep(prep: pd.DataFrame, rules: sv.Rules = sv.Rules(), chart_days: int = 120) -> Figures:
    """The same Figures from prepared rows (figures.prepare): for an analysis held in memory
    (notebooks, tests) and to check the SQL path against."""
    if prep is None or prep.empty:
        return _empty(rules)
    last = prep["day"].max()
    first = last - pd.Timedelta(days=RECENT_DAYS - 1)
    recent = fg.in_days(prep, first, last)
    periods = fg.bulletin_periods(prep, last - pd.Timedelta(days=6), last)
    periods["period"] = [f"{p.name}（{p.text}）" for p in fg.periods(last - pd.Timedelta(days=6), last)]
    by_market = fg.bulletin(recent, "market")
    g = fg.in_days(prep, last - pd.Timedelta(days=chart_days - 1), last).groupby("day")["positive"].agg(["size", "sum"])
    idx = pd.date_range(g.index.min(), last, freq="D")
    n, x = g["size"].reindex(idx, fill_value=0), g["sum"].reindex(idx, fill_value=0)
    items = by_market["items"].sum()
    p_city = float(by_market["positive_items"].sum() / items) if items else 0.0
    fun = sv.funnel(by_market, p_city, rules.funnel_levels) if len(by_market) else by_market
    return Figures(last, first, fg.bulletin(prep), periods.drop(columns="scope"), by_market,
                   fg.bulletin(recent, "category"), fg.bulletin(recent, "origin"), n, x, fun, rules)


def _empty(rules: sv.Rules) -> Figures:
    empty = fg._rates(pd.DataFrame({c: pd.Series(dtype="int64") for c in D.COUNTS}))
    e = pd.Series(dtype="int64")
    return Figures(None, None, empty, empty, empty, empty, empty, e, e, pd.DataFrame(), rules)
