"""history tables indexed by time

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29

The city overview asks for the newest step of any case (数据截至) and the daily report for
yesterday's steps; without an index on ts both scan every history row.
"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('event_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_event_history_ts'), ['ts'], unique=False)
    with op.batch_alter_table('case_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_history_ts'), ['ts'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('case_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_history_ts'))
    with op.batch_alter_table('event_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_event_history_ts'))
