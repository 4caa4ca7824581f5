"""Where and when problems gather: volumes, hotspots with a significance test, repeat
locations, and a forecast of tomorrow's and next week's volume per class (backtested).

Pure functions over the hub's city_events rows (naive UTC; shown in the city's time zone).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench import clock
from workbench.errors import WorkbenchError

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


def _mode(frame: pd.DataFrame, keys: list[str], col: str) -> dict:
    """The most frequent non-null `col` per group of `keys` (ties: the first in sort order), as a
    dict keyed like the groups: one grouped count, no Python call per group (a year of events
    has tens of thousands of cells)."""
    f = frame[frame[col].notna()]
    if f.empty:
        return {}
    c = f.groupby(keys + [col], sort=True, observed=True).size().reset_index(name="_n")
    c = c.sort_values("_n", ascending=False, kind="stable").drop_duplicates(keys)
    idx = list(zip(*[c[k] for k in keys])) if len(keys) > 1 else list(c[keys[0]])
    return dict(zip(idx, c[col]))


def hotspots(events: pd.DataFrame, cell_m: float = 500, alpha: float = 0.05, min_count: int = 5,
             lat0: float | None = None) -> pd.DataFrame:
    """Grid cells (`cell_m` square) whose count is significantly above the city's rate.

    The cells' width in degrees of longitude is set at latitude `lat0`: the city's (its rules'
    bounds), so that every view of it — the city, one district, another period — cuts the same
    cells and one place has one count; None: the events' mean latitude.

    Only events placed at a point (coordinates) are counted: a work order placed by its
    address to a street or district has no place inside a 500 m cell, and spreading it over
    the cells would invent hotspots. Those events count in `street_hotspots` / `area_counts`;
    `placement_note` says how many the cells leave out.

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
    cy, cx, dy, dx = _cells(lat, lon, cell_m, float(lat.mean()) if lat0 is None else float(lat0))
    e = e.assign(cy=cy.to_numpy(), cx=cx.to_numpy())
    g = e.groupby(["cy", "cx"])
    out = pd.DataFrame({"count": g.size()})
    out["top_class"] = out.index.map(_mode(e, ["cy", "cx"], "event_class")) if "event_class" in e else None
    out["district"] = out.index.map(_mode(e, ["cy", "cx"], "district")) if "district" in e else None
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


# ------------------------------------------------------------------ how precisely events are placed

PRECISIONS = ("point", "street", "district", "city")
PRECISION_LABELS = {"point": "坐标点位", "street": "街道", "district": "区县", "city": "仅到全市"}


def precision(events: pd.DataFrame) -> pd.Series:
    """Each event's location precision: its `loc_precision`, else what its columns allow
    (coordinates → point, a street → street, a district → district, else city)."""
    out = pd.Series("city", index=events.index, dtype=object)
    for col, level in (("district", "district"), ("street", "street")):
        if col in events:
            out[events[col].notna()] = level
    if "lat" in events and "lon" in events:
        out[events["lat"].notna() & events["lon"].notna()] = "point"
    if "loc_precision" in events:
        out = events["loc_precision"].where(events["loc_precision"].isin(PRECISIONS), out)
    return out


def placement(events: pd.DataFrame) -> pd.Series:
    """How many events are placed at each precision (point, street, district, city)."""
    if events.empty:
        return pd.Series(0, index=list(PRECISIONS), dtype=int)
    return precision(events).value_counts().reindex(list(PRECISIONS), fill_value=0).astype(int)


def placement_note(events: pd.DataFrame) -> str:
    """One line for a map or hotspot table: what the points stand for and what they leave out."""
    c = placement(events)
    if c.sum() == 0:
        return "暂无事件。"
    text = f"点位热点与地图基于 {c['point']} 条有坐标的事件"
    rest = [f"{c[k]} 条只定位到{PRECISION_LABELS[k]}" if k != "city" else f"{c[k]} 条无法定位（仅到全市）"
            for k in ("street", "district", "city") if c[k]]
    if rest:
        text += "；另有" + "、".join(rest) + "，未画在地图上，计入街道 / 区县统计"
    return text + "。"


