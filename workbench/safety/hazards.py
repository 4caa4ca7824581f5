"""Hazard rectification as cases (隐患整改), and the alert of an overdue major hazard.

Each hazard of the ledger is one case of type `hazard_rectification` in the spine's `cases`
table: id ``HZ-<hazard_id>``, subject ``hazards:<hazard_id>``, opened at 待整改 when the
hazard was found, with the hazard's 整改期限 as its deadline. The ledger is the authority on
its own hazards: its dates move the case (cases.sync) — rectified_at → 已整改待验收,
verified_at → 已验收 (a status typed as 已整改 / 已验收 without a date counts, as in
workbench/safety/ledger.py) — and never move it back. Overdue is no step: it is the
deadline passing while the case is open.

An open 重大 hazard past its deadline raises one 重大隐患逾期 alert (workbench.alerts),
subject ``cases:HZ-<hazard_id>`` (so closing the case lifts it), attrs hazard_id, site_id,
district; it is lifted when the hazard is rectified (or its deadline no longer passed).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import sqlalchemy as sa

from workbench.safety import ledger as lg

CASE_TYPE = "hazard_rectification"
OVERDUE = "重大隐患逾期"
DEPARTMENT = "应急管理局"
SOURCE = "隐患台账"
RANK = {"待整改": 0, "已整改待验收": 1, "已验收": 2}
DATE_COLUMNS = ("rectified_at", "verified_at")


def case_id(hazard_id) -> str:
    return f"HZ-{hazard_id}"


def alert_id(hazard_id) -> str:
    return f"HZ-OD-{hazard_id}"


def case_rows(hazards: pd.DataFrame, sites: pd.DataFrame | None = None) -> pd.DataFrame:
    """One case row per hazard (not yet opened): _id, ts, title, department, district,
    street, urgency, deadline, subject, description."""
    hz = lg._frame(hazards, lg.HAZARD_COLUMNS)
    hz = hz[hz["hazard_id"].notna() & hz["ts"].notna()]
    if sites is not None and len(sites):
        hz = lg.attach_sites(hz, sites)
    name = hz["site_name"] if "site_name" in hz else pd.Series("", index=hz.index)
    street = hz["street"] if "street" in hz else pd.Series(None, index=hz.index)
    title = (name.fillna("").astype(str) + hz["hazard_type"].fillna("").astype(str)
             + "（" + hz["level"].fillna("一般").astype(str) + "隐患）")
    dep = hz["department"].where(hz["department"].notna() & (hz["department"].astype("string") != ""), DEPARTMENT)
    return pd.DataFrame({
        "_id": hz["hazard_id"].map(case_id), "ts": hz["ts"], "title": title.str.slice(0, 256),
        "department": dep, "district": hz["district"], "street": street,
        "urgency": np.where(hz["level"] == "重大", "紧急", "一般"), "deadline": hz["deadline"],
        "subject": "hazards:" + hz["hazard_id"].astype(str),
        "description": hz["description"].where(hz["description"].notna(), None),
    }).reset_index(drop=True)


def case_changes(hazards: pd.DataFrame) -> pd.DataFrame:
    """The steps the ledger's own dates say each hazard's case took: _id, ts, status, note."""
    hz = lg._frame(hazards, lg.HAZARD_COLUMNS)
    hz = hz[hz["hazard_id"].notna() & hz["ts"].notna()]
    status = hz["status"].astype("string").fillna("").str.strip()
    verified = hz["verified_at"].notna() | status.isin(lg.VERIFIED_WORDS)
    rectified = hz["rectified_at"].notna() | status.isin(lg.RECTIFIED_WORDS) | verified
    rect_ts = hz["rectified_at"].fillna(hz["ts"])
    ver_ts = hz["verified_at"].fillna(rect_ts)
    ids = hz["hazard_id"].map(case_id)
    parts = [
        pd.DataFrame({"_id": ids[rectified], "ts": rect_ts[rectified], "status": "已整改待验收",
                      "note": "隐患台账：整改完成" + np.where(hz["rectified_at"][rectified].isna(), "（台账未填整改时间）", "")}),
        pd.DataFrame({"_id": ids[verified], "ts": ver_ts[verified], "status": "已验收",
                      "note": "隐患台账：验收通过" + np.where(hz["verified_at"][verified].isna(), "（台账未填验收时间）", "")}),
    ]
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["_id", "ts"], kind="stable").reset_index(drop=True)


def sync_cases(conn: sa.Connection, hazards: pd.DataFrame, sites: pd.DataFrame | None = None) -> dict:
    """Open the cases of hazards that have none and move each to what its dates say, never
    back (a step taken on a screen ahead of the ledger stays). Alerts of hazards now
    rectified are lifted. Returns counts: cases_new, case_steps, alerts_lifted."""
    from workbench import cases

    if hazards is None or hazards.empty:
        return {"cases_new": 0, "case_steps": 0, "alerts_lifted": 0}
    new = cases.open_cases(conn, CASE_TYPE, case_rows(hazards, sites), actor=SOURCE,
                           intake_note="隐患排查发现，登记入台账")
    ch = case_changes(hazards)
    moved = 0
    if len(ch):
        cur = _cases(conn, ch["_id"].unique().tolist())["status"]
        rank_now = ch["_id"].map(cur).map(RANK)
        ch = ch[rank_now.notna() & (ch["status"].map(RANK) > rank_now)]
        moved = cases.sync(conn, CASE_TYPE, ch, actor=SOURCE)
    return {"cases_new": new, "case_steps": moved, "alerts_lifted": lift_rectified(conn, hazards)}


def _cases(conn: sa.Connection, ids: list[str]) -> pd.DataFrame:
    """status and updated_at of the cases `ids` (index: case_id)."""
    from workbench.store.schema import DATASETS

    t = DATASETS["cases"].table
    rows = []
    for k in range(0, len(ids), 5000):
        rows += conn.execute(sa.select(t.c.case_id, t.c.status, t.c.updated_at).where(
            t.c.case_id.in_(ids[k:k + 5000]))).all()
    return pd.DataFrame(rows, columns=["case_id", "status", "updated_at"]).set_index("case_id")


def load_hazards(conn: sa.Connection, ds, frame: pd.DataFrame) -> int:
    """The loader of `hazards` (ingest): new hazards are inserted as before; a hazard the
    hub holds takes the rectification and verification dates (and status) a newer ledger
    export adds, never losing one it has; then every hazard of the file has its case opened
    or moved (sync_cases). Returns the rows inserted or updated."""
    from workbench.store.ingest import insert_new

    if frame.empty:
        return 0
    n = insert_new(conn, ds, frame)
    n += _fill_dates(conn, ds.table, frame)
    ids = frame["hazard_id"].astype(str).unique().tolist()
    held = _read(conn, ds.table, ids)
    sites = _sites(conn, held["site_id"].dropna().unique().tolist())
    sync_cases(conn, held, sites)
    return n


def _fill_dates(conn: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> int:
    """Dates the hub lacks and the file brings (a later export of the same ledger)."""
    cols = [c for c in DATE_COLUMNS if c in frame]
    if not cols:
        return 0
    f = frame[frame[cols].notna().any(axis=1)]
    if f.empty:
        return 0
    held = _read(conn, table, f["hazard_id"].astype(str).unique().tolist()).set_index("hazard_id")
    updates = []
    for rec in f.to_dict("records"):
        h = held.loc[rec["hazard_id"]] if rec["hazard_id"] in held.index else None
        if h is None:
            continue
        upd = {c: pd.Timestamp(rec[c]).to_pydatetime() for c in cols
               if not pd.isna(rec[c]) and pd.isna(h[c])}
        if upd:
            if rec.get("status") and rec.get("status") == rec.get("status"):
                upd["status"] = rec["status"]
            updates.append((rec["hazard_id"], upd))
    for hid, upd in updates:
        conn.execute(table.update().where(table.c.hazard_id == hid).values(**upd))
    return len(updates)


def _read(conn: sa.Connection, table: sa.Table, ids: list[str]) -> pd.DataFrame:
    parts = []
    for k in range(0, len(ids), 5000):
        rows = conn.execute(sa.select(table).where(table.c.hazard_id.in_(ids[k:k + 5000]))).mappings().all()
        parts.append(pd.DataFrame([dict(r) for r in rows], columns=list(table.c.keys())))
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(table.c.keys()))
    return lg._frame(out, lg.HAZARD_COLUMNS)


def _sites(conn: sa.Connection, ids: list[str]) -> pd.DataFrame:
    from workbench.store.schema import DATASETS

    t = DATASETS["hazard_sites"].table
    parts = []
    for k in range(0, len(ids), 5000):
        rows = conn.execute(sa.select(t).where(t.c.site_id.in_(ids[k:k + 5000]))).mappings().all()
        parts.append(pd.DataFrame([dict(r) for r in rows], columns=list(t.c.keys())))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(t.c.keys()))


# ------------------------------------------------------------------ 重大隐患逾期

def overdue_alerts(states: pd.DataFrame) -> pd.DataFrame:
    """One alert row per open 重大 hazard past its deadline (from `ledger.hazard_states(…,
    sites)`), raised at the deadline. Title and evidence do not count days, so a rerun on a
    later day changes nothing."""
    od = states[states["overdue"] & (states["level"] == "重大")] if len(states) else states
    rows = []
    for r in od.itertuples():
        district = r.district if isinstance(r.district, str) and r.district else None
        site = getattr(r, "site_name", None)
        site = site if isinstance(site, str) else r.site_id
        evidence = {"隐患编号": r.hazard_id, "点位": site, "隐患类型": r.hazard_type, "隐患等级": r.level,
                    "发现时间": r.ts, "整改期限": r.deadline, "责任部门": r.department, "隐患描述": r.description}
        rows.append({
            "alert_id": alert_id(r.hazard_id), "ts": r.deadline, "department": DEPARTMENT, "category": OVERDUE,
            "severity": "critical", "title": f"{district or ''}{site}{r.hazard_type}重大隐患逾期未整改"[:256],
            "area": district, "district": district, "valid_from": r.deadline, "status": "生效中",
            "source": SOURCE, "subject": f"cases:{case_id(r.hazard_id)}",
            "evidence": json.dumps({k: v for k, v in evidence.items() if v is not None and v == v},
                                   ensure_ascii=False, default=str)[:4096],
            "attrs": {"hazard_id": r.hazard_id, "site_id": r.site_id, "district": district},
        })
    return pd.DataFrame(rows, columns=["alert_id", "ts", "department", "category", "severity", "title", "area",
                                       "district", "valid_from", "status", "source", "subject", "evidence", "attrs"])


def publish_overdue(conn: sa.Connection, states: pd.DataFrame, as_of) -> dict:
    """Raise the 重大隐患逾期 alerts of `states` (the ledger as of `as_of`) and lift the
    active ones whose hazard is no longer overdue (rectified, or given a later deadline).
    A hazard whose case moved past 待整改 on a screen (整改完成 reported to the engine before
    the ledger knows it) is not overdue either. Returns counts: new, updated, lifted."""
    from workbench import alerts

    rows = overdue_alerts(states)
    moved = {}
    if len(rows):
        cs = _cases(conn, [case_id(h) for h in rows["attrs"].map(lambda a: a["hazard_id"])])
        moved = {alert_id(cid[3:]): t for cid, st, t in zip(cs.index, cs["status"], cs["updated_at"]) if st != "待整改"}
        rows = rows[~rows["alert_id"].isin(moved)]
    out = alerts.publish(conn, rows, actor=SOURCE, note="重大隐患逾期未整改")
    res = {"new": out["new"], "updated": out["updated"], "lifted": out["lifted"]}
    res["lifted"] += _lift_others(conn, set(rows["alert_id"]), states, as_of, moved)
    return res


def lift_rectified(conn: sa.Connection, hazards: pd.DataFrame) -> int:
    """Lift the active 重大隐患逾期 alerts of hazards the ledger now says are rectified, at
    their rectification time."""
    from workbench import clock

    ch = case_changes(hazards)
    ch = ch[ch["ts"] <= clock.now()]  # a date in the future is no rectification yet
    if ch.empty:
        return 0
    when = ch.groupby("_id")["ts"].min()
    return _lift(conn, {alert_id(cid[3:]): t for cid, t in when.items()}, "隐患已整改，告警解除")


def _lift_others(conn: sa.Connection, keep: set, states: pd.DataFrame, as_of, moved: dict) -> int:
    from workbench import alerts

    t = alerts._tables()[0]
    active = [r[0] for r in conn.execute(sa.select(t.c.alert_id).where(
        t.c.category == OVERDUE, t.c.status != alerts.LIFTED))]
    gone = [a for a in active if a not in keep]
    if not gone:
        return 0
    by_alert = {alert_id(h): r for h, r in zip(states["hazard_id"], states.itertuples())} if len(states) else {}
    when = {}
    for a in gone:
        r = by_alert.get(a)
        t_rect = getattr(r, "rectified_at", None) if r is not None else None
        t_rect = moved.get(a) if t_rect is None or pd.isna(t_rect) else t_rect
        when[a] = pd.Timestamp(t_rect) if t_rect is not None and not pd.isna(t_rect) else pd.Timestamp(as_of)
    return _lift(conn, when, "隐患已不再逾期（已整改或整改期限已调整），告警解除")


def _lift(conn: sa.Connection, when: dict, note: str) -> int:
    from workbench import alerts

    if not when:
        return 0
    t = alerts._tables()[0]
    ids = list(when)
    active = set()
    for k in range(0, len(ids), 5000):
        active |= {r[0] for r in conn.execute(sa.select(t.c.alert_id).where(
            t.c.alert_id.in_(ids[k:k + 5000]), t.c.status != alerts.LIFTED))}
    return sum(alerts.lift(conn, a, ts=when[a], actor=SOURCE, note=note) for a in sorted(active))


def raise_overdue(conn: sa.Connection, as_of=None) -> dict:
    """The whole ledger from the hub: every hazard's case opened and moved, then the
    重大隐患逾期 alerts as of `as_of` (default: the moment the ledger describes)."""
    hz = _read_all(conn, "hazards")
    sites = _read_all(conn, "hazard_sites")
    ins = _read_all(conn, "inspections")
    led = lg.Ledger(lg._frame(sites, lg.SITE_COLUMNS), lg._frame(hz, lg.HAZARD_COLUMNS),
                    lg._frame(ins, lg.INSPECTION_COLUMNS))
    synced = sync_cases(conn, led.hazards, led.sites) if len(led.hazards) else {"cases_new": 0, "case_steps": 0,
                                                                              "alerts_lifted": 0}
    as_of = lg.data_as_of(led) if as_of is None else pd.Timestamp(as_of)
    states = lg.hazard_states(led.hazards, as_of, led.sites)
    od = publish_overdue(conn, states, as_of)
    return {"hazard_cases_new": synced["cases_new"], "hazard_case_steps": synced["case_steps"],
            "overdue_alerts_new": od["new"], "overdue_alerts_lifted": od["lifted"] + synced["alerts_lifted"]}


def _read_all(conn: sa.Connection, dataset: str) -> pd.DataFrame:
    from workbench.store.schema import DATASETS

    t = DATASETS[dataset].table
    rows = conn.execute(sa.select(t)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=list(t.c.keys()))
