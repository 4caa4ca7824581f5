"""canteen camera AI events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

The camera pipeline (workbench.canteen) upserts its events into canteen_violations and
needs when an event was last updated, which tracked people it concerns, how many frames
evidenced it and where the unblurred snapshot lies; status changes of a case
(open → notified → rectified → verified) are kept in canteen_case_history.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('canteen_violations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(), nullable=True, comment='更新时间'))
        batch_op.add_column(sa.Column('track_ids', sa.String(length=256), nullable=True, comment='目标编号'))
        batch_op.add_column(sa.Column('frames', sa.BigInteger(), nullable=True, comment='命中帧数'))
        batch_op.add_column(sa.Column('clean_snapshot', sa.String(length=512), nullable=True,
                                      comment='原始抓拍图'))

    op.create_table('canteen_case_history',
    sa.Column('violation_id', sa.String(length=64), nullable=False, comment='违规编号'),
    sa.Column('ts', sa.DateTime(), nullable=False, comment='变更时间'),
    sa.Column('status', sa.String(length=64), nullable=False, comment='整改状态'),
    sa.Column('actor', sa.String(length=64), nullable=True, comment='操作人'),
    sa.Column('note', sa.String(length=512), nullable=True, comment='说明'),
    sa.PrimaryKeyConstraint('violation_id', 'ts', 'status', name=op.f('pk_canteen_case_history')),
    comment='明厨亮灶整改记录'
    )
    with op.batch_alter_table('canteen_case_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_canteen_case_history_violation_id'), ['violation_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('canteen_case_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_canteen_case_history_violation_id'))
    op.drop_table('canteen_case_history')
    with op.batch_alter_table('canteen_violations', schema=None) as batch_op:
        batch_op.drop_column('clean_snapshot')
        batch_op.drop_column('frames')
        batch_op.drop_column('track_ids')
        batch_op.drop_column('updated_at')
