"""canteen on the case engine

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

明厨亮灶's rectification cases move onto the spine's case engine (case type
canteen_rectification, case_id = violation_id, workbench/canteen/case_types.yaml):
- one `cases` row per canteen_violations row, its status mapped (open → 待处理, notified →
  已通知, rectified → 已整改, verified → 已复核; notified right after rectified — the check
  found it not fixed — → 退回整改), department 市场监管局, deadline 72 h after the violation,
  subject canteen_violations:<id>;
- every canteen_case_history row into case_history (status mapped the same way, department
  市场监管局); the intake step (待处理, at the violation's time) written where none exists, and
  a step for the status a violation held without any history (an imported platform export);
- then canteen_case_history and canteen_violations.status are dropped.
Nothing is lost: downgrade puts the statuses and the history back.
"""
import datetime as dt

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

CASE_TYPE = "canteen_rectification"
DEPARTMENT = "市场监管局"
TO_CASE = {"open": "待处理", "notified": "已通知", "rectified": "已整改", "verified": "已复核"}
BACK = {v: k for k, v in TO_CASE.items()} | {"退回整改": "notified"}
CLOSED = "已复核"
DEADLINE_HOURS = 72
CHUNK = 5000

violations = sa.table(
    "canteen_violations", sa.column("violation_id", sa.String), sa.column("ts", sa.DateTime),
    sa.column("canteen_id", sa.String), sa.column("district", sa.String),
    sa.column("violation_class", sa.String), sa.column("camera_id", sa.String),
    sa.column("status", sa.String), sa.column("updated_at", sa.DateTime), sa.column("ts_end", sa.DateTime))
canteens = sa.table("canteens", sa.column("canteen_id", sa.String), sa.column("name", sa.String),
                    sa.column("district", sa.String))
old_history = sa.table("canteen_case_history", sa.column("violation_id", sa.String), sa.column("ts", sa.DateTime),
                       sa.column("status", sa.String), sa.column("actor", sa.String), sa.column("note", sa.String))
