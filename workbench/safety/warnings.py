"""Cold-weather warning signals (寒潮, 道路结冰, 暴雪) from hourly observations, as episodes.

The criteria are China's meteorological warning signals (DOMAIN.md, 城市安全). Each
signal is judged per station and hour on a regular hourly grid (hours × stations, all
vectorised), the district takes its worst station, and the district's hourly levels
become episodes: one alert per district and signal while it lasts, with 发布 / 升级 /
降级 / 解除 as history rows. How each number is computed: docs/warnings.md.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from workbench import config, geo
from workbench.safety.weather import _local, local_days

LEVELS = ("", "蓝色", "黄色", "橙色", "红色")
SEVERITY = {1: "warning", 2: "warning", 3: "critical", 4: "critical"}
SIGNALS = {"寒潮": "HS", "道路结冰": "DL", "暴雪": "BX"}
DEPARTMENT = "应急管理局"
SOURCE = "气象预警"


@dataclass(frozen=True)
class WarningRules:
    """The documented numbers (docs/warnings.md); thresholds are DOMAIN.md's."""

    min_hours_24: int = 18  # hours a 24-h minimum needs to be computed at all
    wind_force5: float = 8.0  # m/s
    wind_force6: float = 10.8
    snow_air_max: float = 1.0  # °C: precipitation in an hour this cold (or colder) is snow
    icing_precip_min: float = 0.1  # mm in the hour
    clear_hours: int = 6  # a level lasts until this many hours pass without it (downgrade / 解除)
    tz: str = config.TZ  # alert ids and titles read local time
    max_evidence_stations: int = 5


@dataclass
class SignalGrid:
    """Per signal: hourly levels (hours × stations, 0–4) and the measures behind them."""

    hours: pd.DatetimeIndex
    stations: pd.DataFrame  # station_id, area, district, lat, lon, last_hour
    levels: dict = field(default_factory=dict)  # signal -> np.ndarray[int8] (hours × stations)
    measures: dict = field(default_factory=dict)  # signal -> {name: DataFrame}
    daily: set = field(default_factory=set)  # stations judged on daily records
    notes: list = field(default_factory=list)  # what could not be judged, and why (one line each)


@dataclass
class Warnings:
    alerts: pd.DataFrame  # rows for the alerts table
    history: pd.DataFrame  # rows for alert_history


# ------------------------------------------------------------------------------ signals

def hourly(obs: pd.DataFrame, var: str, hours: pd.DatetimeIndex, stations) -> pd.DataFrame:
    """One variable as a regular grid: hours × stations (NaN where nothing was observed)."""
    g = obs.pivot(index="ts", columns="station_id", values=var)
    return g.reindex(index=hours, columns=stations)


def signal_grid(clean: pd.DataFrame, rules: WarningRules = WarningRules(),
                daily: pd.DataFrame | None = None) -> SignalGrid:
    """Every station's hourly level for each signal, from DQ-cleaned observations and forecasts;
    with `daily` (QualityReport.daily), the daily stations' levels by the daily rules
    (`daily_grid`), held over each local day."""
    grid = _hourly_grid(clean, rules)
    if daily is None or daily.empty:
        return grid
    both = sorted(set(daily["station_id"].astype(str)) & set(grid.stations["station_id"].astype(str)))
    d = daily[~daily["station_id"].astype(str).isin(both)]
    dgrid = daily_grid(d, rules) if len(d) else SignalGrid(pd.DatetimeIndex([]), _stations(d))
    dgrid.notes[:0] = [f"站点 {s} 同时有逐时与日值记录，按逐时记录判定，日值不重复判定" for s in both]
    return _merge(grid, dgrid)


