"""The case flow (GB/T 30428): the one place where an event's status changes.

信息收集 intake → 案卷建立 case → 任务派遣 dispatch → 任务处理 handling → 处理反馈 feedback
→ 核查结案 verification and closing → 综合评价 evaluation; besides: 不予立案 rejected,
重复件 duplicate (merged into an earlier case), 重新办理 reopened (verification failed, or a
closed case came back). A grid worker may handle a small matter on the spot
(信息收集 → 任务处理, 自行处置).

Every change is a row in event_history (who, when, note) written in the same transaction
as the event's new status; an illegal change is refused with `FlowError` saying what the
case's status is and what may follow it. A change that raced another one (the status
moved underneath) is refused the same way, never applied twice.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from workbench.store.schema import DATASETS

INTAKE, CASE, DISPATCH, HANDLING, FEEDBACK, CLOSED, EVALUATED = (
    "信息收集", "案卷建立", "任务派遣", "任务处理", "处理反馈", "核查结案", "综合评价")
REJECTED, DUPLICATE, REOPENED = "不予立案", "重复件", "重新办理"
STEPS = (INTAKE, CASE, DISPATCH, HANDLING, FEEDBACK, CLOSED, EVALUATED)
STATUSES = STEPS + (REJECTED, DUPLICATE, REOPENED)
CLOSED_STATUSES = frozenset({CLOSED, EVALUATED, REJECTED, DUPLICATE})
OPEN_STATUSES = tuple(s for s in STATUSES if s not in CLOSED_STATUSES)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    INTAKE: (CASE, REJECTED, DUPLICATE, HANDLING),
    CASE: (DISPATCH, REJECTED, DUPLICATE),
    DISPATCH: (HANDLING, DISPATCH),           # DISPATCH again: 改派 to another department
    HANDLING: (FEEDBACK,),
    FEEDBACK: (CLOSED, REOPENED),             # verification failed: back to work
    CLOSED: (EVALUATED, REOPENED),
    EVALUATED: (REOPENED,),
    REJECTED: (REOPENED,),
    DUPLICATE: (REOPENED,),
    REOPENED: (DISPATCH, HANDLING),
}

# The board's buttons and the CLI's verbs, as names of the status they lead to.
ACTIONS = {"accept": CASE, "dispatch": DISPATCH, "handle": HANDLING, "feedback": FEEDBACK, "close": CLOSED,
           "evaluate": EVALUATED, "reject": REJECTED, "duplicate": DUPLICATE, "reopen": REOPENED}
ACTION_LABELS = {"accept": "受理立案", "dispatch": "派遣", "handle": "开始处置", "feedback": "处置反馈",
                 "close": "核查结案", "evaluate": "综合评价", "reject": "不予立案", "duplicate": "合并重复",
                 "reopen": "重新办理"}
EVENTS = DATASETS["city_events"].table
HISTORY = DATASETS["event_history"].table


class FlowError(Exception):
    """A status change the flow does not allow; the message says why, in Chinese."""


def allowed(status: str | None) -> tuple[str, ...]:
    return TRANSITIONS.get(status or "", ())


def check(current: str | None, to: str, event_id: str = "") -> None:
    """Raise FlowError unless `current` → `to` is a legal step."""
    if to not in STATUSES:
        raise FlowError(f"未知的环节“{to}”，可选：{'、'.join(STATUSES)}")
    if to not in allowed(current):
        nxt = "、".join(allowed(current)) or "无（已办结）"
        raise FlowError(f"事件 {event_id} 当前环节为“{current or '未知'}”，不能转为“{to}”；可转为：{nxt}")


@dataclass
class Change:
    event_id: str
    before: str
    after: str
    ts: pd.Timestamp
    actor: str
    note: str
    department: str | None = None


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").tz_localize(None).floor("us")


def _history_ts(conn: Connection, event_id: str, ts: pd.Timestamp) -> pd.Timestamp:
    """`ts`, moved a microsecond past the event's last history row if it is not later
    (history keys are (event_id, ts, status); times of one case never go backwards)."""
    last = conn.execute(sa.select(sa.func.max(HISTORY.c.ts)).where(HISTORY.c.event_id == event_id)).scalar()
    if last is not None and pd.Timestamp(last) >= ts:
        return pd.Timestamp(last) + pd.Timedelta(microseconds=1)
    return ts


def transition(target: Engine | Connection, event_id: str, to: str, *, actor: str, note: str = "",
               department: str | None = None, duplicate_of: str | None = None, ts=None) -> Change:
    """Move one event to status `to`, writing its history row; raises FlowError if illegal.

    `department`: for 任务派遣 (required: where the case goes); `duplicate_of`: for 重复件."""
    if isinstance(target, Engine):
        with target.begin() as conn:
            return transition(conn, event_id, to, actor=actor, note=note, department=department,
                              duplicate_of=duplicate_of, ts=ts)
    conn = target
    if not actor:
        raise FlowError("请填写办理人（who）")
    row = conn.execute(sa.select(EVENTS.c.status, EVENTS.c.department, EVENTS.c.ts)
                       .where(EVENTS.c.event_id == event_id)).first()
    if row is None:
        raise FlowError(f"找不到事件 {event_id}")
    before = row.status
    check(before, to, event_id)
    if to == DISPATCH and not (department or row.department):
        raise FlowError(f"派遣事件 {event_id} 需要指定责任部门")
    if to == DUPLICATE and not duplicate_of:
        raise FlowError(f"合并重复件 {event_id} 需要指定主案卷编号")
    if duplicate_of == event_id:
        raise FlowError("不能把事件合并到它自己")
    when = pd.Timestamp(ts) if ts is not None else _now()
    when = max(when, pd.Timestamp(row.ts))  # never before the report itself
    when = _history_ts(conn, event_id, when)
    values = {"status": to, "updated_at": when.to_pydatetime()}
    if to == DISPATCH and department:
        values["department"] = department
    if to in (CLOSED, REJECTED, DUPLICATE):
        values["closed_at"] = when.to_pydatetime()
    if to == REOPENED:
        values["closed_at"] = None
    if to == DUPLICATE:
        values["duplicate_of"] = duplicate_of
    res = conn.execute(EVENTS.update().where(EVENTS.c.event_id == event_id, EVENTS.c.status == before)
                       .values(**values))
    if res.rowcount != 1:
        raise FlowError(f"事件 {event_id} 的环节刚被他人改动，请刷新后重试")
    if not note:
        note = {DISPATCH: f"派遣至{department or row.department}", DUPLICATE: f"与 {duplicate_of} 重复，合并办理"}.get(to, "")
    conn.execute(HISTORY.insert().values(event_id=event_id, ts=when.to_pydatetime(), status=to, actor=actor[:64],
                                         note=note[:512] or None))
    return Change(event_id, before, to, when, actor, note, department)


def act(target: Engine | Connection, event_id: str, action: str, *, actor: str, note: str = "",
        department: str | None = None, duplicate_of: str | None = None) -> Change:
    """A named action (accept, dispatch, close, …) — the board's buttons and the CLI."""
    if action not in ACTIONS:
        raise FlowError(f"未知的操作“{action}”，可选：{', '.join(ACTIONS)}")
    return transition(target, event_id, ACTIONS[action], actor=actor, note=note, department=department,
                      duplicate_of=duplicate_of)