def area_counts(events: pd.DataFrame, level: str = "street") -> pd.DataFrame:
    """Events per street (or district) with every event placed at least that precisely — those
    with coordinates and those placed by their address alike — split by precision. Events
    placed less precisely than `level` are not guessed into an area; they are the row whose
    area is None, so the total is every event. Columns at_point … at_city: by precision."""
    if level not in ("street", "district"):
        raise ValueError("level: street | district")
    keys = ["district", "street"] if level == "street" else ["district"]
    cols = [*keys, "count", *(f"at_{c}" for c in PRECISIONS)]
    if events.empty:
        return pd.DataFrame(columns=cols)
    p = precision(events)
    e = events.assign(_p=p.to_numpy())
    placed = e[level].notna() & p.isin(PRECISIONS[: PRECISIONS.index(level) + 1])
    e = e.assign(**{k: e[k].where(placed) for k in keys})
    m = pd.crosstab([e[k].fillna("") for k in keys], e["_p"]).reindex(columns=list(PRECISIONS), fill_value=0)
    m.columns = [f"at_{c}" for c in m.columns]
    m["count"] = m.sum(axis=1)
    out = m.reset_index()
    for k in keys:
        out[k] = out[k].astype(object).where(out[k] != "", None)
    return out.sort_values("count", ascending=False).reset_index(drop=True)[cols]


def street_hotspots(events: pd.DataFrame, grids: pd.DataFrame, alpha: float = 0.05, min_count: int = 5
                    ) -> pd.DataFrame:
    """Streets (街道) with significantly more events than the city's rate per resident, over
    every event placed at least to its street (coordinates or address): where a hotline's
    address-only work orders count. Expected = the counted events × the street's share of the
    grids' 常住人口; one-sided exact Poisson, Benjamini–Hochberg. Events placed only to a
    district or the city are not counted (they are in `area_counts(level="district")`)."""
    from scipy.stats import poisson
    from statsmodels.stats.multitest import multipletests

    cols = ["district", "street", "population", "count", "point", "by_address", "expected", "ratio", "per_10k",
            "p_value", "q_value", "significant"]
    if events.empty or grids is None or grids.empty or "population" not in grids:
        return pd.DataFrame(columns=cols)
    pop = grids[grids["population"].fillna(0) > 0].groupby(["district", "street"])["population"].sum()
    if pop.empty:
        return pd.DataFrame(columns=cols)
    p = precision(events)
    e = events[events["street"].notna() & p.isin(["point", "street"])].assign(_p=p)
    e = e[pd.MultiIndex.from_arrays([e["district"], e["street"]]).isin(pop.index)]
    cnt = e.groupby(["district", "street"]).size()
    pts = e[e["_p"] == "point"].groupby(["district", "street"]).size()
    out = pop.rename("population").to_frame()
    out["count"] = cnt.reindex(out.index, fill_value=0).astype(int)
    out["point"] = pts.reindex(out.index, fill_value=0).astype(int)
    out["by_address"] = out["count"] - out["point"]
    total = int(out["count"].sum())
    out["expected"] = total * out["population"] / float(out["population"].sum())
    out["ratio"] = out["count"] / out["expected"].where(out["expected"] > 0)
    out["per_10k"] = out["count"] / out["population"] * 10_000
    out["p_value"] = poisson.sf(out["count"] - 1, out["expected"]) if total else 1.0
    out["q_value"] = multipletests(out["p_value"], method="fdr_bh")[1]
    out["significant"] = (out["q_value"] < alpha) & (out["count"] >= min_count)
    out = out.reset_index()
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