def _hourly_grid(clean: pd.DataFrame, rules: WarningRules) -> SignalGrid:
    if "resolution" in clean:  # never read a day as an hour (QualityReport.clean holds hours only)
        clean = clean[clean["resolution"].astype("string").str.lower().fillna("") != "daily"]
    obs = clean[clean["kind"] == "observed"]
    fc = clean[clean["kind"] == "forecast"]
    stations = _stations(clean)
    if not len(stations):
        return SignalGrid(pd.DatetimeIndex([]), stations)
    first = min(obs["ts"].min() if len(obs) else fc["issued_at"].min().floor("h"),
                fc["issued_at"].min().floor("h") if len(fc) else pd.Timestamp.max)
    last = max(obs["ts"].max() if len(obs) else pd.Timestamp.min,
               fc["issued_at"].max().floor("h") if len(fc) else pd.Timestamp.min)
    hours = pd.date_range(first, last, freq="h")
    ids = stations["station_id"].tolist()
    grid = SignalGrid(hours, stations)
    T = hourly(obs, "temperature", hours, ids)
    W = hourly(obs, "wind_speed", hours, ids)
    P = hourly(obs, "precipitation", hours, ids)
    R = hourly(obs, "road_temperature", hours, ids)
    grid.levels["寒潮"], grid.measures["寒潮"] = cold_wave(T, W, rules)
    S = hourly(obs, "snowfall", hours, ids) if "snowfall" in obs and obs["snowfall"].notna().any() else None
    grid.levels["暴雪"], grid.measures["暴雪"] = snowstorm(T, P, rules, S)
    grid.levels["道路结冰"], grid.measures["道路结冰"] = road_icing(T, P, R, fc, hours, ids, rules)
    return grid


# ------------------------------------------------------------------------------ daily records

# GB/T 21987-2017 寒潮等级 on the daily minimum temperature: (fall within 24 / 48 / 72 h, at most)
COLD_WAVE_GRADES = ((3, "特强寒潮", (12, 14, 16), 0.0), (2, "强寒潮", (10, 12, 14), 2.0), (1, "寒潮", (8, 10, 12), 4.0))
# a day's snow water S holds a 12-h window of at least S/2 and a 6-h window of at least S/4:
# the signal's 12-h 4 / 6 mm and 6-h 10 / 15 mm are sure at S ≥ 8 / 12 / 40 / 60 mm
DAILY_SNOW = ((4, 60.0), (3, 40.0), (2, 12.0), (1, 8.0))

DAILY_CRITERIA = {
    "寒潮": "日值（GB/T 21987-2017 寒潮等级）：日最低气温24/48/72小时内下降≥8/10/12°C且降至≤4°C为寒潮（蓝色），"
            "≥10/12/14°C且≤2°C为强寒潮（黄色），≥12/14/16°C且≤0°C为特强寒潮（橙色）；日值不含逐时风速，不发红色",
    "暴雪": "日值：24小时降雪量S（融化水量；无降雪量时取日最高气温≤1°C之日的降水量），其中必有12小时≥S/2、6小时≥S/4："
            "S≥8/12mm为蓝/黄，S≥40/60mm为橙/红",
}
DAILY_CANNOT = {"道路结冰": "道路结冰：{stations} 为日值资料，无法判定（结冰须逐时路面温度或气温低于0°C与小时降水同时出现，"
                          "日最低气温与日降水量说明不了二者是否同时）"}


