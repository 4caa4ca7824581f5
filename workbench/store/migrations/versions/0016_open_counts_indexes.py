"""Indexes for the dashboards' counts at city scale (issue 14)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29

- city_events (status, case_type, department, district, deadline): every column the counts of
  open cases read (the events board's per type, department and status with how many are past
  their deadline; the overview's per district), so PostgreSQL can answer them with an index-only
  scan of the open statuses' ranges on each monthly partition (rows all-visible after a vacuum, as
  autovacuum keeps a live hub), SQLite from the index alone. Defined on the partitioned table:
  every partition, and every new month, has it.
- canteen_violations (ts): the newest violation (数据截至, max(ts)) reads one index page per
  partition instead of scanning them all.
"""
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

INDEXES = (
    ("city_events", ("status", "case_type", "department", "district", "deadline")),
    ("canteen_violations", ("ts",)),
)


def _name(table, columns) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    for table, columns in INDEXES:
        op.create_index(_name(table, columns), table, list(columns))


def downgrade() -> None:
    for table, columns in INDEXES:
        op.drop_index(_name(table, columns), table_name=table)
