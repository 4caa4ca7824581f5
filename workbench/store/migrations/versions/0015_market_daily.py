"""market_daily: the rapid tests' daily summary, kept on write by triggers (issue 14)

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29

One row per Beijing day × market × district × category × origin with batches,
items, positives and banned-substance counts (workbench.market.daily); triggers on rapid_tests
keep it on insert, update (corrections, re-sent files) and delete, on SQLite and on PostgreSQL
(defined on the partitioned table of 0014, so every monthly partition has them); filled here
from the rows already held. An index on rapid_tests (stall_id, sampled_at) serves the triggers'
look-up of a row's batch.
"""
from alembic import op

from workbench import registry

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    registry.migrate(revision, "upgrade", op)   # the market's step (workbench.market.daily.upgrade_0015)


def downgrade() -> None:
    registry.migrate(revision, "downgrade", op)