def daily_grid(daily: pd.DataFrame, rules: WarningRules = WarningRules()) -> SignalGrid:
    """Daily stations' levels by the criteria daily records support (docs/warnings.md §2b):
    寒潮 by GB/T 21987-2017 on the daily minimum, 暴雪 by the level a day's snow water proves;
    道路结冰 cannot be judged from days (a note says why). Each day's level holds over the 24
    hours of its local day (rules.tz), so episodes are made as for hours."""
    d = daily.copy()
    d["day"] = local_days(d["ts"], rules.tz)
    d["kind"], d["issued_at"] = "observed", d["ts"]
    for c in ("district", "lat", "lon"):
        if c not in d:
            d[c] = None if c == "district" else np.nan
    stations = _stations(d)
    ids = stations["station_id"].tolist()
    days = pd.date_range(d["day"].min(), d["day"].max(), freq="D")

    def piv(v):
        if v not in d:
            return pd.DataFrame(np.nan, index=days, columns=ids)
        return (d.pivot_table(index="day", columns="station_id", values=v, aggfunc="last", dropna=False)
                .reindex(index=days, columns=ids).astype(float))

    TN, TX, P, S = piv("temperature_min"), piv("temperature_max"), piv("precipitation"), piv("snowfall")
    p1, p2, p3 = TN.shift(1), TN.shift(2), TN.shift(3)
    drops = [(p1 - TN).round(2), (np.fmax(p1, p2) - TN).round(2), (np.fmax(np.fmax(p1, p2), p3) - TN).round(2)]
    cond, out = [], []
    for level, _name, falls, at_most in COLD_WAVE_GRADES:
        hit = (drops[0] >= falls[0]) | (drops[1] >= falls[1]) | (drops[2] >= falls[2])
        cond.append((hit & (TN <= at_most)).to_numpy())
        out.append(level)
    cold = np.select(cond, out, 0).astype(np.int8)
    water = S.where(S.notna(), P.where(TX <= rules.snow_air_max)).round(2)
    snow = np.select([water.to_numpy() >= t for _, t in DAILY_SNOW], [lv for lv, _ in DAILY_SNOW], 0).astype(np.int8)

    # each local day's hours (UTC), and the day each hour belongs to
    start = (days[0].tz_localize(rules.tz).tz_convert("UTC").tz_localize(None))
    end = ((days[-1] + pd.Timedelta(days=1)).tz_localize(rules.tz).tz_convert("UTC").tz_localize(None))
    hours = pd.date_range(start, end - pd.Timedelta(hours=1), freq="h")
    at = days.get_indexer(local_days(pd.Series(hours), rules.tz))

    def spread(frame):
        return pd.DataFrame(frame.to_numpy()[at], index=hours, columns=ids)

    last_day = d.groupby("station_id")["day"].max()
    stations["last_hour"] = stations["station_id"].map(
        lambda s: (last_day[s] + pd.Timedelta(days=1)).tz_localize(rules.tz).tz_convert("UTC").tz_localize(None)
        - pd.Timedelta(hours=1))
    grid = SignalGrid(hours, stations, daily=set(ids))
    grid.levels["寒潮"] = cold[at]
    grid.measures["寒潮"] = {"日最低气温": spread(TN), "前1日最低气温": spread(p1), "日最低气温24小时降温": spread(drops[0]),
                           "日最低气温48小时降温": spread(drops[1]), "日最低气温72小时降温": spread(drops[2])}
    grid.levels["暴雪"] = snow[at]
    grid.measures["暴雪"] = {"24小时降雪量": spread(water), "日降水量": spread(P), "日最高气温": spread(TX)}
    grid.levels["道路结冰"] = np.zeros((len(hours), len(ids)), np.int8)
    grid.measures["道路结冰"] = {}
    no_tn = [s for s in ids if TN[s].isna().all()]
    if no_tn:
        grid.notes.append(f"寒潮：{'、'.join(no_tn)} 的日值资料没有日最低气温，无法判定")
    no_snow = [s for s in ids if water[s].isna().all()]
    if no_snow:
        grid.notes.append(f"暴雪：{'、'.join(no_snow)} 的日值资料没有降雪量，也没有降水量与日最高气温，无法判定")
    grid.notes.append(DAILY_CANNOT["道路结冰"].format(stations="、".join(ids)))
    local = pd.to_datetime(d["ts"]).dt.tz_localize("UTC").dt.tz_convert(rules.tz)
    off = sorted(set(d.loc[(local.dt.hour != 0).to_numpy() | (local.dt.minute != 0).to_numpy(), "station_id"]))
    if off:  # a date read as midnight in another zone than the one the warnings run in
        grid.notes.append(f"{'、'.join(off)} 的日值记录不在 {rules.tz} 的零点（接入时所用时区不同？），"
                          f"日期按 {rules.tz} 计，可能差一天")
    return grid


def _merge(a: SignalGrid, b: SignalGrid) -> SignalGrid:
    """One grid of the hourly and the daily stations (columns side by side, hours the union)."""
    if not len(b.hours):
        a.notes += b.notes
        return a
    if not len(a.hours):
        return b
    ha, hb = pd.DatetimeIndex(a.hours).as_unit("ns"), pd.DatetimeIndex(b.hours).as_unit("ns")
    hours = pd.date_range(min(ha[0], hb[0]), max(ha[-1], hb[-1]), freq="h").as_unit("ns")
    stations = pd.concat([a.stations, b.stations], ignore_index=True)
    ids = stations["station_id"].tolist()
    ia, ib = hours.get_indexer(ha), hours.get_indexer(hb)
    na = len(a.stations)
    out = SignalGrid(hours, stations, daily=a.daily | b.daily, notes=a.notes + b.notes)
    for sig in dict.fromkeys([*a.levels, *b.levels]):
        L = np.zeros((len(hours), len(ids)), np.int8)
        if sig in a.levels:
            L[ia, :na] = a.levels[sig]
        if sig in b.levels:
            L[ib, na:] = b.levels[sig]
        out.levels[sig] = L
        ma, mb = a.measures.get(sig, {}), b.measures.get(sig, {})
        out.measures[sig] = {
            name: pd.concat([m[name].set_axis(h, axis=0) for m, h in ((ma, ha), (mb, hb)) if name in m], axis=1)
            .reindex(index=hours, columns=ids)
            for name in dict.fromkeys([*ma, *mb])}
    return out


