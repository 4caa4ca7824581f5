"""The 数据中台 upload: what the page computes, kept apart from its widgets (no ipywidgets here).

A person uploads a file, picks the dataset (and maybe a profile), sees what
`ingest_file(..., preview=True)` would do, adjusts the column mapping and the units, previews
again, saves the adjustment as a profile and loads the file for real. This module:

- keeps the uploaded bytes in a temporary file under the name they came with (`keep_upload`);
- lists the choices (`profile_options`, `field_options`, `unit_options`, `unit_fields`);
- turns a preview's mapping into the rows the editor shows (`editor_rows`), also when the
  preview stopped (the mapping the stop carries, or the file's header, `fallback_rows`);
- builds a Profile from the edited mapping (`build_profile`: `profiles.from_dict`, so every
  error is the profiles module's Chinese message);
- turns an IngestSummary into small frames for the screen (`summary_frames`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from workbench.store import hub, ingest, profiles, units
from workbench.store.profiles import KEEP_ASIDE, Profile, ProfileError
from workbench.store.schema import (
    DATASETS,
    Field,
    ingest_files,
    row_extras,
    row_versions,
)

UNMAPPED = ""                 # no field: the column stays with its row and is listed as unknown
MAX_UPLOAD_BYTES = 10 << 20   # the dashboards' websocket carries at most 10 MiB a message (tornado's default)
DRAFT_NAME = "页面调整"        # the name of a profile built on the page and not saved (yet)


# ------------------------------------------------------------------ the upload

def keep_upload(filename: str, content: bytes, folder: str | Path | None = None) -> Path:
    """The uploaded bytes as a file in a fresh temporary folder, under their own name (the
    summary and the ingest log name the file as the department sent it)."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise ValueError(f"文件过大（{len(content) / 2**20:.1f} MB，网页上传上限 {MAX_UPLOAD_BYTES >> 20} MB），"
                         "请用命令行 workbench ingest 接入")
    name = Path(str(filename or "")).name.strip() or "upload.csv"
    name = re.sub(r"[\x00-\x1f/\\:*?\"<>|]", "_", name)[:120]
    folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="wb-upload-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.is_symlink():
        path.unlink()
    # 0600, never through a link: the upload may hold callers' names and phones (mkdtemp's folder is 0700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(bytes(content))
    os.chmod(path, 0o600)
    return path


def discard_upload(path: str | Path | None) -> None:
    """Remove a kept upload and its temporary folder (the hub keeps its own raw copy)."""
    if not path:
        return
    folder = Path(path).parent
    if folder.name.startswith("wb-upload-"):
        shutil.rmtree(folder, ignore_errors=True)
    else:
        Path(path).unlink(missing_ok=True)


# ------------------------------------------------------------------ the choices

def profile_options(dataset: str) -> list[tuple[str, str]]:
    """(label, name) of the profiles written for `dataset`, shipped and saved; a profile that
    cannot be read is left out (the CLI's `workbench profiles` names its problem)."""
    out = []
    for name, path in profiles.available().items():
        try:
            p = profiles.load(path)
        except ProfileError:
            continue
        if p.dataset == dataset:
            out.append((f"{p.label}（{name}）" if p.label else name, name))
    return out


def field_options(dataset: str) -> list[tuple[str, str]]:
    """The dropdown of one file column: not mapped, kept aside, or one of the dataset's fields."""
    ds = DATASETS[dataset]
    return ([("未映射（随原行保留，列为未识别）", UNMAPPED), ("保留在原行（已知列，不入字段）", KEEP_ASIDE)]
            + [(f"{f.label}（{f.name}）", f.name) for f in ds.fields])


def unit_fields(dataset: str) -> list[Field]:
    """The dataset's numeric fields stored in a unit a file may write otherwise (℉, inch, mph …)."""
    return [f for f in DATASETS[dataset].fields
            if f.unit and f.kind == "float" and not f.unit_field and units.of_field(f.unit) is not None]


def unit_options(f: Field) -> list[tuple[str, str]]:
    target = units.of_field(f.unit)
    return [(f"{u.name}（{u.label}）" + ("，入库单位" if u == target else ""), u.name)
            for u in [target, *units.alternatives(target)]]


# ------------------------------------------------------------------ the editor's rows

@dataclass
class ColumnRow:
    """One file column in the mapping editor."""

    column: str                 # as the file's header writes it
    field: str = UNMAPPED       # a field name, KEEP_ASIDE or UNMAPPED
    conversion: str = ""        # "℉ → ℃" when the preview converts it
    header_unit: str | None = None   # the unit the header's brackets hold
    auto: str | None = None     # the field the header names without a profile (aliases)


