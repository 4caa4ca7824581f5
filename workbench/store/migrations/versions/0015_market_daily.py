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
import sqlalchemy as sa
from alembic import op

from workbench.market import daily as D

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        D.TABLE,
        sa.Column('day', sa.Date(), nullable=False, comment='日期（北京时间）'),
        sa.Column('market_id', sa.String(length=64), nullable=False, comment='市场编号'),
        sa.Column('district', sa.String(length=64), nullable=False, comment='区县'),
        sa.Column('category', sa.String(length=64), nullable=False, comment='样品类别'),
        sa.Column('origin', sa.String(length=64), nullable=False, comment='产地'),
        *(sa.Column(c, sa.Integer(), nullable=False, comment=D.fg.LABELS[c]) for c in D.COUNTS),
        sa.PrimaryKeyConstraint(*D.KEYS, name='pk_market_daily'),
        comment='快检日汇总',
    )
    op.create_index('ix_rapid_tests_stall_id_sampled_at', 'rapid_tests', ['stall_id', 'sampled_at'])
    op.execute(D.backfill_sql(bind.dialect.name))
    for sql in D.trigger_sql(bind.dialect.name):
        op.execute(sql)


def downgrade() -> None:
    bind = op.get_bind()
    for sql in D.drop_trigger_sql(bind.dialect.name):
        op.execute(sql)
    op.drop_index('ix_rapid_tests_stall_id_sampled_at', table_name='rapid_tests')
    op.drop_table(D.TABLE)