def cold_wave(T: pd.DataFrame, W: pd.DataFrame, rules: WarningRules = WarningRules()):
    """寒潮 levels. tmin24 = minimum of the last 24 hourly temperatures (≥ 18 present);
    drop24 = tmin24 24 h earlier − tmin24; drop48 = the larger of tmin24 24 h and 48 h earlier
    − tmin24; wind = the largest hourly mean wind of the last 24 h (48 h for blue)."""
    tmin = T.rolling(24, min_periods=rules.min_hours_24).min()
    prev24, prev48 = tmin.shift(24), tmin.shift(48)
    drop24 = (prev24 - tmin).round(2)
    drop48 = (np.fmax(prev24, prev48) - tmin).round(2)
    wind24 = W.rolling(24, min_periods=1).max()
    wind48 = W.rolling(48, min_periods=1).max()
    t, d24, d48 = tmin.to_numpy(), drop24.to_numpy(), drop48.to_numpy()
    w24, w48 = wind24.to_numpy(), wind48.to_numpy()
    f6 = w24 >= rules.wind_force6
    level = np.select(
        [(d24 >= 16) & (t <= 0) & f6, (d24 >= 12) & (t <= 0) & f6, (d24 >= 10) & (t <= 4) & f6,
         (d48 >= 8) & (t <= 4) & (w48 >= rules.wind_force5)],
        [4, 3, 2, 1], 0).astype(np.int8)
    return level, {"24小时最低气温": tmin, "前24小时最低气温": prev24, "前48小时最低气温": prev48,
                   "24小时降温": drop24, "48小时降温": drop48, "24小时最大风速": wind24, "48小时最大风速": wind48}


def snowstorm(T: pd.DataFrame, P: pd.DataFrame, rules: WarningRules = WarningRules(),
              S: pd.DataFrame | None = None):
    """暴雪 levels: snow = the hour's reported snowfall (`S`, melted water) where there is one,
    else the precipitation of hours whose air temperature ≤ snow_air_max; blue/yellow on the
    12-h sum (≥ 4 / 6 mm), orange/red on the 6-h sum (≥ 10 / 15 mm)."""
    snow = P.where(T <= rules.snow_air_max, 0.0)
    if S is not None:
        snow = S.where(S.notna(), snow)
    snow = snow.fillna(0.0)
    s12 = snow.rolling(12, min_periods=1).sum().round(2)
    s6 = snow.rolling(6, min_periods=1).sum().round(2)
    a12, a6 = s12.to_numpy(), s6.to_numpy()
    level = np.select([a6 >= 15, a6 >= 10, a12 >= 6, a12 >= 4], [4, 3, 2, 1], 0).astype(np.int8)
    return level, {"12小时降雪量": s12, "6小时降雪量": s6, "气温": T}