@dataclass
class Editor:
    """What the mapping editor starts from: the columns, and per unit field the unit the file is in."""

    rows: list[ColumnRow] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)   # field → unit of the file
    stopped: str | None = None                            # why the preview stopped, if it did


def auto_field(dataset: str, column: str) -> tuple[str | None, str | None]:
    """(field, bracket unit) the hub reads `column` as without a profile."""
    return ingest.field_for_header(dataset, column)


def _file_unit(f: Field, conversion: str, header_unit: str | None) -> str:
    if conversion and "→" in conversion:
        return conversion.split("→")[0].strip()
    parsed = units.parse(header_unit) if header_unit else None
    target = units.of_field(f.unit)
    if parsed is not None and parsed.quantity == target.quantity:
        return parsed.name
    return target.name


def editor_rows(dataset: str, mapping: list[dict], profile: Profile | None = None) -> Editor:
    """The editor's rows from a preview's `summary.mapping` (file column → field, conversion)."""
    ds = DATASETS[dataset]
    by_name = {f.name: f for f in ds.fields}
    ed = Editor()
    for m in mapping or []:
        col = str(m["column"])
        auto = auto_field(dataset, col)[0]
        target = m.get("field")
        if target not in by_name and target != KEEP_ASIDE:
            target = UNMAPPED
        _, header_unit = ingest.split_header(col)
        ed.rows.append(ColumnRow(col, target, m.get("unit") or "", header_unit, auto))
    for f in unit_fields(dataset):
        row = next((r for r in ed.rows if r.field == f.name), None)
        if row is None:
            continue
        if profile is not None and f.name in profile.units and not row.conversion:
            parsed = units.parse(profile.units[f.name])
            ed.units[f.name] = parsed.name if parsed else units.of_field(f.unit).name
        else:
            ed.units[f.name] = _file_unit(f, row.conversion, row.header_unit)
    return ed


def fallback_rows(dataset: str, path: str | Path, profile: Profile | None, stopped: str,
                  mapping: list[dict] | None = None) -> Editor:
    """The editor's rows when the preview stopped (a unit to declare, a required column to map):
    the mapping the stop carries (`IngestError.mapping`), else the file's header read again with
    each column as the profile or the hub's names take it."""
    names = {f.name for f in DATASETS[dataset].fields}
    if not mapping:
        taken: set[str] = set()
        mapping = []
        for col in ingest.read_header(dataset, path, profile):
            target = ingest.field_for_header(dataset, col, profile)[0]
            if target in taken or (target not in names and target != KEEP_ASIDE):
                target = None
            if target in names:
                taken.add(target)
            mapping.append({"column": col, "field": target, "unit": ""})
    ed = editor_rows(dataset, mapping, profile)
    ed.stopped = stopped
    suggested = re.search(r"按 (\S+)（[^）]*）则合理", stopped or "")
    if suggested and units.parse(suggested.group(1)) is not None:
        for f in unit_fields(dataset):   # the unit the stop suggests, for the column it names
            col = next((r.column for r in ed.rows if r.field == f.name), None)
            if col and f"列“{col}”" in stopped:
                ed.units[f.name] = units.parse(suggested.group(1)).name
    return ed


# ------------------------------------------------------------------ the profile

def build_profile(dataset: str, columns: dict[str, str], file_units: dict[str, str], *,
                  name: str = "", label: str = "", timezone: str | None = None, base: Profile | None = None) -> Profile:
    """A Profile from the edited mapping: every column the person mapped, the units the file is in,
    the rest (time zone policy, value maps, defaults, plausible ranges) from `base`.

    `columns`: file column → field | KEEP_ASIDE | UNMAPPED; `file_units`: field → unit name.
    Raises ProfileError (Chinese) for a field mapped twice, an unknown field, a bad time zone."""
    if dataset not in DATASETS:
        raise ProfileError(f"未知的数据集“{dataset}”")
    ds = DATASETS[dataset]
    by_name = {f.name: f for f in ds.fields}
    seen: dict[str, str] = {}
    cols: dict[str, str] = {}
    for col, target in columns.items():
        if target in (None, UNMAPPED):
            if auto_field(dataset, col)[0] not in (None, KEEP_ASIDE):
                cols[col] = KEEP_ASIDE   # the hub would take it by its name: keep it aside explicitly
            continue
        if target != KEEP_ASIDE:
            if target in seen:
                raise ProfileError(f"列“{seen[target]}”和列“{col}”都映射到了字段“{by_name[target].label}”，"
                                   "一个字段只能对应文件中的一列")
            seen[target] = col
        cols[col] = target
    unit_map: dict[str, str] = {}
    for col, target in cols.items():
        f = by_name.get(target)
        if f is None:
            continue
        _, bracket = ingest.split_header(col)
        if f.unit_field:
            if bracket:
                unit_map[f.name] = bracket   # 检测值(%) → 单位 %: the profile names the column whole
            continue
        if not f.unit:
            continue
        chosen = file_units.get(f.name) or (bracket if bracket and units.parse(bracket) else None)
        if chosen and (bracket or units.parse(chosen) != units.of_field(f.unit)):
            unit_map[f.name] = chosen
    mapped = set(cols.values())
    for fname, chosen in file_units.items():   # a field the hub finds by its header name
        f = by_name.get(fname)
        if (f is not None and f.unit and not f.unit_field and fname not in mapped and chosen
                and units.parse(chosen) != units.of_field(f.unit)):
            unit_map[fname] = chosen
    d = {"dataset": dataset, "name": (name or "").strip() or DRAFT_NAME, "label": (label or "").strip(),
         "columns": cols, "units": unit_map}
    if base is not None:
        for key in ("ambiguous", "nonexistent", "date_format", "values", "defaults", "plausible",
                    "corrections", "timezone"):
            value = getattr(base, key)
            if value not in (None, {}, ""):
                d[key] = value
        if not d["label"] and base.label:
            d["label"] = base.label
        mapped = set(cols.values())
        for k, v in base.units.items():   # the unit of a field this file does not carry stays
            if k not in mapped:
                unit_map[k] = v
    if timezone is not None:              # the page's field: empty means the city's own clock
        d.pop("timezone", None)
        if timezone.strip():
            d["timezone"] = timezone.strip()
    return profiles.from_dict(d, where=d["name"])


