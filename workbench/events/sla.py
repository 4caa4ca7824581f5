"""Deadlines (处置时限): overdue and nearly overdue cases, escalation alerts, on-time rates,
and resolution time with open cases counted as censored (Kaplan–Meier), not dropped.

Pure functions over the hub's city_events rows (naive UTC times).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from workbench.events import flow

ESCALATION_CATEGORY = "事件超期"
ESCALATION_SOURCE = "城市事件"
NOT_CASES = (flow.DUPLICATE, flow.REJECTED)  # merged or not accepted: no deadline applies


def case_states(events: pd.DataFrame, now, near_share: float = 0.2) -> pd.DataFrame:
    """Per event: open, overdue, near_due (open, less than `near_share` of its time left),
    hours_left (negative when overdue), overdue_hours, escalation (0 none, 1 超期, 2 严重超期:
    overdue by more than its whole allowed time)."""
    now = pd.Timestamp(now)
    ev = events.copy()
    for c in ("ts", "deadline", "closed_at", "updated_at"):
        if c in ev:
            ev[c] = pd.to_datetime(ev[c], errors="coerce")
    status = ev["status"].astype("string").fillna("")
    ev["open"] = ~status.isin(flow.CLOSED_STATUSES) & ev["closed_at"].isna()
    has_dl = ev["deadline"].notna()
    left = (ev["deadline"] - now).dt.total_seconds() / 3600
    span = (ev["deadline"] - ev["ts"]).dt.total_seconds() / 3600
    ev["hours_left"] = left.where(ev["open"] & has_dl)
    ev["overdue"] = ev["open"] & has_dl & (left < 0)
    ev["near_due"] = ev["open"] & has_dl & (left >= 0) & (left < near_share * span.clip(lower=0))
    ev["overdue_hours"] = (-left).where(ev["overdue"], 0.0)
    ev["escalation"] = np.where(ev["overdue"] & (ev["overdue_hours"] > span.fillna(0)), 2,
                                np.where(ev["overdue"], 1, 0))
    return ev


def overdue(states: pd.DataFrame) -> pd.DataFrame:
    """Open cases past their deadline, the longest overdue first."""
    return states[states["overdue"]].sort_values("overdue_hours", ascending=False)


def near_due(states: pd.DataFrame) -> pd.DataFrame:
    return states[states["near_due"]].sort_values("hours_left")


def on_time(states: pd.DataFrame, by: str = "department") -> pd.DataFrame:
    """Per department (or class, street…): cases closed, closed on time, the on-time rate,
    open, open overdue. Duplicates and rejected reports are not cases and do not count."""
    cases = states[~states["status"].isin(NOT_CASES) & states["deadline"].notna()]
    if cases.empty:
        return pd.DataFrame(columns=[by, "cases", "closed", "closed_on_time", "on_time_rate", "open",
                                     "open_overdue", "near_due"])
    closed = cases["closed_at"].notna()
    g = cases.assign(_closed=closed, _ontime=closed & (cases["closed_at"] <= cases["deadline"])).groupby(by)
    out = pd.DataFrame({
        "cases": g.size(), "closed": g["_closed"].sum(), "closed_on_time": g["_ontime"].sum(),
        "open": g["open"].sum(), "open_overdue": g["overdue"].sum(), "near_due": g["near_due"].sum(),
    }).astype(int)
    out["on_time_rate"] = (out["closed_on_time"] / out["closed"].where(out["closed"] > 0)).astype(float)
    out = out.reset_index().sort_values(["on_time_rate", "cases"], ascending=[True, False], na_position="last")
    return out[[by, "cases", "closed", "closed_on_time", "on_time_rate", "open", "open_overdue", "near_due"]]


def escalations(states: pd.DataFrame) -> pd.DataFrame:
    """Escalation alerts for overdue cases, one per case (``EVT-ESC-<event_id>``, subject
    ``city_events:<event_id>``): warning once the deadline passed, critical (升级) once
    overdue by more than the whole allowed time. Ids, times and evidence derive from the
    case (not from the moment of the run), so publishing them again changes nothing."""
    od = states[states["overdue"]]
    cols = ["alert_id", "ts", "updated_at", "department", "category", "severity", "title", "area", "district",
            "status", "source", "evidence", "subject", "attrs"]
    if od.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for r in od.itertuples(index=False):
        span = r.deadline - r.ts
        level = int(r.escalation)
        dept = r.department if isinstance(r.department, str) and r.department else "城市运行管理服务中心"
        district = r.district if isinstance(r.district, str) and r.district else None
        rows.append({
            "alert_id": f"EVT-ESC-{r.event_id}", "ts": r.deadline,
            "updated_at": r.deadline if level == 1 else r.deadline + span,   # when this level was reached
            "department": dept, "category": ESCALATION_CATEGORY, "severity": "warning" if level == 1 else "critical",
            "title": f"{r.event_class}{'超期未办结' if level == 1 else '严重超期（超过处置时限一倍）'}：{r.event_id}"[:256],
            "area": next((x[:256] for x in (r.address, r.street, r.district) if isinstance(x, str) and x), None),
            "district": district, "status": "生效中", "source": ESCALATION_SOURCE,
            "evidence": json.dumps({"事件编号": r.event_id, "处置时限": str(r.deadline), "责任部门": dept,
                                    "超期等级": "严重超期" if level == 2 else "超期"}, ensure_ascii=False),
            "subject": f"city_events:{r.event_id}",
            "attrs": {"event_id": r.event_id, "district": district, "department": dept},
        })
    return pd.DataFrame(rows, columns=cols)


def save_escalations(conn, alerts: pd.DataFrame, actor: str = "城市事件超期监测") -> int:
    """Publish escalation alerts through the alert API (new: 发布; warning → critical: 升级;
    unchanged: nothing). The case engine lifts them when their case closes. Returns the new ones."""
    from workbench import alerts as api

    return api.publish(conn, alerts, actor=actor)["new"]


# ------------------------------------------------------------------ resolution time

def durations(states: pd.DataFrame, now) -> pd.DataFrame:
    """Hours from report to close (closed cases) or to `now` (open: censored)."""
    cases = states[~states["status"].isin(NOT_CASES)]
    end = cases["closed_at"].where(cases["closed_at"].notna(), pd.Timestamp(now))
    hours = (end - cases["ts"]).dt.total_seconds() / 3600
    return cases.assign(hours=hours.clip(lower=1 / 60), closed=cases["closed_at"].notna())


def resolution_km(states: pd.DataFrame, now, by: str | None = None, min_cases: int = 5) -> pd.DataFrame:
    """Kaplan–Meier resolution time per group (statsmodels SurvfuncRight): open cases are
    right-censored at `now`. Median with its 95 % interval, the 90th percentile, and for
    contrast the naive median over closed cases only (biased low when open cases are many)."""
    from statsmodels.duration.survfunc import SurvfuncRight

    d = durations(states, now)
    groups = [("全部", d)] if by is None else list(d.groupby(by))
    rows = []
    for key, g in groups:
        if len(g) < min_cases or g["closed"].sum() == 0:
            continue
        sf = SurvfuncRight(g["hours"].to_numpy(float), g["closed"].to_numpy(int))
        med = sf.quantile(0.5)
        try:
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # log(0) where the curve stays at 1
                lo, hi = sf.quantile_ci(0.5)
        except Exception:  # too few events for an interval
            lo, hi = np.nan, np.nan
        rows.append({by or "group": key, "cases": len(g), "closed": int(g["closed"].sum()),
                     "censored": int((~g["closed"]).sum()), "median_h": _f(med), "median_lo": _f(lo),
                     "median_hi": _f(hi), "p90_h": _f(sf.quantile(0.9)),
                     "naive_median_h": float(g.loc[g["closed"], "hours"].median())})
    return pd.DataFrame(rows, columns=[by or "group", "cases", "closed", "censored", "median_h", "median_lo",
                                       "median_hi", "p90_h", "naive_median_h"])


def km_curves(states: pd.DataFrame, now, by: str, top: int = 6) -> dict[str, pd.DataFrame]:
    """Step curves (hours, share still open) for the `top` largest groups, for charts."""
    from statsmodels.duration.survfunc import SurvfuncRight

    d = durations(states, now)
    out = {}
    for key in d[by].value_counts().head(top).index:
        g = d[d[by] == key]
        if g["closed"].sum() == 0:
            continue
        sf = SurvfuncRight(g["hours"].to_numpy(float), g["closed"].to_numpy(int))
        out[str(key)] = pd.DataFrame({"hours": sf.surv_times, "open_share": sf.surv_prob})
    return out


def _f(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return x if np.isfinite(x) else float("nan")


__all__ = ["ESCALATION_CATEGORY", "ESCALATION_SOURCE", "NOT_CASES", "case_states", "overdue", "near_due",
           "on_time", "escalations", "save_escalations", "durations", "resolution_km", "km_curves"]
