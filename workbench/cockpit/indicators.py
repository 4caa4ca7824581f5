"""GB/T 30428.4-style evaluation of case handling, per department over a period.

Pure functions over DataFrames: `cases` is `workbench.cases.frame(...)` (every case of every
store in one shape: case_id, case_type, department, district, status, opened, deadline,
closed_at, closed; times naive UTC) and `marks` the history steps that matter here (one row
per case and marker status: store, case_id, status), read by `history_marks` with one query
per case store. The period is half-open, [since, until), in naive UTC.

Definitions (written on the overview's 说明 and in the daily report):

- 立案数: cases opened in the period.
- 应结案数: cases that had to be finished in the period: their deadline (处置时限) falls in
  it; a case without a deadline is due in the period it was opened in.
- 结案数: due cases closed by the end of the period (a case closed after the period, or
  reopened, is not closed for that period).
- 结案率 = 结案数 / 应结案数.
- 缓办数: due cases that were deferred (a 缓办 step in their history, or 缓办 now; the
  case type's `deferred` status). Deferred cases leave the on-time reckoning.
- 按期结案数: due cases, not deferred, closed no later than their deadline (and within the
  period; a case without a deadline that is closed counts as on time).
- 按期结案率 = 按期结案数 / (应结案数 − 缓办数).
- 返工数: closed cases (of the 结案数) that were sent back at least once: a step in one of
  their type's `rework` statuses (e.g. 重新办理). 返工率 = 返工数 / 结案数.
- 延期数: cases opened in the period whose deadline was extended (a 延期 history row,
  workbench.cases.EXTENDED). 延期率 = 延期数 / 立案数.
- 综合指标值 (0–100): 40 points for 结案率 (full at ≥ 90 %, proportional below), 40 for
  按期结案率 (full at ≥ 70 %, proportional below), 10 for 返工率 (full at 0, nothing at
  ≥ 10 %, linear between) and 10 for 延期率 (the same). DOMAIN.md: full marks at ≥ 90 %
  closed and ≥ 70 % on time. No due cases: no score (—).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

CITY = "全市"
UNASSIGNED = "未指定部门"


@dataclass(frozen=True)
class Weight:
    points: float
    full_at: float        # the rate that earns full points (closed, on time) …
    higher_is_better: bool = True  # … or, for rework and extension, the rate that earns none


WEIGHTS: dict[str, Weight] = {
    "closed_rate": Weight(40, 0.90),
    "on_time_rate": Weight(40, 0.70),
    "rework_rate": Weight(10, 0.10, higher_is_better=False),
    "extension_rate": Weight(10, 0.10, higher_is_better=False),
}

COLUMNS = ("department", "opened", "due", "closed", "closed_rate", "deferred", "on_time", "on_time_rate",
           "reworked", "rework_rate", "extended", "extension_rate", "score")

LABELS = {
    "department": "部门", "opened": "立案数", "due": "应结案数", "closed": "结案数", "closed_rate": "结案率",
    "deferred": "缓办数", "on_time": "按期结案数", "on_time_rate": "按期结案率", "reworked": "返工数",
    "rework_rate": "返工率", "extended": "延期数", "extension_rate": "延期率", "score": "综合指标值",
}

# The 说明 of the page and the report: (indicator, how it is computed).
FORMULAS: tuple[tuple[str, str], ...] = (
    ("立案数", "统计期内受理立案的案件数。"),
    ("应结案数", "处置时限落在统计期内的案件数；没有处置时限的案件按立案日期计入（总览只计统计期前 45 天以来立案的案件）。"),
    ("结案数", "应结案案件中，在统计期结束前已办结的案件数。"),
    ("结案率", "结案数 ÷ 应结案数。"),
    ("缓办数", "应结案案件中办理过“缓办”的案件数（不参与按期考核）。"),
    ("按期结案数", "应结案且未缓办的案件中，在处置时限前办结的案件数。"),
    ("按期结案率", "按期结案数 ÷（应结案数 − 缓办数）。"),
    ("返工率", "已结案案件中被退回重新办理过（返工环节）的案件数 ÷ 结案数。"),
    ("延期率", "统计期内立案、办理中申请过延期的案件数 ÷ 立案数。"),
    ("综合指标值", "满分 100：结案率 40 分（≥ 90% 满分，以下按比例）、按期结案率 40 分（≥ 70% 满分，以下按比例）、"
                 "返工率 10 分与延期率 10 分（0 为满分，≥ 10% 为 0 分，之间线性）。无应结案案件时不评分。"),
)


def _types(types):
    if types is not None:
        return types
    from workbench import cases

    return cases.TYPES


def _ratio(part, whole):
    part = np.asarray(part, float)
    whole = np.asarray(whole, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(whole > 0, part / np.where(whole > 0, whole, 1), np.nan)


def score(closed_rate, on_time_rate, rework_rate, extension_rate):
    """The 综合指标值 of rates (scalars or arrays); NaN where 结案率 is unknown (nothing due).
    An unknown 按期结案率 (every due case deferred) or rework/extension rate earns full points."""
    parts = []
    for name, rate in (("closed_rate", closed_rate), ("on_time_rate", on_time_rate),
                       ("rework_rate", rework_rate), ("extension_rate", extension_rate)):
        w = WEIGHTS[name]
        r = np.asarray(rate, float)
        if w.higher_is_better:
            got = w.points * np.clip(r / w.full_at, 0, 1)
        else:
            got = w.points * np.clip(1 - r / w.full_at, 0, 1)
        parts.append(got if name == "closed_rate" else np.where(np.isnan(r), w.points, got))
    total = np.round(sum(parts), 1)
    return float(total) if np.ndim(total) == 0 else total


def case_flags(cases: pd.DataFrame, marks: pd.DataFrame | None, types: Mapping | None = None) -> pd.DataFrame:
    """`cases` with three booleans from their history: rework (a step in one of the type's
    rework statuses), extended (a 延期 row), deferred (a 缓办 step, or 缓办 now)."""
    from workbench.cases import EXTENDED

    types = _types(types)
    out = cases.copy()
    store_of = {n: t.store for n, t in types.items()}
    out["store"] = out["case_type"].map(store_of)
    rework = {n: set(t.rework) for n, t in types.items()}
    deferred = {n: t.deferred for n, t in types.items() if t.deferred}
    for name in ("rework", "extended", "deferred"):
        out[name] = False
    if marks is not None and len(marks):
        m = marks.merge(out[["store", "case_id", "case_type"]].drop_duplicates(), on=["store", "case_id"], how="inner")
        m["extended"] = m["status"] == EXTENDED
        m["rework"] = [s in rework.get(t, ()) for t, s in zip(m["case_type"], m["status"])]
        m["deferred"] = [deferred.get(t) == s for t, s in zip(m["case_type"], m["status"])]
        per = m.groupby(["store", "case_id"])[["rework", "extended", "deferred"]].any()
        if len(per):
            idx = pd.MultiIndex.from_arrays([out["store"], out["case_id"]])
            hit = per.reindex(idx, fill_value=False)
            for name in ("rework", "extended", "deferred"):
                out[name] = hit[name].to_numpy(dtype=bool)
    now_deferred = out["status"].to_numpy() == out["case_type"].map(deferred).to_numpy()
    out["deferred"] = out["deferred"].to_numpy(dtype=bool) | now_deferred
    return out


def indicators(cases: pd.DataFrame, since, until, *, marks: pd.DataFrame | None = None, by: str = "department",
               types: Mapping | None = None, total: bool = True) -> pd.DataFrame:
    """The evaluation per `by` (department) over [since, until): COLUMNS, one row per
    department with any case opened or due in the period, the busiest first, and a 全市 row
    last when `total`. Rates are fractions (0.93), NaN where the denominator is 0."""
    since, until = pd.Timestamp(since), pd.Timestamp(until)
    if cases is None or len(cases) == 0:
        return pd.DataFrame(columns=list(COLUMNS))
    f = case_flags(cases, marks, types)
    # 不予立案 / 重复件: reports that never became a case count nowhere
    void = {(n, st) for n, t in _types(types).items() for st in getattr(t, "void", ())}
    if void:
        from workbench.cases import type_status_in

        f = f[~type_status_in(f, void)]
    opened = pd.to_datetime(f["opened"])
    deadline = pd.to_datetime(f["deadline"])
    closed_at = pd.to_datetime(f["closed_at"])
    is_closed = f["closed"].astype(bool)
    in_period = (opened >= since) & (opened < until)
    due = ((deadline >= since) & (deadline < until)) | (deadline.isna() & in_period)
    closed_by_end = is_closed & (closed_at.isna() | (closed_at < until))
    on_time = closed_by_end & closed_at.notna() & (deadline.isna() | (closed_at <= deadline))
    d = pd.DataFrame({
        "key": f[by].fillna(UNASSIGNED).replace("", UNASSIGNED) if by in f else UNASSIGNED,
        "opened": in_period,
        "due": due,
        "closed": due & closed_by_end,
        "deferred": due & f["deferred"],
        "on_time": due & ~f["deferred"] & on_time,
        "reworked": due & closed_by_end & f["rework"],
        "extended": in_period & f["extended"],
    })
    d = d[d["opened"] | d["due"]]
    counts = d.groupby("key").sum().astype(int)
    counts = counts.sort_values(["opened", "due"], ascending=False)
    if total:
        counts.loc[CITY] = counts.sum().astype(int) if len(counts) else 0
    out = counts.reset_index().rename(columns={"key": by})
    out["closed_rate"] = _ratio(out["closed"], out["due"])
    out["on_time_rate"] = _ratio(out["on_time"], out["due"] - out["deferred"])
    out["rework_rate"] = _ratio(out["reworked"], out["closed"])
    out["extension_rate"] = _ratio(out["extended"], out["opened"])
    out["score"] = score(out["closed_rate"], out["on_time_rate"], out["rework_rate"], out["extension_rate"])
    cols = [by if c == "department" else c for c in COLUMNS]
    return out[cols].reset_index(drop=True)


# ------------------------------------------------------------------ reading the hub

def marker_statuses(store: str, types: Mapping | None = None) -> set[str]:
    """The history statuses that matter to the indicators for one store's case types."""
    from workbench.cases import EXTENDED

    types = _types(types)
    out = {EXTENDED}
    for t in types.values():
        if t.store == store:
            out |= set(t.rework) | ({t.deferred} if t.deferred else set())
    return out


