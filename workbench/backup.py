"""Backups of the hub and its files, and their restore.

A backup is one folder (0700, every file 0600):

    workbench-backup-YYYYmmdd-HHMMSS[-reason]/
        manifest.json      what is in it: the hub's backend, revision, row count of every
                           table, and the sha256 and size of every file below
        hub.sqlite         SQLite: a copy made with the online backup API (sqlite3 .backup),
                           consistent while cameras and dashboards keep writing
        hub.pgdump         PostgreSQL: pg_dump -Fc of the hub's schema (the search_path schema
                           of the URL when it names one, so a hub on a shared database is dumped alone)
        files/raw/…        the raw copies ingest keeps (data/raw)
        files/evidence/…   the kitchens' evidence images (data/evidence)
        files/profiles/…   the saved source profiles (data/profiles)

`restore` checks every file against the manifest before it touches anything (a changed,
missing or extra file refuses the restore), then replaces the hub (SQLite: the backup API
again, into the live file; PostgreSQL: pg_restore --clean --if-exists in one transaction)
and the folders, and compares the row counts with the manifest. Both are audited (actions
"backup" and "restore"); a restore brings back the backup's audit log, so the audit rows
written since the backup are carried over and its own row is written after them.

The manifest is signed (HMAC-SHA256 with a key derived from the hub's secret, data/.secret): a
backup whose files and manifest were both edited is refused. Keep data/.secret with the
backups (apart from them, like a key): a backup restored on another machine needs it, or
`--allow-unsigned` there, said loudly. Before a restore the hub as it is now is backed up
(reason before-restore), and the folders are swapped only after every copy succeeded.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from workbench import config
from workbench.errors import WorkbenchError

log = logging.getLogger(__name__)
FOLDERS = ("raw", "evidence", "profiles")  # under the data folder
MANIFEST = "manifest.json"
FORMAT = 1
PREFIX = "workbench-backup-"


class BackupError(WorkbenchError):
    """A backup or restore that cannot be done (the message says why, in Chinese)."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


@dataclass
class Result:
    folder: Path
    backend: str
    tables: dict = field(default_factory=dict)
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    mismatched: dict = field(default_factory=dict)  # restore: table -> (manifest, now)

    def line(self) -> str:
        return (f"{self.folder}：数据库 {self.backend}，{len(self.tables)} 张表 {sum(self.tables.values())} 行，"
                f"文件 {self.files} 个（{self.bytes / 1e6:.1f} MB），用时 {self.seconds:.1f} 秒")


def default_folder(eng: Engine | None = None) -> Path:
    """Where backups go unless told: $WORKBENCH_BACKUP_DIR, else backups/ beside a SQLite hub's
    file, else data/backups."""
    if os.environ.get("WORKBENCH_BACKUP_DIR"):
        return Path(os.environ["WORKBENCH_BACKUP_DIR"])
    if eng is not None and eng.dialect.name == "sqlite" and eng.url.database not in (None, "", ":memory:"):
        return Path(eng.url.database).resolve().parent / "backups"
    return config.data_dir() / "backups"


# ---------------------------------------------------------------------- the hub's parts

def pg_schema(url: sa.engine.URL) -> str | None:
    """The schema a URL's `options=-csearch_path=…` names (tests' per-schema hubs), else None."""
    opts = url.query.get("options")
    for opt in (opts if isinstance(opts, tuple) else [opts] if opts else []):
        opt = unquote(opt)
        for part in opt.split():
            for key in ("-csearch_path=", "--search_path="):
                if part.startswith(key):
                    return part[len(key):].split(",")[0].strip('"') or None
    return None


def _pg_args(url: sa.engine.URL) -> tuple[list[str], dict]:
    args = ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-d", url.database or "postgres"]
    if url.username:
        args += ["-U", url.username]
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return args, env


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"找不到 {name}：请安装 PostgreSQL 客户端（apt-get install postgresql-client，或 make system）")
    return path


