"""Where and when problems gather: volumes, hotspots with a significance test, repeat
locations, and a forecast of tomorrow's and next week's volume per class (backtested).

Pure functions over the hub's city_events rows (naive UTC; shown in the city's time zone).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench import clock

WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


def local_times(ts: pd.Series, tz: str = clock.TZ) -> pd.Series:
    """Naive UTC → naive local time (workbench.clock)."""
    return clock.to_local(pd.to_datetime(ts), tz)


def volumes(events: pd.DataFrame, by: str) -> pd.Series:
    """Event counts per value of `by` (class, district, …), largest first."""
    if events.empty or by not in events:
        return pd.Series(dtype=int)
    return events[by].fillna("未知").value_counts()


def hour_weekday(events: pd.DataFrame, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Counts by local weekday (rows 周一…周日) and hour (columns 0…23)."""
    out = pd.DataFrame(0, index=list(WEEKDAYS), columns=range(24))
    if events.empty:
        return out
    t = local_times(events["ts"], tz)
    m = pd.crosstab(t.dt.day_of_week, t.dt.hour)
    for d in m.index:
        for h in m.columns:
            out.iloc[int(d), int(h)] = int(m.loc[d, h])
    return out


# ------------------------------------------------------------------ hotspots

def _cells(lat: pd.Series, lon: pd.Series, cell_m: float, lat0: float):
    dy = cell_m / 111_320
    dx = dy / max(0.05, math.cos(math.radians(lat0)))
    return np.floor(lat / dy).astype(np.int64), np.floor(lon / dx).astype(np.int64), dy, dx


def hotspots(events: pd.DataFrame, cell_m: float = 500, alpha: float = 0.05, min_count: int = 5) -> pd.DataFrame:
    """Grid cells (`cell_m` square) whose count is significantly above the city's rate.

    The city's rate is the mean count per cell over the cells where anything was reported
    (the inhabited area); each cell's count is tested against it with a one-sided exact
    Poisson test, and the p-values are corrected for testing many cells at once
    (Benjamini–Hochberg false discovery rate, statsmodels). `significant` cells are the
    hotspots; `ratio` is count / expected. Returns every cell, hotspots first."""
    from scipy.stats import poisson
    from statsmodels.stats.multitest import multipletests

    cols = ["cy", "cx", "lat", "lon", "count", "expected", "ratio", "p_value", "q_value", "significant",
            "top_class", "district"]
    e = events[events["lat"].notna() & events["lon"].notna()] if len(events) else events
    if len(e) == 0:
        return pd.DataFrame(columns=cols)
    lat, lon = e["lat"].astype(float), e["lon"].astype(float)
    cy, cx, dy, dx = _cells(lat, lon, cell_m, float(lat.mean()))
    e = e.assign(cy=cy.to_numpy(), cx=cx.to_numpy())
    g = e.groupby(["cy", "cx"])
    out = pd.DataFrame({"count": g.size()})
    out["top_class"] = g["event_class"].agg(lambda s: s.value_counts().index[0]) if "event_class" in e else None
    out["district"] = g["district"].agg(lambda s: s.value_counts().index[0] if s.notna().any() else None) \
        if "district" in e else None
    out = out.reset_index()
    out["lat"] = (out["cy"] + 0.5) * dy
    out["lon"] = (out["cx"] + 0.5) * dx
    expected = len(e) / len(out)
    out["expected"] = expected
    out["ratio"] = out["count"] / expected
    out["p_value"] = poisson.sf(out["count"] - 1, expected)
    out["q_value"] = multipletests(out["p_value"], method="fdr_bh")[1]
    out["significant"] = (out["q_value"] < alpha) & (out["count"] >= min_count)
    return out.sort_values(["significant", "ratio"], ascending=[False, False]).reset_index(drop=True)[cols]


def nearest_grid(events: pd.DataFrame, grids: pd.DataFrame) -> pd.Series:
    """Each event's grid (网格): its own grid_id where given, else the grid whose centre is
    nearest (a k-d tree on metres-scaled coordinates)."""
    from scipy.spatial import cKDTree

    own = events["grid_id"] if "grid_id" in events else pd.Series(None, index=events.index, dtype=object)
    g = grids[grids["lat"].notna() & grids["lon"].notna()]
    todo = own.isna() & events["lat"].notna() & events["lon"].notna()
    out = own.astype(object).copy()
    if todo.any() and len(g):
        k = math.cos(math.radians(float(g["lat"].mean())))
        tree = cKDTree(np.c_[g["lat"].to_numpy(float), g["lon"].to_numpy(float) * k])
        _, idx = tree.query(np.c_[events.loc[todo, "lat"].to_numpy(float), events.loc[todo, "lon"].to_numpy(float) * k])
        out[todo] = g["grid_id"].to_numpy()[idx]
    return out


