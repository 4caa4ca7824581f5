"""The hub (一数赋能): the one module that opens the city's database.

SQLite in WAL mode by default (data/city.db), PostgreSQL when WORKBENCH_DB_URL says so.
Every engine is migrated to the newest schema (Alembic) the first time it is opened.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from workbench import config
from workbench.store.schema import DATASETS, ingest_files, metadata, quarantine

MIGRATIONS = Path(__file__).with_name("migrations")
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # a camera worker writes while dashboards read
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _private_file(database: str | None):
    """A connect hook that keeps the SQLite file (names, phones, password hashes, the audit log)
    and its -wal/-shm readable by its owner alone."""
    def hook(_dbapi_conn, _record):
        if not database or database == ":memory:" or database.startswith("file:"):
            return
        for p in (Path(database), Path(database + "-wal"), Path(database + "-shm")):
            try:
                if p.exists() and p.stat().st_mode & 0o077 and p.stat().st_uid == os.getuid():
                    os.chmod(p, 0o600)
            except OSError:
                pass
    return hook


def engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """The engine for `url` (default: the configured hub), created once and migrated."""
    url = url or config.db_url()
    with _lock:
        eng = _engines.get(url)
        if eng is None:
            u = sa.engine.make_url(url)
            if u.get_backend_name() == "sqlite":
                if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
                    Path(u.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                eng = sa.create_engine(url, connect_args={"timeout": 30})
                sa.event.listen(eng, "connect", _sqlite_pragmas)
                sa.event.listen(eng, "connect", _private_file(u.database))
            else:
                eng = sa.create_engine(url, **pool_settings())
                sa.event.listen(eng, "connect", _pg_session)
            if migrate:
                upgrade(eng)
                _ensure_open_rows(eng)
                if eng.dialect.name == "postgresql":
                    from workbench.store import partitions

                    try:   # this month and the next ones have their partitions (rows outside: DEFAULT)
                        partitions.ensure(eng)
                    except sa.exc.SQLAlchemyError as exc:   # a role that may not create tables reads on
                        import logging

                        logging.getLogger(__name__).warning("monthly partitions not made: %s", exc)
            _engines[url] = eng
    return eng


def _ensure_open_rows(eng: Engine) -> None:
    """The case stores' open tables kept for their case types' open statuses as they are now
    (workbench.store.open_rows.ensure: triggers made again after a case type changed)."""
    from workbench.store import open_rows

    try:
        made = open_rows.ensure(eng)
    except sa.exc.SQLAlchemyError as exc:   # a role that may not create triggers reads on
        import logging

        logging.getLogger(__name__).warning("open cases' tables not checked: %s", exc)
        return
    if made:
        import logging

        logging.getLogger(__name__).warning("open cases' triggers made again for the case types' statuses: %s",
                                            ", ".join(made))


def _pg_session(dbapi_conn, _record):
    """Each PostgreSQL connection of the hub: JIT off unless $WORKBENCH_DB_JIT=on. The dashboards'
    aggregates over the partitioned tables cost enough to trigger JIT, whose compiling took 1.6 s
    of a 2.2 s query on 10 M events (benchmarks/hub_scale.py, EXPLAIN) and saves nothing on scans
    of a few hundred thousand rows."""
    import os

    if os.environ.get("WORKBENCH_DB_JIT", "off").strip().lower() in ("on", "1", "yes", "true"):
        return
    cur = dbapi_conn.cursor()
    try:
        cur.execute("SET jit = off")
    finally:
        cur.close()
    dbapi_conn.commit()


def pool_settings() -> dict:
    """SQLAlchemy QueuePool settings for a PostgreSQL hub (docs/scale.md). Every process has its own
    pool — the server, each Voilà kernel, a watcher, an ingest — and PostgreSQL allows 100
    connections by default, so a process keeps few: 2 held open, 4 more under a burst (a page's
    threads), waits 30 s for one before it fails; a connection is checked before use (pre-ping: a
    restarted PostgreSQL costs no failed page) and replaced after 30 min (a proxy's idle cut).
    $WORKBENCH_DB_POOL_SIZE / $WORKBENCH_DB_MAX_OVERFLOW change the sizes."""
    import os

    return {"pool_size": int(os.environ.get("WORKBENCH_DB_POOL_SIZE", "2")),
            "max_overflow": int(os.environ.get("WORKBENCH_DB_MAX_OVERFLOW", "4")),
            "pool_timeout": 30, "pool_recycle": 1800, "pool_pre_ping": True}


def include_name(name, type_, parent_names) -> bool:
    """Alembic's name filter for comparing a hub with the metadata: PostgreSQL's monthly partitions
    and key registries (migration 0014) are not in the metadata."""
    from workbench.store.partitions import include_name as keep

    return keep(name, type_, parent_names)


def dispose(url: str | None = None) -> None:
    """Close the pooled connections of one hub (or all of them)."""
    with _lock:
        for key in [url] if url else list(_engines):
            eng = _engines.pop(key, None)
            if eng is not None:
                eng.dispose()


def pg_schema_url(base: str, schema: str, *, fresh: bool = True) -> str:
    """A fresh, empty PostgreSQL schema `schema` (dropped first if it exists) and the URL of
    `base` with its search_path set to it: a hub of its own on a shared database. With
    fresh=False an existing schema is kept as it is (made when missing)."""
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            if fresh:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        admin.dispose()
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def alembic_config(eng: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = eng
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    cfg = alembic_config(None)
    return ScriptDirectory.from_config(cfg).get_current_head()


def backup_before_migration() -> bool:
    """Whether a hub not at head (and not empty) is backed up before it is migrated:
    $WORKBENCH_BACKUP_BEFORE_MIGRATE (default on; 0/no/off skips it, e.g. for throwaway hubs)."""
    import os

    return os.environ.get("WORKBENCH_BACKUP_BEFORE_MIGRATE", "1").strip().lower() not in ("0", "no", "off", "false")


def upgrade(eng: Engine, revision: str = "head") -> None:
    """Bring the hub's schema to `revision` (Alembic); never drops a user's data. A hub that
    holds a schema older than the target is backed up first (workbench.backup, the database
    alone, into backups/ beside a SQLite file or data/backups; the log says where), unless it
    lives in memory or $WORKBENCH_BACKUP_BEFORE_MIGRATE says no."""
    import logging

    from alembic import command

    cfg = alembic_config(eng)
    if backup_before_migration() and eng.url.database not in (None, "", ":memory:"):
        before = current_revision(eng)
        target = head_revision() if revision == "head" else revision
        if before is not None and before != target:
            from workbench import backup

            # the database alone: a migration changes no file (raw copies and evidence stay as they are)
            res = backup.backup(eng, reason=f"before-{target}", audit=False, files=False)
            logging.getLogger(__name__).warning("hub at revision %s backed up before migrating to %s: %s",
                                                before, target, res.folder)
            command.upgrade(cfg, revision)
            from workbench import access, audit

            if "audit_log" in sa.inspect(eng).get_table_names():
                audit.record(eng, "migrate", access.system("数据库升级"), subject=str(res.folder),
                             before=before, after=current_revision(eng), backup=str(res.folder))
            return
    command.upgrade(cfg, revision)


def current_revision(eng: Engine | None = None) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with (eng or engine()).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def backend(eng: Engine | None = None) -> str:
    return (eng or engine()).dialect.name


def query(sql: str | sa.sql.Executable, params: dict | None = None, eng: Engine | None = None) -> pd.DataFrame:
    """Run a read-only query and return a DataFrame."""
    stmt = sa.text(sql) if isinstance(sql, str) else sql
    with (eng or engine()).connect() as conn:
        res = conn.execute(stmt, params or {})
        # plain tuples: pandas builds a frame from them ~4x faster than from Row objects
        return pd.DataFrame.from_records([tuple(r) for r in res.fetchall()], columns=list(res.keys()))


def read(dataset: str, *, since=None, until=None, where: dict | None = None,
         columns: list[str] | None = None, limit: int | None = None,
         eng: Engine | None = None) -> pd.DataFrame:
    """Rows of one dataset, optionally filtered by time (`ts`, UTC) and by columns' values
    (`where`: {column: value, or a list of values any of which}."""
    table = metadata.tables[dataset]
    cols = [table.c[c] for c in columns] if columns else [table]
    stmt = sa.select(*cols)
    if since is not None:
        stmt = stmt.where(table.c.ts >= pd.Timestamp(since).to_pydatetime())
    if until is not None:
        stmt = stmt.where(table.c.ts < pd.Timestamp(until).to_pydatetime())
    for col, val in (where or {}).items():   # a list, tuple or set: any of its values (IN)
        multi = isinstance(val, (list, tuple, set, frozenset))
        stmt = stmt.where(table.c[col].in_(list(val)) if multi else table.c[col] == val)
    if "ts" in table.c:
        stmt = stmt.order_by(table.c.ts)
    if limit:
        stmt = stmt.limit(limit)
    df = query(stmt, eng=eng)
    if df.empty:  # keep the columns, and their dtypes as far as known
        df = pd.DataFrame(columns=[c.name for c in stmt.selected_columns])
    return df


def dataset_status(eng: Engine | None = None) -> pd.DataFrame:
    """One row per dataset: rows held, time span of its records, last file ingested."""
    eng = eng or engine()
    last = query(
        sa.select(ingest_files.c.dataset,
                  sa.func.max(ingest_files.c.finished_at).label("last_ingest"),
                  sa.func.count().label("files"))
        .where(ingest_files.c.status == "done").group_by(ingest_files.c.dataset), eng=eng,
    ).set_index("dataset")
    quar = query(
        sa.select(quarantine.c.dataset, sa.func.count().label("quarantined"))
        .group_by(quarantine.c.dataset), eng=eng,
    ).set_index("dataset")
    rows = []
    with eng.connect() as conn:
        for ds in DATASETS.values():
            t = ds.table
            sel = [sa.func.count()]
            if ds.ts_field:
                sel += [sa.func.min(t.c[ds.ts_field]), sa.func.max(t.c[ds.ts_field])]
            r = conn.execute(sa.select(*sel).select_from(t)).one()
            rows.append({
                "dataset": ds.name, "label": ds.label, "department": ds.department,
                "rows": int(r[0]),
                "first_ts": r[1] if ds.ts_field else None,
                "last_ts": r[2] if ds.ts_field else None,
            })
    out = pd.DataFrame(rows).set_index("dataset")
    out = out.join(last).join(quar)
    out["files"] = out["files"].fillna(0).astype(int)
    out["quarantined"] = out["quarantined"].fillna(0).astype(int)
    for col in ("first_ts", "last_ts", "last_ingest"):
        out[col] = pd.to_datetime(out[col])
    return out.reset_index()


def _between(stmt, col, since, until):
    if since is not None:
        stmt = stmt.where(col >= pd.Timestamp(since).to_pydatetime())
    if until is not None:
        stmt = stmt.where(col < pd.Timestamp(until).to_pydatetime())
    return stmt


def ingest_log(limit: int | None = 50, since=None, until=None, eng: Engine | None = None) -> pd.DataFrame:
    """The most recent files taken in (received between since and until, UTC), newest first."""
    t = ingest_files
    stmt = _between(sa.select(t), t.c.received_at, since, until).order_by(t.c.file_id.desc())
    return query(stmt.limit(limit) if limit else stmt, eng=eng)


def quarantine_rows(dataset: str | None = None, limit: int = 500, eng: Engine | None = None) -> pd.DataFrame:
    t = quarantine
    stmt = sa.select(t).order_by(t.c.id.desc()).limit(limit)
    if dataset:
        stmt = stmt.where(t.c.dataset == dataset)
    return query(stmt, eng=eng)


def quarantine_reasons(since=None, until=None, eng: Engine | None = None) -> pd.DataFrame:
    """How many rows were quarantined (between since and until, UTC), per dataset and reason."""
    t = quarantine
    stmt = sa.select(t.c.dataset, t.c.reason, sa.func.count().label("rows"))
    stmt = _between(stmt, t.c.quarantined_at, since, until)
    return query(stmt.group_by(t.c.dataset, t.c.reason).order_by(sa.func.count().desc()), eng=eng)
