"""A case store's open rows kept apart (issue 14: the hub at city scale).

The dispatch board's counts and lists and the overview's open cases read only the open cases,
a few hundred thousand at most, but at city scale they sit among ten million closed ones in
monthly partitions; the open rows are the ones being updated, so their pages are seldom
all-visible and an index-only scan cannot serve them (docs/scale.md). A store that registers an
*open table* (CaseStore.open_rows) gets a second table with the same columns holding exactly
its rows whose status is open, kept on write by triggers on the case table:

- SQLite: row triggers (after insert, update, delete: the row's entry is dropped and, when its
  new status is open, copied again);
- PostgreSQL: statement triggers with transition tables on the (partitioned) case table, so a
  COPY of a million rows costs one statement, not a million.

The open statuses are the union of the store's case types' open statuses when the migration
runs (a case type whose statuses change needs a migration that calls `install` again; a test
checks the installed set against the registry). Rows that move between partitions of the same
table (partitions.drain_default) move beneath the parent and change nothing here.
"""
from __future__ import annotations

from typing import Iterable

import sqlalchemy as sa


def side_table(source: sa.Table, name: str, key: str, metadata: sa.MetaData,
               indexes: Iterable[tuple[str, ...]] = (), comment: str | None = None) -> sa.Table:
    """The open table of `source`: the same columns (types and comments), primary key `key`."""
    cols = [sa.Column(c.name, c.type, primary_key=(c.name == key), nullable=(c.name != key), comment=c.comment)
            for c in source.columns]
    t = sa.Table(name, metadata, *cols, comment=comment or f"{source.comment or source.name}（在办）")
    for ix in indexes:
        sa.Index(f"ix_{name}_{'_'.join(ix)}", *(t.c[c] for c in ix))
    return t


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def trigger_sql(dialect: str, source: str, side: sa.Table, key: str, status: str,
                statuses: Iterable[str]) -> list[str]:
    """The statements creating the triggers that keep `side` (the open rows of `source`)."""
    cols = ", ".join(f'"{c.name}"' for c in side.columns)
    is_open = f"IN ({', '.join(_q(s) for s in sorted(set(statuses)))})"
    s = side.name
    if dialect == "sqlite":
        copy = (f'INSERT OR REPLACE INTO "{s}" ({cols}) SELECT {cols} FROM "{source}" '
                f'WHERE "{key}" = NEW."{key}" AND "{status}" {is_open};')
        return [
            f'CREATE TRIGGER {s}_in AFTER INSERT ON "{source}" WHEN NEW."{status}" {is_open} BEGIN {copy} END',
            f'CREATE TRIGGER {s}_upd AFTER UPDATE ON "{source}" BEGIN '
            f'DELETE FROM "{s}" WHERE "{key}" = OLD."{key}"; {copy} END',
            f'CREATE TRIGGER {s}_out AFTER DELETE ON "{source}" BEGIN '
            f'DELETE FROM "{s}" WHERE "{key}" = OLD."{key}"; END',
        ]
    upsert = ", ".join(f'"{c.name}" = excluded."{c.name}"' for c in side.columns if c.name != key)
    copy = (lambda rows: f'INSERT INTO "{s}" ({cols}) SELECT {cols} FROM {rows} WHERE "{status}" {is_open} '
            f'ON CONFLICT ("{key}") DO UPDATE SET {upsert}')
    drop = (lambda rows: f'DELETE FROM "{s}" WHERE "{key}" IN (SELECT "{key}" FROM {rows})')
    # an insert: its open rows copied (a stale entry of the same key, left by a partition dropped
    # beneath the parent, is overwritten); an update: the old keys dropped, the new open rows copied
    bodies = {"insert": ("NEW TABLE AS new_rows", [copy("new_rows")]),
              "update": ("OLD TABLE AS old_rows NEW TABLE AS new_rows", [drop("old_rows"), copy("new_rows")]),
              "delete": ("OLD TABLE AS old_rows", [drop("old_rows")])}
    out = []
    for op, (ref, body) in bodies.items():
        fn = f"{s}_{op}"
        out += [f"""CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {';'.join(body)};
    RETURN NULL;
END $$""", f'CREATE TRIGGER {fn} AFTER {op.upper()} ON "{source}" REFERENCING {ref} '
                  f'FOR EACH STATEMENT EXECUTE FUNCTION {fn}()']
    return out


def drop_trigger_sql(dialect: str, source: str, side: str) -> list[str]:
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {side}_{op}" for op in ("in", "upd", "out")]
    return [sql for op in ("insert", "update", "delete") for sql in (
        f'DROP TRIGGER IF EXISTS {side}_{op} ON "{source}"', f"DROP FUNCTION IF EXISTS {side}_{op}()")]


def fill_sql(source: str, side: sa.Table, status: str, statuses: Iterable[str]) -> str:
    """Copy the open rows held (the migration's fill; `DELETE FROM side` first to refill)."""
    cols = ", ".join(f'"{c.name}"' for c in side.columns)
    is_open = f"IN ({', '.join(_q(s) for s in sorted(set(statuses)))})"
    return f'INSERT INTO "{side.name}" ({cols}) SELECT {cols} FROM "{source}" WHERE "{status}" {is_open}'


def install(op, source: str, side: sa.Table, key: str, status: str, statuses: Iterable[str]) -> None:
    """A migration step: create `side` with its indexes, its triggers on `source`, and fill it."""
    bind = op.get_bind()
    side.create(bind)
    statuses = tuple(statuses)
    for sql in trigger_sql(bind.dialect.name, source, side, key, status, statuses):
        op.execute(sql)
    op.execute(fill_sql(source, side, status, statuses))
    if bind.dialect.name == "postgresql":
        op.execute(f'ANALYZE "{side.name}"')


def remove(op, source: str, side: sa.Table) -> None:
    bind = op.get_bind()
    for sql in drop_trigger_sql(bind.dialect.name, source, side.name):
        op.execute(sql)
    side.drop(bind)


def installed_statuses(conn, source: str, side: str) -> set[str] | None:
    """The open statuses the installed triggers copy (read back from their definition), None
    when there are none: what a test compares with the registry's case types."""
    import re

    if conn.dialect.name == "sqlite":
        sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :n"),
                           {"n": f"{side}_in"}).scalar()
    else:
        sql = conn.execute(sa.text("SELECT prosrc FROM pg_proc WHERE proname = :n "
                                   "AND pronamespace = current_schema()::regnamespace"), {"n": f"{side}_insert"}).scalar()
    if not sql:
        return None
    m = re.search(r" IN \(([^)]*)\)", sql)
    return {s.strip().strip("'").replace("''", "'") for s in m.group(1).split(",")} if m else set()
