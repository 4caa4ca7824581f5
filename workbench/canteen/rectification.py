"""明厨亮灶 on the spine: every violation the cameras flag is a rectification case of the case
engine (type `canteen_rectification`, in the spine's `cases` table, case_id = violation_id),
and every critical one (老鼠, 抽烟) an alert of the alert API (category 明厨亮灶严重违规,
subject ``canteen_violations:<id>``). Both paths come here: the camera pipeline's hub sink
(workbench.canteen.sinks) and the ingest of a platform export (the loader registered for
`canteen_violations` in workbench/canteen/department.py).

A platform export may carry each violation's 整改状态 (old exports: open / notified /
rectified / verified; or the Chinese statuses). It is applied to the case through
`workbench.cases.sync`, forward only: an older file read again never moves a case back.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from workbench import alerts, cases

CASE_TYPE = "canteen_rectification"
DEPARTMENT = "市场监管局"
SOURCE = "明厨亮灶AI"
CRITICAL_CATEGORY = "明厨亮灶严重违规"
OFFLINE_CATEGORY = "摄像头离线"
CRITICAL_CLASSES = ("老鼠", "抽烟")
# the statuses of exports made before the case engine (and of migration 0007)
LEGACY = {"open": "待处理", "notified": "已通知", "rectified": "已整改", "verified": "已复核"}
# how far along the flow a status is (an export only moves a case forward)
ORDER = {"待处理": 0, "已通知": 1, "退回整改": 1, "已整改": 2, "已复核": 3}
SYNC_ACTOR = "明厨亮灶平台"


def case_type() -> cases.CaseType:
    return cases.case_type(CASE_TYPE)


def subject(violation_id: str) -> str:
    """How alerts and cases name a violation: canteen_violations:<id>."""
    return f"canteen_violations:{violation_id}"


def alert_id(violation_id: str) -> str:
    return f"CV-{violation_id}"[:64]


def status_of(value) -> str | None:
    """A reported status (legacy English code or Chinese) as the case type's status."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    s = str(value).strip()
    return LEGACY.get(s.lower(), s) or None


def _chunks(ids: list, n: int = 5000):
    for k in range(0, len(ids), n):
        yield ids[k:k + n]


def _canteens(conn: Connection, ids) -> pd.DataFrame:
    from workbench.store.schema import metadata

    t = metadata.tables["canteens"]
    ids = sorted({str(i) for i in ids if isinstance(i, str)})
    rows = []
    for part in _chunks(ids):
        rows += conn.execute(sa.select(t.c.canteen_id, t.c.name, t.c.district).where(t.c.canteen_id.in_(part))).all()
    return pd.DataFrame(rows, columns=["canteen_id", "name", "district"]).set_index("canteen_id")


def _described(conn: Connection, v: pd.DataFrame) -> pd.DataFrame:
    """Violations with the canteen's name and (where the row has none) its district."""
    v = v.reset_index(drop=True).copy()
    info = _canteens(conn, v["canteen_id"])
    v["canteen_name"] = v["canteen_id"].map(info["name"]).astype(object).fillna(v["canteen_id"].astype(object))
    dist = v["district"] if "district" in v else pd.Series([None] * len(v))
    v["district"] = dist.astype(object).where(dist.notna(), v["canteen_id"].map(info["district"]).astype(object))
    v["ts"] = pd.to_datetime(v["ts"])
    return v


def case_status(conn: Connection, ids) -> pd.DataFrame:
    """status, opened, closed_at of the canteen cases of `ids` (index: case_id)."""
    from workbench.store.schema import metadata

    t = metadata.tables["cases"]
    rows = []
    for part in _chunks([str(i) for i in ids]):
        rows += conn.execute(sa.select(t.c.case_id, t.c.status, t.c.ts, t.c.closed_at).where(
            t.c.case_id.in_(part), t.c.case_type == CASE_TYPE)).all()
    out = pd.DataFrame(rows, columns=["case_id", "status", "opened", "closed_at"]).set_index("case_id")
    out["closed_at"] = pd.to_datetime(out["closed_at"])
    return out


