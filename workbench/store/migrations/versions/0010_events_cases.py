"""events on the case engine

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29

City events are cases of the engine (workbench.cases, case type ``city_event``, store
city_events / event_history). No schema change; data only: rows written before the spine
get their case type (safety's cold-weather inspection tasks, source 预警联动, are
``inspection_task``; every other row is a ``city_event``). Downgrade leaves the types (the
column itself is 0006's).
"""
from alembic import op
import sqlalchemy as sa  # noqa: F401


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE city_events SET case_type = 'inspection_task' "
               "WHERE case_type IS NULL AND source = '预警联动'")
    op.execute("UPDATE city_events SET case_type = 'city_event' WHERE case_type IS NULL")


def downgrade() -> None:
    pass
