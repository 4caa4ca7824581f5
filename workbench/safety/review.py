"""The risk review's numbers (城市安全风险研判): what the bulletin's summary says, as data.

A review covers whole Beijing days (`workbench.reports.Period`): the hazards found in them, the
ledger as it stood at the period's end (open, overdue, 重大), the weather warnings issued and
the inspection tasks they set off (overdue as of the period's end, `tasks.task_states`), the
same numbers for the period before, and what needs a decision: overdue hazards per district,
overdue 重大 hazards (挂牌督办), overdue tasks per department.

Every function takes DataFrames as the hub holds them (naive UTC) and returns data: the
notebook (notebooks/risk_review.ipynb) only renders `lines` / `decisions` / the tables.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from workbench.safety import ledger as lg
from workbench.safety import tasks as tk


@dataclass(frozen=True)
class PeriodNumbers:
    """One period's numbers; the ledger and the tasks as of its end (`as_of`)."""

    start: pd.Timestamp      # naive UTC, inclusive
    end: pd.Timestamp        # naive UTC, exclusive
    as_of: pd.Timestamp      # the moment the states describe (end, or now when the period has not ended)
    found: int               # hazards found in the period
    found_major: int         # of which 重大
    rectified: int           # hazards rectified in the period
    open: int                # open hazards at the end (待整改 + 逾期未整改)
    overdue: int             # 逾期未整改 at the end
    major_overdue: int       # of which 重大
    warnings: int            # weather warnings issued in the period
    tasks: int               # inspection tasks set off in the period
    tasks_overdue: int       # inspection tasks open past their deadline at the end (any period's)


@dataclass
class ReviewSummary:
    """The bulletin's summary: this period, the previous one, the sentences, and the tables
    behind the decisions."""

    where: str                                  # 全市 or the district
    current: PeriodNumbers
    previous: PeriodNumbers
    lines: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    overdue_by_district: pd.DataFrame = field(default_factory=pd.DataFrame)   # district, overdue, major, longest_days
    major_overdue: pd.DataFrame = field(default_factory=pd.DataFrame)        # the 重大 hazards past their deadline
    tasks_overdue_by_department: pd.DataFrame = field(default_factory=pd.DataFrame)


def _in(df: pd.DataFrame, col: str, start, end) -> pd.DataFrame:
    if df is None or df.empty or col not in df:
        return df.iloc[:0] if df is not None else pd.DataFrame()
    t = pd.to_datetime(df[col], errors="coerce")
    return df[(t >= start) & (t < end)]


def _district(df: pd.DataFrame | None, district: str | None) -> pd.DataFrame:
    if df is None:
        return pd.DataFrame()
    if not district or df.empty or "district" not in df:
        return df
    return df[df["district"] == district]


def period_numbers(hazards: pd.DataFrame, sites: pd.DataFrame | None, tasks: pd.DataFrame,
                   warnings: pd.DataFrame, start, end, *, now=None, district: str | None = None) -> PeriodNumbers:
    """The numbers of [start, end) (naive UTC). The ledger and tasks are judged as of the end, or
    as of `now` when the period has not ended yet."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    as_of = end - pd.Timedelta(microseconds=1)
    if now is not None and pd.Timestamp(now) < as_of:
        as_of = pd.Timestamp(now)
    st = _district(lg.hazard_states(hazards, as_of, sites), district)
    found = _in(st, "ts", start, end)
    rect = st[st["rectified_at"].notna() & (st["rectified_at"] >= start) & (st["rectified_at"] < end)] if len(st) else st
    s = lg.summary(st, as_of)
    ts = _district(tasks, district)
    ts = ts[pd.to_datetime(ts["ts"]) <= as_of] if len(ts) else ts
    tstates = tk.task_states(ts, as_of)
    w = _district_warnings(warnings, district)
    return PeriodNumbers(
        start=start, end=end, as_of=as_of, found=len(found), found_major=int((found["level"] == "重大").sum()),
        rectified=len(rect), open=s.open, overdue=s.overdue,
        major_overdue=int((st["overdue"] & (st["level"] == "重大")).sum()) if len(st) else 0,
        warnings=len(_in(w, "ts", start, end)), tasks=len(_in(tstates, "ts", start, end)),
        tasks_overdue=int(tstates["overdue"].sum()) if len(tstates) else 0)


def _district_warnings(w: pd.DataFrame | None, district: str | None) -> pd.DataFrame:
    """A district's own warnings and the city-wide ones (as the page shows them)."""
    if w is None:
        return pd.DataFrame(columns=["ts"])
    if not district or w.empty or "district" not in w:
        return w
    area = w.get("area", pd.Series("", index=w.index)).astype("string").fillna("")
    return w[(w["district"] == district) | w["district"].isna() | area.str.contains(district, regex=False)]


def overdue_by_district(states: pd.DataFrame) -> pd.DataFrame:
    """Overdue hazards per district: overdue, major (重大 of them), longest_days; most first."""
    cols = ["district", "overdue", "major", "longest_days"]
    od = states[states["overdue"]] if len(states) else states
    if od is None or od.empty:
        return pd.DataFrame(columns=cols)
    g = od.assign(_k=od["district"].astype("string").fillna("未填写区县"), _m=od["level"] == "重大").groupby("_k")
    out = pd.DataFrame({"overdue": g.size(), "major": g["_m"].sum(), "longest_days": g["days_overdue"].max()})
    out = out.astype(int).rename_axis("district").reset_index()
    return out.sort_values(["overdue", "major", "longest_days"], ascending=False, kind="stable").reset_index(drop=True)[cols]