def save_profile(p: Profile, name: str, label: str = "", *, who=None, eng=None) -> Path:
    """Save `p` under `name` (data/profiles/NAME.yaml); ProfileError (Chinese) for a bad name.
    Audited as `who` (the page's signed-in Principal; default workbench.access.current())."""
    name = (name or "").strip()
    if not name:
        raise ProfileError("请填写配置名称（字母、数字、下划线、连字符或汉字）")
    if name == DRAFT_NAME:
        raise ProfileError(f"“{DRAFT_NAME}”是页面上未保存配置的名称，请另起一个名称")
    p.name = name
    if label.strip():
        p.label = label.strip()
    return profiles.save(p, who=who, eng=eng)


def delete_profile(name: str, *, who=None, eng=None) -> Path:
    """Delete the saved profile `name`, audited as `who` (as save_profile)."""
    return profiles.delete((name or "").strip(), who=who, eng=eng)


# ------------------------------------------------------------------ the summary on screen

COUNTS = (("rows_read", "读取行数"), ("loaded", "入库（新增）"), ("updated", "更正（原值留存）"),
          ("duplicates", "重复（已有相同记录）"), ("conflicts", "与已有记录不同、按先到为准未更新"),
          ("older", "旧于已有版本、未采用"), ("quarantined", "隔离"))


def summary_frames(s) -> dict[str, pd.DataFrame | list[str]]:
    """An IngestSummary as what the page shows: counts, reasons, conversions, unknown columns,
    warnings, the mapping, converted sample rows and quarantined sample rows (previews)."""
    preview = s.preview is not None
    counts = pd.DataFrame([
        {"item": ("将" + text) if preview and key not in ("rows_read",) else text, "rows": int(getattr(s, key))}
        for key, text in COUNTS if key in ("rows_read", "loaded", "quarantined") or getattr(s, key)
    ])
    reasons = pd.DataFrame(sorted(s.reasons.items(), key=lambda kv: -kv[1]), columns=["reason", "rows"])
    ds = DATASETS[s.dataset]
    by_name = {f.name: f for f in ds.fields}
    mapping = pd.DataFrame([{
        "column": m["column"],
        "target": (f"{by_name[m['field']].label}（{m['field']}）" if m.get("field") in by_name
                   else "保留在原行（已知列）" if m.get("field") == KEEP_ASIDE else "未映射：随原行保留"),
        "unit": m.get("unit") or "",
    } for m in (s.mapping or [])], columns=["column", "target", "unit"])
    out = {"counts": counts, "reasons": reasons, "mapping": mapping,
           "conversions": list(s.conversions), "unknown": list(s.unknown_columns), "warnings": list(s.warnings),
           "sample": pd.DataFrame(s.preview.sample) if preview else pd.DataFrame(),
           "quarantine": pd.DataFrame(s.preview.quarantine_sample) if preview else pd.DataFrame()}
    return out


# ------------------------------------------------------------------ what ingest kept beside the rows