def open_cases(conn: Connection, v: pd.DataFrame, *, actor: str = SOURCE) -> int:
    """Open the rectification case of each violation (idempotent: cases held are left alone)."""
    if v.empty:
        return 0
    d = _described(conn, v)
    frame = pd.DataFrame({
        "_id": d["violation_id"].astype(str), "ts": d["ts"],
        "title": (d["canteen_name"].astype(str) + "后厨" + d["violation_class"].astype(str) + "整改").str.slice(0, 256),
        "department": DEPARTMENT, "district": d["district"],
        "subject": d["violation_id"].astype(str).map(subject),
        "description": ("摄像头 " + d["camera_id"].astype(str) + " 识别到“" + d["violation_class"].astype(str) + "”"),
    })
    return cases.open_cases(conn, CASE_TYPE, frame, actor=actor, intake_note="摄像头AI识别违规，登记整改案件")


def raise_alerts(conn: Connection, v: pd.DataFrame, *, actor: str = SOURCE) -> int:
    """A 明厨亮灶严重违规 alert for each critical violation of `v` (老鼠, 抽烟); a case already
    closed (复核通过) gets its alert lifted at the closing time. Returns alerts raised."""
    if v.empty:
        return 0
    crit = v[v["violation_class"].isin(CRITICAL_CLASSES)]
    if crit.empty:
        return 0
    d = _described(conn, crit)
    st = case_status(conn, d["violation_id"])
    closed = d["violation_id"].map(st["closed_at"]) if len(st) else pd.Series([pd.NaT] * len(d))
    rows = []
    for r, done in zip(d.itertuples(index=False), closed):
        camera = getattr(r, "camera_id", None)
        evidence = {"违规编号": r.violation_id, "食堂编号": r.canteen_id, "摄像头": camera,
                    "抓拍图": getattr(r, "snapshot", None), "置信度": getattr(r, "score", None)}
        rows.append({
            "alert_id": alert_id(r.violation_id), "ts": r.ts, "department": DEPARTMENT,
            "category": CRITICAL_CATEGORY, "severity": "critical",
            "title": f"{r.canteen_name}后厨发现{r.violation_class}"[:256],
            "area": r.canteen_name, "district": r.district, "valid_from": r.ts,
            "valid_to": done if not pd.isna(done) else None,
            "status": alerts.LIFTED if not pd.isna(done) else alerts.ACTIVE,
            "updated_at": done if not pd.isna(done) else r.ts,
            "source": SOURCE, "subject": subject(r.violation_id),
            "evidence": json.dumps({k: x for k, x in evidence.items() if x is not None and x == x},
                                   ensure_ascii=False, default=str)[:4000],
            "attrs": {"violation_id": r.violation_id, "canteen_id": r.canteen_id, "camera_id": camera,
                      "violation_class": r.violation_class, "district": r.district},
        })
    return alerts.publish(conn, pd.DataFrame(rows), actor=actor)["new"]


def lift_alert(conn: Connection, violation_id: str, *, ts=None, actor: str) -> int:
    """The violation's 明厨亮灶严重违规 alert is lifted when its case is verified (已复核)."""
    return alerts.lift_subject(conn, subject(violation_id), category=CRITICAL_CATEGORY, ts=ts, actor=actor,
                               note="整改已复核，告警解除")


