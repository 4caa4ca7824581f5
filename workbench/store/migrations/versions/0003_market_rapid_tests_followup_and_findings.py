"""market rapid tests follow-up and findings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

market_followups (快检阳性处置): per positive test, the lab re-test, the goods destroyed
and the stall's re-test within a deadline. Integrity findings go to the existing
data_quality table and alerts to alerts (no schema change needed for them).
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('market_followups',
    sa.Column('test_id', sa.String(length=64), nullable=False, comment='检测编号'),
    sa.Column('ts', sa.DateTime(), nullable=False, comment='登记时间'),
    sa.Column('deadline', sa.DateTime(), nullable=True, comment='处置时限'),
    sa.Column('lab_sent_at', sa.DateTime(), nullable=True, comment='送检时间'),
    sa.Column('lab_result', sa.String(length=64), nullable=True, comment='复检结果'),
    sa.Column('lab_result_at', sa.DateTime(), nullable=True, comment='复检报告时间'),
    sa.Column('destroyed_kg', sa.Float(), nullable=True, comment='销毁数量(kg)'),
    sa.Column('destroyed_at', sa.DateTime(), nullable=True, comment='销毁时间'),
    sa.Column('stall_retest_at', sa.DateTime(), nullable=True, comment='摊位复查时间'),
    sa.Column('stall_retest_result', sa.String(length=64), nullable=True, comment='摊位复查结果'),
    sa.Column('handler', sa.String(length=64), nullable=True, comment='处置人'),
    sa.Column('note', sa.String(length=512), nullable=True, comment='处置说明'),
    sa.PrimaryKeyConstraint('test_id', name=op.f('pk_market_followups')),
    comment='快检阳性处置'
    )


def downgrade() -> None:
    op.drop_table('market_followups')
