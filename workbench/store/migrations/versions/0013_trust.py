"""trust: users, sessions and the append-only audit log

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

Issue 13: every page and write is done by a signed-in user (users, user_sessions); every write
is recorded in audit_log, which the database itself keeps append-only (triggers refuse UPDATE
and DELETE on SQLite and PostgreSQL;
TRUNCATE too on PostgreSQL). The application's database role owns the table and could still drop
the triggers: docs/security.md says how to give it INSERT/SELECT only on audit_log.
"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        'users',
        sa.Column('username', sa.String(64), nullable=False),
        sa.Column('display_name', sa.String(128), nullable=False),
        sa.Column('role', sa.String(32), nullable=False),
        sa.Column('department', sa.String(64), nullable=True),
        sa.Column('district', sa.String(64), nullable=True),
        sa.Column('password_hash', sa.String(256), nullable=False),
        sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False),
        sa.Column('locked_until', sa.DateTime(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('username', name=op.f('pk_users')),
        comment='用户',
    )
    op.create_table(
        'user_sessions',
        sa.Column('token_hash', sa.String(64), nullable=False),
        sa.Column('username', sa.String(64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen', sa.DateTime(), nullable=False),
        sa.Column('expires_at', sa.DateTime(), nullable=False),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.Column('address', sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_user_sessions')),
        comment='登录会话',
    )
    op.create_index(op.f('ix_user_sessions_username'), 'user_sessions', ['username'])
    op.create_table(
        'audit_log',
        sa.Column('id', sa.Integer(), sa.Identity(), nullable=False),
        sa.Column('ts', sa.DateTime(), nullable=False),
        sa.Column('actor', sa.String(160), nullable=False),
        sa.Column('action', sa.String(64), nullable=False),
        sa.Column('target', sa.String(512), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
        comment='审计日志（只增不改）',
    )
    op.create_index(op.f('ix_audit_log_ts'), 'audit_log', ['ts'])
    op.create_index(op.f('ix_audit_log_action_ts'), 'audit_log', ['action', 'ts'])
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(_PG_FUNCTION)
        op.execute("CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()")
        # row triggers do not fire on TRUNCATE: a statement trigger refuses it too
        op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()")
    else:
        for what in ('UPDATE', 'DELETE'):
            op.execute(f"CREATE TRIGGER audit_log_no_{what.lower()} BEFORE {what} ON audit_log "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_change ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_index(op.f('ix_audit_log_action_ts'), table_name='audit_log')
    op.drop_index(op.f('ix_audit_log_ts'), table_name='audit_log')
    op.drop_table('audit_log')
    op.drop_index(op.f('ix_user_sessions_username'), table_name='user_sessions')
    op.drop_table('user_sessions')
    op.drop_table('users')
