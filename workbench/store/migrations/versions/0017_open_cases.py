"""city_events_open: the open city events and inspection tasks kept apart by triggers (issue 14)

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30

The dispatch board's counts and lists and the overview's open cases read the open cases only;
at 10 M events they sat among the closed ones in 37 partitions, on heap pages an index-only scan
could not skip (their rows are the ones being updated). city_events_open has the same columns
and holds exactly the rows whose status is open for their case type's store (the union of the
types' open statuses), kept by triggers on city_events (workbench.store.open_rows: row
triggers on SQLite, statement triggers with transition tables on PostgreSQL, defined on the
partitioned table); filled here from the rows held.
"""
from alembic import op

from workbench import registry

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    registry.migrate(revision, "upgrade", op)   # the events' step (workbench.events.flow.upgrade_0017)


def downgrade() -> None:
    registry.migrate(revision, "downgrade", op)