def table_counts(eng: Engine) -> dict[str, int]:
    """Rows of every table of the hub (its schema only), by name."""
    insp = sa.inspect(eng)
    schema = pg_schema(eng.url) if eng.dialect.name == "postgresql" else None
    names = sorted(insp.get_table_names(schema=schema))
    prep = eng.dialect.identifier_preparer
    out = {}
    with eng.connect() as conn:
        for n in names:
            q = prep.quote(n) if schema is None else f"{prep.quote(schema)}.{prep.quote(n)}"
            out[n] = int(conn.execute(sa.text(f"SELECT count(*) FROM {q}")).scalar())
    return out


def table_digests(eng: Engine) -> dict[str, str]:
    """A sha256 of every table's content (rows as text, sorted): equal digests, equal tables."""
    insp = sa.inspect(eng)
    schema = pg_schema(eng.url) if eng.dialect.name == "postgresql" else None
    out = {}
    with eng.connect() as conn:
        for n in sorted(insp.get_table_names(schema=schema)):
            t = sa.Table(n, sa.MetaData(), autoload_with=conn, schema=schema)
            rows = sorted(repr(tuple(str(v) for v in r)) for r in conn.execute(sa.select(t)))
            h = hashlib.sha256()
            for r in rows:
                h.update(r.encode("utf-8", "surrogatepass"))
            out[n] = h.hexdigest()
    return out


def _sqlite_path(eng: Engine) -> Path:
    db = eng.url.database
    if not db or db == ":memory:":
        raise BackupError("内存中的数据库无法备份")
    return Path(db)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _private(path: Path) -> None:
    path.chmod(0o700 if path.is_dir() else 0o600)


# ---------------------------------------------------------------------- backup

def backup(eng: Engine, to: Path | None = None, *, who=None, reason: str = "", audit: bool = True,
           files: bool = True) -> Result:
    """Back up the hub behind `eng` and the data folder's files into a new folder under `to`."""
    import time

    t0 = time.perf_counter()
    to = Path(to) if to else default_folder(eng)
    to.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    name = PREFIX + stamp + (f"-{reason}" if reason else "")
    work = to / (name + ".part")
    old = os.umask(0o077)
    try:
        work.mkdir(mode=0o700)
        be = eng.dialect.name
        if be == "sqlite":
            dump = work / "hub.sqlite"
            src = sqlite3.connect(str(_sqlite_path(eng)), timeout=30)
            dst = sqlite3.connect(str(dump))
            try:
                src.backup(dst)
            finally:
                dst.close()
                src.close()
        elif be == "postgresql":
            dump = work / "hub.pgdump"
            args, env = _pg_args(eng.url)
            schema = pg_schema(eng.url)
            cmd = [_tool("pg_dump"), "-Fc", "--no-owner", "-f", str(dump), *args] + (["-n", schema] if schema else [])
            r = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if r.returncode:
                raise BackupError(f"pg_dump 失败：{r.stderr.strip()[:500]}")
        else:
            raise BackupError(f"不支持备份 {be} 数据库")
        _private(dump)
        n_files = 0
        if files:
            for sub in FOLDERS:
                src_dir = config.data_dir() / sub
                if src_dir.is_dir():
                    shutil.copytree(src_dir, work / "files" / sub, symlinks=True,
                                    ignore=shutil.ignore_patterns("*.part"))
        counts = table_counts(eng)
        entries = {}
        total = 0
        for p in sorted(work.rglob("*")):
            if p.is_symlink():
                p.unlink()  # a link is never followed nor kept
                continue
            _private(p)
            if p.is_file():
                rel = p.relative_to(work).as_posix()
                size = p.stat().st_size
                entries[rel] = {"sha256": _sha256(p), "bytes": size}
                total += size
                n_files += rel.startswith("files/")
        from workbench.store import hub

        manifest = {
            "format": FORMAT, "created": dt.datetime.now(dt.timezone.utc).isoformat(), "backend": be,
            "schema": pg_schema(eng.url) if be == "postgresql" else None,
            "revision": hub.current_revision(eng), "reason": reason or None, "dump": dump.name,
            "with_files": bool(files),
            "tables": counts, "files": entries,
        }
        manifest["mac"] = _mac(manifest)
        mf = work / MANIFEST
        mf.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        _private(mf)
        final = to / name
        work.rename(final)
        _private(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        os.umask(old)
    res = Result(final, be, counts, n_files, total, time.perf_counter() - t0)
    if audit and "audit_log" in counts:
        from workbench import audit as au

        au.record(eng, "backup", who or _who(), subject=str(final), reason=reason or None, tables=len(counts),
                  rows=sum(counts.values()), files=n_files, bytes=total)
    log.info("backup written: %s", res.line())
    return res


def _who():
    from workbench import access

    return access.operator()


def _mac(manifest: dict) -> str:
    """The manifest's signature: HMAC-SHA256 of its canonical JSON (without the mac) under a key
    derived from the hub's secret."""
    import hmac

    from workbench import access

    key = hmac.new(access.secret(), b"workbench-backup", hashlib.sha256).digest()
    body = json.dumps({k: v for k, v in manifest.items() if k != "mac"}, ensure_ascii=False, sort_keys=True)
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------- restore

def read_manifest(folder: Path) -> dict:
    mf = Path(folder) / MANIFEST
    if not mf.is_file():
        raise BackupError(f"{folder} 不是备份目录（缺少 {MANIFEST}）")
    try:
        m = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"备份清单无法读取：{exc}") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        raise BackupError("备份清单格式不对")
    return m