def _count(n: int, unit: str = "项") -> str:
    return f"{n:,} {unit}"


def _names(df: pd.DataFrame, key: str, value: str, unit: str = "项", limit: int = 4) -> str:
    parts = [f"{k} {int(v)} {unit}" for k, v in zip(df[key], df[value])][:limit]
    more = len(df) - limit
    return "、".join(parts) + (f" 等 {len(df)} 个" if more > 0 else "")


def summarize(hazards: pd.DataFrame, sites: pd.DataFrame | None, tasks: pd.DataFrame, warnings: pd.DataFrame,
              period, *, now=None, district: str | None = None) -> ReviewSummary:
    """The summary of `period` (workbench.reports.Period) against the period before it: the
    numbers, the sentences and the decisions, for one district or the whole city."""
    from workbench.reports import change_text

    cur = period_numbers(hazards, sites, tasks, warnings, period.start_utc, period.end_utc, now=now,
                         district=district)
    prev_p = period.previous()
    prev = period_numbers(hazards, sites, tasks, warnings, prev_p.start_utc, prev_p.end_utc, now=now,
                          district=district)
    where = district or "全市"
    span = "本周" if period.days == 7 else "本期"
    before = "较上周" if period.days == 7 else "较上期"

    lines = [
        f"{span}{where}新发现隐患 {_count(cur.found)}（其中重大 {cur.found_major} 项），"
        f"{change_text(cur.found, prev.found, '项', label=before)}；整改完成 {_count(cur.rectified)}，"
        f"{change_text(cur.rectified, prev.rectified, '项', label=before)}。",
        f"截至期末，未整改隐患 {_count(cur.open)}，其中逾期未整改 {_count(cur.overdue)}"
        f"（重大 {cur.major_overdue} 项），逾期数{change_text(cur.overdue, prev.overdue, '项', label=before)}。",
        (f"{span}发布寒潮、道路结冰、暴雪预警 {_count(cur.warnings, '条')}，联动派发巡查任务 {_count(cur.tasks)}；"
         f"截至期末逾期未办结的巡查任务 {_count(cur.tasks_overdue)}。" if cur.warnings or cur.tasks or cur.tasks_overdue
         else f"{span}没有发布寒潮、道路结冰、暴雪预警，没有逾期未办结的巡查任务。"),
    ]

    st = _district(lg.hazard_states(hazards, cur.as_of, sites), district)
    by_d = overdue_by_district(st)
    major = lg.overdue_hazards(st)
    major = major[major["level"] == "重大"].reset_index(drop=True) if len(major) else major
    ts = _district(tasks, district)
    ts = ts[pd.to_datetime(ts["ts"]) <= cur.as_of] if len(ts) else ts
    by_dep = tk.overdue_by(tk.task_states(ts, cur.as_of), "department")

    decisions = []
    if len(by_d):
        decisions.append(f"逾期未整改隐患 {_count(cur.overdue)}，分布在{_names(by_d, 'district', 'overdue')}："
                         "请各区县督促责任单位限期整改，逾期较久的约谈责任人。")
    if len(major):
        names = "、".join(f"{n or h}（{t}，逾期 {d} 天）" for n, h, t, d in
                         zip(major.get("site_name", major["hazard_id"]), major["hazard_id"], major["hazard_type"],
                             major["days_overdue"]))[:300]
        decisions.append(f"重大隐患逾期未整改 {_count(len(major))}：{names}。请决定是否挂牌督办、责令停用或转交执法。")
    if len(by_dep):
        decisions.append(f"预警联动巡查任务逾期未办结 {_count(int(by_dep['overdue'].sum()))}"
                         f"（{_names(by_dep, 'department', 'overdue')}）：请督促反馈巡查结果，或核实后结案。")
    return ReviewSummary(where=where, current=cur, previous=prev, lines=lines, decisions=decisions,
                         overdue_by_district=by_d, major_overdue=major, tasks_overdue_by_department=by_dep)


def in_period(states: pd.DataFrame, warnings: pd.DataFrame, tasks: pd.DataFrame, start, end,
              district: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """What a review of [start, end) (naive UTC) lists: the hazards found in it (with their
    state), the warnings issued in it or still in force during it, and the tasks those set off."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    st = _district(states, district)
    found = st[(st["ts"] >= start) & (st["ts"] < end)] if len(st) else st
    w = _district_warnings(warnings, district)
    if len(w):
        vt = pd.to_datetime(w["valid_to"]) if "valid_to" in w else pd.Series(pd.NaT, index=w.index)
        w = w[(pd.to_datetime(w["ts"]) < end) & (vt.isna() | (vt >= start))]
    t = _district(tasks, district)
    t = t[t["external_id"].isin(w["alert_id"])] if len(t) and len(w) else t.iloc[:0]
    return found, w, t


__all__ = ["PeriodNumbers", "ReviewSummary", "period_numbers", "overdue_by_district", "summarize", "in_period"]
