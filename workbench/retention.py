"""Retention: what holds personal data is kept for a stated period, then deleted, and the
deletion is recorded (PIPL art. 19, GB/T 35273 §6.1: kept no longer than needed).

- Raw copies (data/raw/, 0600 in a 0700 folder) of files of datasets that hold personal data
  (a field marked personal or free text: the 12345 hotline's callers, phones, ID numbers):
  deleted `raw_days` after they were received (default 180; $WORKBENCH_RAW_RETENTION_DAYS).
  The file's ingest_files row stays (what was taken in, when, its counts) and notes the
  deletion; the records it brought stay in the hub.
- The originals of personal values (table personal_data: the records' callers, names, phones,
  ID numbers, and those of quarantined rows, dataset "quarantine"): deleted `personal_days`
  after they were stored (default: the raw period; $WORKBENCH_PERSONAL_RETENTION_DAYS). The
  records keep their masked values; revealing an original past its period finds nothing.
- Each department's own files (Department.retention in workbench.registry, e.g. the canteen's
  kitchen evidence images, the unblurred frames among them): deleted after `evidence_days`
  (default 30; $WORKBENCH_EVIDENCE_RETENTION_DAYS) by the department's sweep; the violations
  that named a deleted image no longer name it (snapshot / clean_snapshot emptied).

Order: what is about to go is written first (audit row "retention" and the originals' deletion
in one transaction; each raw copy's note in a transaction of its own), and a file is unlinked
only after its note is committed: a hub that goes away half-way loses no note (a note whose
file is still there is taken up again by the next run). `workbench retention run` does it all.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from workbench import config

RAW_DAYS = 180
EVIDENCE_DAYS = 30


def raw_days() -> float:
    return float(os.environ.get("WORKBENCH_RAW_RETENTION_DAYS") or RAW_DAYS)


def personal_days() -> float:
    """The originals' period: $WORKBENCH_PERSONAL_RETENTION_DAYS, else the raw copies' period."""
    return float(os.environ.get("WORKBENCH_PERSONAL_RETENTION_DAYS") or raw_days())


def evidence_days() -> float:
    return float(os.environ.get("WORKBENCH_EVIDENCE_RETENTION_DAYS") or EVIDENCE_DAYS)


@dataclass
class RetentionResult:
    raw_days: float
    evidence_days: float
    raw_files: list[str] = field(default_factory=list)     # file names (as received) whose raw copy went
    raw_bytes: int = 0
    evidence: dict = field(default_factory=dict)            # the canteen sweep's {folders, files, bytes}
    violations_cleared: int = 0                             # rows whose snapshot paths named deleted images
    dry_run: bool = False
    personal_days: float = 0.0
    personal_rows: dict = field(default_factory=dict)       # personal_data rows deleted, by dataset

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        verb = "将删除" if self.dry_run else "已删除"
        ev = self.evidence or {}
        return (f"{verb}超过 {self.raw_days:g} 天的含个人信息原始文件 {len(self.raw_files)} 个"
                f"（{self.raw_bytes / 1e6:.1f} MB）；超过 {self.evidence_days:g} 天的抓拍证据 "
                f"{ev.get('files', 0)} 个文件（{ev.get('folders', 0)} 个目录，{ev.get('bytes', 0) / 1e6:.1f} MB），"
                f"清除 {self.violations_cleared} 条违规记录中的图片路径；超过 {self.personal_days:g} 天的个人信息原文 "
                f"{sum(self.personal_rows.values())} 条")


def personal_datasets() -> list[str]:
    """Datasets whose files hold personal data (a personal or free-text field)."""
    from workbench.store.schema import DATASETS

    return [name for name, ds in DATASETS.items() if any(f.personal or f.free_text for f in ds.fields)]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def run(eng=None, *, raw: float | None = None, evidence: float | None = None, personal: float | None = None,
        now: datetime | None = None, who=None, dry_run: bool = False) -> RetentionResult:
    """Delete raw copies of personal-data files older than `raw` days, personal_data originals
    older than `personal` days and departments' files (evidence) older than `evidence` days
    (defaults: raw_days(), personal_days(), evidence_days()); audited as `who` (default the
    workbench.access.current() identity). `now`: naive UTC (tests)."""
    from workbench import access, audit
    from workbench.store import hub
    from workbench.store.schema import ingest_files, personal_data

    eng = eng or hub.engine()
    who = who if who is not None else (access.current(eng) or access.system("保存期限"))
    now = now or _utcnow()
    res = RetentionResult(raw if raw is not None else raw_days(), evidence if evidence is not None else evidence_days(),
                          dry_run=dry_run, personal_days=personal if personal is not None else personal_days())
    cutoff = now - timedelta(days=res.raw_days)
    personal_cutoff = now - timedelta(days=res.personal_days)
    raw_root = (config.data_dir() / "raw").resolve()
    with eng.connect() as conn:
        rows = conn.execute(sa.select(ingest_files.c.file_id, ingest_files.c.filename, ingest_files.c.raw_path,
                                      ingest_files.c.notes)
                            .where(ingest_files.c.dataset.in_(personal_datasets()),
                                   ingest_files.c.received_at < cutoff)).mappings().all()
        old = personal_data.c.stored_at < personal_cutoff
        res.personal_rows = {d: int(n) for d, n in conn.execute(
            sa.select(personal_data.c.dataset, sa.func.count()).where(old).group_by(personal_data.c.dataset))}
    doomed = []
    for r in rows:
        p = Path(r["raw_path"])
        if p.is_symlink() or not p.is_file() or raw_root not in p.resolve().parents:
            continue   # gone already, or not ours to delete
        doomed.append((r, p))
        res.raw_files.append(r["filename"])
        res.raw_bytes += p.stat().st_size
    if dry_run:
        res.evidence = {}
        return res
    # first what goes, recorded: the audit row and the originals' deletion, one transaction
    with eng.begin() as conn:
        if res.personal_rows:
            conn.execute(personal_data.delete().where(old))
        audit.record(conn, "retention", who, subject="raw+personal_data", raw_days=res.raw_days,
                     raw_files=res.raw_files[:200], raw_bytes=res.raw_bytes, personal_days=res.personal_days,
                     personal_rows=res.personal_rows)
    # then each raw copy: its note committed, then the file unlinked
    for r, p in doomed:
        try:
            notes = json.loads(r["notes"] or "{}")
        except ValueError:
            notes = {}
        notes["raw_deleted_at"] = now.isoformat(timespec="seconds")
        with eng.begin() as conn:
            conn.execute(ingest_files.update().where(ingest_files.c.file_id == r["file_id"])
                         .values(notes=json.dumps(notes, ensure_ascii=False)))
        p.unlink(missing_ok=True)
    res.evidence, by_department = _sweep_departments(res.evidence_days, now)
    with eng.begin() as conn:
        res.violations_cleared = _clear_violation_paths(conn)
        if by_department:
            audit.record(conn, "retention", who, subject="evidence", evidence_days=res.evidence_days,
                         evidence=by_department, violations_cleared=res.violations_cleared)
    return res


def _sweep_departments(days: float, now_utc: datetime) -> tuple[dict, dict]:
    """Each registered department's own sweep (Department.retention, by local date): the
    totals of its counts, and what each said."""
    from zoneinfo import ZoneInfo

    from workbench import registry

    local_now = now_utc.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(config.TZ)).replace(tzinfo=None)
    total, by_department = {}, {}
    for dept in registry.departments():
        if not dept.retention:
            continue
        said = registry.resolve(dept.retention)(days, local_now) or {}
        by_department[dept.name] = said
        for k, v in said.items():
            if isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    return total, by_department


def _clear_violation_paths(conn) -> int:
    """Violations whose snapshot paths name an image no longer on disk: the paths emptied, so no
    page shows a path to nothing (keyed on the hub's dataset; nothing when it is absent)."""
    from workbench.store.schema import DATASETS

    ds = DATASETS.get("canteen_violations")
    if ds is None:
        return 0
    t, cleared = ds.table, 0
    for col in [c for c in ("snapshot", "clean_snapshot") if c in t.c]:
        named = conn.execute(sa.select(t.c[col]).where(t.c[col].is_not(None)).distinct()).scalars().all()
        gone = [x for x in named if not _stored_file(x)]
        for i in range(0, len(gone), 500):
            part = gone[i:i + 500]
            cleared += conn.execute(t.update().where(t.c[col].in_(part)).values({col: None})).rowcount or 0
    return cleared


def _stored_file(path) -> bool:
    """Whether a stored path (relative to the data folder, or absolute) names a file."""
    if not path or not isinstance(path, str):
        return False
    p = Path(path)
    return (p if p.is_absolute() else config.data_dir() / p).is_file()
