"""The case flow of city events (GB/T 30428), on the case engine (workbench.cases).

信息收集 intake → 案卷建立 case → 任务派遣 dispatch → 任务处理 handling → 处理反馈 feedback
→ 核查结案 verification and closing → 综合评价 evaluation; besides: 不予立案 rejected,
重复件 duplicate (merged into an earlier case), 重新办理 reopened (verification failed, or a
closed case came back), 缓办 deferred. A grid worker may handle a small matter on the spot
(信息收集 → 任务处理, 自行处置).

The transition table is data (workbench/events/case_types.yaml, case type ``city_event``);
this module writes nothing itself: every change goes through `workbench.cases`, which writes
the event's new status and its history row in one transaction, refuses an illegal step with
the steps allowed, and refuses a stale one (`expected`, or a race). The constants below are
the table's statuses, kept for the callers (board, SLA, patterns, reports).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from workbench import cases
from workbench.store import open_rows
from workbench.store.schema import DATASETS, metadata as _core

CASE_TYPE = "city_event"
EVENTS = DATASETS["city_events"].table
# the open cases (of every type kept in city_events) apart, kept by triggers (migration 0017):
# what the board's counts and lists and the overview's open cases read at city scale
OPEN_EVENTS = open_rows.side_table(
    EVENTS, "city_events_open", "event_id", sa.MetaData(naming_convention=_core.naming_convention),
    indexes=(("status", "deadline"), ("district",)), comment="城市事件（在办案卷，由触发器维护）")
STORE = cases.CaseStore("city_events", "city_events", "event_id", "event_history", type_column="case_type",
                        open_rows=OPEN_EVENTS)
CASE_TYPES_FILE = Path(__file__).with_name("case_types.yaml")

INTAKE, CASE, DISPATCH, HANDLING, FEEDBACK, CLOSED, EVALUATED = (
    "信息收集", "案卷建立", "任务派遣", "任务处理", "处理反馈", "核查结案", "综合评价")
REJECTED, DUPLICATE, REOPENED, DEFERRED = "不予立案", "重复件", "重新办理", "缓办"
STEPS = (INTAKE, CASE, DISPATCH, HANDLING, FEEDBACK, CLOSED, EVALUATED)
STATUSES = STEPS + (REJECTED, DUPLICATE, REOPENED, DEFERRED)


def _declared() -> cases.CaseType:
    import yaml

    raw = yaml.safe_load(CASE_TYPES_FILE.read_text(encoding="utf-8"))
    return cases.CaseType.from_dict(CASE_TYPE, raw[CASE_TYPE], where=str(CASE_TYPES_FILE))


_CT = _declared()
assert set(_CT.statuses) == set(STATUSES), "case_types.yaml and flow.STATUSES disagree"
CLOSED_STATUSES = frozenset(_CT.closed)
OPEN_STATUSES = tuple(s for s in STATUSES if s not in CLOSED_STATUSES)
TRANSITIONS: dict[str, tuple[str, ...]] = dict(_CT.transitions)
ACTIONS: dict[str, str] = dict(_CT.actions)              # the board's buttons and the CLI's verbs
ACTION_LABELS: dict[str, str] = dict(_CT.action_labels)

# Callers keep catching FlowError: it is the engine's error.
FlowError = cases.CaseError
Change = cases.Change


def allowed(status: str | None) -> tuple[str, ...]:
    return _CT.allowed(status)


def check(current: str | None, to: str, event_id: str = "") -> None:
    """Raise FlowError unless `current` → `to` is a legal step."""
    _CT.check(current, to, event_id)


def _type_of(conn: Connection, event_id: str) -> str:
    """The event's case type (a row written before 0010 without one is a city event)."""
    t = conn.execute(sa.select(EVENTS.c.case_type).where(EVENTS.c.event_id == event_id)).scalar()
    return t or CASE_TYPE