def apply_reported(conn: Connection, v: pd.DataFrame, *, actor: str = SYNC_ACTOR) -> int:
    """Take the 整改状态 a file reports onto the cases (forward only), through cases.sync.
    The time of the step: the row's 更新时间, else its 结束时间, else its 开始时间."""
    if "status" not in v or v["status"].isna().all():
        return 0
    rep = v[v["status"].notna()].copy()
    rep["status"] = rep["status"].map(status_of)
    known = set(case_type().statuses)
    bad = sorted(set(rep["status"].dropna()) - known)
    if bad:
        raise cases.CaseError(f"未知的整改状态：{'、'.join(bad)}（可选：{'、'.join(case_type().statuses)}）")
    cur = case_status(conn, rep["violation_id"])
    now = rep["violation_id"].map(cur["status"]) if len(cur) else pd.Series([None] * len(rep), index=rep.index)
    ahead = rep["status"].map(ORDER).fillna(-1).to_numpy() > now.map(ORDER).fillna(99).to_numpy()
    rep = rep[ahead]
    if rep.empty:
        return 0
    when = pd.to_datetime(rep["ts"])
    for col in ("ts_end", "updated_at"):
        if col in rep:
            t = pd.to_datetime(rep[col])
            when = t.where(t.notna() & (t >= when), when)
    changes = pd.DataFrame({"_id": rep["violation_id"].astype(str).to_numpy(), "ts": when.to_numpy(),
                            "status": rep["status"].to_numpy()})
    n = cases.sync(conn, CASE_TYPE, changes, actor=actor, note_prefix="明厨亮灶平台导出的整改状态")
    closed = set(case_type().closed)
    after = case_status(conn, changes["_id"])
    done = after[after["status"].isin(closed)]
    for cid in _alerted(conn, done.index.tolist()):
        lift_alert(conn, cid, ts=done.loc[cid, "closed_at"], actor=actor)
    return n


def _alerted(conn: Connection, ids: list[str]) -> list[str]:
    """The violations of `ids` whose 严重违规 alert is still active (one query per 5000)."""
    from workbench.store.schema import metadata

    t = metadata.tables["alerts"]
    by_subject = {subject(i): i for i in ids}
    out = []
    for part in _chunks(list(by_subject)):
        out += [by_subject[r[0]] for r in conn.execute(sa.select(t.c.subject).where(
            t.c.subject.in_(part), t.c.category == CRITICAL_CATEGORY, t.c.status != alerts.LIFTED))]
    return out


def _held(conn: Connection, ids: list[str]) -> set:
    from workbench.store.schema import metadata

    t = metadata.tables["canteen_violations"]
    held: set = set()
    for part in _chunks(ids):
        held |= {r[0] for r in conn.execute(sa.select(t.c.violation_id).where(t.c.violation_id.in_(part)))}
    return held


def load_violations(conn: Connection, ds, frame: pd.DataFrame) -> int:
    """The loader of `canteen_violations` (ingest): insert the new violations, open their
    cases, apply a reported 整改状态, raise the alerts of new critical ones. Rows loaded."""
    from workbench.store.ingest import insert_new

    if frame.empty:
        return 0
    ids = frame["violation_id"].astype(str).tolist()
    held = _held(conn, ids)
    n = insert_new(conn, ds, frame)
    open_cases(conn, frame)
    apply_reported(conn, frame)
    fresh = frame[~frame["violation_id"].astype(str).isin(held)]
    raise_alerts(conn, fresh)
    return n


def record_event(conn: Connection, record: dict, update_columns: list[str]) -> bool:
    """One event of the camera pipeline into the hub: the violation row (inserted, or its
    update columns refreshed while the event lasts), its case, and — for a new critical
    one — its alert. True when the violation is new."""
    from workbench.store.ingest import upsert

    df = pd.DataFrame([record])
    added, _ = upsert(conn, "canteen_violations", df, update_columns)
    open_cases(conn, df)
    if added:
        raise_alerts(conn, df)
    return bool(added)


__all__ = ["CASE_TYPE", "CRITICAL_CATEGORY", "CRITICAL_CLASSES", "DEPARTMENT", "LEGACY", "OFFLINE_CATEGORY",
           "alert_id", "apply_reported", "case_status", "case_type", "load_violations", "lift_alert",
           "open_cases", "raise_alerts", "record_event", "status_of", "subject"]


def link(eng=None) -> dict:
    """The kitchens' linkage rules (workbench/canteen/linkage.yaml): a critical violation → a
    supervision case (督办); a camera offline 24 h → a maintenance case. Run after a watch."""
    from workbench import linkage
    from workbench.store import hub

    return linkage.run(eng or hub.engine(), departments=["canteen"])