def verify(folder: Path, *, allow_unsigned: bool = False) -> dict:
    """The manifest, once its signature holds and every file of the backup matches it (else
    BackupError naming the files). `allow_unsigned`: a backup signed by another hub's secret
    (or none) is taken on the files' checksums alone — for a restore on a new machine."""
    import hmac

    folder = Path(folder)
    m = read_manifest(folder)
    if not allow_unsigned and not hmac.compare_digest(str(m.get("mac") or ""), _mac(m)):
        raise BackupError("备份清单签名不符，未做任何恢复：清单或文件被改动过，或备份来自另一台数据中台"
                          "（其签名密钥 data/.secret 不同；确认来源可靠后可加 --allow-unsigned）")
    have = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if (p.is_file() or p.is_symlink()) and p.name != MANIFEST}
    problems = []
    for rel in sorted(set(m["files"]) - have):
        problems.append(f"缺少 {rel}")
    for rel in sorted(have - set(m["files"])):
        problems.append(f"多出 {rel}")
    for rel, e in m["files"].items():
        p = folder / rel
        if rel in have and (p.is_symlink() or p.stat().st_size != e["bytes"] or _sha256(p) != e["sha256"]):
            problems.append(f"已被改动 {rel}")
    if m.get("dump") not in m["files"]:
        problems.append("清单中没有数据库文件")
    if problems:
        shown = "；".join(problems[:10]) + (f" 等 {len(problems)} 处" if len(problems) > 10 else "")
        raise BackupError(f"备份校验失败，未做任何恢复：{shown}")
    return m


