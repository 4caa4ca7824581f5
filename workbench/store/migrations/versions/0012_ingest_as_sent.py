"""data as departments send it: precision, criterion, daily weather, extras, versions, personal data

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

Issue 12: a record placed by its address only says how precisely (loc_precision); a rapid test
keeps its judging standard as written (criterion); a daily weather record says it is daily and
carries its minimum, maximum and snowfall; the columns the hub has no field for stay with their
row (row_extras); a corrected re-send keeps what it replaced (row_versions); callers' names,
phones and ID numbers are kept apart from the records (personal_data); a file remembers the
profile it was read with and what was converted (ingest_files.profile / notes).
"""
import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_PRECISION_TABLES = ('markets', 'canteens', 'city_events', 'hazard_sites')
_WEATHER = (('resolution', sa.String(64), '时间分辨率'), ('temperature_min', sa.Float(), '最低气温(°C)'),
            ('temperature_max', sa.Float(), '最高气温(°C)'), ('snowfall', sa.Float(), '降雪量(mm)'))


def upgrade() -> None:
    for table in _PRECISION_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('loc_precision', sa.String(64), nullable=True, comment='定位精度'))
    with op.batch_alter_table('rapid_tests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('criterion', sa.String(64), nullable=True, comment='判定标准'))
    with op.batch_alter_table('weather', schema=None) as batch_op:
        for name, kind, label in _WEATHER:
            batch_op.add_column(sa.Column(name, kind, nullable=True, comment=label))
    with op.batch_alter_table('ingest_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile', sa.String(128), nullable=True))
        batch_op.add_column(sa.Column('notes', sa.Text(), nullable=True))
    op.create_table(
        'row_extras',
        sa.Column('dataset', sa.String(64), nullable=False),
        sa.Column('row_key', sa.String(512), nullable=False),
        sa.Column('data', sa.Text(), nullable=False),
        sa.Column('file_sha256', sa.String(64), nullable=False),
        sa.Column('line', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('dataset', 'row_key', name=op.f('pk_row_extras')),
        comment='未映射列',
    )
    op.create_table(
        'row_versions',
        sa.Column('id', sa.Integer(), sa.Identity(), nullable=False),
        sa.Column('dataset', sa.String(64), nullable=False),
        sa.Column('row_key', sa.String(512), nullable=False),
        sa.Column('ts', sa.DateTime(), nullable=False),
        sa.Column('file_sha256', sa.String(64), nullable=True),
        sa.Column('old_json', sa.Text(), nullable=False),
        sa.Column('new_json', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_row_versions')),
        comment='更正记录',
    )
    with op.batch_alter_table('row_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_row_versions_dataset_row_key'), ['dataset', 'row_key'], unique=False)
    op.create_table(
        'personal_data',
        sa.Column('dataset', sa.String(64), nullable=False),
        sa.Column('row_key', sa.String(512), nullable=False),
        sa.Column('field', sa.String(64), nullable=False),
        sa.Column('value', sa.String(1024), nullable=False),
        sa.Column('file_sha256', sa.String(64), nullable=True),
        sa.Column('stored_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('dataset', 'row_key', 'field', name=op.f('pk_personal_data')),
        comment='个人信息（受保护）',
    )


def downgrade() -> None:
    op.drop_table('personal_data')
    with op.batch_alter_table('row_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_row_versions_dataset_row_key'))
    op.drop_table('row_versions')
    op.drop_table('row_extras')
    with op.batch_alter_table('ingest_files', schema=None) as batch_op:
        batch_op.drop_column('notes')
        batch_op.drop_column('profile')
    with op.batch_alter_table('weather', schema=None) as batch_op:
        for name, _, _ in reversed(_WEATHER):
            batch_op.drop_column(name)
    with op.batch_alter_table('rapid_tests', schema=None) as batch_op:
        batch_op.drop_column('criterion')
    for table in _PRECISION_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('loc_precision')