ID_CHUNK = 5000  # case ids per IN list (SQLite allows 32766 bound values)


def history_marks(eng=None, *, since=None, cases_of: pd.DataFrame | None = None) -> pd.DataFrame:
    """The marker steps (rework, 延期, 缓办) of every case store: store, case_id, status, one
    row per case and status; one query per store. `since`: only steps at or after it (UTC).
    `cases_of`: only the steps of these cases (a frame with case_type and case_id, e.g. the
    cases being evaluated). With `since`, the marker steps since then are read (few: markers are
    rare; the (status, ts) of the history serve it) and kept for these cases here — an IN list of
    tens of thousands of ids cost seconds to bind and parse at city scale; without `since`, they
    are looked up by case id (the history's key) instead of reading every step of a year."""
    import sqlalchemy as sa

    from workbench import cases
    from workbench.store import hub
    from workbench.store.schema import metadata

    cases._ensure_registered()
    eng = eng or hub.engine()
    parts = []
    for st in list(cases.STORES.values()):
        if not any(t.store == st.name for t in cases.TYPES.values()) or st.history not in metadata.tables:
            continue
        hist = metadata.tables[st.history]
        stmt = (sa.select(hist.c[st.id].label("case_id"), hist.c.status).distinct()
                .where(hist.c.status.in_(sorted(marker_statuses(st.name)))))
        if since is not None:
            stmt = stmt.where(hist.c.ts >= pd.Timestamp(since).to_pydatetime())
        if cases_of is not None:
            mine = {n for n, t in cases.TYPES.items() if t.store == st.name}
            ids = sorted(set(cases_of.loc[cases_of["case_type"].isin(mine), "case_id"].dropna()))
            if since is not None:
                df = hub.query(stmt, eng=eng) if ids else pd.DataFrame(columns=["case_id", "status"])
                df = df[df["case_id"].isin(ids)].reset_index(drop=True) if len(df) else df
            else:
                chunks = [stmt.where(hist.c[st.id].in_(ids[i:i + ID_CHUNK])) for i in range(0, len(ids), ID_CHUNK)]
                found = [hub.query(q, eng=eng) for q in chunks]
                df = pd.concat(found, ignore_index=True).drop_duplicates() if found else pd.DataFrame()
        else:
            df = hub.query(stmt, eng=eng)
        if len(df):
            df.insert(0, "store", st.name)
            parts.append(df)
    if not parts:
        return pd.DataFrame(columns=["store", "case_id", "status"])
    return pd.concat(parts, ignore_index=True)


__all__ = ["CITY", "COLUMNS", "FORMULAS", "LABELS", "UNASSIGNED", "WEIGHTS", "Weight", "case_flags",
           "history_marks", "indicators", "marker_statuses", "score"]