def place_names(points: pd.DataFrame, grids: pd.DataFrame) -> pd.DataFrame:
    """Name places (a hotspot cell's centre, an event) by district, street and grid (网格), never by
    coordinates: `points` (lat, lon[, grid_id]) gain grid_id, street, district (the nearest
    grid's where the point has none) and `place` ("荷塘区 月塘街道 网格 HT-YT-001"). Without
    grids: the district the point lies in (geo.locate), else 位置未知."""
    from workbench import geo

    out = points.copy()
    if out.empty:
        return out.assign(grid_id=pd.Series(dtype=object), street=pd.Series(dtype=object),
                          place=pd.Series(dtype=object))
    g = grids[grids["lat"].notna() & grids["lon"].notna()] if grids is not None and len(grids) else None
    gid = nearest_grid(out.drop(columns=["grid_id"], errors="ignore"), g) if g is not None and len(g) \
        else pd.Series(None, index=out.index, dtype=object)
    if "grid_id" in out:
        gid = out["grid_id"].where(out["grid_id"].notna(), gid)
    info = g.drop_duplicates("grid_id").set_index("grid_id") if g is not None and len(g) else None
    street = gid.map(info["street"]) if info is not None else pd.Series(None, index=out.index, dtype=object)
    dist = gid.map(info["district"]) if info is not None else pd.Series(None, index=out.index, dtype=object)
    if "district" in out:
        dist = dist.where(dist.notna(), out["district"])
    if "street" in out:
        street = street.where(street.notna(), out["street"])
    located = pd.Series(geo.locate(out["lat"].to_numpy(float), out["lon"].to_numpy(float)), index=out.index)
    dist = dist.where(dist.notna(), located)
    out["grid_id"], out["street"], out["district"] = gid, street, dist
    out["place"] = [" ".join(x for x in (d, s, f"网格 {i}" if isinstance(i, str) and i else None)
                             if isinstance(x, str) and x) or "位置未知"
                    for d, s, i in zip(dist, street, gid)]
    return out


def grid_hotspots(events: pd.DataFrame, grids: pd.DataFrame, alpha: float = 0.05, min_count: int = 5) -> pd.DataFrame:
    """Grids (网格) with significantly more events than the city's rate per resident.

    Counted: events with a grid_id or coordinates (a grid is smaller than a street, so an
    event placed only by its address to a street is not guessed into one of its grids; it
    counts in `street_hotspots`).

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
    within the last `days` days: the problem keeps coming back. Events with coordinates only
    (a 50 m place needs a point)."""
    cols = ["event_class", "lat", "lon", "count", "first_ts", "last_ts", "district", "street", "address", "event_ids"]
    if events.empty:
        return pd.DataFrame(columns=cols)
    now = pd.to_datetime(events["ts"]).max() if now is None else pd.Timestamp(now)
    e = events[(pd.to_datetime(events["ts"]) >= now - pd.Timedelta(days=days)) & events["lat"].notna()]
    if e.empty:
        return pd.DataFrame(columns=cols)
    cy, cx, _, _ = _cells(e["lat"].astype(float), e["lon"].astype(float), radius_m, float(e["lat"].mean()))
    e = e.assign(cy=cy.to_numpy(), cx=cx.to_numpy())
    n = e.groupby(["event_class", "cy", "cx"])["event_id"].transform("size")
    e = e[n >= min_count]          # only the places that repeat: the per-group work is on those alone
    if e.empty:
        return pd.DataFrame(columns=cols)
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


class ForecastError(WorkbenchError):
    """A series the event-volume forecast cannot model (finer than a day)."""


def check_daily(index) -> None:
    """Refuse a series finer than a day with one message: the forecast is a model of daily
    counts (weekday + trend); hourly counts would need the hour of the day as well, and read
    as days they would be 24 "days" a day. Aggregate them first (`daily_counts`)."""
    idx = pd.DatetimeIndex(index)
    if len(idx) < 2:
        return
    step = pd.Series(idx).diff().dropna()
    finest = step.min()
    if finest < pd.Timedelta(days=1) or bool((idx != idx.normalize()).any()):
        shown = f"{int(finest.total_seconds() // 60)} 分钟" if finest < pd.Timedelta(hours=1) else \
            f"{finest.total_seconds() / 3600:g} 小时"
        raise ForecastError(
            f"事件量预测按日建模（星期 + 趋势），这组序列的间隔为 {shown}，细于一天，不能直接预测；"
            f"请先用 patterns.daily_counts 汇总为每日计数（逐小时的规律见 hour_weekday）")


