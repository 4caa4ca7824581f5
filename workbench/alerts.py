"""The alert API (一网统管): the one place that writes the hub's `alerts` and `alert_history`.

Every department raises through it — market surveillance and integrity findings, overdue
city events (escalation), kitchen violations and cameras offline, cold-weather warnings —
and every change is a row in `alert_history` (发布 raise, 升级/降级 level up/down, 更新
update, 解除 lift) with its time, actor and note.

- `publish(conn, frame, history=None, actor=…)`: the desired state of some alerts (one row
  per alert_id). New ones are inserted with a 发布 row; held ones that changed are updated
  with a 升级 / 降级 / 更新 / 解除 row; unchanged ones add nothing (a rerun is a no-op).
  A department that knows its own timeline (the warnings: issued at 06:00, upgraded at
  14:00, lifted next day) passes those rows as `history`; they are kept as given.
- `raise_alert`, `lift`: one alert at a time (a camera going offline and coming back);
  `lift_subject`: lift the active alerts about one subject (an escalation when its case closes).

An alert names its subject (`subject`, e.g. ``city_events:E123`` or ``rapid_tests:T9``) and
carries the keys the linkage rules match on as JSON (`attrs`, e.g. market_id, stall_id).
Statuses are the schema's choices: 生效中 (active), 待核查 (to verify), 已处置 (handled),
已解除 (lifted).
"""
from __future__ import annotations

import json
from typing import Mapping

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from workbench import clock
from workbench.errors import WorkbenchError

ACTIVE, TO_VERIFY, HANDLED, LIFTED = "生效中", "待核查", "已处置", "已解除"
STATUSES = (ACTIVE, TO_VERIFY, HANDLED, LIFTED)
RAISE, UP, DOWN, UPDATE, LIFT = "发布", "升级", "降级", "更新", "解除"
LEVELS = ("蓝色", "黄色", "橙色", "红色")
SEVERITIES = ("info", "warning", "critical")
TRACKED = ("severity", "level", "title", "status", "evidence", "valid_to", "area", "attrs")
COLUMNS = ("alert_id", "ts", "department", "category", "severity", "title", "area", "district", "valid_from",
           "valid_to", "status", "source", "evidence", "level", "updated_at", "subject", "attrs")


class AlertError(WorkbenchError):
    """An alert that cannot be raised or changed (the message says why, in Chinese)."""


def _tables():
    from workbench.store.schema import DATASETS

    return DATASETS["alerts"].table, DATASETS["alert_history"].table


def attrs_json(d: Mapping | None) -> str | None:
    """The `attrs` column: the alert's keys as compact JSON (None when empty)."""
    if not d:
        return None
    return json.dumps({k: v for k, v in d.items() if v is not None and v == v}, ensure_ascii=False,
                      default=str, sort_keys=True)[:4096]