# ------------------------------------------------------------------ bulk rows for intake

def arrival_history(events: pd.DataFrame, actor: pd.Series | str, auto_steps: pd.Series) -> pd.DataFrame:
    """History rows for newly arrived events: 信息收集 at the report time, then, per event,
    the automatic steps it took (a list of (status, note)) a microsecond apart each."""
    rows = []
    actors = actor if isinstance(actor, pd.Series) else pd.Series(actor, index=events.index)
    for (eid, ts, who, steps) in zip(events["event_id"], pd.to_datetime(events["ts"]), actors, auto_steps):
        rows.append((eid, ts, INTAKE, who, "受理登记"))
        for k, (status, note) in enumerate(steps, start=1):
            rows.append((eid, ts + pd.Timedelta(microseconds=k), status, "系统自动" if status != CLOSED else who, note))
    return pd.DataFrame(rows, columns=["event_id", "ts", "status", "actor", "note"])


def sync_rows(changes: pd.DataFrame, actor: str) -> pd.DataFrame:
    """History rows for status changes reported by the source system (Open311, NYC 311,
    a department's feed): columns event_id, ts (when the source changed it), before, after."""
    return pd.DataFrame({
        "event_id": changes["event_id"], "ts": pd.to_datetime(changes["ts"]), "status": changes["after"],
        "actor": actor, "note": "来源系统状态同步：" + changes["before"].astype(str) + " → " + changes["after"].astype(str),
    })


def sync_from_source(conn: Connection, upd: pd.DataFrame, before, actor: str) -> int:
    """Apply newer versions of events reported by their source system (Open311, NYC 311, a
    department's feed): their fields, and their status where it changed, with a history
    row each ("来源系统状态同步"). The source is the authority on its own cases, so its
    status is taken as reported (a closing may skip steps); returns the status changes."""
    import numpy as np

    from workbench.store.ingest import insert_new

    after = upd["status"].to_numpy()
    before = np.asarray(before, dtype=object)
    change = pd.notna(after) & (after != before)
    rows = []
    for r, ch in zip(upd.itertuples(index=False), change):
        vals = {"_id": r.event_id, "updated_at": r.updated_at.to_pydatetime()}
        for c in ("description", "department", "deadline", "address", "closed_at"):
            val = getattr(r, c)
            if val is not None and val == val:
                vals[c] = val.to_pydatetime() if isinstance(val, pd.Timestamp) else val
        if ch:
            vals["status"] = r.status
            if r.status in CLOSED_STATUSES and "closed_at" not in vals:
                vals["closed_at"] = r.updated_at.to_pydatetime()
        rows.append(vals)
    by_cols: dict[tuple, list] = {}
    for vals in rows:
        by_cols.setdefault(tuple(sorted(vals)), []).append(vals)
    for cols, batch in by_cols.items():
        stmt = EVENTS.update().where(EVENTS.c.event_id == sa.bindparam("_id")).values(
            **{c: sa.bindparam(c) for c in cols if c != "_id"})
        conn.execute(stmt, batch)
    if change.any():
        ch = pd.DataFrame({"event_id": upd["event_id"].to_numpy()[change], "ts": upd["updated_at"].to_numpy()[change],
                           "before": before[change], "after": after[change]})
        insert_new(conn, DATASETS["event_history"], sync_rows(ch, actor=actor))
    return int(change.sum())


__all__ = ["INTAKE", "CASE", "DISPATCH", "HANDLING", "FEEDBACK", "CLOSED", "EVALUATED", "REJECTED", "DUPLICATE",
           "REOPENED", "STEPS", "STATUSES", "CLOSED_STATUSES", "OPEN_STATUSES", "TRANSITIONS", "ACTIONS",
           "ACTION_LABELS", "FlowError", "allowed", "check", "Change", "transition", "act",
           "arrival_history", "sync_rows", "sync_from_source"]