def restore(eng: Engine, folder: Path, *, who=None, files: bool = True, allow_unsigned: bool = False,
            safety: bool = True) -> Result:
    """Replace the hub behind `eng` and the data folder's files with the backup in `folder`.
    The hub as it is now is backed up first (`safety`), and the audit rows written since the
    backup are carried over into the restored log."""
    import time

    t0 = time.perf_counter()
    folder = Path(folder)
    m = verify(folder, allow_unsigned=allow_unsigned)
    be = eng.dialect.name
    if m["backend"] != be:
        raise BackupError(f"备份来自 {m['backend']} 数据库，不能恢复到 {be}")
    dump = folder / m["dump"]
    from workbench.store import hub

    before = backup(eng, folder.parent, who=who, reason="before-restore", audit=False) if safety else None
    since = _audit_since(eng, m.get("created"))

    if be == "sqlite":
        live = _sqlite_path(eng)
        eng.dispose()
        src = sqlite3.connect(str(dump))
        dst = sqlite3.connect(str(live), timeout=30)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    else:
        args, env = _pg_args(eng.url)
        schema = pg_schema(eng.url)
        if schema != m.get("schema"):
            raise BackupError(f"备份来自模式 {m.get('schema') or 'public'}，当前数据库为 {schema or 'public'}")
        eng.dispose()
        aside = None
        if schema:  # objects made after the backup would keep DROP SCHEMA from working: set the schema aside
            aside = f"{schema[:40]}_before_restore"
            with eng.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{aside}" CASCADE'))
                conn.execute(sa.text(f'ALTER SCHEMA "{schema}" RENAME TO "{aside}"'))
            eng.dispose()
        cmd = [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
               "--exit-on-error", *args, str(dump)]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        with eng.begin() as conn:
            if r.returncode and aside:  # put the hub back as it was
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                conn.execute(sa.text(f'ALTER SCHEMA "{aside}" RENAME TO "{schema}"'))
            elif aside:
                conn.execute(sa.text(f'DROP SCHEMA "{aside}" CASCADE'))
        eng.dispose()
        if r.returncode:
            raise BackupError(f"pg_restore 失败，数据库未改动：{r.stderr.strip()[:500]}")
    n_files = 0
    if files and m.get("with_files", True):  # a database-only backup (before a migration) leaves the files be
        n_files = _restore_files(folder, m)
    counts = table_counts(eng)
    res = Result(folder, be, counts, n_files, sum(e["bytes"] for e in m["files"].values()), 0.0)
    res.mismatched = {t: (n, counts.get(t)) for t, n in m["tables"].items() if counts.get(t) != n}
    res.seconds = time.perf_counter() - t0
    if "audit_log" in counts:
        from workbench import audit as au

        carried = au.carry_over(eng, since)
        au.record(eng, "restore", who or _who(), subject=str(folder), created=m.get("created"),
                  before_restore=str(before.folder) if before else None, audit_rows_carried=carried,
                  revision=m.get("revision"), tables=len(counts), rows=sum(m["tables"].values()), files=n_files,
                  mismatched=res.mismatched or None)
    from workbench.store import kept

    kept.forget(eng)   # analyses kept from the rows replaced (the events' patterns, the overview's evaluation)
    for url, e in list(hub._engines.items()):  # the next hub.engine() opens (and migrates) it afresh
        if e is eng:
            hub.dispose(url)
    log.info("restored: %s", res.line())
    return res


def _audit_since(eng: Engine, created) -> list[dict]:
    """The audit rows written after the backup was made (to carry them over a restore)."""
    if not created:
        return []
    from workbench import audit as au

    try:
        when = dt.datetime.fromisoformat(created).astimezone(dt.timezone.utc).replace(tzinfo=None)
        return au.frame(eng, since=when, limit=None).drop(columns=["label", "id"]).to_dict("records")
    except Exception:  # noqa: BLE001 - no audit table yet (an old hub): nothing to carry
        return []


def _restore_files(folder: Path, m: dict) -> int:
    """The data folder's raw, evidence and profiles become the backup's (files made since go).
    Every folder is copied first; only then are they swapped, and a failed swap puts back the
    folders already swapped."""
    data = config.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".restore-", dir=data))
    n = 0
    swapped: list[str] = []
    try:
        for sub in FOLDERS:
            src = folder / "files" / sub
            if src.is_dir():
                shutil.copytree(src, stage / sub, symlinks=False)
                n += sum(1 for p in (stage / sub).rglob("*") if p.is_file())
        try:
            for sub in FOLDERS:
                cur, new, old = data / sub, stage / sub, stage / f"{sub}.old"
                if cur.exists() or new.exists():
                    if cur.exists():
                        cur.rename(old)
                    if new.exists():
                        new.rename(cur)
                    swapped.append(sub)
        except OSError:
            for sub in reversed(swapped):   # put back what was swapped
                cur, old = data / sub, stage / f"{sub}.old"
                if cur.exists():
                    shutil.rmtree(cur, ignore_errors=True)
                if old.exists():
                    old.rename(cur)
            raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return n


def listing(to: Path | None = None, eng: Engine | None = None) -> list[Path]:
    """The backups under `to` (default: the folder of `eng`'s backups), oldest first."""
    to = Path(to) if to else default_folder(eng)
    return sorted(p for p in to.glob(PREFIX + "*") if p.is_dir() and not p.name.endswith(".part"))


__all__ = ["BackupError", "Result", "backup", "restore", "verify", "read_manifest", "table_counts", "table_digests",
           "pg_schema", "default_folder", "listing"]