def closed_days(start, end, *, holidays: bool = True, extra=(), rules=None) -> frozenset:
    """Days a source does not take reports (its office closed): the official public holidays
    between `start` and `end` when `holidays` (China's calendar, workbench.clock /
    chinese-calendar; for a city with `calendar: weekdays`, its rules' `holidays`), plus the
    `extra` closures (dates). Plain weekends are not closures: the forecast's weekday terms
    already carry them."""
    s, e = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    out = set()
    if holidays:
        if rules is not None and getattr(rules, "calendar", "china") != "china":
            out |= {pd.Timestamp(d) for d in rules.holidays}
        else:
            out |= {pd.Timestamp(d) for d in clock.holidays_between(s, e)}
    out |= {pd.Timestamp(d).normalize() for d in extra}
    return frozenset(d for d in out if s <= d <= e)


def _closed_mask(index: pd.DatetimeIndex, closed) -> np.ndarray:
    if not closed:
        return np.zeros(len(index), bool)
    days = {pd.Timestamp(d).normalize() for d in closed}
    return np.array([d in days for d in pd.DatetimeIndex(index).normalize()], bool)


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
    tomorrow_closed: bool = False   # the source is closed tomorrow: no reports expected (not "no demand")
    open_days: int = 7              # days of the next week the source is open (the week's sum is over them)


MODELS = ("weekday+trend", "weekday", "level")   # tried in this order (see predict)
TREND_CAP = 3.0   # a forecast day above this many times the window's busiest day is an artefact


def _design(days: pd.DatetimeIndex, t0: pd.Timestamp, model: str = MODELS[0]) -> np.ndarray:
    cols = [np.ones((len(days), 1))]
    if model in ("weekday+trend", "weekday"):
        dow = np.zeros((len(days), 6))
        d = days.day_of_week.to_numpy()
        for k in range(1, 7):
            dow[:, k - 1] = d == k
        cols.append(dow)
    if model == "weekday+trend":
        cols.append(((days - t0).days.to_numpy() / 28.0)[:, None])
    return np.hstack(cols)


def _fit(y: pd.Series, fit_days: int, closed=None, model: str = MODELS[0]):
    """Poisson GLM on weekday and a linear trend over the last `fit_days` days (`model`: or on
    weekday alone, or a level alone); the dispersion (Pearson χ²/df) widens the intervals where
    counts vary more than Poisson. Closed days are left out of the fit: their zero is the
    office's, not the city's demand."""
    import statsmodels.api as sm

    y = y.iloc[-fit_days:]
    t0 = y.index[-1]
    y = y[~_closed_mask(y.index, closed)]
    if y.sum() == 0 or len(y) < 8:
        return None, t0, 1.0
    X = _design(y.index, t0, model)
    with warnings.catch_warnings():   # a weekday without events: its coefficient runs off (the cap catches it)
        warnings.simplefilter("ignore")
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


def predict(y: pd.Series, horizon: int = 7, fit_days: int = 56, closed=None) -> tuple[pd.Series, float]:
    """Expected counts for the `horizon` days after y's last day, and the dispersion. `closed`:
    days the source is closed (`closed_days`): left out of the fit, and 0 expected on them. The
    model is Poisson on weekday and trend, unless that runs off (MODELS, TREND_CAP)."""
    check_daily(y.index)
    days = pd.date_range(y.index[-1] + pd.Timedelta(days=1), periods=horizon, freq="D")
    # a class seen only in a burst (道路结冰 in a cold snap) drives the log-linear trend, or a weekday
    # without events, off to billions: a burst (below), or a forecast day above TREND_CAP × the
    # window's busiest day, drops the trend, then the weekdays (a level alone cannot run off)
    window = y.iloc[-fit_days:]
    window = window[~_closed_mask(window.index, closed)]
    peak = max(1.0, float(window.max()))
    # a burst: events on fewer than half the days and a weekday without any (its coefficient runs
    # to minus infinity and the burst's weekdays take it all); a source that takes no reports at
    # weekends has events most days and keeps its weekdays
    sparse = bool((window > 0).mean() < 0.5 and window.groupby(window.index.day_of_week).sum().eq(0).any())
    for model in MODELS:
        if sparse and model != "level":
            continue
        res, t0, phi = _fit(y, fit_days, closed, model)
        if res is None:
            return pd.Series(0.0, index=days), phi
        mu = pd.Series(res.predict(_design(days, t0, model)), index=days)
        if np.isfinite(mu).all() and mu.max() <= TREND_CAP * peak:
            break
    return mu.where(~_closed_mask(days, closed), 0.0), phi


