"""Follow-up of positives (阳性处置): lab re-test (复检), goods destroyed (销毁, kg) and the
stall re-tested (跟踪复查) within a deadline.

A positive is closed when the lab re-test came back negative (the rapid test was a false
positive) or the stall was re-tested. The deadline is the follow-up record's own, else
`days` after the positive test. Open past the deadline: overdue (逾期).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from workbench.market.catalog import BANNED

STATES = ("未登记处置", "待复检", "待复查", "复查仍阳性", "已办结")


@dataclass(frozen=True)
class FollowupRules:
    days: int = 7  # default deadline: a week after the positive test


def status(tests: pd.DataFrame, followups: pd.DataFrame | None, as_of, rules: FollowupRules = FollowupRules()) -> pd.DataFrame:
    """One row per positive test with its follow-up state as of `as_of` (naive UTC)."""
    as_of = pd.Timestamp(as_of)
    pos = tests[tests["result"] == "阳性"].copy()
    pos["ts"] = pd.to_datetime(pos["ts"])
    fu_cols = ["test_id", "deadline", "lab_result", "lab_result_at", "destroyed_kg", "destroyed_at",
               "stall_retest_at", "stall_retest_result", "handler"]
    fu = followups if followups is not None and len(followups) else pd.DataFrame(columns=fu_cols)
    fu = fu[[c for c in fu_cols if c in fu]].rename(columns={"deadline": "fu_deadline"})
    out = pos.merge(fu, on="test_id", how="left")
    for c in ("fu_deadline", "lab_result_at", "destroyed_at", "stall_retest_at"):
        out[c] = pd.to_datetime(out[c]) if c in out else pd.NaT
    out["registered"] = out["test_id"].isin(fu["test_id"])
    out["deadline"] = out["fu_deadline"].where(out["fu_deadline"].notna(), out["ts"] + pd.Timedelta(days=rules.days))
    lab_neg = out["lab_result"] == "阴性"
    retested = out["stall_retest_at"].notna() & (out["stall_retest_at"] <= as_of)
    still_pos = retested & (out["stall_retest_result"] == "阳性")
    closed = (lab_neg | retested) & ~still_pos
    out["state"] = np.select(
        [~out["registered"], still_pos, closed, out["lab_result"].isna()],
        ["未登记处置", "复查仍阳性", "已办结", "待复检"], "待复查")
    out["closed"] = closed
    out["overdue"] = ~closed & (as_of > out["deadline"])
    out["days_overdue"] = np.where(out["overdue"], (as_of - out["deadline"]).dt.days, 0)
    out["late"] = closed & retested & (out["stall_retest_at"] > out["deadline"])
    out["banned"] = out["test_item"].isin(BANNED)
    return out.sort_values(["overdue", "days_overdue", "ts"], ascending=[False, False, True]).reset_index(drop=True)


def summary(st: pd.DataFrame) -> dict:
    if st.empty:
        return {"positives": 0, "closed": 0, "open": 0, "overdue": 0, "late": 0, "destroyed_kg": 0.0,
                "lab_confirmed": 0, "lab_negative": 0}
    return {"positives": int(len(st)), "closed": int(st["closed"].sum()), "open": int((~st["closed"]).sum()),
            "overdue": int(st["overdue"].sum()), "late": int(st["late"].sum()),
            "destroyed_kg": float(pd.to_numeric(st["destroyed_kg"], errors="coerce").fillna(0).sum()),
            "lab_confirmed": int((st["lab_result"] == "阳性").sum()), "lab_negative": int((st["lab_result"] == "阴性").sum())}
