"""Dispatch: which department, how urgent, by when, and whether a report repeats a case.

The rules live in a YAML file per city (workbench/events/cities/<city>.yaml): the event
classes with their group and deadlines, routing rules (class, group, district, street,
keywords → department, first match wins, else the default department), urgency keywords,
the working calendar (working hours, public holidays, 调休 working weekends), the city's
bounds and the duplicate window. Everything here is a pure function over DataFrames.

Deadlines: an urgent case has clock hours; a routine case has working hours, counted only
inside the working hours of working days (weekends and holidays out, 调休 weekends in).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from workbench import clock

CITIES = Path(__file__).with_name("cities")
DEFAULT_CITY = "zhuzhou"
URGENT, ROUTINE = "紧急", "一般"


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Rule:
    department: str
    classes: frozenset | None = None
    groups: frozenset | None = None
    districts: frozenset | None = None
    streets: frozenset | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class CityRules:
    name: str
    timezone: str
    lat: tuple[float, float]
    lon: tuple[float, float]
    classes: dict  # class → {group, urgent, urgent_hours, work_hours}
    routing: tuple[Rule, ...]
    default_department: str
    default_source: str
    unknown_class: str = "quarantine"
    urgent_keywords: tuple[str, ...] = ()
    duplicate_m: float = 100.0
    duplicate_hours: float = 24.0
    near_due_share: float = 0.2
    working_hours: tuple[tuple[int, int], ...] = ((540, 720), (810, 1110))  # minutes of the day
    holidays: frozenset = field(default_factory=frozenset)   # extra days off (a city's own)
    workdays: frozenset = field(default_factory=frozenset)   # extra working days
    calendar: str = "weekdays"   # china: official holidays and 调休 days (workbench.clock); weekdays: Mon–Fri
    path: str = ""

    @property
    def minutes_per_day(self) -> int:
        return sum(e - s for s, e in self.working_hours)

    def in_bounds(self, lat: pd.Series, lon: pd.Series) -> pd.Series:
        return lat.between(*self.lat) & lon.between(*self.lon)

    def known_class(self, cls: pd.Series) -> pd.Series:
        if self.unknown_class == "accept":
            return pd.Series(True, index=cls.index)
        return cls.isin(list(self.classes))

    def group_of(self, cls: pd.Series) -> pd.Series:
        return cls.astype(object).map({c: m.get("group") for c, m in self.classes.items()})


def _calendar(raw: dict) -> str:
    cal = str(raw.get("calendar") or ("china" if raw.get("timezone", "Asia/Shanghai") == clock.TZ else "weekdays"))
    if cal not in ("china", "weekdays"):
        raise ValueError(f"calendar 应为 china 或 weekdays，而不是 {cal}")
    return cal


def _as_set(value) -> frozenset | None:
    if value is None:
        return None
    return frozenset([value] if isinstance(value, (str, int)) else map(str, value))


def _minutes(text: str) -> int:
    h, m = str(text).split(":")
    return int(h) * 60 + int(m)


def load_rules(city: str | Path | None = None) -> CityRules:
    """The rules of `city` (a name under workbench/events/cities/, or a YAML path)."""
    return _load(str(city or DEFAULT_CITY))


@lru_cache(maxsize=16)
def _load(city: str) -> CityRules:
    path = Path(city)
    if not path.suffix:
        path = CITIES / f"{city}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CITIES.glob("*.yaml")))
        raise RulesError(f"{path.name}: 找不到城市规则文件（已有：{known}）")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RulesError(f"{path.name}: YAML 格式错误：{exc}") from None
    try:
        routing = tuple(
            Rule(department=str(r["department"]), classes=_as_set(r.get("class")), groups=_as_set(r.get("group")),
                 districts=_as_set(r.get("district")), streets=_as_set(r.get("street")),
                 keywords=tuple(map(str, r.get("keywords") or ())))
            for r in raw.get("routing") or ())
        b = raw["bounds"]
        dup = raw.get("duplicate") or {}
        return CityRules(
            name=str(raw.get("city", path.stem)), timezone=str(raw.get("timezone", "Asia/Shanghai")),
            lat=(float(b["lat"][0]), float(b["lat"][1])), lon=(float(b["lon"][0]), float(b["lon"][1])),
            classes={str(k): dict(v or {}) for k, v in (raw.get("classes") or {}).items()},
            routing=routing, default_department=str(raw["default_department"]),
            default_source=str(raw.get("default_source", "")),
            unknown_class=str(raw.get("unknown_class", "quarantine")),
            urgent_keywords=tuple(map(str, raw.get("urgent_keywords") or ())),
            duplicate_m=float(dup.get("distance_m", 100)), duplicate_hours=float(dup.get("window_hours", 24)),
            near_due_share=float(raw.get("near_due_share", 0.2)),
            working_hours=tuple((_minutes(s), _minutes(e)) for s, e in raw.get("working_hours") or ()),
            holidays=frozenset(pd.Timestamp(d).date() for d in raw.get("holidays") or ()),
            workdays=frozenset(pd.Timestamp(d).date() for d in raw.get("workdays") or ()),
            calendar=_calendar(raw),
            path=str(path),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RulesError(f"{path.name}: 规则不完整或格式错误：{type(exc).__name__} {exc}") from None


# ------------------------------------------------------------------ routing and urgency

def _text(df: pd.DataFrame, col: str) -> pd.Series:
    return df[col].astype("string").fillna("") if col in df else pd.Series("", index=df.index, dtype="string")


def route(events: pd.DataFrame, rules: CityRules) -> pd.DataFrame:
    """department (and the rule that chose it: `rule`, -1 for the default) per event."""
    cls, grp = _text(events, "event_class"), _text(events, "event_group")
    grp = grp.where(grp != "", rules.group_of(cls).astype("string").fillna(""))
    dist, street, desc = _text(events, "district"), _text(events, "street"), _text(events, "description")
    dept = pd.Series(rules.default_department, index=events.index, dtype=object)
    which = pd.Series(-1, index=events.index, dtype=np.int64)
    todo = pd.Series(True, index=events.index)
    for i, r in enumerate(rules.routing):
        m = todo.copy()
        for values, col in ((r.classes, cls), (r.groups, grp), (r.districts, dist), (r.streets, street)):
            if values is not None:
                m &= col.isin(list(values))
        if r.keywords:
            m &= desc.str.contains("|".join(map(re.escape, r.keywords)), regex=True)
        if not m.any():
            continue
        if "{" in r.department:
            dept[m] = [r.department.format(street=s, district=d) for s, d in zip(street[m], dist[m])]
        else:
            dept[m] = r.department
        which[m] = i
        todo &= ~m
    return pd.DataFrame({"department": dept, "rule": which, "event_group": grp.replace("", pd.NA)})


def urgency(events: pd.DataFrame, rules: CityRules) -> pd.Series:
    """紧急 for classes urgent by default or a description with an urgent keyword, else 一般."""
    cls, desc = _text(events, "event_class"), _text(events, "description")
    urgent = cls.astype(object).map({c: bool(m.get("urgent")) for c, m in rules.classes.items()}).eq(True)
    if rules.urgent_keywords:
        urgent |= desc.str.contains("|".join(map(re.escape, rules.urgent_keywords)), regex=True)
    return pd.Series(np.where(urgent, URGENT, ROUTINE), index=events.index, dtype=object)


# ------------------------------------------------------------------ working calendar

def _utc(ts_local: pd.Series, tz: str) -> pd.Series:
    return (pd.to_datetime(ts_local).dt.tz_localize(tz, ambiguous="NaT", nonexistent="shift_forward")
            .dt.tz_convert("UTC").dt.tz_localize(None))


def is_workday(days, rules: CityRules) -> np.ndarray:
    """Working days. A Chinese city (`calendar: china`): the official calendar of public
    holidays and 调休 make-up days (workbench.clock, PyPI chinese-calendar); elsewhere Monday
    to Friday. The city's own `holidays` and `workdays` are applied on top (extra days)."""
    idx = pd.DatetimeIndex(days)
    dates = [d.date() for d in idx]
    if rules.calendar == "china":
        base = np.array([_official_workday(d) for d in dates], bool)
    else:
        base = np.asarray(idx.day_of_week < 5)
    hol = np.array([d in rules.holidays for d in dates], bool)
    extra = np.array([d in rules.workdays for d in dates], bool)
    return (base & ~hol) | extra


