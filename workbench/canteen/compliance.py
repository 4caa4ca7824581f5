"""Compliance of school canteens: a score per canteen and school day, repeat offenders, and
the rectification case of each violation (待处理 → 已通知 → 已整改 → 已复核, 退回整改 when the
check finds it not fixed), kept by the case engine (workbench.cases, type
canteen_rectification, case_id = violation_id; workbench/canteen/case_types.yaml).

Score of a canteen on a school day (an official working day of China's calendar — holidays
and 调休 make-up days from workbench.clock — in Asia/Shanghai):
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
from functools import lru_cache

import numpy as np
import pandas as pd
import sqlalchemy as sa

from workbench import cases as case_engine
from workbench import clock
from workbench.canteen import rectification as rect
from workbench.canteen.rules import parse_hours

SEVERITY_WEIGHTS = {"critical": 5.0, "warning": 2.0, "info": 1.0}
PENALTY = 20.0            # points per weighted violation per kitchen hour
DEFAULT_HOURS = 8.0
CASE_TYPE = rect.CASE_TYPE
CaseError = case_engine.CaseError   # a refused change (the message says why and what is allowed)


def case_type() -> case_engine.CaseType:
    """The canteen_rectification case type (statuses, transitions, actions with their labels)."""
    return rect.case_type()


def open_statuses() -> tuple[str, ...]:
    return case_type().open_statuses


@dataclass
class CanteenData:
    canteens: pd.DataFrame
    cameras: pd.DataFrame
    violations: pd.DataFrame   # with local_date (Asia/Shanghai)
    history: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.canteens.empty and self.violations.empty


def load(eng=None, since=None, who=None, history: bool = True) -> CanteenData:
    """Canteens, cameras, violations (each with its case's status, deadline and closing time,
    read from `cases`) and the steps of their cases (from `case_history`; `history=False`:
    none, read a canteen's steps when needed with `case_steps`).

    `who` (a workbench.access.Principal): a district user reads only their district's
    canteens, cameras, violations and case steps (the filter is in the queries)."""
    from workbench.access import district_filter
    from workbench.store import hub
    from workbench.store.schema import metadata

    only = district_filter(who)
    ct0, cm0 = metadata.tables["canteens"], metadata.tables["cameras"]
    can = hub.read("canteens", where={"district": only} if only else None, eng=eng)
    if only:
        cams = hub.query(sa.select(cm0).where(cm0.c.canteen_id.in_(
            sa.select(ct0.c.canteen_id).where(ct0.c.district == only))), eng=eng)
        if cams.empty:
            cams = pd.DataFrame(columns=[c.name for c in cm0.c])
    else:
        cams = hub.read("cameras", eng=eng)
    vt, ct = metadata.tables["canteen_violations"], metadata.tables["cases"]
    on = sa.and_(ct.c.case_id == vt.c.violation_id, ct.c.case_type == CASE_TYPE)
    stmt = sa.select(vt, ct.c.status, ct.c.deadline, ct.c.closed_at).select_from(vt.outerjoin(ct, on))
    if since is not None:
        stmt = stmt.where(vt.c.ts >= pd.Timestamp(since).to_pydatetime())
    if only:  # the violation's district, else its canteen's
        mine = sa.select(ct0.c.canteen_id).where(ct0.c.district == only)
        stmt = stmt.where(sa.or_(vt.c.district == only, sa.and_(vt.c.district.is_(None), vt.c.canteen_id.in_(mine))))
    v = hub.query(stmt, eng=eng)
    if len(v):
        v["status"] = v["status"].fillna(case_type().intake)
    hist = case_steps(None, eng=eng, who=who, since=since) if history else _no_steps()
    return CanteenData(can, cams, with_local_date(v), hist)


STEP_COLUMNS = ["violation_id", "ts", "status", "actor", "department", "note"]


def _no_steps() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == "ts" else object) for c in STEP_COLUMNS})


def case_steps(violation_ids=None, eng=None, who=None, since=None) -> pd.DataFrame:
    """The steps (case_history) of the canteen cases of these violations (None: all), in order;
    a district user's only in their district."""
    from workbench.access import district_filter
    from workbench.store import hub
    from workbench.store.schema import metadata

    only = district_filter(who)
    ct, ht = metadata.tables["cases"], metadata.tables["case_history"]
    ids = None if violation_ids is None else [str(i) for i in violation_ids]
    if ids is not None and not ids:
        return _no_steps()
    stmt = sa.select(ht.c.case_id.label("violation_id"), ht.c.ts, ht.c.status, ht.c.actor, ht.c.department,
                     ht.c.note).select_from(ht.join(ct, ct.c.case_id == ht.c.case_id)).where(
        ct.c.case_type == CASE_TYPE)
    if ids is not None:
        stmt = stmt.where(ht.c.case_id.in_(ids))
    if since is not None:
        stmt = stmt.where(ct.c.ts >= pd.Timestamp(since).to_pydatetime())
    if only:
        stmt = stmt.where(ct.c.district == only)
    hist = hub.query(stmt.order_by(ht.c.case_id, ht.c.ts), eng=eng)
    if hist.empty:
        return _no_steps()
    hist["ts"] = pd.to_datetime(hist["ts"])
    return hist


def with_local_date(v: pd.DataFrame) -> pd.DataFrame:
    v = v.copy()
    if v.empty:
        v["local_date"] = pd.Series(dtype="datetime64[ns]")
        return v
    v["ts"] = pd.to_datetime(v["ts"])
    v["local_date"] = clock.local_day(v["ts"])
    return v


def kitchen_hours(staff_hours) -> float:
    """Hours of kitchen work in a day from '06:30-13:30,15:30-17:30' (8 when unknown)."""
    if not isinstance(staff_hours, str) or not staff_hours.strip():
        return DEFAULT_HOURS
    try:
        return sum(b - a for a, b in parse_hours(staff_hours)) / 60 or DEFAULT_HOURS
    except Exception:  # noqa: BLE001 - a malformed value in the registry is not fatal here
        return DEFAULT_HOURS


@lru_cache(maxsize=4096)
def _workday(day: dt.date) -> bool:
    return clock.is_workday(day)


def school_days(start, end) -> pd.DatetimeIndex:
    """Local dates from start to end (inclusive) that are official working days: Mon–Fri
    outside public holidays, plus 调休 make-up days (workbench.clock, chinese-calendar)."""
    days = pd.date_range(pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize(), freq="D")
    return days[[_workday(d.date()) for d in days]]


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
        v["local_date"].max() if not v.empty else pd.Timestamp(clock.today()))
    # enough calendar days to hold `days` school days, a Golden Week or Spring Festival included
    days_idx = school_days(end - pd.Timedelta(days=int(days * 7 / 5) + 21), end)[-days:]
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
        # the most frequent class (ties: the one seen first), one vectorised pass
        top = (win.groupby(["canteen_id", "violation_class"], sort=False).size().rename("n").reset_index()
               .sort_values("n", ascending=False, kind="stable").drop_duplicates("canteen_id"))
        g["top_class"] = top.set_index("canteen_id")["violation_class"].reindex(g.index)
    else:
        g["critical"], g["top_class"] = 0, None
    g["critical"] = g["critical"].astype(int)
    opn = v[v["status"].isin(open_statuses())].groupby("canteen_id").size() if not v.empty else pd.Series(dtype=int)
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