def kept_counts(eng=None) -> pd.DataFrame:
    """Per dataset: records with columns kept aside (row_extras) and corrections received (row_versions)."""
    extras = hub.query(sa.select(row_extras.c.dataset, sa.func.count().label("extras"))
                       .group_by(row_extras.c.dataset), eng=eng)
    fixes = hub.query(sa.select(row_versions.c.dataset, sa.func.count().label("corrections"))
                      .group_by(row_versions.c.dataset), eng=eng)
    out = pd.merge(extras, fixes, on="dataset", how="outer") if len(extras) or len(fixes) else \
        pd.DataFrame(columns=["dataset", "extras", "corrections"])
    out[["extras", "corrections"]] = out[["extras", "corrections"]].fillna(0).astype(int)
    order = {n: i for i, n in enumerate(DATASETS)}
    return out.sort_values("dataset", key=lambda s: s.map(order).fillna(len(order))).reset_index(drop=True)


def _key_columns(dataset: str, row_key: str) -> dict:
    ds = DATASETS.get(dataset)
    try:
        values = json.loads(row_key)
    except (TypeError, ValueError):
        values = [row_key]
    names = list(ds.key) if ds is not None else ["key"]
    return dict(zip(names, values if isinstance(values, list) else [values]))


def _filenames(dataset: str, shas, eng=None) -> dict:
    shas = sorted({s for s in shas if s})
    if not shas:
        return {}
    df = hub.query(sa.select(ingest_files.c.sha256, ingest_files.c.filename)
                   .where(ingest_files.c.dataset == dataset, ingest_files.c.sha256.in_(shas)), eng=eng)
    return dict(zip(df["sha256"], df["filename"]))


def _key_text(dataset: str, row_key: str) -> str:
    """A record's key as a person reads it: times in the city's clock, each value once."""
    from workbench import clock

    ds = DATASETS.get(dataset)
    kinds = {f.name: f.kind for f in ds.fields} if ds is not None else {}
    shown = []
    for name, v in _key_columns(dataset, row_key).items():
        if kinds.get(name) == "ts" and v:
            try:
                v = clock.to_local(pd.Timestamp(v)).strftime("%Y-%m-%d %H:%M")
            except (TypeError, ValueError):
                pass
        if v not in (None, "") and str(v) not in shown:
            shown.append(str(v))
    return "、".join(shown)


def kept_extras(dataset: str, limit: int = 50, eng=None) -> tuple[pd.DataFrame, list[str]]:
    """The newest records of `dataset` that brought columns the hub has no field for: the record's
    key, each extra column as the file wrote it, the file and its line. Also the extra columns'
    names (in the order first seen). `ingest.extras(dataset)` is the whole set, for analysts."""
    rows = ingest.extras(dataset, eng, limit=limit, source=True)
    if rows.empty:
        return pd.DataFrame(), []
    keys = list(DATASETS[dataset].key)
    meta = ["file_sha256", "line", "kept_at"]
    columns = [c for c in rows.columns if c not in keys and c not in meta]
    files = _filenames(dataset, rows["file_sha256"], eng)
    out = rows[keys + columns].assign(filename=rows["file_sha256"].map(files), line=rows["line"],
                                      kept_at=pd.to_datetime(rows["kept_at"]))
    return out, columns


def _shown_value(v) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)) or v == "":
        return "（空）"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def recent_corrections(dataset: str, limit: int = 50, eng=None) -> pd.DataFrame:
    """The newest corrections of `dataset`: the record's key, when, from which file, and what changed
    (字段：旧值 → 新值；…), the old values being what the hub had held."""
    rows = ingest.versions(dataset, eng, limit=limit)
    ds = DATASETS.get(dataset)
    labels = {f.name: f.label for f in ds.fields} if ds is not None else {}
    files = _filenames(dataset, rows["file_sha256"], eng) if len(rows) else {}
    recs = []
    for r in rows.itertuples(index=False):
        old = json.loads(r.old_json) if r.old_json else {}
        new = json.loads(r.new_json) if r.new_json else {}
        changed = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
        recs.append({"key": _key_text(dataset, r.row_key),
                     "corrected_at": r.ts, "filename": files.get(r.file_sha256),
                     "changes": "；".join(f"{labels.get(k, k)}：{_shown_value(old.get(k))} → {_shown_value(new.get(k))}"
                                         for k in changed) or "（无差异）"})
    out = pd.DataFrame(recs, columns=["key", "corrected_at", "filename", "changes"])
    out["corrected_at"] = pd.to_datetime(out["corrected_at"])
    return out


__all__ = [
    "COUNTS",
    "DRAFT_NAME",
    "KEEP_ASIDE",
    "MAX_UPLOAD_BYTES",
    "UNMAPPED",
    "ColumnRow",
    "Editor",
    "auto_field",
    "build_profile",
    "discard_upload",
    "editor_rows",
    "fallback_rows",
    "field_options",
    "keep_upload",
    "kept_counts",
    "kept_extras",
    "profile_options",
    "recent_corrections",
    "save_profile",
    "summary_frames",
    "unit_fields",
    "unit_options",
]