@lru_cache(maxsize=8192)
def _official_workday(day) -> bool:
    return clock.is_workday(day)


def _worked_by(minute: np.ndarray, rules: CityRules) -> np.ndarray:
    """Working minutes of a working day done by `minute` of the day."""
    out = np.zeros(len(minute), float)
    for s, e in rules.working_hours:
        out += np.clip(minute - s, 0, e - s)
    return out


def add_working_hours(ts_utc: pd.Series, hours, rules: CityRules) -> pd.Series:
    """`ts_utc` (naive UTC) moved forward by `hours` working hours of the city's calendar."""
    ts_utc = pd.to_datetime(pd.Series(ts_utc)).reset_index(drop=True)
    hours = np.broadcast_to(np.asarray(hours, float), (len(ts_utc),))
    out = pd.Series(pd.NaT, index=ts_utc.index, dtype="datetime64[ns]")
    ok = ts_utc.notna().to_numpy() & np.isfinite(hours)
    if not ok.any() or rules.minutes_per_day <= 0:
        return out
    loc = clock.to_local(ts_utc[ok], rules.timezone)
    day0 = loc.dt.normalize().min() - pd.Timedelta(days=1)
    span = int(np.nanmax(hours[ok]) * 60 / rules.minutes_per_day * 7 / 4) + 40 + \
        int((loc.max() - loc.min()).days)
    days = pd.date_range(day0, periods=span + 2, freq="D")
    work = is_workday(days, rules)
    per = np.where(work, rules.minutes_per_day, 0).astype(float)
    start_c = np.concatenate([[0.0], np.cumsum(per)[:-1]])  # working minutes before each day
    end_c = start_c + per
    d_idx = ((loc.dt.normalize() - day0).dt.days).to_numpy()
    minute = (loc.dt.hour * 60 + loc.dt.minute + loc.dt.second / 60).to_numpy(float)
    w = start_c[d_idx] + np.where(work[d_idx], _worked_by(minute, rules), 0.0)
    target = w + hours[ok] * 60
    j = np.searchsorted(end_c, target - 1e-9, side="left")
    j = np.minimum(j, len(days) - 1)
    r = target - start_c[j]
    mod = np.full(len(r), np.nan)
    left = r.copy()
    for s, e in rules.working_hours:
        length = e - s
        here = np.isnan(mod) & (left <= length + 1e-9)
        mod[here] = s + left[here]
        left = np.where(np.isnan(mod), left - length, left)
    mod = np.where(np.isnan(mod), rules.working_hours[-1][1], mod)
    local_deadline = pd.Series(days[j]) + pd.to_timedelta(np.round(mod * 60), unit="s")
    out[ok] = _utc(local_deadline, rules.timezone).to_numpy()
    return out