def grid_hotspots(events: pd.DataFrame, grids: pd.DataFrame, alpha: float = 0.05, min_count: int = 5) -> pd.DataFrame:
    """Grids (网格) with significantly more events than the city's rate per resident.

    Expected events in a grid = all events × its share of the city's population (grids'
    常住人口); each grid's count is tested against it (one-sided exact Poisson), p-values
    corrected by Benjamini–Hochberg. `per_10k` is events per 10,000 residents."""
    from scipy.stats import poisson
    from statsmodels.stats.multitest import multipletests

    cols = ["grid_id", "district", "street", "lat", "lon", "population", "count", "expected", "ratio", "per_10k",
            "p_value", "q_value", "significant", "top_class"]
    g = grids[grids["population"].fillna(0) > 0] if len(grids) and "population" in grids else grids.iloc[:0]
    if events.empty or g.empty:
        return pd.DataFrame(columns=cols)
    gid = nearest_grid(events, g)
    e = events.assign(_grid=gid.to_numpy())
    e = e[e["_grid"].isin(set(g["grid_id"]))]
    cnt = e.groupby("_grid").size()
    top = e.groupby("_grid")["event_class"].agg(lambda x: x.value_counts().index[0]) if len(e) else pd.Series()
    out = g[["grid_id", "district", "street", "lat", "lon", "population"]].copy()
    out["count"] = out["grid_id"].map(cnt).fillna(0).astype(int)
    total, pop = int(out["count"].sum()), float(out["population"].sum())
    out["expected"] = total * out["population"] / pop
    out["ratio"] = out["count"] / out["expected"]
    out["per_10k"] = out["count"] / out["population"] * 10_000
    out["p_value"] = poisson.sf(out["count"] - 1, out["expected"])
    out["q_value"] = multipletests(out["p_value"], method="fdr_bh")[1]
    out["significant"] = (out["q_value"] < alpha) & (out["count"] >= min_count)
    out["top_class"] = out["grid_id"].map(top)
    return out.sort_values(["significant", "ratio"], ascending=[False, False]).reset_index(drop=True)[cols]


def repeat_locations(events: pd.DataFrame, radius_m: float = 50, min_count: int = 3, days: int = 90,
                     now=None) -> pd.DataFrame:
    """Places (`radius_m` cells) where the same class was reported `min_count` times or more
    within the last `days` days: the problem keeps coming back."""
    cols = ["event_class", "lat", "lon", "count", "first_ts", "last_ts", "district", "street", "address", "event_ids"]
    if events.empty:
        return pd.DataFrame(columns=cols)
    now = pd.to_datetime(events["ts"]).max() if now is None else pd.Timestamp(now)
    e = events[(pd.to_datetime(events["ts"]) >= now - pd.Timedelta(days=days)) & events["lat"].notna()]
    if e.empty:
        return pd.DataFrame(columns=cols)
    cy, cx, _, _ = _cells(e["lat"].astype(float), e["lon"].astype(float), radius_m, float(e["lat"].mean()))
    e = e.assign(cy=cy.to_numpy(), cx=cx.to_numpy())
    g = e.groupby(["event_class", "cy", "cx"])
    out = pd.DataFrame({
        "count": g.size(), "lat": g["lat"].mean(), "lon": g["lon"].mean(), "first_ts": g["ts"].min(),
        "last_ts": g["ts"].max(),
        "district": g["district"].first() if "district" in e else None,
        "street": g["street"].first() if "street" in e else None,
        "address": g["address"].first() if "address" in e else None,
        "event_ids": g["event_id"].agg(lambda s: "、".join(s.astype(str).head(6)) + ("…" if len(s) > 6 else "")),
    }).reset_index()
    out = out[out["count"] >= min_count].sort_values(["count", "last_ts"], ascending=[False, False])
    return out[cols].reset_index(drop=True)


# ------------------------------------------------------------------ forecast

def daily_counts(events: pd.DataFrame, by: str | None = "event_class", tz: str = "Asia/Shanghai",
                 end=None, total: str | None = None) -> pd.DataFrame:
    """Counts per local day (rows, every day present, zeros filled) and `by` (columns);
    with by=None one column 全部. `end`: last day to include (default: the last event's).
    `total`: the name of an added column with the sum over `by` (the all-classes series)."""
    if events.empty:
        return pd.DataFrame()
    day = local_times(events["ts"], tz).dt.normalize()
    key = events[by].fillna("未知") if by else pd.Series("全部", index=events.index)
    m = pd.crosstab(day, key)
    last = pd.Timestamp(end).normalize() if end is not None else m.index.max()
    idx = pd.date_range(m.index.min(), last, freq="D")
    m = m.reindex(idx, fill_value=0).rename_axis("day")
    return m.assign(**{total: m.sum(axis=1)}) if total else m


@dataclass
class Forecast:
    series: str
    tomorrow: float
    tomorrow_lo: float
    tomorrow_hi: float
    week: float
    week_lo: float
    week_hi: float
    dispersion: float


