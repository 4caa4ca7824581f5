"""Monthly partitions of the hub's big tables on PostgreSQL (migration 0014).

city_events, canteen_violations and rapid_tests (schema.PARTITIONED) are range-partitioned by
month on their time column `ts` on PostgreSQL; SQLite keeps plain tables.

- Partitions `<table>_pYYYYMM` are made ahead: at the migration for every month that holds rows
  and the next AHEAD months, and again each time a process opens the hub (`ensure`).
- A row outside every monthly partition (a record from years ago, a wrong year) lands in the
  DEFAULT partition `<table>_pdefault`: nothing is refused. `ensure` moves such rows into their own
  monthly partitions (made for them), so the default stays small.
- PostgreSQL requires a primary key of a partitioned table to include the partition key, so the
  table's key is (natural key, ts). The natural key alone stays unique through a key registry
  `<table>_keys` (one row per held key) kept by triggers: an insert whose key is held is skipped
  (the record is the same record: never a second row, whatever its ts); a delete, or a correction
  that moves a row to another month (DELETE + INSERT inside PostgreSQL), releases and re-takes it.
  See docs/scale.md.
"""
from __future__ import annotations

import re
from datetime import date, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from workbench.store.schema import DATASETS, PARTITIONED

AHEAD = 12  # months made ahead of the current one
_NAME = re.compile(r"^(%s)_(p\d{6}|pdefault|keys)$" % "|".join(map(re.escape, PARTITIONED)))


def include_name(name, type_, parent_names) -> bool:
    """Alembic name filter: the monthly partitions and key registries are not in the metadata."""
    return not (type_ == "table" and name and _NAME.match(name))


def month_start(d) -> date:
    d = pd.Timestamp(d)
    return date(d.year, d.month, 1)


def next_month(m: date) -> date:
    return date(m.year + (m.month == 12), m.month % 12 + 1, 1)


def part_name(table: str, m: date) -> str:
    return f"{table}_p{m.year:04d}{m.month:02d}"


def key_column(table: str) -> str:
    (k,) = DATASETS[table].key
    return k


def trigger_sql(table: str) -> list[str]:
    """The key registry's triggers of one partitioned table (static SQL per table: no EXECUTE)."""
    k = key_column(table)
    return [
        f"""CREATE OR REPLACE FUNCTION {table}_key_in() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {table}_keys ({k}) VALUES (NEW.{k}) ON CONFLICT DO NOTHING;
  IF FOUND THEN
    RETURN NEW;
  END IF;
  -- the key is held: the same record sent again, skipped (insert_new counts only rows taken),
  -- unless the registry outlived its row (a restore or a truncated partition): then it is new
  IF EXISTS (SELECT 1 FROM {table} WHERE {k} = NEW.{k}) THEN
    RETURN NULL;
  END IF;
  RETURN NEW;
END $$""",
        f"""CREATE OR REPLACE FUNCTION {table}_key_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM {table}_keys WHERE {k} = OLD.{k};
  RETURN OLD;
END $$""",
        f"CREATE TRIGGER {table}_key_in BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_key_in()",
        f"CREATE TRIGGER {table}_key_out BEFORE DELETE ON {table} FOR EACH ROW EXECUTE FUNCTION {table}_key_out()",
    ]


def drop_trigger_sql(table: str) -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {table}_key_in ON {table}",
            f"DROP TRIGGER IF EXISTS {table}_key_out ON {table}",
            f"DROP FUNCTION IF EXISTS {table}_key_in()",
            f"DROP FUNCTION IF EXISTS {table}_key_out()"]


