"""Compliance of school canteens: a score per canteen and school day, repeat offenders, and
the rectification flow of each case (open → notified → rectified → verified).

Score of a canteen on a school day (Mon–Fri, Asia/Shanghai):
    weighted = Σ severity weight of the day's violations (critical 5, warning 2, info 1)
    per_hour = weighted / kitchen hours of the day (its staff hours; 8 when unknown)
    score    = max(0, 100 − 20 × per_hour)
so a clean day is 100, one warning in an 8-hour kitchen day costs 5 points, a rodent 12.5.
A canteen's score over a period is the mean of its school days' scores (clean days count).
A repeat offender shows the same violation class on at least `min_days` different school
days within `window_days`. docs/canteen.md explains the numbers.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from workbench import config
from workbench.canteen.rules import parse_hours
from workbench.store.schema import DATASETS

SEVERITY_WEIGHTS = {"critical": 5.0, "warning": 2.0, "info": 1.0}
PENALTY = 20.0            # points per weighted violation per kitchen hour
DEFAULT_HOURS = 8.0
STATUSES = ("open", "notified", "rectified", "verified")
STATUS_LABELS = {"open": "待处理", "notified": "已通知", "rectified": "已整改", "verified": "已复核"}  # = ui.labels
# allowed moves: forward one step, or back from 已整改 to 已通知 (the check found it not fixed)
TRANSITIONS = {"open": ("notified",), "notified": ("rectified",), "rectified": ("verified", "notified"),
               "verified": ()}


class CaseError(Exception):
    """A status change that is not allowed (the message says why, in Chinese)."""


@dataclass
class CanteenData:
    canteens: pd.DataFrame
    cameras: pd.DataFrame
    violations: pd.DataFrame   # with local_date (Asia/Shanghai)
    history: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.canteens.empty and self.violations.empty


def load(eng=None, since=None) -> CanteenData:
    from workbench.store import hub

    can = hub.read("canteens", eng=eng)
    cams = hub.read("cameras", eng=eng)
    v = hub.read("canteen_violations", since=since, eng=eng)
    hist = hub.read("canteen_case_history", eng=eng)
    return CanteenData(can, cams, with_local_date(v), hist)


def with_local_date(v: pd.DataFrame) -> pd.DataFrame:
    v = v.copy()
    if v.empty:
        v["local_date"] = pd.Series(dtype="datetime64[ns]")
        return v
    v["ts"] = pd.to_datetime(v["ts"])
    v["local_date"] = v["ts"].dt.tz_localize("UTC").dt.tz_convert(config.TZ).dt.tz_localize(None).dt.normalize()
    return v


def kitchen_hours(staff_hours) -> float:
    """Hours of kitchen work in a day from '06:30-13:30,15:30-17:30' (8 when unknown)."""
    if not isinstance(staff_hours, str) or not staff_hours.strip():
        return DEFAULT_HOURS
    try:
        return sum(b - a for a, b in parse_hours(staff_hours)) / 60 or DEFAULT_HOURS
    except Exception:  # noqa: BLE001 - a malformed value in the registry is not fatal here
        return DEFAULT_HOURS


def school_days(start, end) -> pd.DatetimeIndex:
    """Mon–Fri local dates from start to end (inclusive)."""
    return pd.bdate_range(pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize())


def daily_scores(data: CanteenData, start=None, end=None) -> pd.DataFrame:
    """One row per canteen and school day: violations, weighted, per_hour, score."""
    cols = ["canteen_id", "date", "violations", "weighted", "hours", "per_hour", "score"]
    v = data.violations
    can = data.canteens
    if can.empty and v.empty:
        return pd.DataFrame(columns=cols)
    if start is None or end is None:
        if v.empty:
            return pd.DataFrame(columns=cols)
        start = v["local_date"].min() if start is None else start
        end = v["local_date"].max() if end is None else end
    days = school_days(start, end)
    ids = can["canteen_id"].tolist() if not can.empty else sorted(v["canteen_id"].unique())
    ids += sorted(set(v["canteen_id"]) - set(ids)) if not v.empty else []
    grid = pd.MultiIndex.from_product([ids, days], names=["canteen_id", "date"])
    if not v.empty:
        w = v.assign(w=v["severity"].map(SEVERITY_WEIGHTS).fillna(SEVERITY_WEIGHTS["warning"]))
        g = w.groupby(["canteen_id", "local_date"]).agg(violations=("violation_id", "size"), weighted=("w", "sum"))
        g.index = g.index.set_names(["canteen_id", "date"])
        out = g.reindex(grid, fill_value=0)
    else:
        out = pd.DataFrame(0, index=grid, columns=["violations", "weighted"])
    out = out.reset_index()
    hours = can.set_index("canteen_id")["staff_hours"].map(kitchen_hours) if "staff_hours" in can else pd.Series(dtype=float)
    out["hours"] = out["canteen_id"].map(hours).fillna(DEFAULT_HOURS)
    out["per_hour"] = out["weighted"] / out["hours"]
    out["score"] = (100 - PENALTY * out["per_hour"]).clip(lower=0).round(1)
    out["violations"] = out["violations"].astype(int)
    return out[cols]


def canteen_scores(data: CanteenData, days: int = 30, end=None) -> pd.DataFrame:
    """Canteens ranked by their mean daily score over the last `days` school days up to
    `end` (default: the latest violation), lowest first; with counts, open cases and the
    repeat-offender flag."""
    cols = ["rank", "canteen_id", "name", "school_type", "district", "score", "violations", "critical",
            "weighted_per_hour", "open_cases", "repeat", "top_class", "school_days"]
    v = data.violations
    if data.canteens.empty and v.empty:
        return pd.DataFrame(columns=cols)
    end = pd.Timestamp(end).normalize() if end is not None else (
        v["local_date"].max() if not v.empty else pd.Timestamp.now(tz=config.TZ).tz_localize(None).normalize())
    days_idx = school_days(end - pd.Timedelta(days=int(days * 7 / 5) + 7), end)[-days:]
    if not len(days_idx):
        return pd.DataFrame(columns=cols)
    daily = daily_scores(data, days_idx[0], days_idx[-1])
    g = daily.groupby("canteen_id").agg(score=("score", "mean"), violations=("violations", "sum"),
                                        weighted=("per_hour", "mean"), school_days=("date", "nunique"))
    g["score"] = g["score"].round(1)
    g["weighted_per_hour"] = g.pop("weighted").round(4)
    win = v[(v["local_date"] >= days_idx[0]) & (v["local_date"] <= days_idx[-1])] if not v.empty else v
    if not win.empty:
        g["critical"] = win[win["severity"] == "critical"].groupby("canteen_id").size().reindex(g.index).fillna(0)
        g["top_class"] = win.groupby("canteen_id")["violation_class"].agg(lambda s: s.value_counts().index[0])
    else:
        g["critical"], g["top_class"] = 0, None
    g["critical"] = g["critical"].astype(int)
    opn = v[v["status"].isin(["open", "notified", "rectified"])].groupby("canteen_id").size() if not v.empty else pd.Series(dtype=int)
    g["open_cases"] = opn.reindex(g.index).fillna(0).astype(int)
    rep = repeat_offenders(data, end=end)
    g["repeat"] = g.index.isin(rep["canteen_id"]) if not rep.empty else False
    info = data.canteens.set_index("canteen_id") if not data.canteens.empty else pd.DataFrame()
    for c in ("name", "school_type", "district"):
        g[c] = info[c].reindex(g.index) if c in info else None
    g = g.reset_index().sort_values(["score", "violations", "canteen_id"], ascending=[True, False, True],
                                    kind="stable")
    g["name"] = g["name"].fillna(g["canteen_id"])
    g["rank"] = np.arange(1, len(g) + 1)
    return g[cols].reset_index(drop=True)


def repeat_offenders(data: CanteenData, window_days: int = 30, min_days: int = 3, end=None) -> pd.DataFrame:
    """Canteens with the same violation class on ≥ min_days days within the last window_days."""
    cols = ["canteen_id", "name", "district", "violation_class", "days", "violations", "last_ts"]
    v = data.violations
    if v.empty:
        return pd.DataFrame(columns=cols)
    end = pd.Timestamp(end).normalize() if end is not None else v["local_date"].max()
    w = v[(v["local_date"] > end - pd.Timedelta(days=window_days)) & (v["local_date"] <= end)]
    g = w.groupby(["canteen_id", "violation_class"]).agg(days=("local_date", "nunique"),
                                                         violations=("violation_id", "size"),
                                                         last_ts=("ts", "max")).reset_index()
    g = g[g["days"] >= min_days]
    if not data.canteens.empty:
        g = g.merge(data.canteens[["canteen_id", "name", "district"]], on="canteen_id", how="left")
    else:
        g["name"], g["district"] = g["canteen_id"], None
    return g.sort_values(["days", "violations"], ascending=False)[cols].reset_index(drop=True)


def cases(data: CanteenData, statuses=("open", "notified", "rectified"), canteen_id: str | None = None) -> pd.DataFrame:
    """Violations whose case is not closed (newest first), optionally of one canteen."""
    v = data.violations
    if v.empty:
        return v
    out = v[v["status"].isin(statuses)] if statuses else v
    if canteen_id:
        out = out[out["canteen_id"] == canteen_id]
    return out.sort_values("ts", ascending=False)


def set_case_status(violation_id: str, status: str, *, actor: str | None = None, note: str | None = None,
                    ts: dt.datetime | None = None, eng=None) -> dict:
    """Move one case to `status` (TRANSITIONS), in one transaction with its history row."""
    from workbench.store import hub
    from workbench.store.ingest import insert_new

    if status not in STATUSES:
        raise CaseError(f"未知的整改状态“{status}”（可选：{'、'.join(STATUS_LABELS.values())}）")
    eng = eng or hub.engine()
    t = DATASETS["canteen_violations"].table
    ts = ts or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with eng.begin() as conn:
        row = conn.execute(sa.select(t.c.status).where(t.c.violation_id == violation_id)).first()
        if row is None:
            raise CaseError(f"没有编号为 {violation_id} 的违规记录")
        old = row[0] or "open"
        if status not in TRANSITIONS.get(old, ()):
            allowed = "、".join(STATUS_LABELS[s] for s in TRANSITIONS.get(old, ())) or "无（已复核，案件关闭）"
            raise CaseError(f"{violation_id} 当前为“{STATUS_LABELS.get(old, old)}”，不能改为“{STATUS_LABELS[status]}”"
                            f"（可改为：{allowed}）")
        conn.execute(t.update().where(t.c.violation_id == violation_id).values(status=status))
        insert_new(conn, DATASETS["canteen_case_history"], pd.DataFrame([{
            "violation_id": violation_id, "ts": ts, "status": status, "actor": actor, "note": note}]))
    return {"violation_id": violation_id, "from": old, "to": status, "ts": ts}