def cases(data: CanteenData, statuses="open", canteen_id: str | None = None) -> pd.DataFrame:
    """Violations whose case is in `statuses` ("open": not closed yet; None: all), newest
    first, optionally of one canteen. The status is the case's (case engine)."""
    v = data.violations
    if v.empty:
        return v
    if statuses == "open":
        statuses = open_statuses()
    out = v[v["status"].isin(statuses)] if statuses else v
    if canteen_id:
        out = out[out["canteen_id"] == canteen_id]
    return out.sort_values("ts", ascending=False)


def target_status(status: str) -> tuple[str | None, str | None]:
    """(action, status) for what a caller asked: an action of the type (notify, verify …),
    one of its statuses, or a status of an old export (open/notified/rectified/verified)."""
    ct = case_type()
    if status in ct.actions:
        return status, None
    s = rect.status_of(status)
    if s in ct.statuses:
        return None, s
    acts = "、".join(f"{k}（{ct.action_labels.get(k, v)}）" for k, v in ct.actions.items())
    raise CaseError(f"未知的整改状态或操作“{status}”（可选状态：{'、'.join(ct.statuses)}；操作：{acts}）")


def set_case_status(violation_id: str, status: str, *, actor=None, note: str | None = None,
                    ts: dt.datetime | None = None, expected: str | None = None, eng=None) -> dict:
    """Move the violation's rectification case to `status` (a status or an action of the case
    type) through the case engine: `actor` is required — the signed-in Principal (a page, a
    `workbench --user` command: its department and district are checked, AccessDenied says why
    not) or the workbench's own name for a system step; `expected` is the status the caller
    showed (refused when the case moved since). A verified case lifts its 严重违规 alert."""
    from workbench.access import Principal
    from workbench.store import hub

    if not isinstance(actor, Principal):
        if not actor or not str(actor).strip():
            raise CaseError("没有办理人：每一步整改记录都要写明是谁办理的（请先登录）")
        actor = str(actor).strip()
    action, to = target_status(status)
    eng = eng or hub.engine()
    kw = dict(actor=actor, note=note or "", ts=ts, expected=rect.status_of(expected) if expected else None,
              case_type_name=CASE_TYPE)
    with eng.begin() as conn:
        if action:
            ch = case_engine.act(conn, violation_id, action, **kw)
        else:
            ch = case_engine.transition(conn, violation_id, to, **kw)
        if ch.after in case_type().closed:
            rect.lift_alert(conn, violation_id, ts=ch.ts, actor=ch.actor)
    return {"violation_id": violation_id, "from": ch.before, "to": ch.after, "ts": ch.ts, "actor": ch.actor}