def road_icing(T, P, R, fc: pd.DataFrame, hours, ids, rules: WarningRules = WarningRules()):
    """道路结冰 levels. An icing hour: surface < 0 °C (road sensor, else air temperature) with
    ≥ icing_precip_min mm. Observed icing now counts as within 2 h (red); a forecast issue
    whose first icing hour is ≤ 2 / 6 / 12 h after issued_at gives red / orange / yellow,
    from its issue hour until its last icing hour or the station's next issue."""
    surface = R.where(R.notna(), T)
    icing = (surface < 0) & (P >= rules.icing_precip_min)
    level = np.where(icing.to_numpy(), 4, 0).astype(np.int8)
    lead = pd.DataFrame(np.nan, index=hours, columns=ids)
    if len(fc):
        f = fc.assign(surface=fc["road_temperature"].where(fc["road_temperature"].notna(), fc["temperature"]))
        f = f.assign(lead=(f["ts"] - f["issued_at"]) / pd.Timedelta(hours=1),
                     hour=f["issued_at"].dt.floor("h"))
        f = f[f["lead"] >= 0]
        ice = f[(f["surface"] < 0) & (f["precipitation"] >= rules.icing_precip_min)]
        issues = f.groupby(["station_id", "hour"]).size().rename("n").reset_index()
        first = ice.groupby(["station_id", "hour"]).agg(lead=("lead", "min"), until=("ts", "max")).reset_index()
        issues = issues.merge(first, on=["station_id", "hour"], how="left")
        # an issue without icing ends the one before it: its "until" lies before any hour
        issues["until"] = issues["until"].astype("datetime64[ns]").fillna(pd.Timestamp("1900-01-01"))
        lead_i = issues.pivot(index="hour", columns="station_id", values="lead")
        until_i = issues.pivot(index="hour", columns="station_id", values="until")
        has = issues.pivot(index="hour", columns="station_id", values="n").notna()
        lead_i = lead_i.where(lead_i.notna() | ~has, np.inf).reindex(index=hours, columns=ids).ffill()
        until_i = until_i.reindex(index=hours, columns=ids).ffill()
        now = np.broadcast_to(hours.to_numpy()[:, None], until_i.shape)
        valid = until_i.notna().to_numpy() & (now <= until_i.to_numpy(dtype="datetime64[ns]"))
        lead = lead_i.where(valid)
        lv = lead.to_numpy()
        fc_level = np.select([lv <= 2, lv <= 6, lv <= 12], [4, 3, 2], 0).astype(np.int8)
        level = np.maximum(level, fc_level)
    return level, {"路面温度": surface, "路面温度来源": R.notna(), "小时降水量": P, "预报结冰提前小时": lead}


def _stations(clean: pd.DataFrame) -> pd.DataFrame:
    """One row per station: its district (the area its warnings are for), coordinates, last hour."""
    if clean.empty:
        return pd.DataFrame(columns=["station_id", "area", "district", "lat", "lon", "last_hour"])
    g = clean.sort_values("ts").groupby("station_id", sort=True)
    st = g.agg(district=("district", "last"), lat=("lat", "last"), lon=("lon", "last")).reset_index()
    obs_last = clean[clean.kind == "observed"].groupby("station_id")["ts"].max()
    fc_last = clean[clean.kind == "forecast"].groupby("station_id")["issued_at"].max().dt.floor("h")
    st["last_hour"] = st.station_id.map(pd.concat([obs_last, fc_last]).groupby(level=0).max())
    st["area"] = st["district"].where(st["district"].notna() & (st["district"].astype(str) != ""),
                                      st["station_id"])
    return st


# ------------------------------------------------------------------------------ episodes

# The districts' short codes in alert ids (W-HS-HT-2026011308): the pinyin initials the
# city's grid ids start with (HT-YT-003); kept fixed so an alert's id never changes.
AREA_CODES = {"430202": "HT", "430203": "LS", "430204": "SF", "430211": "TY", "430212": "LK",
              "430281": "LL", "430223": "YX", "430224": "CL", "430225": "YL"}


def area_code(area: str) -> str:
    """Short code of a district for alert ids (the pinyin initials of the city's districts);
    another area (a station without a district) is named by its own letters and digits."""
    d = geo.BY_NAME.get(area)
    return AREA_CODES[d.adcode] if d else "".join(ch for ch in str(area) if ch.isalnum() and ch.isascii()).upper() or "X"