cases = sa.table(
    "cases", sa.column("case_id", sa.String), sa.column("case_type", sa.String), sa.column("ts", sa.DateTime),
    sa.column("title", sa.String), sa.column("department", sa.String), sa.column("district", sa.String),
    sa.column("status", sa.String), sa.column("deadline", sa.DateTime), sa.column("closed_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime), sa.column("subject", sa.String), sa.column("description", sa.String))
case_history = sa.table(
    "case_history", sa.column("case_id", sa.String), sa.column("ts", sa.DateTime), sa.column("status", sa.String),
    sa.column("actor", sa.String), sa.column("department", sa.String), sa.column("note", sa.String))

US_STEP = dt.timedelta(microseconds=1)


def _as_dt(x):
    if x is None or isinstance(x, dt.datetime):
        return x
    import pandas as pd

    return pd.Timestamp(x).to_pydatetime()


def _mapped_steps(rows):
    """Old history rows of one violation (oldest first) → (ts, status, actor, note) with the
    case type's statuses; notified right after rectified is the back-step 退回整改."""
    out, prev = [], None
    for ts, status, actor, note in rows:
        new = TO_CASE.get(status, status)
        if status == "notified" and prev == "rectified":
            new = "退回整改"
        out.append((_as_dt(ts), new, actor, note))
        prev = status
    return out


def upgrade() -> None:
    conn = op.get_bind()
    names = dict(conn.execute(sa.select(canteens.c.canteen_id, canteens.c.name)).all())
    cdist = dict(conn.execute(sa.select(canteens.c.canteen_id, canteens.c.district)).all())
    held = {r[0] for r in conn.execute(sa.select(cases.c.case_id))}
    hist: dict[str, list] = {}
    for r in conn.execute(sa.select(old_history.c.violation_id, old_history.c.ts, old_history.c.status,
                                    old_history.c.actor, old_history.c.note).order_by(
            old_history.c.violation_id, old_history.c.ts)):
        hist.setdefault(r[0], []).append(tuple(r[1:]))
    held_steps = {(r[0], _as_dt(r[1]), r[2]) for r in conn.execute(
        sa.select(case_history.c.case_id, case_history.c.ts, case_history.c.status))}

    case_rows, step_rows = [], []

    def flush(final=False):
        if case_rows and (final or len(case_rows) >= CHUNK):
            conn.execute(cases.insert(), case_rows)
            case_rows.clear()
        if step_rows and (final or len(step_rows) >= CHUNK):
            conn.execute(case_history.insert(), step_rows)
            step_rows.clear()

    def step(cid, ts, status, actor, note):
        key = (cid, ts, status)
        if key in held_steps:
            return
        held_steps.add(key)
        step_rows.append({"case_id": cid, "ts": ts, "status": status, "actor": (actor or None) and actor[:64],
                          "department": DEPARTMENT, "note": (note or None) and note[:512]})

    q = sa.select(violations.c.violation_id, violations.c.ts, violations.c.canteen_id, violations.c.district,
                  violations.c.violation_class, violations.c.camera_id, violations.c.status,
                  violations.c.updated_at, violations.c.ts_end).order_by(violations.c.violation_id)
    for vid, ts, canteen, district, vclass, camera, status, updated, ts_end in conn.execute(q).all():
        ts = _as_dt(ts)
        steps = _mapped_steps(hist.pop(vid, []))
        if vid in held:  # already a case (not expected): keep it, still keep the history
            for s in steps:
                step(vid, *s)
            flush()
            continue
        cur = TO_CASE.get(status or "open", "待处理")
        if status == "notified" and steps and steps[-1][1] == "退回整改":
            cur = "退回整改"
        # the intake step, where the old history has none
        if not any(s[1] == "待处理" for s in steps):
            first = min([s[0] for s in steps if s[0] is not None] + [ts])
            step(vid, min(ts, first), "待处理", "系统", "受理登记（迁移自明厨亮灶整改记录）")
        for s in steps:
            step(vid, *s)
        last = max([s[0] for s in steps if s[0] is not None], default=ts)
        # a status held without history (an imported platform export): one step records it
        if cur != "待处理" and (not steps or steps[-1][1] != cur):
            when = max(_as_dt(updated) or _as_dt(ts_end) or ts, last + US_STEP)
            step(vid, when, cur, "明厨亮灶平台", "迁移：来源系统的整改状态")
            last = when
        closed_at = None
        if cur == CLOSED:
            closed_at = max([s[0] for s in steps if s[1] == CLOSED and s[0] is not None], default=last)
        name = names.get(canteen) or canteen or ""
        case_rows.append({
            "case_id": vid, "case_type": CASE_TYPE, "ts": ts, "title": f"{name}后厨{vclass or ''}整改"[:256],
            "department": DEPARTMENT, "district": district or cdist.get(canteen), "status": cur,
            "deadline": ts + dt.timedelta(hours=DEADLINE_HOURS) if ts else None, "closed_at": closed_at,
            "updated_at": max(last, ts) if ts else last, "subject": f"canteen_violations:{vid}"[:256],
            "description": f"摄像头 {camera} 识别到“{vclass}”"[:1024],
        })
        held.add(vid)
        flush()
    # history of violations that are not in the hub any more: kept, under their id
    for vid, rows in hist.items():
        for s in _mapped_steps(rows):
            step(vid, *s)
    flush(final=True)

    with op.batch_alter_table('canteen_case_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_canteen_case_history_violation_id'))
    op.drop_table('canteen_case_history')
    with op.batch_alter_table('canteen_violations', schema=None) as batch_op:
        batch_op.drop_column('status')


def downgrade() -> None:
    with op.batch_alter_table('canteen_violations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=64), nullable=True, comment='整改状态'))
    op.create_table(
        'canteen_case_history',
        sa.Column('violation_id', sa.String(length=64), nullable=False, comment='违规编号'),
        sa.Column('ts', sa.DateTime(), nullable=False, comment='变更时间'),
        sa.Column('status', sa.String(length=64), nullable=False, comment='整改状态'),
        sa.Column('actor', sa.String(length=64), nullable=True, comment='操作人'),
        sa.Column('note', sa.String(length=512), nullable=True, comment='说明'),
        sa.PrimaryKeyConstraint('violation_id', 'ts', 'status', name=op.f('pk_canteen_case_history')),
        comment='明厨亮灶整改记录')
    with op.batch_alter_table('canteen_case_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_canteen_case_history_violation_id'), ['violation_id'], unique=False)
    conn = op.get_bind()
    ids = sa.select(cases.c.case_id).where(cases.c.case_type == CASE_TYPE)
    for cid, status in conn.execute(sa.select(cases.c.case_id, cases.c.status).where(cases.c.case_type == CASE_TYPE)).all():
        conn.execute(violations.update().where(violations.c.violation_id == cid).values(status=BACK.get(status, "open")))
    rows = [{"violation_id": r[0], "ts": r[1], "status": BACK[r[2]], "actor": r[3], "note": r[4]}
            for r in conn.execute(sa.select(case_history.c.case_id, case_history.c.ts, case_history.c.status,
                                            case_history.c.actor, case_history.c.note).where(
                case_history.c.case_id.in_(ids))).all()
            if r[2] in BACK and r[2] != "待处理"]
    if rows:
        conn.execute(old_history.insert(), rows)
    conn.execute(case_history.delete().where(case_history.c.case_id.in_(ids)))
    conn.execute(cases.delete().where(cases.c.case_type == CASE_TYPE))