def transition(target: Engine | Connection, event_id: str, to: str, *, actor, note: str = "",
               department: str | None = None, duplicate_of: str | None = None, ts=None,
               expected: str | None = None) -> cases.Change:
    """Move one event to status `to` through the engine; raises FlowError if illegal or stale.

    `department`: for 任务派遣 (required: where the case goes); `duplicate_of`: for 重复件;
    `expected`: the status the caller showed (a board's row), refused when it moved since."""
    if isinstance(target, Engine):
        with target.begin() as conn:
            return transition(conn, event_id, to, actor=actor, note=note, department=department,
                              duplicate_of=duplicate_of, ts=ts, expected=expected)
    conn = target
    values = None
    if to == DUPLICATE:
        if not duplicate_of:
            raise FlowError(f"合并重复件 {event_id} 需要指定主案卷编号")
        if duplicate_of == event_id:
            raise FlowError("不能把事件合并到它自己")
        values = {"duplicate_of": duplicate_of}
        note = note or f"与 {duplicate_of} 重复，合并办理"
    return cases.transition(conn, event_id, to, actor=actor, note=note, department=department, ts=ts,
                            expected=expected, case_type_name=_type_of(conn, event_id), store=STORE.name,
                            values=values)


def act(target: Engine | Connection, event_id: str, action: str, *, actor, note: str = "",
        department: str | None = None, duplicate_of: str | None = None, expected: str | None = None) -> cases.Change:
    """A named action (accept, dispatch, close, defer, …) — the board's buttons and the CLI."""
    if action not in ACTIONS:
        raise FlowError(f"未知的操作“{action}”，可选：{', '.join(ACTIONS)}")
    return transition(target, event_id, ACTIONS[action], actor=actor, note=note, department=department,
                      duplicate_of=duplicate_of, expected=expected)


# ------------------------------------------------------------------ bulk, for intake

def open_events(conn: Connection, events: pd.DataFrame, actor: pd.Series | str, auto_steps: pd.Series) -> int:
    """Open newly arrived events through the engine: 信息收集 at the report time, then, per
    event, the automatic steps it took (a list of (status, note)) a microsecond apart each.
    Events the hub already holds are left alone. Returns the events opened."""
    return cases.open_cases(conn, CASE_TYPE, events, actor=actor, steps=auto_steps)


def sync_from_source(conn: Connection, upd: pd.DataFrame, before, actor: str,
                     note: str | None = None) -> int:
    """Apply newer versions of events reported by their source system (Open311, NYC 311, a
    department's feed): their fields (not the status) here, their status through the engine
    (`cases.sync`: the source is the authority on its own cases, so a closing may skip
    steps; one "来源系统状态同步" history row each). Returns the status changes."""
    import numpy as np

    after = upd["status"].to_numpy()
    before = np.asarray(before, dtype=object)
    change = pd.notna(after) & (after != before)
    if change.any():
        ch = pd.DataFrame({"event_id": upd["event_id"].to_numpy()[change],
                           "ts": pd.to_datetime(upd["updated_at"]).to_numpy()[change],
                           "status": after[change]})
        if note:
            ch["note"] = note
        cases.sync(conn, CASE_TYPE, ch, actor=actor)
    rows = []
    for r in upd.itertuples(index=False):
        vals = {"_id": r.event_id}
        for c in ("description", "department", "deadline", "address", "closed_at", "updated_at"):
            val = getattr(r, c, None)
            if val is not None and val == val:
                vals[c] = val.to_pydatetime() if isinstance(val, pd.Timestamp) else val
        if len(vals) > 1:
            rows.append(vals)
    by_cols: dict[tuple, list] = {}
    for vals in rows:
        by_cols.setdefault(tuple(sorted(vals)), []).append(vals)
    for cols, batch in by_cols.items():
        # fields of the case the source reports (never its status: that went through the engine)
        stmt = EVENTS.update().where(EVENTS.c.event_id == sa.bindparam("_id")).values(
            **{c: sa.bindparam(c) for c in cols if c != "_id"})
        conn.execute(stmt, batch)
    return int(change.sum())


__all__ = ["CASE_TYPE", "STORE", "INTAKE", "CASE", "DISPATCH", "HANDLING", "FEEDBACK", "CLOSED", "EVALUATED",
           "REJECTED", "DUPLICATE", "REOPENED", "DEFERRED", "STEPS", "STATUSES", "CLOSED_STATUSES", "OPEN_STATUSES",
           "TRANSITIONS", "ACTIONS", "ACTION_LABELS", "FlowError", "allowed", "check", "Change", "transition", "act",
           "open_events", "sync_from_source"]


def upgrade_0017(op) -> None:
    """Migration 0017: city_events_open, its triggers, filled from the events held."""
    open_rows.install(op, EVENTS.name, OPEN_EVENTS, STORE.id, STORE.status, cases.open_statuses(STORE.name))


def downgrade_0017(op) -> None:
    open_rows.remove(op, EVENTS.name, OPEN_EVENTS)
