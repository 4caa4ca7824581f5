"""partitions: city_events, canteen_violations and rapid_tests partitioned by month on PostgreSQL

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29

Issue 14 (the hub at city scale). On PostgreSQL each of the three big tables becomes a table
partitioned by range on `ts`, one partition per month (made for every month that holds rows and
the next 12), a DEFAULT partition for rows outside them; the rows move in place (INSERT … SELECT
inside the database, one transaction). PostgreSQL requires the primary key of a partitioned table
to include `ts`, so the key becomes (natural key, ts) and the natural key alone stays unique
through `<table>_keys`, kept by triggers (workbench.store.partitions, docs/scale.md).
SQLite: nothing changes.
"""
from datetime import datetime

import sqlalchemy as sa
from alembic import op

from workbench.store import partitions as P

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

TABLES = ('city_events', 'canteen_violations', 'rapid_tests')


def _old_layout(bind, table):
    insp = sa.inspect(bind)
    idx = [(i['name'], i['column_names']) for i in insp.get_indexes(table)]
    comment = insp.get_table_comment(table).get('text')
    key_col = next(c for c in insp.get_columns(table) if c['name'] == P.key_column(table))
    return idx, comment, key_col


def _quote(s):
    return "'" + s.replace("'", "''") + "'"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    for t in TABLES:
        k = P.key_column(t)
        idx, comment, key_col = _old_layout(bind, t)
        old = f'{t}_unpartitioned'
        for name, _ in idx:
            op.execute(f'DROP INDEX "{name}"')
        op.execute(f'ALTER TABLE "{t}" RENAME TO "{old}"')
        op.execute(f'ALTER TABLE "{old}" RENAME CONSTRAINT "pk_{t}" TO "pk_{old}"')
        op.execute(f'CREATE TABLE "{t}" (LIKE "{old}" INCLUDING DEFAULTS INCLUDING COMMENTS INCLUDING CONSTRAINTS) '
                   'PARTITION BY RANGE (ts)')
        if comment:
            op.execute(f'COMMENT ON TABLE "{t}" IS {_quote(comment)}')
        months = {P.month_start(m) for m in bind.execute(sa.text(
            f'SELECT DISTINCT date_trunc(\'month\', ts) FROM "{old}"')).scalars()}
        m = P.month_start(datetime.utcnow())
        for _ in range(P.AHEAD + 1):
            months.add(m)
            m = P.next_month(m)
        for m in sorted(months):
            P.create_month(bind, t, m)
        P.create_default(bind, t)
        op.execute(f'INSERT INTO "{t}" SELECT * FROM "{old}"')
        op.execute(f'ALTER TABLE "{t}" ADD CONSTRAINT "pk_{t}" PRIMARY KEY ("{k}", ts)')
        for name, cols in idx:
            op.execute(f'CREATE INDEX "{name}" ON "{t}" ({", ".join(chr(34) + c + chr(34) for c in cols)})')
        length = getattr(key_col['type'], 'length', None) or 64
        op.execute(f'CREATE TABLE "{t}_keys" ("{k}" varchar({length}) NOT NULL, '
                   f'CONSTRAINT "pk_{t}_keys" PRIMARY KEY ("{k}"))')
        op.execute(f'COMMENT ON TABLE "{t}_keys" IS {_quote(f"{t} 的自然键登记（分区表的唯一性）")}')
        op.execute(f'INSERT INTO "{t}_keys" ("{k}") SELECT "{k}" FROM "{old}"')
        op.execute(f'DROP TABLE "{old}"')
        for sql in P.trigger_sql(t):
            op.execute(sql)
        op.execute(f'ANALYZE "{t}"')


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    for t in TABLES:
        k = P.key_column(t)
        idx, comment, _ = _old_layout(bind, t)
        part = f'{t}_partitioned'
        for sql in P.drop_trigger_sql(t):
            op.execute(sql)
        for name, _ in idx:
            op.execute(f'DROP INDEX "{name}"')
        op.execute(f'ALTER TABLE "{t}" RENAME TO "{part}"')
        op.execute(f'ALTER TABLE "{part}" RENAME CONSTRAINT "pk_{t}" TO "pk_{part}"')
        op.execute(f'CREATE TABLE "{t}" (LIKE "{part}" INCLUDING DEFAULTS INCLUDING COMMENTS INCLUDING CONSTRAINTS)')
        if comment:
            op.execute(f'COMMENT ON TABLE "{t}" IS {_quote(comment)}')
        op.execute(f'INSERT INTO "{t}" SELECT * FROM "{part}"')
        op.execute(f'ALTER TABLE "{t}" ADD CONSTRAINT "pk_{t}" PRIMARY KEY ("{k}")')
        for name, cols in idx:
            op.execute(f'CREATE INDEX "{name}" ON "{t}" ({", ".join(chr(34) + c + chr(34) for c in cols)})')
        op.execute(f'DROP TABLE "{part}" CASCADE')
        op.execute(f'DROP TABLE "{t}_keys"')