def is_partitioned(conn: Connection, table: str) -> bool:
    if conn.dialect.name != "postgresql":
        return False
    return bool(conn.execute(sa.text(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace"), {"t": table}).first())


def held_months(conn: Connection, table: str) -> set[date]:
    """The months that have a partition of their own."""
    rows = conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent "
        "WHERE p.relname = :t AND p.relnamespace = current_schema()::regnamespace"), {"t": table}).scalars()
    out = set()
    for name in rows:
        m = re.fullmatch(rf"{re.escape(table)}_p(\d{{4}})(\d{{2}})", name)
        if m:
            out.add(date(int(m.group(1)), int(m.group(2)), 1))
    return out


def create_month(conn: Connection, table: str, m: date) -> str:
    name = part_name(table, m)
    conn.execute(sa.text(f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                         f"FOR VALUES FROM ('{m.isoformat()}') TO ('{next_month(m).isoformat()}')"))
    return name


def create_default(conn: Connection, table: str) -> None:
    conn.execute(sa.text(f'CREATE TABLE IF NOT EXISTS "{table}_pdefault" PARTITION OF "{table}" DEFAULT'))


def drain_default(conn: Connection, table: str) -> int:
    """Move the rows of the DEFAULT partition into monthly partitions made for them (a partition
    cannot be made while the default holds rows of its range). Returns the rows moved."""
    default = f"{table}_pdefault"
    k = key_column(table)
    months = [month_start(m) for m in conn.execute(sa.text(
        f'SELECT DISTINCT date_trunc(\'month\', ts) FROM "{default}"')).scalars()]
    moved = 0
    for m in sorted(months):
        name, a, b = part_name(table, m), m.isoformat(), next_month(m).isoformat()
        conn.execute(sa.text(f'CREATE TABLE "{name}" (LIKE "{table}" INCLUDING DEFAULTS)'))
        moved += conn.execute(sa.text(
            f'WITH moved AS (DELETE FROM "{default}" WHERE ts >= :a AND ts < :b RETURNING *) '
            f'INSERT INTO "{name}" SELECT * FROM moved'), {"a": a, "b": b}).rowcount
        conn.execute(sa.text(f'ALTER TABLE "{table}" ATTACH PARTITION "{name}" FOR VALUES FROM (\'{a}\') TO (\'{b}\')'))
        # the delete from the default released the keys (its trigger): the moved rows take them again
        conn.execute(sa.text(f'INSERT INTO "{table}_keys" ({k}) SELECT {k} FROM "{name}" ON CONFLICT DO NOTHING'))
    return moved


def ensure(eng_or_conn: Engine | Connection, *, ahead: int = AHEAD, now=None) -> dict:
    """Make the monthly partitions from this month to `ahead` months on, and move rows the DEFAULT
    partition caught into partitions of their own. PostgreSQL only (a no-op elsewhere); one process
    at a time (advisory lock). Returns {table: {"made": [...], "moved": n}}."""
    if isinstance(eng_or_conn, Engine):
        if eng_or_conn.dialect.name != "postgresql":
            return {}
        with eng_or_conn.begin() as conn:
            return ensure(conn, ahead=ahead, now=now)
    conn = eng_or_conn
    if conn.dialect.name != "postgresql":
        return {}
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.wb_partitions'))"))
    out = {}
    m0 = month_start(now or datetime.utcnow())
    for table in PARTITIONED:
        if not is_partitioned(conn, table):
            continue
        have = held_months(conn, table)
        made = []
        m = m0
        for _ in range(ahead + 1):
            if m not in have and not _default_holds(conn, table, m):   # else drain_default makes it
                made.append(create_month(conn, table, m))
            m = next_month(m)
        moved = drain_default(conn, table)
        out[table] = {"made": made, "moved": moved}
    return out


def _default_holds(conn: Connection, table: str, m: date) -> bool:
    return bool(conn.execute(sa.text(f'SELECT 1 FROM "{table}_pdefault" WHERE ts >= :a AND ts < :b LIMIT 1'),
                             {"a": m.isoformat(), "b": next_month(m).isoformat()}).first())


def listing(eng: Engine) -> pd.DataFrame:
    """One row per partition of the partitioned tables: table, partition, range, rows (estimate)."""
    if eng.dialect.name != "postgresql":
        return pd.DataFrame(columns=["table", "partition", "bounds", "rows"])
    with eng.connect() as conn:
        res = conn.execute(sa.text(
            "SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relnamespace = current_schema()::regnamespace AND p.relname = ANY(:t) ORDER BY 1, 2"),
            {"t": list(PARTITIONED)})
        return pd.DataFrame([tuple(r) for r in res], columns=["table", "partition", "bounds", "rows"])
