"""The hazard ledger (隐患台账): screening sites, their hazards and inspections.

Every function here takes DataFrames (as `hub.read` returns them: naive-UTC times) and
returns DataFrames or a small dataclass; `load_ledger` is the one place that reads the hub.

A hazard's state as of a moment `as_of` (naive UTC) follows its own dates, not the free-text
status a screening team typed:

    已验收          verified_at ≤ as_of (or the file says 已验收/已销号 without a date)
    已整改待验收    rectified_at ≤ as_of, not yet verified (or the file says 已整改)
    逾期未整改      not rectified, and its deadline lies before as_of
    待整改          not rectified, deadline still ahead (or none given)

Hazards found after `as_of` are not in the ledger of that moment. `days_overdue` counts
started days past the deadline (3 hours late is day 1), for open hazards only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

STATES = ("待整改", "逾期未整改", "已整改待验收", "已验收")
OPEN_STATES = ("待整改", "逾期未整改")
LEVELS = ("一般", "重大")
SITE_TYPES = ("农贸市场", "城中村", "高层建筑", "养老院", "自建房", "燃气", "公共交通")
VERIFIED_WORDS = ("已验收", "已销号", "验收通过")
RECTIFIED_WORDS = ("已整改", "整改完成", "已整改待验收")

REPEAT_SAME_TYPE = "整改后复发"   # same site and type found again after a rectification
REPEAT_CLUSTER = "多发点位"       # several hazards at one site within a window

SITE_COLUMNS = ["site_id", "site_type", "name", "address", "district", "street", "grid_id", "lat", "lon", "owner"]
HAZARD_COLUMNS = ["hazard_id", "site_id", "hazard_type", "level", "description", "ts", "deadline",
                  "rectified_at", "verified_at", "status", "district", "department"]
INSPECTION_COLUMNS = ["inspection_id", "ts", "site_id", "hazard_id", "inspector", "result", "note"]
TIME_COLUMNS = ("ts", "deadline", "rectified_at", "verified_at")


@dataclass
class Ledger:
    """The three tables of the screening campaign, as the hub holds them."""

    sites: pd.DataFrame
    hazards: pd.DataFrame
    inspections: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.sites.empty and self.hazards.empty


@dataclass(frozen=True)
class LedgerSummary:
    """The headline numbers of the ledger as of one moment."""

    as_of: pd.Timestamp
    total: int            # hazards found up to as_of
    open: int             # 待整改 + 逾期未整改
    major_open: int       # open and 重大
    overdue: int          # 逾期未整改
    awaiting_check: int   # 已整改待验收
    verified: int         # 已验收
    on_time_rate: float | None  # share of rectified hazards rectified by their deadline
    sites: int            # sites in the ledger
    sites_with_open: int  # sites holding at least one open hazard


# ------------------------------------------------------------------ loading (the hub)

def load_ledger(eng=None, district: str | None = None) -> Ledger:
    """Sites, hazards and inspections from the hub (times naive UTC); `district`: one
    district's only (a district user's scope; inspections by their site's district), filtered
    in the hub's queries."""
    from workbench.store import hub

    if not district:
        return Ledger(
            sites=_frame(hub.read("hazard_sites", eng=eng), SITE_COLUMNS),
            hazards=_frame(hub.read("hazards", eng=eng), HAZARD_COLUMNS),
            inspections=_frame(hub.read("inspections", eng=eng), INSPECTION_COLUMNS),
        )
    import sqlalchemy as sa

    from workbench.store.schema import DATASETS

    sites_t, insp_t = DATASETS["hazard_sites"].table, DATASETS["inspections"].table
    here = sa.select(sites_t.c.site_id).where(sites_t.c.district == district)
    insp = hub.query(sa.select(insp_t).where(insp_t.c.site_id.in_(here)).order_by(insp_t.c.ts), eng=eng)
    return Ledger(
        sites=_frame(hub.read("hazard_sites", where={"district": district}, eng=eng), SITE_COLUMNS),
        hazards=_frame(hub.read("hazards", where={"district": district}, eng=eng), HAZARD_COLUMNS),
        inspections=_frame(insp if len(insp) else None, INSPECTION_COLUMNS),
    )