def _design(days: pd.DatetimeIndex, t0: pd.Timestamp) -> np.ndarray:
    dow = np.zeros((len(days), 6))
    d = days.day_of_week.to_numpy()
    for k in range(1, 7):
        dow[:, k - 1] = d == k
    trend = ((days - t0).days.to_numpy() / 28.0)[:, None]
    return np.hstack([np.ones((len(days), 1)), dow, trend])


def _fit(y: pd.Series, fit_days: int):
    """Poisson GLM on weekday and a linear trend over the last `fit_days` days; the
    dispersion (Pearson χ²/df) widens the intervals where counts vary more than Poisson."""
    import statsmodels.api as sm

    y = y.iloc[-fit_days:]
    t0 = y.index[-1]
    X = _design(y.index, t0)
    if y.sum() == 0:
        return None, t0, 1.0
    res = sm.GLM(y.to_numpy(float), X, family=sm.families.Poisson()).fit()
    phi = max(1.0, float(res.pearson_chi2 / max(1, res.df_resid)))
    return res, t0, phi


def _interval(mu: np.ndarray, phi: float, level: float):
    """Predictive interval of a count with mean mu and variance phi·mu (negative binomial)."""
    from scipy.stats import nbinom, poisson

    a = (1 - level) / 2
    if phi <= 1.0001:
        return poisson.ppf(a, mu), poisson.ppf(1 - a, mu)
    n = mu / (phi - 1)
    p = 1 / phi
    return nbinom.ppf(a, n, p), nbinom.ppf(1 - a, n, p)


def predict(y: pd.Series, horizon: int = 7, fit_days: int = 56) -> tuple[pd.Series, float]:
    """Expected counts for the `horizon` days after y's last day, and the dispersion."""
    res, t0, phi = _fit(y, fit_days)
    days = pd.date_range(y.index[-1] + pd.Timedelta(days=1), periods=horizon, freq="D")
    if res is None:
        return pd.Series(0.0, index=days), phi
    mu = res.predict(_design(days, t0))
    return pd.Series(mu, index=days), phi


def forecast(daily: pd.DataFrame, level: float = 0.9, fit_days: int = 56, min_total: int = 14) -> pd.DataFrame:
    """Tomorrow's and next week's (7 days) volume per column of `daily`, with `level`
    predictive intervals. Columns with fewer than `min_total` events in the fit window are
    left out (too rare to forecast usefully)."""
    rows = []
    for col in daily.columns:
        y = daily[col]
        if y.iloc[-fit_days:].sum() < min_total or len(y) < 14:
            continue
        mu, phi = predict(y, 7, fit_days)
        lo1, hi1 = _interval(np.array([mu.iloc[0]]), phi, level)
        lo7, hi7 = _interval(np.array([mu.sum()]), phi, level)
        rows.append(Forecast(str(col), float(mu.iloc[0]), float(lo1[0]), float(hi1[0]), float(mu.sum()),
                             float(lo7[0]), float(hi7[0]), phi).__dict__)
    return pd.DataFrame(rows, columns=list(Forecast.__dataclass_fields__))


def backtest(daily: pd.DataFrame, origins: int = 28, fit_days: int = 56, level: float = 0.9,
             min_mean: float = 1.0) -> pd.DataFrame:
    """Rolling-origin backtest of the next-day forecast over the last `origins` days, per
    column with a mean of at least `min_mean` a day: MAPE of the model and of the seasonal-
    naive forecast (the same weekday a week before) on the same days (days with zero events
    are left out of MAPE, which is undefined there), and the interval's coverage."""
    rows = []
    n = len(daily)
    if n < origins + 15:
        origins = max(0, n - 15)
    for col in daily.columns:
        y = daily[col].astype(float)
        if y.mean() < min_mean:
            continue
        errs_m, errs_s, cover = [], [], []
        for k in range(n - origins, n):
            hist = y.iloc[:k]
            actual = y.iloc[k]
            mu, phi = predict(hist, 1, fit_days)
            lo, hi = _interval(mu.to_numpy(), phi, level)
            naive = y.iloc[k - 7]
            cover.append(lo[0] <= actual <= hi[0])
            if actual > 0:
                errs_m.append(abs(mu.iloc[0] - actual) / actual)
                errs_s.append(abs(naive - actual) / actual)
        if errs_m:
            rows.append({"series": str(col), "days": len(cover), "mean_per_day": float(y.iloc[-origins:].mean()),
                         "mape_model": float(np.mean(errs_m)), "mape_seasonal_naive": float(np.mean(errs_s)),
                         "coverage": float(np.mean(cover))})
    return pd.DataFrame(rows, columns=["series", "days", "mean_per_day", "mape_model", "mape_seasonal_naive",
                                       "coverage"])


__all__ = ["WEEKDAYS", "local_times", "volumes", "hour_weekday", "hotspots", "nearest_grid", "grid_hotspots",
           "repeat_locations", "daily_counts",
           "Forecast", "predict", "forecast", "backtest"]
