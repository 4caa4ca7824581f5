"""canteen on the case engine

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Reserved for the canteen department's move onto the spine (data moved into cases/case_history
where its cases lived elsewhere); no schema change of its own.
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