def _frame(df: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    """`df` with at least `columns` (missing ones empty), times as datetime64, floats as float."""
    df = pd.DataFrame(columns=columns) if df is None else df.copy()
    for col in columns:
        if col not in df:
            df[col] = None
    for col in TIME_COLUMNS:
        if col in df:
            df[col] = pd.to_datetime(df[col], errors="coerce")
    for col in ("lat", "lon"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


# ------------------------------------------------------------------ state of each hazard

def hazard_states(hazards: pd.DataFrame, as_of, sites: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ledger as of `as_of`: one row per hazard found by then, with its state.

    Adds: state (STATES), open, overdue (bool), days_overdue (int, 0 unless overdue),
    age_days (float, days since found), rectified_late (rectified after its deadline), and
    from `sites` (when given): site_name, site_type, grid_id, street, address, owner, lat, lon;
    the hazard's district falls back to its site's.
    """
    as_of = pd.Timestamp(as_of)
    hz = _frame(hazards, HAZARD_COLUMNS)
    hz = hz[hz["ts"].isna() | (hz["ts"] <= as_of)].copy()
    status = hz["status"].astype("string").fillna("").str.strip()
    verified = (hz["verified_at"].notna() & (hz["verified_at"] <= as_of)) | \
        (hz["verified_at"].isna() & status.isin(VERIFIED_WORDS))
    rectified = (hz["rectified_at"].notna() & (hz["rectified_at"] <= as_of)) | \
        (hz["rectified_at"].isna() & status.isin(RECTIFIED_WORDS + VERIFIED_WORDS)) | verified
    late = ~rectified & hz["deadline"].notna() & (hz["deadline"] < as_of)
    hz["state"] = np.select([verified, rectified, late], ["已验收", "已整改待验收", "逾期未整改"], "待整改")
    hz["open"] = ~rectified.to_numpy()
    hz["overdue"] = late.to_numpy()
    past = (as_of - hz["deadline"]).dt.total_seconds() / 86400.0
    hz["days_overdue"] = np.where(late, np.ceil(past.fillna(0).clip(lower=0)), 0).astype(int)
    hz["age_days"] = ((as_of - hz["ts"]).dt.total_seconds() / 86400.0).clip(lower=0)
    hz["rectified_late"] = (hz["rectified_at"].notna() & hz["deadline"].notna()
                            & (hz["rectified_at"] > hz["deadline"]) & rectified).to_numpy()
    if sites is not None:
        hz = attach_sites(hz, sites)
    return hz.reset_index(drop=True)


def attach_sites(hazards: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """Hazards with their site's type, name, grid, street, address, owner and coordinates."""
    s = _frame(sites, SITE_COLUMNS)[SITE_COLUMNS].drop_duplicates("site_id")
    s = s.rename(columns={"name": "site_name", "district": "site_district"})
    out = hazards.drop(columns=[c for c in s.columns if c != "site_id" and c in hazards], errors="ignore")
    out = out.merge(s, on="site_id", how="left")
    district = out["district"] if "district" in out else pd.Series(None, index=out.index, dtype=object)
    out["district"] = district.where(district.notna() & (district.astype("string") != ""), out["site_district"])
    return out.drop(columns="site_district")


def summary(states: pd.DataFrame, as_of, sites: pd.DataFrame | None = None) -> LedgerSummary:
    """Headline numbers of `hazard_states(...)` output."""
    st = states
    n = len(st)
    by = st["state"].value_counts() if n else pd.Series(dtype=int)
    done = st[~st["open"]] if n else st
    with_dates = done[done["rectified_at"].notna() & done["deadline"].notna()] if n else done
    rate = None if with_dates.empty else float((~with_dates["rectified_late"]).mean())
    open_ = st[st["open"]] if n else st
    return LedgerSummary(
        as_of=pd.Timestamp(as_of), total=n, open=int(open_.shape[0]),
        major_open=int((open_["level"] == "重大").sum()) if n else 0,
        overdue=int(by.get("逾期未整改", 0)), awaiting_check=int(by.get("已整改待验收", 0)),
        verified=int(by.get("已验收", 0)), on_time_rate=rate,
        sites=0 if sites is None else int(sites["site_id"].nunique()),
        sites_with_open=int(open_["site_id"].nunique()) if n else 0,
    )


def overdue_hazards(states: pd.DataFrame) -> pd.DataFrame:
    """Open hazards past their deadline, longest overdue first (重大 before 一般 on ties)."""
    od = states[states["state"] == "逾期未整改"].copy()
    od["_major"] = od["level"] == "重大"
    od = od.sort_values(["days_overdue", "_major", "deadline"], ascending=[False, False, True], kind="stable")
    return od.drop(columns="_major").reset_index(drop=True)


def counts(states: pd.DataFrame, by: str | list[str]) -> pd.DataFrame:
    """Hazards per `by` (site_type, district, level, grid_id, ...): one column per state, and
    total, open, major (重大, any state), major_open, overdue; largest total first."""
    keys = [by] if isinstance(by, str) else list(by)
    cols = keys + list(STATES) + ["total", "open", "major", "major_open", "overdue"]
    if states.empty:
        return pd.DataFrame(columns=cols)
    st = states.copy()
    for k in keys:
        st[k] = st[k].astype("string").fillna("未填写")
    table = st.pivot_table(index=keys, columns="state", values="hazard_id", aggfunc="count", fill_value=0)
    table = table.reindex(columns=list(STATES), fill_value=0)
    table.columns.name = None
    major = st["level"] == "重大"
    g = st.assign(_major=major, _major_open=major & st["open"]).groupby(keys)
    table["total"] = g.size()
    table["open"] = g["open"].sum()
    table["major"] = g["_major"].sum()
    table["major_open"] = g["_major_open"].sum()
    table["overdue"] = g["overdue"].sum()
    table = table.astype(int).reset_index()
    return table.sort_values(["total", "open"], ascending=False, kind="stable").reset_index(drop=True)[cols]


# ------------------------------------------------------------------ repeats

def repeat_hazards(hazards: pd.DataFrame, sites: pd.DataFrame | None = None, *, window_days: int = 90,
                   min_count: int = 3) -> pd.DataFrame:
    """Sites where hazards come back.

    - 整改后复发: a hazard of the same site and type found after an earlier one of that
      type was rectified (rectified_at before the later hazard's found time).
    - 多发点位: `min_count` or more hazards (any type) at one site within `window_days`.

    One row per (site, kind, hazard type): kind, site_id, hazard_type ('' for 多发点位),
    count (hazards involved), first_ts, last_ts, hazard_ids (earliest first, joined by '、');
    plus the site's name, type, district, street and grid when `sites` is given.
    Most hazards first.
    """
    cols = ["kind", "site_id", "hazard_type", "count", "first_ts", "last_ts", "hazard_ids"]
    hz = _frame(hazards, HAZARD_COLUMNS)
    hz = hz[hz["ts"].notna()].sort_values(["site_id", "ts", "hazard_id"], kind="stable")
    rows = []
    pairs = hz[hz.groupby(["site_id", "hazard_type"], sort=False)["hazard_id"].transform("size") >= 2]  # only those can repeat
    for (site, htype), g in pairs.groupby(["site_id", "hazard_type"], sort=False):
        ts = g["ts"].to_numpy()
        rect = g["rectified_at"].to_numpy()
        ids = g["hazard_id"].tolist()
        involved: set[int] = set()
        for j in range(1, len(g)):
            earlier = [i for i in range(j) if not pd.isna(rect[i]) and rect[i] < ts[j]]
            if earlier:
                involved.update(earlier + [j])
        if involved:
            k = sorted(involved)
            rows.append({"kind": REPEAT_SAME_TYPE, "site_id": site, "hazard_type": htype, "count": len(k),
                         "first_ts": ts[k[0]], "last_ts": ts[k[-1]], "hazard_ids": "、".join(ids[i] for i in k)})
    window = np.timedelta64(int(window_days * 86400), "s")
    busy = hz[hz.groupby("site_id", sort=False)["hazard_id"].transform("size") >= min_count]
    for site, g in busy.groupby("site_id", sort=False):
        ts = g["ts"].to_numpy()
        ids = g["hazard_id"].tolist()
        best = (0, 0, 0)  # (count, first index, last index): the busiest window
        lo = 0
        for hi in range(len(ts)):
            while ts[hi] - ts[lo] > window:
                lo += 1
            if hi - lo + 1 > best[0]:
                best = (hi - lo + 1, lo, hi)
        n, lo, hi = best
        if n >= min_count:
            rows.append({"kind": REPEAT_CLUSTER, "site_id": site, "hazard_type": "", "count": n,
                         "first_ts": ts[lo], "last_ts": ts[hi], "hazard_ids": "、".join(ids[lo:hi + 1])})
    out = pd.DataFrame(rows, columns=cols)
    out["first_ts"] = pd.to_datetime(out["first_ts"])
    out["last_ts"] = pd.to_datetime(out["last_ts"])
    out["count"] = out["count"].astype(int)
    if sites is not None:
        s = _frame(sites, SITE_COLUMNS)[["site_id", "name", "site_type", "district", "street", "grid_id"]]
        out = out.merge(s.drop_duplicates("site_id").rename(columns={"name": "site_name"}), on="site_id", how="left")
    return out.sort_values(["count", "last_ts"], ascending=[False, False], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------ sites and inspections

def site_ledger(sites: pd.DataFrame, states: pd.DataFrame, inspections: pd.DataFrame, as_of,
                window_days: int = 30) -> pd.DataFrame:
    """One row per site: its hazards (total, open, major_open, overdue), the last inspection
    up to `as_of`, inspections within the last `window_days`, and days since inspected
    (NaN when never). Sites with open hazards first, then the longest uninspected."""
    as_of = pd.Timestamp(as_of)
    s = _frame(sites, SITE_COLUMNS)[SITE_COLUMNS].drop_duplicates("site_id")
    ins = _frame(inspections, INSPECTION_COLUMNS)
    ins = ins[ins["ts"].notna() & (ins["ts"] <= as_of)]
    last = ins.groupby("site_id")["ts"].max().rename("last_inspection")
    recent = ins[ins["ts"] > as_of - pd.Timedelta(days=window_days)].groupby("site_id").size().rename("inspections")
    if states.empty:
        per = pd.DataFrame(columns=["total", "open", "major_open", "overdue"], dtype=int)
    else:
        st = states.assign(_mo=(states["level"] == "重大") & states["open"])
        per = st.groupby("site_id").agg(total=("hazard_id", "count"), open=("open", "sum"),
                                        major_open=("_mo", "sum"), overdue=("overdue", "sum"))
    out = s.set_index("site_id").join(per).join(last).join(recent)
    for col in ("total", "open", "major_open", "overdue", "inspections"):
        out[col] = out[col].fillna(0).astype(int)
    out["last_inspection"] = pd.to_datetime(out["last_inspection"])
    out["days_since_inspection"] = (as_of - out["last_inspection"]).dt.total_seconds() / 86400.0
    out = out.reset_index()
    return out.sort_values(["open", "overdue", "days_since_inspection"], ascending=[False, False, False],
                           na_position="first", kind="stable").reset_index(drop=True)


def data_as_of(ledger: Ledger, *others: pd.DataFrame, now=None) -> pd.Timestamp:
    """The moment the hub's safety data describes: the newest record time in the ledger
    (and in `others`, e.g. city events), never later than `now`. A ledger exported on
    20 January is judged as of 20 January, not as of the day someone opens it."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    latest = []
    for df in (ledger.hazards, ledger.inspections, *others):
        for col in ("ts", "rectified_at", "verified_at"):
            if df is not None and col in df and len(df):
                t = pd.to_datetime(df[col], errors="coerce")
                t = t[t <= now]
                if len(t.dropna()):
                    latest.append(t.max())
    return max(latest) if latest else now


__all__ = ["STATES", "OPEN_STATES", "LEVELS", "SITE_TYPES", "REPEAT_SAME_TYPE", "REPEAT_CLUSTER", "Ledger",
           "LedgerSummary", "load_ledger", "hazard_states", "attach_sites", "summary", "overdue_hazards",
           "counts", "repeat_hazards", "site_ledger", "data_as_of"]