def attrs_of(value) -> dict:
    """The `attrs` of an alert row as a dict (empty when none)."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str) or not value:
        return {}
    try:
        out = json.loads(value)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _same(a, b) -> bool:
    na = a is None or (isinstance(a, float) and np.isnan(a)) or a is pd.NaT
    nb = b is None or (isinstance(b, float) and np.isnan(b)) or b is pd.NaT
    if na or nb:
        return na and nb
    if isinstance(a, (pd.Timestamp, np.datetime64)) or isinstance(b, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(a) == pd.Timestamp(b)
    return a == b


def _action(old: Mapping, new: Mapping) -> str:
    if new.get("status") == LIFTED and old.get("status") != LIFTED:
        return LIFT
    lo, ln = old.get("level"), new.get("level")
    if lo in LEVELS and ln in LEVELS and lo != ln:
        return UP if LEVELS.index(ln) > LEVELS.index(lo) else DOWN
    so, sn = old.get("severity"), new.get("severity")
    if so in SEVERITIES and sn in SEVERITIES and so != sn:
        return UP if SEVERITIES.index(sn) > SEVERITIES.index(so) else DOWN
    return UPDATE


def _validate(f: pd.DataFrame) -> None:
    for col in ("alert_id", "ts", "department", "category", "severity", "title"):
        if col not in f or f[col].isna().any():
            raise AlertError(f"告警缺少必填项“{col}”")
    bad = set(f["severity"]) - set(SEVERITIES)
    if bad:
        raise AlertError(f"未知的告警级别：{'、'.join(map(str, bad))}（可选：{'、'.join(SEVERITIES)}）")
    if "status" in f:
        bad = set(f["status"].dropna()) - set(STATUSES)
        if bad:
            raise AlertError(f"未知的告警状态：{'、'.join(map(str, bad))}（可选：{'、'.join(STATUSES)}）")
    if "level" in f:
        bad = set(f["level"].dropna()) - set(LEVELS)
        if bad:
            raise AlertError(f"未知的预警等级：{'、'.join(map(str, bad))}")


def publish(target: Engine | Connection, frame: pd.DataFrame, history: pd.DataFrame | None = None, *,
            actor: str = "系统", note: str = "", new_only: bool = False) -> dict:
    """Bring the alerts of `frame` (one row per alert_id) into the hub, each change with its
    history row. `new_only`: raise the alerts not held yet and leave held ones as they are
    (an ingest that sees a record again must not undo what happened to its alert).
    Returns counts: new, updated, lifted, history."""
    if isinstance(target, Engine):
        with target.begin() as conn:
            return publish(conn, frame, history, actor=actor, note=note, new_only=new_only)
    conn = target
    out = {"new": 0, "updated": 0, "lifted": 0, "history": 0}
    if frame is None or frame.empty:
        return out
    table, hist = _tables()
    f = frame[[c for c in frame.columns if c in table.c]].copy()
    if "attrs" in f:
        f["attrs"] = [attrs_json(v) if isinstance(v, dict) else v for v in f["attrs"]]
    if "status" not in f:
        f["status"] = ACTIVE
    f["status"] = f["status"].fillna(ACTIVE)
    f = f.drop_duplicates("alert_id", keep="last")
    _validate(f)
    for c in ("ts", "valid_from", "valid_to", "updated_at"):
        if c in f:
            f[c] = pd.to_datetime(f[c])
    ids = f["alert_id"].astype(str).tolist()
    held: dict[str, dict] = {}
    for k in range(0, len(ids), 5000):
        for r in conn.execute(sa.select(table).where(table.c.alert_id.in_(ids[k:k + 5000]))).mappings():
            held[r["alert_id"]] = dict(r)
    given = history if history is not None and len(history) else None
    new_rows, upd_rows, hist_rows = [], [], []
    now = clock.now()
    for rec in f.to_dict("records"):
        rec = {k: (None if (v is pd.NaT or (isinstance(v, float) and np.isnan(v))) else v) for k, v in rec.items()}
        aid = rec["alert_id"]
        old = held.get(aid)
        if old is None:
            rec.setdefault("updated_at", rec["ts"])
            if rec.get("updated_at") is None:
                rec["updated_at"] = rec["ts"]
            new_rows.append(rec)
            if given is None:
                hist_rows.append({"alert_id": aid, "ts": rec["ts"], "action": RAISE, "level": rec.get("level"),
                                  "actor": actor, "note": note or rec.get("title")})
                if rec.get("status") == LIFTED:
                    hist_rows.append({"alert_id": aid, "ts": rec.get("valid_to") or rec.get("updated_at") or now,
                                      "action": LIFT, "level": rec.get("level"), "actor": actor, "note": note or None})
            out["new"] += 1
            continue
        changed = {k: rec[k] for k in TRACKED if k in rec and not _same(rec[k], old.get(k))}
        if not changed or new_only:
            continue
        act = _action(old, rec)
        when = rec.get("updated_at") or (rec.get("valid_to") if act == LIFT else None) or now
        changed["updated_at"] = when
        upd_rows.append({"_id": aid, **changed})
        out["updated"] += 1
        out["lifted"] += act == LIFT
        if given is None:
            hist_rows.append({"alert_id": aid, "ts": when, "action": act, "level": rec.get("level", old.get("level")),
                              "actor": actor, "note": note or _describe(old, changed)})
    from workbench.store.ingest import insert_new
    from workbench.store.schema import DATASETS

    if new_rows:
        insert_new(conn, DATASETS["alerts"], pd.DataFrame(new_rows))
    by_cols: dict[tuple, list] = {}
    for u in upd_rows:
        by_cols.setdefault(tuple(sorted(u)), []).append(u)
    for cols, batch in by_cols.items():
        conn.execute(table.update().where(table.c.alert_id == sa.bindparam("_id")).values(
            **{c: sa.bindparam(c) for c in cols if c != "_id"}), batch)
    h = given.copy() if given is not None else pd.DataFrame(hist_rows)
    if len(h):
        if "actor" not in h:
            h["actor"] = actor
        h["ts"] = pd.to_datetime(h["ts"])
        out["history"] = insert_new(conn, DATASETS["alert_history"], h[[c for c in h.columns if c in hist.c]])
    return out


def _describe(old: Mapping, changed: Mapping) -> str:
    parts = []
    for k, v in changed.items():
        if k in ("evidence", "attrs", "updated_at"):
            continue
        parts.append(f"{k}: {old.get(k)} → {v}")
    return "；".join(parts)[:1024] or "证据更新"


def raise_alert(target: Engine | Connection, *, alert_id: str, ts, department: str, category: str,
                severity: str, title: str, actor: str = "系统", note: str = "", **fields) -> dict:
    """Raise (or update) one alert; see `publish`."""
    row = {"alert_id": alert_id, "ts": ts, "department": department, "category": category,
           "severity": severity, "title": title, **fields}
    return publish(target, pd.DataFrame([row]), actor=actor, note=note)


def lift(target: Engine | Connection, alert_id: str, *, ts=None, actor: str = "系统", note: str = "") -> bool:
    """Lift one alert (状态 已解除, 失效时间 = ts) with a 解除 history row; False if already lifted."""
    if isinstance(target, Engine):
        with target.begin() as conn:
            return lift(conn, alert_id, ts=ts, actor=actor, note=note)
    table, _ = _tables()
    row = target.execute(sa.select(table).where(table.c.alert_id == alert_id)).mappings().first()
    if row is None:
        raise AlertError(f"找不到告警 {alert_id}")
    if row["status"] == LIFTED:
        return False
    when = pd.Timestamp(ts) if ts is not None else clock.now()
    when = max(when, pd.Timestamp(row["ts"]))
    rec = {**row, "status": LIFTED, "valid_to": when, "updated_at": when}
    publish(target, pd.DataFrame([rec]), actor=actor, note=note)
    return True


def lift_subject(target: Engine | Connection, subject: str, *, category: str | None = None, ts=None,
                 actor: str = "系统", note: str = "") -> int:
    """Lift every alert about `subject` that is not lifted yet (optionally of one category)."""
    if isinstance(target, Engine):
        with target.begin() as conn:
            return lift_subject(conn, subject, category=category, ts=ts, actor=actor, note=note)
    table, _ = _tables()
    stmt = sa.select(table.c.alert_id).where(table.c.subject == subject, table.c.status != LIFTED)
    if category:
        stmt = stmt.where(table.c.category == category)
    ids = [r[0] for r in target.execute(stmt)]
    return sum(lift(target, a, ts=ts, actor=actor, note=note) for a in ids)


def lift_subjects(conn: Connection, subjects: list[str], *, ts=None, actor: str = "系统", note: str = "") -> int:
    """Lift the active alerts about any of `subjects`; `ts` is one time, or a time per subject
    (a dict; a missing or None time means now)."""
    table, _ = _tables()
    if not subjects:
        return 0
    rows = []
    for k in range(0, len(subjects), 1000):
        rows += conn.execute(sa.select(table).where(table.c.subject.in_(subjects[k:k + 1000]),
                                                    table.c.status != LIFTED)).mappings().all()
    if not rows:
        return 0
    now = clock.now()

    def when(r):
        t = ts.get(r["subject"]) if isinstance(ts, dict) else ts
        return max(pd.Timestamp(t) if t is not None and not pd.isna(t) else now, pd.Timestamp(r["ts"]))

    recs = [{**r, "status": LIFTED, "valid_to": when(r), "updated_at": when(r)} for r in rows]
    return publish(conn, pd.DataFrame(recs), actor=actor, note=note)["lifted"]


def load_rows(conn: Connection, ds, frame: pd.DataFrame) -> int:
    """The hub's ingest loader for `alerts` files (another platform's alerts, the weather
    bureau's signals): through `publish`, the source being the authority on its own alerts."""
    return publish(conn, frame, actor="数据接入", note="文件接入")["new"]


def load_history(conn: Connection, ds, frame: pd.DataFrame) -> int:
    """The hub's ingest loader for `alert_history` files: the source's own change rows, kept as
    given (rows already held are skipped)."""
    from workbench.store.ingest import insert_new

    return insert_new(conn, ds, frame)


def history(alert_id: str, eng: Engine | None = None) -> pd.DataFrame:
    """The changes of one alert, oldest first."""
    from workbench.store import hub

    _, hist = _tables()
    return hub.query(sa.select(hist).where(hist.c.alert_id == alert_id).order_by(hist.c.ts), eng=eng)


__all__ = ["ACTIVE", "TO_VERIFY", "HANDLED", "LIFTED", "STATUSES", "RAISE", "UP", "DOWN", "UPDATE", "LIFT",
           "AlertError", "attrs_json", "attrs_of", "history", "lift", "lift_subject", "lift_subjects", "publish", "raise_alert"]