def working_hours_between(start_utc: pd.Series, end_utc: pd.Series, rules: CityRules) -> pd.Series:
    """Working hours from start to end (both naive UTC); NaN where either is missing."""
    start_utc = pd.to_datetime(pd.Series(start_utc)).reset_index(drop=True)
    end_utc = pd.to_datetime(pd.Series(end_utc)).reset_index(drop=True)
    ok = (start_utc.notna() & end_utc.notna()).to_numpy()
    out = np.full(len(start_utc), np.nan)
    if not ok.any():
        return pd.Series(out)
    a, b = clock.to_local(start_utc[ok], rules.timezone), clock.to_local(end_utc[ok], rules.timezone)
    day0 = min(a.min(), b.min()).normalize()
    days = pd.date_range(day0, max(a.max(), b.max()).normalize() + pd.Timedelta(days=1), freq="D")
    work = is_workday(days, rules)
    per = np.where(work, rules.minutes_per_day, 0).astype(float)
    start_c = np.concatenate([[0.0], np.cumsum(per)[:-1]])

    def w(x):
        d = ((x.dt.normalize() - day0).dt.days).to_numpy()
        m = (x.dt.hour * 60 + x.dt.minute + x.dt.second / 60).to_numpy(float)
        return start_c[d] + np.where(work[d], _worked_by(m, rules), 0.0)

    out[ok] = (w(b) - w(a)) / 60
    return pd.Series(out)


