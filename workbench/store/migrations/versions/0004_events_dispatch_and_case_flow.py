"""events dispatch and case flow

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26

city_events.duplicate_of (合并至): a report merged into an earlier case of the same class
nearby keeps its row, with status 重复件 and the case it was merged into. Indexes for
duplicate detection (class, time), external-id dedupe, and the dispatch board (open
statuses by deadline; cases waiting at intake, newest first; open cases per department
and deadline, covering the board's counts).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('city_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duplicate_of', sa.String(length=64), nullable=True, comment='合并至'))
        batch_op.create_index(batch_op.f('ix_city_events_event_class_ts'), ['event_class', 'ts'], unique=False)
        batch_op.create_index(batch_op.f('ix_city_events_external_id'), ['external_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_city_events_status_deadline'), ['status', 'deadline'], unique=False)
        batch_op.create_index(batch_op.f('ix_city_events_status_ts'), ['status', 'ts'], unique=False)
        batch_op.create_index(batch_op.f('ix_city_events_status_department_deadline'),
                              ['status', 'department', 'deadline'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('city_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_city_events_status_department_deadline'))
        batch_op.drop_index(batch_op.f('ix_city_events_status_ts'))
        batch_op.drop_index(batch_op.f('ix_city_events_status_deadline'))
        batch_op.drop_index(batch_op.f('ix_city_events_external_id'))
        batch_op.drop_index(batch_op.f('ix_city_events_event_class_ts'))
        batch_op.drop_column('duplicate_of')
