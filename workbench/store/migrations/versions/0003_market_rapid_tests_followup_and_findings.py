"""market rapid tests follow-up and findings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Reserved slot: filled by the issue that owns it (schema changes for this department).
An empty upgrade keeps the chain linear while the slot is unused.
"""
from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
