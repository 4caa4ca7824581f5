"""Retention: what holds personal data is kept for a stated period, then deleted, and the
deletion is recorded (PIPL art. 19, GB/T 35273 §6.1: kept no longer than needed).

- Raw copies (data/raw/, 0600 in a 0700 folder) of files of datasets that hold personal data
  (a field marked personal or free text: the 12345 hotline's callers, phones, ID numbers):
  deleted `raw_days` after they were received (default 180; $WORKBENCH_RAW_RETENTION_DAYS).
  The file's ingest_files row stays (what was taken in, when, its counts) and notes the
  deletion; the records it brought stay in the hub, their personal values in personal_data.
- Kitchen evidence images (data/evidence/<camera>/<date>/, the unblurred frames among them):
  deleted after `evidence_days` (default 30; $WORKBENCH_EVIDENCE_RETENTION_DAYS) by the canteen's
  own sweep (workbench.canteen.evidence.sweep); the violations that named a deleted image no
  longer name it (snapshot / clean_snapshot emptied), so no page shows a path to nothing.

`workbench retention run` does both; each run is one audit row (action "retention") with
what was deleted.
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

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        verb = "将删除" if self.dry_run else "已删除"
        ev = self.evidence or {}
        return (f"{verb}超过 {self.raw_days:g} 天的含个人信息原始文件 {len(self.raw_files)} 个"
                f"（{self.raw_bytes / 1e6:.1f} MB）；超过 {self.evidence_days:g} 天的抓拍证据 "
                f"{ev.get('files', 0)} 个文件（{ev.get('folders', 0)} 个目录，{ev.get('bytes', 0) / 1e6:.1f} MB），"
                f"清除 {self.violations_cleared} 条违规记录中的图片路径")


def personal_datasets() -> list[str]:
    """Datasets whose files hold personal data (a personal or free-text field)."""
    from workbench.store.schema import DATASETS

    return [name for name, ds in DATASETS.items() if any(f.personal or f.free_text for f in ds.fields)]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def run(eng=None, *, raw: float | None = None, evidence: float | None = None, now: datetime | None = None,
        who=None, dry_run: bool = False) -> RetentionResult:
    """Delete raw copies of personal-data files older than `raw` days and evidence older than
    `evidence` days (defaults: raw_days(), evidence_days()); audited as `who` (default the
    workbench.access.current() identity). `now`: naive UTC (tests)."""
    from workbench import access, audit
    from workbench.store import hub
    from workbench.store.schema import ingest_files

    eng = eng or hub.engine()
    who = who if who is not None else (access.current(eng) or access.system("保存期限"))
    now = now or _utcnow()
    res = RetentionResult(raw if raw is not None else raw_days(), evidence if evidence is not None else evidence_days(),
                          dry_run=dry_run)
    cutoff = now - timedelta(days=res.raw_days)
    raw_root = (config.data_dir() / "raw").resolve()
    with eng.begin() as conn:
        rows = conn.execute(sa.select(ingest_files.c.file_id, ingest_files.c.filename, ingest_files.c.raw_path,
                                      ingest_files.c.notes)
                            .where(ingest_files.c.dataset.in_(personal_datasets()),
                                   ingest_files.c.received_at < cutoff)).mappings().all()
        for r in rows:
            p = Path(r["raw_path"])
            if p.is_symlink() or not p.is_file() or raw_root not in p.resolve().parents:
                continue   # gone already, or not ours to delete
            res.raw_files.append(r["filename"])
            res.raw_bytes += p.stat().st_size
            if dry_run:
                continue
            p.unlink()
            try:
                notes = json.loads(r["notes"] or "{}")
            except ValueError:
                notes = {}
            notes["raw_deleted_at"] = now.isoformat(timespec="seconds")
            conn.execute(ingest_files.update().where(ingest_files.c.file_id == r["file_id"])
                         .values(notes=json.dumps(notes, ensure_ascii=False)))
        if not dry_run:
            res.evidence, res.violations_cleared = _sweep_evidence(conn, res.evidence_days, now)
            audit.record(conn, "retention", who, subject="raw+evidence", raw_days=res.raw_days,
                         evidence_days=res.evidence_days, raw_files=res.raw_files[:200], raw_bytes=res.raw_bytes,
                         evidence=res.evidence, violations_cleared=res.violations_cleared)
    return res


def _sweep_evidence(conn, days: float, now_utc: datetime) -> tuple[dict, int]:
    """The canteen's own evidence sweep (by local date), then the violations that named an
    image it deleted are cleared of that path. Nothing when the canteen department is absent."""
    from workbench.store.schema import DATASETS

    try:   # the canteen's sweep (a department's module, found by name; the spine names no department in code)
        import importlib

        evidence = importlib.import_module("workbench.canteen.evidence")
    except ImportError:
        return {}, 0
    local_now = (now_utc.replace(tzinfo=timezone.utc).astimezone(__import__("zoneinfo").ZoneInfo(config.TZ))
                 .replace(tzinfo=None))
    swept = evidence.sweep(days, now=local_now)
    ds = DATASETS.get("canteen_violations")
    cleared = 0
    if ds is not None:
        t = ds.table
        cols = [c for c in ("snapshot", "clean_snapshot") if c in t.c]
        for col in cols:
            named = conn.execute(sa.select(t.c[col]).where(t.c[col].is_not(None)).distinct()).scalars().all()
            gone = [p for p in named if evidence.resolve(p) is None]
            for i in range(0, len(gone), 500):
                part = gone[i:i + 500]
                cleared += conn.execute(t.update().where(t.c[col].in_(part)).values({col: None})).rowcount or 0
    return swept, cleared