def forecast(daily: pd.DataFrame, level: float = 0.9, fit_days: int = 56, min_total: int = 14,
             closed=None) -> pd.DataFrame:
    """Tomorrow's and next week's (7 days) volume per column of `daily`, with `level`
    predictive intervals. Columns with fewer than `min_total` events in the fit window are
    left out (too rare to forecast usefully). `closed`: days the source is closed (holidays,
    closures; `closed_days`): not taken as zero demand in the fit; a closed tomorrow is
    forecast as closed (0, `tomorrow_closed`), and the week is the sum over its open days.
    Raises ForecastError for a series finer than a day."""
    check_daily(daily.index)
    rows = []
    for col in daily.columns:
        y = daily[col]
        if y.iloc[-fit_days:].sum() < min_total or len(y) < 14:
            continue
        mu, phi = predict(y, 7, fit_days, closed)
        shut = _closed_mask(mu.index, closed)
        lo1, hi1 = _interval(np.array([mu.iloc[0]]), phi, level)
        if shut[0]:
            lo1, hi1 = np.array([0.0]), np.array([0.0])
        lo7, hi7 = _interval(np.array([mu.sum()]), phi, level)
        rows.append(Forecast(str(col), float(mu.iloc[0]), float(lo1[0]), float(hi1[0]), float(mu.sum()),
                             float(lo7[0]), float(hi7[0]), phi, bool(shut[0]), int((~shut).sum())).__dict__)
    return pd.DataFrame(rows, columns=list(Forecast.__dataclass_fields__))


def backtest(daily: pd.DataFrame, origins: int = 28, fit_days: int = 56, level: float = 0.9,
             min_mean: float = 1.0, closed=None) -> pd.DataFrame:
    """Rolling-origin backtest of the next-day forecast over the last `origins` days, per
    column with a mean of at least `min_mean` a day: MAPE of the model and of the seasonal-
    naive forecast (the same weekday a week before; the last open one when that day was
    closed) on the same days (days with zero events are left out of MAPE, which is undefined
    there), and the interval's coverage. Closed days (`closed`) are not scored: nobody could
    report, so there is nothing to forecast."""
    check_daily(daily.index)
    rows = []
    n = len(daily)
    if n < origins + 15:
        origins = max(0, n - 15)
    shut = _closed_mask(daily.index, closed)
    for col in daily.columns:
        y = daily[col].astype(float)
        if y[~shut].mean() < min_mean:
            continue
        errs_m, errs_s, cover = [], [], []
        for k in range(n - origins, n):
            if shut[k]:
                continue
            hist = y.iloc[:k]
            actual = y.iloc[k]
            mu, phi = predict(hist, 1, fit_days, closed)
            lo, hi = _interval(mu.to_numpy(), phi, level)
            back = next((j for j in range(k - 7, -1, -7) if not shut[j]), k - 7)
            naive = y.iloc[back]
            cover.append(lo[0] <= actual <= hi[0])
            if actual > 0:
                errs_m.append(abs(mu.iloc[0] - actual) / actual)
                errs_s.append(abs(naive - actual) / actual)
        if errs_m:
            rows.append({"series": str(col), "days": len(cover), "mean_per_day": float(y.iloc[-origins:][~shut[-origins:]].mean()),
                         "mape_model": float(np.mean(errs_m)), "mape_seasonal_naive": float(np.mean(errs_s)),
                         "coverage": float(np.mean(cover))})
    return pd.DataFrame(rows, columns=["series", "days", "mean_per_day", "mape_model", "mape_seasonal_naive",
                                       "coverage"])


__all__ = ["WEEKDAYS", "PRECISIONS", "precision", "placement", "placement_note", "area_counts", "street_hotspots",
           "local_times", "volumes", "hour_weekday", "hotspots", "nearest_grid", "place_names", "grid_hotspots",
           "repeat_locations", "daily_counts",
           "ForecastError", "check_daily", "closed_days", "Forecast", "predict", "forecast", "backtest"]
