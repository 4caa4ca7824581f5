"""safety on the case engine

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

No schema change. The inspection tasks the cold-weather warnings set off (source 预警联动)
were written into city_events before the case engine existed: they are marked as cases of
type inspection_task, with the warning they came from (their external_id) as alert_id, so
the engine tells them from the city's own events. Hazard rectification cases need no data
move: `workbench safety warn` opens the case of every hazard that has none (the engine's
bulk intake, idempotent).
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text(
        "UPDATE city_events SET case_type = 'inspection_task', alert_id = COALESCE(alert_id, external_id) "
        "WHERE source = '预警联动' AND case_type IS NULL"))


def downgrade() -> None:
    op.execute(sa.text(
        "UPDATE city_events SET case_type = NULL WHERE source = '预警联动' AND case_type = 'inspection_task'"))