def episodes(grid: SignalGrid, rules: WarningRules = WarningRules()) -> Warnings:
    """Alerts and their history from the hourly levels: a district's level is its worst
    station's; the issued level is the highest of the last `clear_hours` hours, so it rises at
    once, falls only after the higher level has been absent `clear_hours`, and is lifted (解除)
    `clear_hours` after the last hour at any level."""
    alerts, history = [], []
    if not len(grid.hours):
        return Warnings(_frame(alerts, ALERT_COLUMNS), _frame(history, HISTORY_COLUMNS))
    st = grid.stations
    areas = sorted(st["area"].unique())
    col_area = st["area"].map({a: i for i, a in enumerate(areas)}).to_numpy()
    area_last = st.groupby("area")["last_hour"].max().reindex(areas).to_numpy(dtype="datetime64[ns]")
    hours = grid.hours.to_numpy()
    for signal, lv in grid.levels.items():
        A = np.zeros((len(hours), len(areas)), np.int8)
        for j in range(len(areas)):
            A[:, j] = lv[:, col_area == j].max(axis=1)
        issued = pd.DataFrame(A).rolling(rules.clear_hours, min_periods=1).max().to_numpy(np.int8)
        prev = np.vstack([np.zeros((1, len(areas)), np.int8), issued[:-1]])
        rows, cols = np.nonzero(issued != prev)
        keep = hours[rows] <= area_last[cols]  # nothing is judged past an area's last data
        order = np.lexsort((rows[keep], cols[keep]))
        changes = list(zip(cols[keep][order], rows[keep][order]))
        a_prev, open_ep = None, None
        for a, r in changes:
            if a != a_prev:
                if open_ep:
                    alerts.append(open_ep)
                open_ep, a_prev = None, a
            new, old = int(issued[r, a]), int(prev[r, a])
            ts = pd.Timestamp(hours[r])
            if old == 0 or open_ep is None:
                if open_ep:
                    alerts.append(open_ep)
                open_ep = _open(signal, areas[a], ts, new, rules)
                action = "发布"
            elif new == 0:
                action = "解除"
            else:
                action = "升级" if new > old else "降级"
            stations = np.flatnonzero(col_area == a)
            ev = _evidence(grid, signal, stations, r, new or old, rules)
            history.append({"alert_id": open_ep["alert_id"], "ts": ts, "action": action,
                            "level": LEVELS[new or old], "note": _note(signal, action, new or old, ev)})
            _apply(open_ep, action, new, ts, ev, signal, rules)
            if action == "解除":
                alerts.append(open_ep)
                open_ep = None
        if open_ep:
            alerts.append(open_ep)
    return Warnings(_frame(alerts, ALERT_COLUMNS), _frame(history, HISTORY_COLUMNS))


ALERT_COLUMNS = ["alert_id", "ts", "department", "category", "severity", "title", "area", "district",
                 "valid_from", "valid_to", "status", "source", "evidence", "level", "updated_at", "subject", "attrs"]
HISTORY_COLUMNS = ["alert_id", "ts", "action", "level", "note"]


def _frame(rows: list[dict], cols: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=cols)
    for c in ("ts", "valid_from", "valid_to", "updated_at"):
        if c in df:
            df[c] = pd.to_datetime(df[c])
    return df


def _open(signal: str, area: str, ts: pd.Timestamp, level: int, rules: WarningRules) -> dict:
    local = ts.tz_localize("UTC").tz_convert(rules.tz)
    district = area if area in geo.BY_NAME else None
    return {"alert_id": f"W-{SIGNALS[signal]}-{area_code(area)}-{local:%Y%m%d%H}", "ts": ts,
            "department": DEPARTMENT, "category": signal, "area": area, "district": district,
            "valid_from": ts, "valid_to": None, "source": SOURCE,
            "subject": f"district:{district}" if district else None,
            "attrs": {"district": district, "area": area}, "_peak": 0, "_ev": {}}


def _apply(ep: dict, action: str, level: int, ts, ev: dict, signal: str, rules: WarningRules) -> None:
    ep["updated_at"] = ts
    if action == "解除":  # a past episode is remembered by its highest level
        ep["status"], ep["valid_to"] = "已解除", ts
        level = ep["_peak"]
        ep["level"], ep["severity"] = LEVELS[level], SEVERITY[level]
        ep["title"] = f"{ep['area']}{signal}{LEVELS[level]}预警"
    else:
        ep["status"] = "生效中"
        ep["level"], ep["severity"] = LEVELS[level], SEVERITY[level]
        ep["title"] = f"{ep['area']}{signal}{LEVELS[level]}预警"
        if level > ep["_peak"]:
            ep["_peak"], ep["_ev"] = level, ev
    body = {"信号": signal, "最高等级": LEVELS[ep["_peak"]], "判据": CRITERIA[signal], **ep["_ev"]}
    text = json.dumps(body, ensure_ascii=False, default=str)
    while len(text) > 4000 and body.get("触发观测"):
        body["触发观测"] = body["触发观测"][:-1]
        text = json.dumps(body, ensure_ascii=False, default=str)
    ep["evidence"] = text


CRITERIA = {
    "寒潮": "24小时最低气温（逐时气温最近24小时最小值）较前24小时下降≥10/12/16°C且降至≤4/0/0°C、"
            "近24小时最大小时平均风速≥10.8m/s为黄/橙/红；48小时内下降≥8°C至≤4°C、风速≥8.0m/s为蓝",
    "道路结冰": "路面温度<0°C（无路面传感器时用气温）且小时降水≥0.1mm为结冰；已出现或预计2/6/12小时内出现为红/橙/黄",
    "暴雪": "气温≤1°C时的降水计为降雪；12小时降雪≥4/6mm为蓝/黄，6小时降雪≥10/15mm为橙/红",
}


