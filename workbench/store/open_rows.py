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

The open statuses are the union of the store's case types' open statuses; the hub checks the
installed triggers against the registry whenever a process opens it and makes them again where
they differ (`ensure`). A TRUNCATE of the case table empties the open table (PostgreSQL). Rows that move between partitions of the same
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
                statuses: Iterable[str], columns: list[str] | None = None) -> list[str]:
    """The statements creating the triggers that keep `side` (the open rows of `source`);
    `columns`: the columns copied (default: the side table's)."""
    names = list(columns or [c.name for c in side.columns])
    cols = ", ".join(f'"{c}"' for c in names)
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
    upsert = ", ".join(f'"{c}" = excluded."{c}"' for c in names if c != key)
    copy = (lambda rows: f'INSERT INTO "{s}" ({cols}) SELECT {cols} FROM {rows} WHERE "{status}" {is_open} '
            f'ON CONFLICT ("{key}") DO UPDATE SET {upsert}')
    drop = (lambda rows: f'DELETE FROM "{s}" WHERE "{key}" IN (SELECT "{key}" FROM {rows})')
    # an insert: its open rows copied (a stale entry of the same key, left by a partition dropped
    # beneath the parent, is overwritten); an update: the old keys dropped, the new open rows copied
    bodies = {"insert": ("NEW TABLE AS new_rows", [copy("new_rows")]),
              "update": ("OLD TABLE AS old_rows NEW TABLE AS new_rows", [drop("old_rows"), copy("new_rows")]),
              "delete": ("OLD TABLE AS old_rows", [drop("old_rows")])}
    out = [f"""CREATE OR REPLACE FUNCTION {s}_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM "{s}";
    RETURN NULL;
END $$""", f'CREATE TRIGGER {s}_truncate AFTER TRUNCATE ON "{source}" FOR EACH STATEMENT EXECUTE FUNCTION {s}_truncate()']
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
    return [sql for op in ("insert", "update", "delete", "truncate") for sql in (
        f'DROP TRIGGER IF EXISTS {side}_{op} ON "{source}"', f"DROP FUNCTION IF EXISTS {side}_{op}()")]


def fill_sql(source: str, side: sa.Table, status: str, statuses: Iterable[str],
             columns: list[str] | None = None) -> str:
    """Copy the open rows held (the migration's fill; `DELETE FROM side` first to refill)."""
    cols = ", ".join(f'"{c}"' for c in (columns or [c.name for c in side.columns]))
    is_open = f"IN ({', '.join(_q(s) for s in sorted(set(statuses)))})"
    return f'INSERT INTO "{side.name}" ({cols}) SELECT {cols} FROM "{source}" WHERE "{status}" {is_open}'


def install(op, source: str, side: sa.Table, key: str, status: str, statuses: Iterable[str]) -> None:
    """A migration step: create `side` with its indexes, its triggers on `source`, and fill it.
    The side table takes the columns `source` has in the database when the step runs (a later
    migration that adds a column to `source` adds it here too and calls `reinstall`), not the
    code's: a hub migrated from scratch passes this step before those columns exist."""
    bind = op.get_bind()
    held = [c.name for c in sa.Table(source, sa.MetaData(), autoload_with=bind).columns]
    table = sa.Table(side.name, sa.MetaData(), *(c._copy() for c in side.columns if c.name in held),
                     comment=side.comment)
    for ix in side.indexes:
        sa.Index(ix.name, *(table.c[c.name] for c in ix.columns))
    table.create(bind)
    statuses = tuple(statuses)
    for sql in trigger_sql(bind.dialect.name, source, table, key, status, statuses):
        op.execute(sql)
    op.execute(fill_sql(source, table, status, statuses))
    if bind.dialect.name == "postgresql":
        op.execute(f'ANALYZE "{side.name}"')


def remove(op, source: str, side: sa.Table) -> None:
    bind = op.get_bind()
    for sql in drop_trigger_sql(bind.dialect.name, source, side.name):
        op.execute(sql)
    side.drop(bind)


def reinstall(conn, source: str, side: sa.Table, key: str, status: str, statuses: Iterable[str]) -> None:
    """The triggers made again for `statuses` and the open table filled again from `source` (the
    columns both hold in the database)."""
    insp = sa.inspect(conn)
    names = [c["name"] for c in insp.get_columns(side.name)]
    names = [n for n in names if n in {c["name"] for c in insp.get_columns(source)}]
    for sql in drop_trigger_sql(conn.dialect.name, source, side.name):
        conn.execute(sa.text(sql))
    for sql in trigger_sql(conn.dialect.name, source, side, key, status, statuses, names):
        conn.exec_driver_sql(sql)
    conn.execute(sa.text(f'DELETE FROM "{side.name}"'))
    conn.exec_driver_sql(fill_sql(source, side, status, statuses, names))


def ensure(eng) -> list[str]:
    """Every case store's open table kept for the open statuses its case types have now: where
    the installed triggers copy other statuses (a case type added or changed since the
    migration) or none (dropped by a table rebuild), they are made again and the table refilled.
    Runs when a process opens the hub (hub.engine); one process at a time on PostgreSQL. Returns
    the tables made again."""
    from workbench import cases

    cases._ensure_registered()
    done = []
    for st in list(cases.STORES.values()):
        side = st.open_rows
        if side is None:
            continue
        with eng.begin() as conn:
            if not sa.inspect(conn).has_table(side.name):   # a hub before the migration that makes it
                continue
            want = set(cases.open_statuses(st.name))
            if installed_statuses(conn, st.table, side.name) == want:
                continue
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.wb_open_rows'))"))
                if installed_statuses(conn, st.table, side.name) == want:
                    continue
            reinstall(conn, st.table, side, st.id, st.status, want)
            done.append(side.name)
    return done


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