def deadlines(events: pd.DataFrame, rules: CityRules, urgency_col: str = "urgency") -> pd.Series:
    """Deadline per event (naive UTC): urgent → ts + clock hours; routine → ts + working hours."""
    cls = _text(events, "event_class")
    urgent = (events[urgency_col] == URGENT).to_numpy() if urgency_col in events else np.zeros(len(events), bool)
    u_h = cls.astype(object).map({c: m.get("urgent_hours", 4) for c, m in rules.classes.items()}).fillna(4).to_numpy(float)
    w_h = cls.astype(object).map({c: m.get("work_hours", 8) for c, m in rules.classes.items()}).fillna(8).to_numpy(float)
    ts = pd.to_datetime(events["ts"]).reset_index(drop=True)
    routine = add_working_hours(ts, w_h, rules)
    clock = ts + pd.to_timedelta(u_h, unit="h")
    out = pd.Series(np.where(urgent, clock.to_numpy(), routine.to_numpy()), dtype="datetime64[ns]")
    out.index = events.index
    return out


# ------------------------------------------------------------------ duplicates

def _metres(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Equirectangular distance in metres (exact enough below a few km)."""
    k = math.pi / 180
    x = (lon2 - lon1) * k * np.cos((lat1 + lat2) / 2 * k)
    y = (lat2 - lat1) * k
    return 6_371_000 * np.sqrt(x * x + y * y)


def find_duplicates(new: pd.DataFrame, known: pd.DataFrame, rules: CityRules) -> pd.Series:
    """For each row of `new`, the event it repeats (or None): an earlier event of the same
    class within `duplicate.distance_m` metres and `duplicate.window_hours` hours, itself not
    a duplicate (a repeat of a repeat joins the first case). `known`: events already in the
    hub near in time (event_id, ts, event_class, lat, lon, duplicate_of)."""
    out = pd.Series(None, index=new.index, dtype=object)
    if new.empty or rules.duplicate_m <= 0 or rules.duplicate_hours <= 0:
        return out
    cols = ["event_id", "ts", "event_class", "lat", "lon"]
    if (known is None or known.empty) and not new["event_class"].duplicated().any():
        return out  # nothing earlier of the same class to repeat (the common case of one live message)
    pool, n, k = _pool(new, known, cols)
    pool = pool[pool["lat"].notna() & pool["lon"].notna() & pool["ts"].notna()]
    pool["ts"] = pd.to_datetime(pool["ts"])
    if pool.empty:
        return out
    lat0 = float(pool["lat"].mean())
    dy = rules.duplicate_m / 111_320
    dx = dy / max(0.05, math.cos(math.radians(lat0)))
    pool["cx"] = np.floor(pool["lon"].astype(float) / dx).astype(np.int64)
    pool["cy"] = np.floor(pool["lat"].astype(float) / dy).astype(np.int64)
    probes = pool[pool["_new"] >= 0]
    parts = []
    for ox in (-1, 0, 1):
        for oy in (-1, 0, 1):
            parts.append(probes.assign(cx=probes["cx"] + ox, cy=probes["cy"] + oy))
    probe = pd.concat(parts, ignore_index=True)
    pairs = _earlier_within(probe.merge(pool, on=["event_class", "cx", "cy"], suffixes=("", "_c")), rules)
    if pairs.empty:
        return out
    d = _metres(pairs["lat"].astype(float).to_numpy(), pairs["lon"].astype(float).to_numpy(),
                pairs["lat_c"].astype(float).to_numpy(), pairs["lon_c"].astype(float).to_numpy())
    pairs = pairs[d <= rules.duplicate_m]
    return _first_cases(pairs, n, k, out)


def _pool(new: pd.DataFrame, known: pd.DataFrame | None, cols: list[str]
          ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The candidates of a duplicate search: the hub's recent events (`_new` = -1) and the new
    ones (`_new` = their position), with `cols` and duplicate_of. Returns (pool, new, known)."""
    k = known[cols + ["duplicate_of"]].copy() if known is not None and len(known) else \
        pd.DataFrame(columns=cols + ["duplicate_of"])
    k["_new"] = -1
    n = new[cols].copy()
    n["duplicate_of"] = None
    n["_new"] = np.arange(len(n))
    return pd.concat([k, n], ignore_index=True), n, k


def _earlier_within(pairs: pd.DataFrame, rules: CityRules) -> pd.DataFrame:
    """Candidate pairs whose candidate came earlier (at the same time: held, or earlier in the
    batch) and within the window, never a record paired with itself."""
    same_time = pairs["ts_c"] == pairs["ts"]
    earlier = (pairs["ts_c"] < pairs["ts"]) | (same_time & (pairs["_new_c"] >= 0) & (pairs["_new_c"] < pairs["_new"]))
    earlier |= same_time & (pairs["_new_c"] < 0)
    window = pd.Timedelta(hours=rules.duplicate_hours)
    return pairs[earlier & (pairs["ts"] - pairs["ts_c"] <= window) & (pairs["event_id_c"] != pairs["event_id"])]


def _first_cases(pairs: pd.DataFrame, n: pd.DataFrame, k: pd.DataFrame, out: pd.Series) -> pd.Series:
    """Each new record's case from its candidate pairs (`_new`, `event_id_c`, `_new_c`, `ts_c`):
    in time order, a candidate counts only if it is a case itself (a repeat of a repeat joins
    the first case)."""
    pairs = pairs.sort_values(["_new", "ts_c"])
    master_of: dict[int, str | None] = {}
    known_dup = dict(zip(k["event_id"], k["duplicate_of"]))
    cand = pairs.groupby("_new", sort=True)
    order = n.assign(ts=pd.to_datetime(n["ts"])).sort_values(["ts", "_new"])["_new"].to_numpy()
    groups = {i: g for i, g in cand}
    for i in order:
        g = groups.get(i)
        if g is None:
            continue
        for cid, cnew in zip(g["event_id_c"], g["_new_c"]):
            if cnew >= 0:
                if master_of.get(int(cnew)) is None:
                    master_of[int(i)] = cid
                    break
            else:
                dup = known_dup.get(cid)
                master_of[int(i)] = dup if isinstance(dup, str) and dup else cid
                break
    for i, m in master_of.items():
        if m is not None:
            out.iloc[i] = m
    return out


def address_key(address: pd.Series) -> pd.Series:
    """Address text as a key: NFKC, without spaces and punctuation, lower case."""
    t = address.astype("string").str.normalize("NFKC").str.replace(r"[\s\W_]+", "", regex=True).str.lower()
    return t.where(t.str.len() > 0)


# what makes an address name one place rather than an area: a number (12号, 3栋) or a road,
# lane, estate or village (a district or street name alone covers thousands of doors)
_SPECIFIC = r"\d|路|街(?!道)|巷|弄|大道|小区|花园|苑|村|栋|广场|市场|学校|医院|公园|桥"


def specific_address(address: pd.Series) -> pd.Series:
    """Whether each address names a place narrower than its street or district."""
    from workbench import geo

    t = address.astype("string").str.normalize("NFKC")
    for d in geo.DISTRICTS:   # a district's own name (醴陵市, 攸县) is no road
        t = t.str.replace(d.name, "", regex=False)
    t = t.str.replace(r"[^\s]*?街道(办事处)?|[^\s]*?[镇乡]", "", regex=True)
    return t.str.contains(_SPECIFIC, regex=True, na=False)


def find_address_duplicates(new: pd.DataFrame, known: pd.DataFrame | None, rules: CityRules) -> pd.Series:
    """For records without coordinates (a hotline's work orders): the earlier case of the same
    class at the same address (`address_key`) within `duplicate.window_hours` hours, itself not
    a duplicate. Call it for records whose address placed them to a street or district: an
    address that names nothing known ("小区门口") says nothing about the place being the same;
    nor does one naming only a street or district ("芦淞区"): only a `specific_address` merges."""
    out = pd.Series(None, index=new.index, dtype=object)
    if new.empty or rules.duplicate_m <= 0 or rules.duplicate_hours <= 0:
        return out
    cols = ["event_id", "ts", "event_class", "address"]
    pool, n, k = _pool(new, known, cols)
    pool["_key"] = address_key(pool["address"])
    pool = pool[pool["_key"].notna() & pool["ts"].notna() & specific_address(pool["address"]).to_numpy()]
    pool["ts"] = pd.to_datetime(pool["ts"])
    probes = pool[pool["_new"] >= 0]
    if probes.empty:
        return out
    pairs = _earlier_within(probes.merge(pool, on=["event_class", "_key"], suffixes=("", "_c")), rules)
    if pairs.empty:
        return out
    return _first_cases(pairs, n, k, out)


__all__ = ["CITIES", "DEFAULT_CITY", "URGENT", "ROUTINE", "RulesError", "Rule", "CityRules", "load_rules", "route",
           "urgency", "is_workday", "add_working_hours", "working_hours_between", "deadlines", "find_duplicates",
           "address_key", "specific_address", "find_address_duplicates"]