def _evidence(grid: SignalGrid, signal: str, stations, r: int, level: int, rules: WarningRules) -> dict:
    """The observations behind the level at hour r: the stations of the area at that level."""
    lv = grid.levels[signal][r, stations]
    at = [s for s, v in zip(stations, lv) if v == level] or list(stations)
    meas = grid.measures[signal]
    obs = []
    for s in at[: rules.max_evidence_stations]:
        sid = grid.stations.station_id.iloc[s]
        rec = {"站点": sid, "时间": _local(grid.hours[r], rules.tz)}
        if sid in grid.daily:
            rec["资料"] = "日值"
            rec["日期"] = str(local_days(pd.Series([grid.hours[r]]), rules.tz).iloc[0].date())
        for name, frame in meas.items():
            v = frame.iat[r, s]
            if name == "路面温度来源":
                if isinstance(v, (bool, np.bool_)):
                    rec[name] = "路面传感器" if bool(v) else "气温代替"
            elif v == v and v is not None and np.isfinite(v):
                rec[name] = round(float(v), 2)
        obs.append(rec)
    ev = {"触发站点": [grid.stations.station_id.iloc[s] for s in at], "触发观测": obs}
    if signal in DAILY_CRITERIA and any(grid.stations.station_id.iloc[s] in grid.daily for s in at):
        ev["日值判据"] = DAILY_CRITERIA[signal]
    return ev


def _note(signal: str, action: str, level: int, ev: dict) -> str:
    o = ev["触发观测"][0] if ev["触发观测"] else {}
    what = {"发布": "发布", "升级": "升级为", "降级": "降级为", "解除": "解除", "更新": "更新"}[action]
    head = f"{signal}{LEVELS[level]}预警{what}" if action in ("发布", "解除") else f"{signal}预警{what}{LEVELS[level]}"
    if action == "解除":
        return f"{head}：已连续数小时不再满足{LEVELS[level]}预警条件"
    if o.get("资料") == "日值" and signal == "寒潮":
        grade = next((name for lv, name, _f, _t in COLD_WAVE_GRADES if lv == level), "")
        tail = (f"{o.get('站点')} {o.get('日期')} 日最低气温 {o.get('日最低气温')}°C，24小时降温 "
                f"{o.get('日最低气温24小时降温')}°C，48小时降温 {o.get('日最低气温48小时降温')}°C，72小时降温 "
                f"{o.get('日最低气温72小时降温')}°C（日值，GB/T 21987 {grade}）")
    elif o.get("资料") == "日值" and signal == "暴雪":
        tail = f"{o.get('站点')} {o.get('日期')} 24小时降雪量 {o.get('24小时降雪量')}mm（日值）"
    elif signal == "寒潮":
        tail = (f"{o.get('站点')} 24小时最低气温 {o.get('24小时最低气温')}°C，24小时降温 {o.get('24小时降温')}°C，"
                f"48小时降温 {o.get('48小时降温')}°C，最大风速 {o.get('24小时最大风速')}m/s")
    elif signal == "暴雪":
        tail = f"{o.get('站点')} 12小时降雪 {o.get('12小时降雪量')}mm，6小时降雪 {o.get('6小时降雪量')}mm"
    else:
        lead = o.get("预报结冰提前小时")
        tail = (f"{o.get('站点')} 路面温度 {o.get('路面温度')}°C（{o.get('路面温度来源')}），小时降水 {o.get('小时降水量')}mm"
                + (f"，预报 {lead:g} 小时后结冰" if lead is not None else ""))
    return f"{head}：{tail}"


def warnings_from(clean: pd.DataFrame, rules: WarningRules = WarningRules(),
                  daily: pd.DataFrame | None = None) -> Warnings:
    """Alerts and history from DQ-cleaned weather (observed + forecast; `daily`: daily records)."""
    return episodes(signal_grid(clean, rules, daily), rules)


# ------------------------------------------------------------------------------ the hub

def save_warnings(conn: sa.Connection, w: Warnings) -> dict:
    """The warnings through the alert API (workbench.alerts.publish): new ones raised,
    changed ones updated, with the episodes' own history rows (发布 at 06:00, 升级 at 14:00 …)
    appended once each; unchanged ones add nothing."""
    from workbench import alerts

    a = w.alerts.drop(columns=[c for c in w.alerts.columns if c.startswith("_")])
    out = alerts.publish(conn, a, history=w.history.assign(actor=SOURCE), actor=SOURCE)
    return {"alerts_new": out["new"], "alerts_updated": out["updated"], "alert_history_new": out["history"]}


# ------------------------------------------------------------------------------ one run

@dataclass
class EngineRun:
    """What one run of the engine found and wrote."""

    observations: int
    stations: int
    findings: pd.DataFrame
    excluded: pd.DataFrame
    warnings: Warnings
    events: pd.DataFrame  # the inspection tasks the warnings set off (case rows)
    written: dict
    linkage: object = None  # what workbench.linkage.run returned, when it ran
    notes: list = field(default_factory=list)  # daily records recognised; criteria that could not be judged
    daily: int = 0  # daily records among the observations

    def summary(self) -> dict:
        a = self.warnings.alerts
        by = (a.groupby(["category", "level"]).size().reset_index(name="n") if len(a)
              else pd.DataFrame(columns=["category", "level", "n"]))
        return {
            "observations": self.observations, "stations": self.stations,
            "findings": {k: int(v) for k, v in self.findings.groupby("kind").size().items()},
            "excluded_values": int(len(self.excluded)),
            "excluded_by_kind": {k: int(v) for k, v in self.excluded.groupby("kind").size().items()},
            "episodes": int(len(a)),
            "episodes_by_level": [{"category": r.category, "level": r.level, "n": int(r.n)} for r in by.itertuples()],
            "active": int((a["status"] == "生效中").sum()) if len(a) else 0,
            "tasks": int(len(self.events)),
            "daily_records": self.daily,
            "notes": list(self.notes),
            "written": self.written,
        }


STEPS = ("读取气象观测", "数据质量检查", "预警判定", "写入数据中台", "生成巡查任务", "隐患整改与逾期告警")


def run_engine(eng=None, *, weather: pd.DataFrame | None = None, quality=None,
               rules: WarningRules = WarningRules(), progress=None, linkage: bool = True) -> EngineRun:
    """Data quality, warnings, inspection tasks and overdue major hazards over the hub.

    Writes data_quality; the warnings through the alert API (workbench.alerts); the tasks
    they set off as inspection_task cases (workbench.cases, in city_events); every hazard's
    rectification case opened and moved by the ledger's dates, and one 重大隐患逾期 alert per
    open major hazard past its deadline (lifted once rectified). Then, when the linkage
    module exists and `linkage`, the city's linkage rules for safety's alerts. Idempotent;
    on more data it continues the episodes. `progress(step)` is called with a Chinese step
    name (STEPS) before each step."""
    from workbench.safety import hazards as hz
    from workbench.safety import tasks as tk
    from workbench.safety.weather import QualityRules, check_weather, save_findings
    from workbench.store import hub

    step = progress or (lambda _s: None)
    eng = eng or hub.engine()
    step(STEPS[0])
    wx = hub.read("weather", eng=eng) if weather is None else weather
    step(STEPS[1])
    report = check_weather(wx, quality or QualityRules.configured(wx, tz=rules.tz))
    step(STEPS[2])
    grid = signal_grid(report.clean, rules, report.daily)
    w = episodes(grid, rules)
    with eng.begin() as conn:
        step(STEPS[3])
        f_new, f_upd = save_findings(conn, report.findings)
        written = {"findings_new": f_new, "findings_updated": f_upd, **save_warnings(conn, w)}
        step(STEPS[4])
        events = tk.cold_weather_tasks(conn, w.alerts)
        opened = tk.open_tasks(conn, events)
        written.update(events_new=opened, event_history_new=opened * 3)  # intake, 案卷建立, 任务派遣
        step(STEPS[5])
        written.update(hz.raise_overdue(conn))
    linked = None
    if linkage and importlib.util.find_spec("workbench.linkage") is not None:
        from workbench import linkage as lk

        linked = lk.run(eng, departments=["safety"])
    n_daily = int(len(report.daily))
    n_stations = len(set(report.clean["station_id"]) | set(report.daily.get("station_id", pd.Series(dtype=str))))
    return EngineRun(int((report.clean["kind"] == "observed").sum()) + n_daily, n_stations,
                     report.findings, report.excluded, w, events, written, linked,
                     notes=report.notes + grid.notes, daily=n_daily)
