"""Ingest: take a department's file into the hub without losing anything.

The order of work for one file:
1. keep the raw file, named by its SHA-256, before anything is parsed;
2. a file already taken in (same dataset, same content) adds nothing;
3. sniff what it is (XLSX, JSON, CSV), and for text its encoding (UTF-8, UTF-8 with BOM,
   GBK, GB18030); find the header row below any title rows; map Chinese or English
   column names to the dataset's fields; a file that cannot be read stops with
   `IngestError` naming the file and the problem;
4. stream the rows in chunks: normalise (full-width digits, Chinese dates, local time to
   UTC), validate (types, bounds, choices, required values, cross-column rules, keys
   repeated within the file); good rows go to the dataset's table (rows whose natural
   key the hub already holds are counted as duplicates), bad rows go to quarantine with
   the file, the line and the reason. A measured value out of its field's limits (a 1048 mph
   wind, a 999.9 ℃ sensor fault: `measured`) is set aside alone: quarantined with its reason
   and the row as the file had it, while the row loads with that field empty.
"""
from __future__ import annotations

import codecs
import contextvars
import csv
import hashlib
import io
import json
import os
import re
import shutil
import socket
import unicodedata
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from workbench import config
from workbench.errors import RegistryError, WorkbenchError
from workbench.store import hub, units
from workbench.store.profiles import KEEP_ASIDE, Profile
from workbench import privacy
from workbench.store.schema import (DATASETS, Dataset, Field, ingest_files, personal_data, quarantine,
                                    row_extras, row_versions)

CHUNK_ROWS = 20_000
PIPELINE = True   # write a chunk in a thread of its own while the next one is read (ingest_file)
HEADER_SCAN_ROWS = 30
_IGNORED_COLUMNS = {"序号", "编号序号", "no", "no.", "index", "行号"}  # row counters in department sheets
_MISSING = {"", "nan", "null", "none", "na", "n/a", "-", "--", "—", "/", "\\n"}


@dataclass(frozen=True)
class Limits:
    """What one file may ask of the reader (hostile or broken files: issue 13). Each can be set
    by the environment variable named beside it (a number; sizes in bytes or characters)."""

    line_chars: int = 1 << 20            # WORKBENCH_INGEST_MAX_LINE: one CSV line (and one field)
    xlsx_total: int = 1 << 30            # WORKBENCH_INGEST_XLSX_TOTAL: an XLSX's members unpacked, together
    xlsx_member: int = 512 << 20         # WORKBENCH_INGEST_XLSX_MEMBER: one member unpacked
    xlsx_ratio: int = 200                # WORKBENCH_INGEST_XLSX_RATIO: unpacked : packed, members over 1 MiB
    xlsx_members: int = 10_000           # WORKBENCH_INGEST_XLSX_MEMBERS: members in the zip
    shared_strings_bytes: int = 64 << 20  # WORKBENCH_INGEST_XLSX_SST: sharedStrings.xml unpacked
    shared_strings_count: int = 2_000_000  # WORKBENCH_INGEST_XLSX_SST_COUNT: strings it declares
    json_bytes: int = 256 << 20          # WORKBENCH_INGEST_JSON_MAX: a JSON file (parsed whole)


_LIMIT_ENV = {"line_chars": "WORKBENCH_INGEST_MAX_LINE", "xlsx_total": "WORKBENCH_INGEST_XLSX_TOTAL",
              "xlsx_member": "WORKBENCH_INGEST_XLSX_MEMBER", "xlsx_ratio": "WORKBENCH_INGEST_XLSX_RATIO",
              "xlsx_members": "WORKBENCH_INGEST_XLSX_MEMBERS", "shared_strings_bytes": "WORKBENCH_INGEST_XLSX_SST",
              "shared_strings_count": "WORKBENCH_INGEST_XLSX_SST_COUNT", "json_bytes": "WORKBENCH_INGEST_JSON_MAX"}


def limits() -> Limits:
    """The reader's limits: the defaults, each overridden by its environment variable."""
    given = {}
    for name, env in _LIMIT_ENV.items():
        v = os.environ.get(env)
        if v:
            try:
                given[name] = int(float(v))
            except ValueError:
                raise WorkbenchError(f"环境变量 {env} 应为数字，现为“{v}”")
    return Limits(**given)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class IngestError(WorkbenchError):
    """A file that cannot be read at all. The message names the file and the problem."""

    header: list[str] | None = None      # the file's columns, when its header was found
    mapping: list[dict] | None = None    # column → field, when the file stopped after mapping them

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        super().__init__(problem, where=Path(path).name)


# ------------------------------------------------------------------ the registry of checks and loaders
# The hub keeps, per dataset, the row checks and the loader that departments register
# (workbench.registry.Department): the store imports no department.
_CHECKS: dict[str, list] = {}
_LOADERS: dict[str, tuple] = {}


def register_checks(dataset: str, *checks, owner: str = "") -> None:
    """Add row checks (schema.RowCheck) to a dataset's validation, once each (by reason)."""
    if dataset not in DATASETS:
        raise RegistryError(f"{owner or '部门'}登记的行检查指向未知的数据集“{dataset}”")
    held = _CHECKS.setdefault(dataset, [])
    for c in checks:
        if all(c.reason != h.reason for h in held):
            held.append(c)


def register_loader(dataset: str, loader, owner: str = "") -> None:
    """Route a dataset's good rows through `loader(conn, ds, frame) -> rows loaded` instead
    of a plain insert (city events: dispatch on intake). One loader per dataset.

    A loader may also say how its files are read, by attributes (city events read Open311
    and NYC 311 files too, so `workbench ingest` and the department's own intake agree):
    `read_as` (a Dataset whose fields and aliases map the file's columns), `prepare(frame,
    path) -> frame` (each chunk's text in `read_as` names → the dataset's names, before
    validation) and `repeat_key` (the columns a row repeated within a file is judged by,
    instead of the natural key: versions of one record may follow each other)."""
    if dataset not in DATASETS:
        raise RegistryError(f"{owner or '部门'}登记的加载器指向未知的数据集“{dataset}”")
    if dataset in _LOADERS and _LOADERS[dataset][0] is not loader:
        raise RegistryError(f"数据集“{dataset}”已有加载器（{_LOADERS[dataset][1]}），不能再由 {owner} 登记")
    _LOADERS[dataset] = (loader, owner)


def checks_of(ds: Dataset) -> tuple:
    """The dataset's own checks and those registered by departments."""
    from workbench import registry

    registry.load()
    return tuple(ds.checks) + tuple(_CHECKS.get(ds.name, ()))


def loader_of(ds: Dataset):
    """The registered loader of a dataset, or None (plain insert of new keys)."""
    from workbench import registry

    registry.load()
    entry = _LOADERS.get(ds.name)
    return entry[0] if entry else None


@dataclass
class IngestSummary:
    dataset: str
    filename: str
    sha256: str
    encoding: str | None = None
    profile: str | None = None
    rows_read: int = 0
    loaded: int = 0
    updated: int = 0       # corrections: the same key re-sent with other content (old values kept)
    conflicts: int = 0     # corrections refused: the dataset (or profile) keeps the first version
    older: int = 0         # versions older than the hub's (updated_at): ignored
    quarantined: int = 0
    set_aside: int = 0     # rows loaded with one value or more quarantined alone (a 1048 mph wind), field empty
    duplicates: int = 0    # the same record again, identical
    skipped: bool = False  # the same file was taken in before
    damaged: int = 0       # quarantined because the file itself is damaged there (a line over the limit,
                           # bytes not in its encoding, NUL): the CLI exits 2
    resumed_from: int | None = None   # an interrupted ingest of the same file: lines up to this one were committed
    unknown_columns: list[str] = field(default_factory=list)   # kept with their rows (row_extras)
    conversions: list[str] = field(default_factory=list)       # units converted
    warnings: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    mapping: list[dict] | None = None                          # file column → field
    preview: "Preview | None" = None                           # set when nothing was written

    def to_dict(self) -> dict:
        return asdict(self)

    def notes(self) -> dict:
        return {"unknown_columns": self.unknown_columns, "conversions": self.conversions,
                "warnings": self.warnings, "updated": self.updated, "conflicts": self.conflicts,
                "older": self.older, "set_aside": self.set_aside}

    def line(self) -> str:
        """One line in Chinese for the terminal."""
        if self.skipped:
            return f"{self.filename}: 已接入过（内容相同），跳过，新增 0 行"
        verb = "将入库" if self.preview is not None else "入库"
        text = (f"{self.filename}: 读取 {self.rows_read} 行，{verb} {self.loaded} 行，"
                f"隔离 {self.quarantined} 行，重复 {self.duplicates} 行")
        if self.set_aside:
            text += f"，另有 {self.set_aside} 行的不合理数值已单独隔离（该字段置空，其余数值已入库）"
        if self.updated:
            text += f"，更正 {self.updated} 行（原值已留存）"
        if self.conflicts:
            text += f"，与已有记录不同但按先到为准未更新 {self.conflicts} 行"
        if self.older:
            text += f"，旧于已有版本未采用 {self.older} 行"
        if self.damaged:
            text += f"；其中 {self.damaged} 行文件本身已损坏（过长、编码错误或含 NUL），已隔离，请核查来源"
        if self.resumed_from:
            text += f"（上次接入中断，第 {self.resumed_from} 行及以前已入库，本次从其后继续）"
        return text

    def details(self) -> list[str]:
        """The lines below the summary: conversions, columns kept aside, warnings."""
        out = [f"单位换算：{c}" for c in self.conversions]
        if self.unknown_columns:
            out.append(f"未映射的列（已随原行保留，可查询）：{'、'.join(self.unknown_columns)}")
        out += [f"注意：{w}" for w in self.warnings]
        return out


# ---------------------------------------------------------------------------- reading

def _sha256_and_keep(path: Path) -> tuple[str, Path]:
    """Hash the file and keep a copy of the raw bytes under data/raw/ by content hash: the folder
    0700, the copy 0600 (files hold personal data), written without following a link planted
    where the copy goes; the source is read without following a link either."""
    sha = _sha256(path)
    raw_dir = config.data_dir() / "raw"
    raw = raw_dir / sha[:2] / f"{sha}{path.suffix.lower()}"
    if raw.is_symlink():
        raw.unlink()
    if not raw.exists():
        for d in (raw_dir, raw.parent):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        tmp = raw.with_name(f"{raw.name}.{os.getpid()}.part")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        src = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(src, "rb") as fin, os.fdopen(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        tmp.replace(raw)
    return sha, raw


_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        raise IngestError(path, "文件为空 (empty file)")
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise IngestError(path, "旧版 Excel (.xls) 文件，请另存为 .xlsx 或 CSV 后再导入")
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if head.count(b"\x00") > len(head) // 100 or controls > len(head) // 20:
        # (a few NULs or control bytes are damaged lines, quarantined one by one)
        raise IngestError(path, "不是表格文件：包含二进制内容 (binary content, not a table)")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n\x00")
    if stripped[:1] in (b"[", b"{"):
        return "json"
    return "csv"


# Bytes a file's encoding cannot decode become _UNDECODABLE + two hex digits each: the line
# that holds them is quarantined alone (its bytes read as GB18030 for the person looking at it),
# the other lines load. U+FDD0 is a Unicode noncharacter: no text holds it.
_UNDECODABLE = "\ufdd0"
_UNDECODABLE_RUN = re.compile(_UNDECODABLE + "([0-9a-f]{2})")


def _mark_undecodable(exc: UnicodeDecodeError):
    bad = exc.object[exc.start:exc.end]
    return "".join(f"{_UNDECODABLE}{b:02x}" for b in bad), exc.end


codecs.register_error("workbench-mark", _mark_undecodable)


def _undecodable_text(text: str, encoding: str = "utf-8") -> str:
    """A cell holding undecodable bytes, its original bytes read as GB18030 (the usual stranger
    in a UTF-8 file): the decodable parts back to bytes in the file's encoding, the marked ones
    as they were."""
    out = bytearray()
    pos = 0
    for m in _UNDECODABLE_RUN.finditer(text):
        out += text[pos:m.start()].encode(encoding, errors="replace")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += text[pos:].encode(encoding, errors="replace")
    return bytes(out).decode("gb18030", errors="replace")


def _detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM), else GBK, else GB18030; decided on the whole file. A UTF-8
    file with a few lines in another encoding stays UTF-8 (those lines are quarantined one by
    one): it is UTF-8 when its valid non-ASCII characters outnumber the undecodable bytes 10:1."""
    with open(path, "rb") as f:
        if f.read(3) == codecs.BOM_UTF8:
            return "utf-8-sig" if _decodes(path, "utf-8-sig") or _mostly(path, "utf-8-sig") else _fail_encoding(path)
    if _decodes(path, "utf-8"):
        return "utf-8"
    if _mostly(path, "utf-8"):
        return "utf-8"
    for enc in ("gbk", "gb18030"):
        if _decodes(path, enc):
            return enc
    return _fail_encoding(path)


def _decodes(path: Path, enc: str) -> bool:
    dec = codecs.getincrementaldecoder(enc)()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                dec.decode(block)
            dec.decode(b"", final=True)
        return True
    except UnicodeDecodeError:
        return False


def _mostly(path: Path, enc: str) -> bool:
    """The file decodes in `enc` but for a few bytes: valid non-ASCII characters ≥ 10 × bad bytes."""
    dec = codecs.getincrementaldecoder(enc)(errors="workbench-mark")
    bad = good = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            text = dec.decode(block)
            n = text.count(_UNDECODABLE)
            bad += n
            good += len(text) - len(text.encode("ascii", "ignore")) - n
            if bad > 100 and good < 10 * bad:   # another encoding altogether: stop at once
                return False
        text = dec.decode(b"", final=True)
        bad += text.count(_UNDECODABLE)
    return 0 < bad and good >= 10 * bad


def _fail_encoding(path: Path):
    raise IngestError(path, "无法识别文件编码（不是 UTF-8、GBK 或 GB18030，也不是只有个别行例外）")


_BRACKETS = re.compile(r"^(.*?)\s*[\(\[【〔{]\s*([^()\[\]【】〔〕{}]*?)\s*[\)\]】〕}]\s*$")


def _norm_header(name) -> str:
    s = unicodedata.normalize("NFKC", str(name or "")).strip().lower()
    return re.sub(r"[\s*＊:：]", "", s)


def split_header(name) -> tuple[str, str | None]:
    """`检测值(%)` → (`检测值`, `%`); `降水量（mm）` → (`降水量`, `mm`); `temp` → (`temp`, None).
    NFKC first, so full-width brackets count."""
    s = unicodedata.normalize("NFKC", str(name or "")).strip()
    m = _BRACKETS.match(s)
    if m and m.group(1).strip():
        return m.group(1).strip(), (m.group(2).strip() or None)
    return s, None


def _header_map(ds: Dataset, profile=None) -> dict[str, str]:
    out: dict[str, str] = {}
    if profile is not None:
        for col, target in profile.columns.items():
            out[_norm_header(col)] = target
    for f in ds.fields:
        for alias in (f.name, f.label, *f.aliases):
            out.setdefault(_norm_header(alias), f.name)
    return out


def _match_header(hmap: dict[str, str], h) -> tuple[str | None, str | None]:
    """The field a header names and the unit its brackets hold: the whole header first
    (`销毁数量(kg)` is an alias), then the header without its bracket."""
    whole = hmap.get(_norm_header(h))
    if whole is not None:
        return whole, None
    base, bracket = split_header(h)
    return hmap.get(_norm_header(base)), bracket


def _find_header(ds: Dataset, rows: list[list], path: Path, profile=None) -> int:
    """Index of the header row: the first row naming all required fields, else the one naming most."""
    hmap = _header_map(ds, profile)
    required = set(ds.required) - set(profile.defaults if profile else ())
    best, best_hits = None, 0
    for i, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        hits = {_match_header(hmap, h)[0] for h in row} - {None, KEEP_ASIDE}
        if len(hits & required) > best_hits or (best is None and len(hits) >= 2):
            best, best_hits = i, len(hits & required)
        if required and required <= hits:
            return i
    if best is None:
        raise IngestError(path, f"找不到表头：前 {HEADER_SCAN_ROWS} 行中没有 {ds.label} 的列名"
                          f"（应有：{', '.join(_labels(ds, ds.required))}）")
    return best


def _labels(ds: Dataset, names) -> list[str]:
    return [f"{ds.field(n).label}({n})" for n in names]


def _open_chunks(read_as: Dataset, path: Path, profile=None, bar=None) -> tuple[str, str, Iterator]:
    """(kind, encoding, chunks) of a file; the chunks' first item is its header row."""
    kind = _sniff(path)

    def find_header(rows):
        return _find_header(read_as, rows, path, profile)

    if kind == "xlsx":
        return kind, "xlsx", _chunks_xlsx(find_header, path, bar)
    encoding = _detect_encoding(path)
    return kind, encoding, (_chunks_csv(find_header, path, encoding, bar) if kind == "csv"
                            else _chunks_json(read_as, path, encoding, bar))


def _read_as(dataset: str) -> Dataset:
    load = loader_of(DATASETS[dataset])
    return getattr(load, "read_as", None) or DATASETS[dataset]


def read_header(dataset: str, path: Path | str, profile: Profile | None = None) -> list[str]:
    """A file's header row as the ingest finds it (below any title rows), every column named
    (a blank one `第N列`, a repeated one `名称(2)`): what a mapping screen shows, even when the
    file cannot be loaded yet. Raises IngestError when the file cannot be read at all."""
    path = Path(path)
    _, _, chunks = _open_chunks(_read_as(dataset), path, profile)
    try:
        return _unique_header(next(chunks))
    finally:
        chunks.close()


def field_for_header(dataset: str, header: str, profile: Profile | None = None) -> tuple[str | None, str | None]:
    """The field a column header names (a profile's column map first) and the unit its
    brackets hold: `气温(℉)` → ('temperature', '℉'); a profile's "~" → ('~', None)."""
    return _match_header(_header_map(_read_as(dataset), profile), header)


@dataclass
class ColumnPlan:
    """How a file's columns become a dataset's fields."""

    header: list[str]
    fields: dict[int, str]                                # column index → field
    units: dict[str, str] = field(default_factory=dict)  # field → unit as the file/profile declares it
    unit_from: dict[str, str] = field(default_factory=dict)  # field → 表头 / 配置
    unknown: list[int] = field(default_factory=list)     # columns without a field: kept with the row
    aside: list[int] = field(default_factory=list)       # columns a profile keeps aside ("~")
    missing: list[str] = field(default_factory=list)     # profile columns the file lacks

    @property
    def extra(self) -> list[int]:
        return self.unknown + self.aside

    def column_of(self, name: str) -> str | None:
        return next((self.header[i] for i, n in self.fields.items() if n == name), None)


def _unique_header(header: list) -> list[str]:
    """The file's header with a name for every column: a blank one is `第N列`, a repeated one
    gets `(2)`, `(3)` …, so a row as the file had it (quarantine, kept columns) loses no cell."""
    out, seen = [], set()
    for i, h in enumerate(header):
        name = str(h if h is not None else "").strip() or f"第{i + 1}列"
        base, k = name, 2
        while name in seen:
            name, k = f"{base}({k})", k + 1
        seen.add(name)
        out.append(name)
    return out


def _column_plan(ds: Dataset, header: list, path: Path, profile=None) -> ColumnPlan:
    """Which file column feeds which field; refuses a file without a required column."""
    hmap = _header_map(ds, profile)
    header_in = list(header)
    header = _unique_header(header)
    plan = ColumnPlan(header, {})
    for i, h in enumerate(header):
        written = str(header_in[i] if header_in[i] is not None else "").strip()
        name, bracket = _match_header(hmap, h) if h == written else (None, None)
        if name == KEEP_ASIDE or not written:   # a column without a name: kept with its row, not listed
            plan.aside.append(i)
        elif name is None or name in plan.fields.values():
            if h.strip() and _norm_header(h) not in _IGNORED_COLUMNS:
                plan.unknown.append(i)
            elif h.strip():
                plan.aside.append(i)
        else:
            plan.fields[i] = name
            if bracket:
                plan.units[name], plan.unit_from[name] = bracket, "表头"
    if profile is not None:
        for name, unit in profile.units.items():
            plan.units[name], plan.unit_from[name] = unit, "配置"
        present = {_norm_header(h) for h in header} | {_norm_header(split_header(h)[0]) for h in header}
        plan.missing = [c for c in profile.columns if _norm_header(c) not in present]
    given = set(plan.fields.values()) | set(profile.defaults if profile else ())
    missing = [n for n in ds.required if n not in given]
    if missing:
        named = [f"“{c}”" for c in plan.missing if profile.columns[c] in missing] if profile is not None else []
        hint = f"（配置“{profile.name}”映射的列 {'、'.join(named)} 不在文件中）" if named else ""
        raise IngestError(path, f"缺少必需的列：{', '.join(_labels(ds, missing))}{hint}")
    return plan


class _CountingReader(io.RawIOBase):
    """Counts the bytes read, for a progress bar over a streamed file."""

    def __init__(self, f, bar):
        self.f, self.bar = f, bar

    def readable(self):
        return True

    def readinto(self, b):
        n = self.f.readinto(b)
        if self.bar is not None and n:
            self.bar.update(n)
        return n


# A file's rows as it wrote them: every column's text (width of the header), their lines, and
# the malformed rows as (line, reason, detail, {column: text}). The first item a reader yields
# is the header row.
RawChunk = tuple[list[list[str]], np.ndarray, list[tuple[int, str, str, dict]]]


OVERLONG_LINE = "行过长"
UNDECODABLE_LINE = "编码错误"
NUL_IN_LINE = "含有 NUL 空字符"
FIELD_TOO_LARGE = "字段过长"
DAMAGED = (OVERLONG_LINE, UNDECODABLE_LINE, NUL_IN_LINE, FIELD_TOO_LARGE)   # the file itself is damaged: exit 2


class _Lines:
    """A text file's physical lines for csv.reader, read in 1 MiB blocks and never longer than
    the limit: a longer line is read past (never held) and stands as an empty line, noted in
    `bad` with its number; bytes the encoding cannot decode are marked (_UNDECODABLE). Lines
    are handed over a block at a time (itertools.chain runs the loop in C)."""

    def __init__(self, raw, encoding: str, limit: int):
        self.raw, self.encoding, self.limit = raw, encoding, limit
        self.bad: list[tuple[int, str, str, dict]] = []
        self.n = 0                 # lines handed over so far
        self.suspect = False       # a NUL or an undecodable byte was seen: rows are checked one by one

    def __iter__(self):
        import itertools

        return itertools.chain.from_iterable(self._blocks())

    def _overlong(self, line_no: int, size: int, prefix: str) -> None:
        self.bad.append((line_no, OVERLONG_LINE,
                         f"第 {line_no} 行长 {size:,} 个字符以上，超过上限 {self.limit:,}（WORKBENCH_INGEST_MAX_LINE），"
                         f"未读入；原文件已保留",
                         {"行首": prefix[:200].replace("\x00", "\u2400"), "长度": f"≥{size}"}))

    def _blocks(self):
        dec = codecs.getincrementaldecoder(self.encoding)(errors="workbench-mark")
        limit, carry, skip = self.limit, "", None    # skip: [line number, size so far, prefix]
        cr_only = None
        eof = False
        while not eof:
            block = self.raw.read(1 << 20)
            eof = not block
            text = dec.decode(block, final=eof)
            if not self.suspect and ("\x00" in text or _UNDECODABLE in text):
                self.suspect = True
            if skip is not None:
                end = text.find("\n")
                if end < 0 and not eof:
                    skip[1] += len(text)
                    continue
                skip[1] += end if end >= 0 else len(text)
                self._overlong(*skip)
                skip = None
                self.n += 1
                yield ["\n"]
                text = text[end + 1:] if end >= 0 else ""
            text = carry + text
            if cr_only is None and text:
                cr_only = "\r" in text and "\n" not in text[:text.find("\r") + 2]
            if cr_only:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            lines = text.splitlines(keepends=True)
            carry = lines.pop() if lines and not lines[-1].endswith("\n") else ""
            if len(lines) != text.count("\n"):   # \u2028, \x0c, a lone \r … are text in a cell, not line ends
                parts = text.split("\n")
                carry = parts.pop()
                lines = [p + "\n" for p in parts]
            if len(text) > limit and lines and max(map(len, lines)) > limit:
                for i, p in enumerate(lines):
                    if len(p) > limit:
                        self._overlong(self.n + i + 1, len(p), p)
                        lines[i] = "\n"
            if len(carry) > limit:
                skip = [self.n + len(lines) + 1, len(carry), carry[:200]]
                carry = ""
            self.n += len(lines)
            if lines:
                yield lines
        if skip is not None:
            self._overlong(*skip)
            self.n += 1
            yield ["\n"]
        elif carry:
            self.n += 1
            yield [carry]


def _damaged_row(line: int, row: list[str], names: list[str], encoding: str) -> tuple | None:
    """A row holding a NUL or bytes its file's encoding cannot decode: its quarantine entry."""
    cells = {names[i] if i < len(names) else f"多余的第{i + 1}列": v for i, v in enumerate(row)}
    if any(_UNDECODABLE in v for v in row):
        n = sum(v.count(_UNDECODABLE) for v in row)
        cells = {k: (_undecodable_text(v, encoding) if _UNDECODABLE in v else v).replace("\x00", "\u2400") for k, v in cells.items()}
        return (line, UNDECODABLE_LINE, f"本行有 {n} 个字节不是 {encoding} 编码（已按 GB18030 解读显示；原文件已保留），"
                                        f"其余行照常读入", cells)
    if any("\x00" in v for v in row):
        columns = [k for k, v in cells.items() if "\x00" in v]
        cells = {k: v.replace("\x00", "\u2400") for k, v in cells.items()}
        return (line, NUL_IN_LINE, f"列 {'、'.join(columns)} 含有 NUL（\\0，以 ␀ 标出）：数据库文本不能保存，"
                                   f"该行在 SQLite 与 PostgreSQL 上一律隔离", cells)
    return None


def _chunks_csv(find_header, path, encoding, bar) -> Iterator:
    limit = limits().line_chars
    with open(path, "rb") as f:
        head = f.read(1 << 20).decode(encoding, errors="workbench-mark")
    first_lines = [ln for ln in head.splitlines()[:HEADER_SCAN_ROWS] if len(ln) <= limit]
    counts = {d: max((line.count(d) for line in first_lines), default=0) for d in ",\t;|"}
    delimiter = max(counts, key=counts.get) if max(counts.values()) else ","
    raw = open(path, "rb")
    try:
        source = _Lines(io.BufferedReader(_CountingReader(raw, bar), 1 << 20), encoding, limit)
        csv.field_size_limit(max(limit, 1 << 17))
        reader = csv.reader(iter(source), delimiter=delimiter)
        errors: list[tuple[int, str, str, dict]] = []

        def rows_iter():
            while True:
                try:
                    for row in reader:
                        yield reader.line_num, row
                    return
                except csv.Error as exc:   # a field over the limit (a quote never closed): that row only
                    errors.append((reader.line_num, FIELD_TOO_LARGE,
                                   f"CSV 格式错误：{exc}（上限 {limit:,} 个字符，WORKBENCH_INGEST_MAX_LINE）", {}))
                    yield reader.line_num, None

        rows = rows_iter()
        head_rows = []
        for line, row in rows:
            if not row or not "".join(row).strip():
                continue
            head_rows.append((line, row))
            if len(head_rows) >= HEADER_SCAN_ROWS:
                break
        if not head_rows:
            raise IngestError(path, "文件为空 (empty file)")
        hidx = find_header([r for _, r in head_rows])
        header = head_rows[hidx][1]
        if source.suspect and _damaged_row(0, header, header, encoding):
            raise IngestError(path, f"表头行含有 NUL 或无法按 {encoding} 解码的字节，无法读取")
        yield header
        width = len(header)
        names = _unique_header(header)

        import itertools

        buf, lines, bad = [], [], []
        for line, row in itertools.chain(head_rows[hidx + 1:], rows):
            if row is None:
                bad += errors
                errors.clear()
                continue
            joined = "".join(row)
            if not joined or joined.isspace():   # (a line over the limit reads as an empty one)
                if source.bad:
                    bad += source.bad
                    source.bad = []
                continue
            if source.suspect and (damaged := _damaged_row(line, row, names, encoding)) is not None:
                bad.append(damaged)
                continue
            if len(row) != width:
                if len(row) > width and not "".join(row[width:]).strip():
                    row = row[:width]
                else:
                    named = {names[i] if i < width else f"多余的第{i + 1}列": v for i, v in enumerate(row[:width + 50])}
                    bad.append((line, "字段数与表头不符", f"本行 {len(row)} 个字段，表头 {width} 列", named))
                    continue
            buf.append(row)
            lines.append(line)
            if len(buf) >= CHUNK_ROWS:
                yield buf, np.array(lines), bad
                buf, lines, bad = [], [], []
        bad += source.bad + errors
        if buf or bad:
            yield buf, np.array(lines, dtype=int), bad
    finally:
        raw.close()


def _cell_text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _check_xlsx(path: Path) -> None:
    """An XLSX is a zip: before openpyxl opens it, its members' unpacked sizes (as the zip
    declares them; Python's zipfile never unpacks more than declared), their compression ratio,
    their number and the shared strings are held to `limits()`. A bomb stops here, unread."""
    lim = limits()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > lim.xlsx_members:
                _bomb(path, f"压缩包内有 {len(infos):,} 个文件，超过上限 {lim.xlsx_members:,}（WORKBENCH_INGEST_XLSX_MEMBERS）")
            total = 0
            for i in infos:
                total += i.file_size
                if i.file_size > lim.xlsx_member:
                    _bomb(path, f"其中“{i.filename}”解压后 {_size(i.file_size)}，超过单个文件上限 "
                                f"{_size(lim.xlsx_member)}（WORKBENCH_INGEST_XLSX_MEMBER）")
                ratio = i.file_size / max(i.compress_size, 1)
                if i.file_size > (1 << 20) and ratio > lim.xlsx_ratio:
                    _bomb(path, f"其中“{i.filename}”压缩比 {ratio:,.0f}:1（{_size(i.compress_size)} 解压后 "
                                f"{_size(i.file_size)}），超过上限 {lim.xlsx_ratio}:1（WORKBENCH_INGEST_XLSX_RATIO）")
                if i.filename.lower().endswith("sharedstrings.xml"):
                    if i.file_size > lim.shared_strings_bytes:
                        _bomb(path, f"共享字符串表“{i.filename}”解压后 {_size(i.file_size)}，超过上限 "
                                    f"{_size(lim.shared_strings_bytes)}（WORKBENCH_INGEST_XLSX_SST）")
                    with zf.open(i) as f:
                        head = f.read(4096).decode("utf-8", errors="replace")
                    for attr in ("count", "uniqueCount"):
                        m = re.search(rf'<(?:\w+:)?sst\b[^>]*\b{attr}="(\d+)"', head)
                        if m and int(m.group(1)) > lim.shared_strings_count:
                            _bomb(path, f"共享字符串表声明 {int(m.group(1)):,} 个字符串，超过上限 "
                                        f"{lim.shared_strings_count:,}（WORKBENCH_INGEST_XLSX_SST_COUNT）")
            if total > lim.xlsx_total:
                _bomb(path, f"解压后共 {_size(total)}，超过上限 {_size(lim.xlsx_total)}（WORKBENCH_INGEST_XLSX_TOTAL）")
    except zipfile.BadZipFile as exc:
        raise IngestError(path, f"无法打开 Excel 文件：损坏的压缩包（{exc}）")


def _bomb(path: Path, what: str):
    raise IngestError(path, f"Excel 文件超出读取限制，已拒绝（疑似“压缩炸弹”，未解压）：{what}")


def _chunks_xlsx(find_header, path, bar) -> Iterator:
    import openpyxl

    _check_xlsx(path)
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zip/xml errors from a damaged workbook
        raise IngestError(path, f"无法打开 Excel 文件：{type(exc).__name__}: {exc}")
    try:
        ws = wb.worksheets[0]
        it = ws.iter_rows(values_only=True)
        head_rows = []
        for row in it:
            head_rows.append([_cell_text(v) for v in row])
            if len(head_rows) >= HEADER_SCAN_ROWS:
                break
        if not head_rows:
            raise IngestError(path, "工作表为空 (empty sheet)")
        hidx = find_header(head_rows)
        header = head_rows[hidx]
        while header and not header[-1].strip():
            header = header[:-1]
        yield header
        width = len(header)
        names = _unique_header(header)
        buf, lines = [], []

        def rows_iter():
            for i, row in enumerate(head_rows[hidx + 1:], start=hidx + 2):
                yield i, row
            for i, row in enumerate(it, start=len(head_rows) + 1):
                yield i, [_cell_text(v) for v in row]

        bad = []
        for line, row in rows_iter():
            if not any(c.strip() for c in row):
                continue
            if len(row) > width and any(c.strip() for c in row[width:]):   # cells right of the header
                last = max(i for i, c in enumerate(row) if c.strip()) + 1
                named = {names[i] if i < width else f"多余的第{i + 1}列": v for i, v in enumerate(row[:last])}
                bad.append((line, "字段数与表头不符", f"本行 {last} 个字段，表头 {width} 列", named))
                continue
            buf.append((row + [""] * (width - len(row)))[:width])
            lines.append(line)
            if len(buf) >= CHUNK_ROWS:
                yield buf, np.array(lines), bad
                buf, lines, bad = [], [], []
        if buf or bad:
            yield buf, np.array(lines, dtype=int), bad
    finally:
        wb.close()


def _chunks_json(ds, path, encoding, bar) -> Iterator:
    size, most = Path(path).stat().st_size, limits().json_bytes
    if size > most:   # a JSON document is parsed whole: its size is its memory, several times over
        raise IngestError(path, f"JSON 文件 {_size(size)}，超过上限 {_size(most)}（WORKBENCH_INGEST_JSON_MAX）；"
                                f"请改用 CSV，或分成几个文件")
    text = Path(path).read_text(encoding=encoding)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IngestError(path, f"JSON 格式错误：第 {exc.lineno} 行第 {exc.colno} 列: {exc.msg}")
    if isinstance(doc, dict):  # {"records": [...]}, {"<dataset>": [...]}, or one record
        lists = [v for v in doc.values() if isinstance(v, list)]
        doc = doc.get(ds.name) or doc.get("records") or doc.get("data") or (lists[0] if len(lists) == 1 else [doc])
    if not isinstance(doc, list):
        raise IngestError(path, "JSON 不是记录列表 (expected a list of records)")
    if not doc:
        raise IngestError(path, "JSON 中没有记录 (no records)")
    header: dict[str, None] = {}
    for rec in doc:
        if isinstance(rec, dict):
            header.update(dict.fromkeys(rec))
    header = list(header)
    has_nul = "\x00" in text
    del text
    names = _unique_header(header)
    yield header
    if bar is not None:
        bar.update(Path(path).stat().st_size)
    for start in range(0, len(doc), CHUNK_ROWS):
        buf, lines, bad = [], [], []
        for i, rec in enumerate(doc[start:start + CHUNK_ROWS], start=start + 1):
            if not isinstance(rec, dict):
                bad.append((i, "记录不是对象", f"类型 {type(rec).__name__}", {"value": _json_cell(rec)}))
                continue
            row = [_json_cell(rec.get(k)) for k in header]
            if has_nul and (damaged := _damaged_row(i, row, names, encoding)) is not None:
                bad.append(damaged)
                continue
            buf.append(row)
            lines.append(i)
        yield buf, np.array(lines, dtype=int), bad


def _json_cell(v) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return _cell_text(v)


# ---------------------------------------------------------------------------- validating

_TZ_SUFFIX = r"(?i)(?:z|[+-]\d{2}:?\d{2})$"
AMBIGUOUS_TIME = "本地时间有歧义（夏令时结束时重复的时段）"
NONEXISTENT_TIME = "本地时间不存在（夏令时开始时跳过的时段）"
YEARS = (1900, 2100)   # a time outside these years is a typo or a placeholder (9999-12-31), never a record's
OUT_OF_RANGE_TIME = f"时间超出 {YEARS[0]}—{YEARS[1]} 年范围"


def parse_timestamps(s: pd.Series, tz: str | None = None) -> pd.Series:
    """Parse timestamps as departments write them; naive ones are the city's (or `tz`'s) wall clock.

    Returns naive UTC datetimes (NaT where unparseable, ambiguous or non-existent). Handles
    `2023年12月22日 08:30`, `2023/12/22 8:30`, ISO 8601 with or without an offset, dates alone.
    """
    return parse_local_times(s, tz)[0]


def parse_local_times(s: pd.Series, tz: str | None = None, *, ambiguous: str = "quarantine",
                      nonexistent: str = "quarantine", fmt: str | None = None) -> tuple[pd.Series, pd.Series]:
    """Timestamps (naive UTC) and, per value, why a wall time could not be placed ('' if it could).

    A wall time the clock passes twice (DST ends) or skips (DST starts) is never shifted
    silently: by default it is reported (AMBIGUOUS_TIME / NONEXISTENT_TIME) and left NaT; a
    source's profile may declare `ambiguous: earliest|latest`, `nonexistent: shift_forward|
    shift_backward`. Offsets written in the text (Z, +08:00) are exact and need no zone.
    """
    tz = tz or config.TZ
    t = s.astype("string").str.strip()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    problem = pd.Series("", index=s.index, dtype=object)
    aware = t.str.contains(_TZ_SUFFIX, na=False)
    todo = t.notna()
    attempts = ([("format", fmt)] if fmt else []) + [("iso", False), ("mixed", True)]
    for how, rewrite in attempts:  # machine exports are ISO already; rewrite only what fails
        if not todo.any():
            break
        part = _rewrite_chinese_dates(t[todo]) if rewrite is True else t[todo]
        for mask, localize in ((~aware[todo], True), (aware[todo], False)):
            if not mask.any():
                continue
            form = fmt if how == "format" else ("mixed" if rewrite else "ISO8601")
            parsed = pd.to_datetime(part[mask], format=form, errors="coerce", utc=not localize)
            # out of pandas' nanosecond range (9999-12-31, 0001-01-01) the parse keeps another unit:
            # said and left out here, before any zone or unit conversion could overflow
            far = parsed.notna() & ~parsed.dt.year.between(*YEARS)
            if far.any():
                problem[far.index[far]] = OUT_OF_RANGE_TIME
                parsed = parsed.where(~far)
            if localize:
                parsed, trouble = _localize(parsed, tz, ambiguous, nonexistent)
                problem[trouble.index[trouble != ""]] = trouble[trouble != ""]
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
            ok = parsed.notna()
            out[parsed.index[ok]] = parsed[ok]
        todo = todo & out.isna() & (problem == "")
    return out, problem


def _localize(naive: pd.Series, tz: str, ambiguous: str, nonexistent: str) -> tuple[pd.Series, pd.Series]:
    """Naive wall times in `tz`; the trouble of those the policy leaves unplaced."""
    trouble = pd.Series("", index=naive.index, dtype=object)
    placed = naive.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
    lost = placed.isna() & naive.notna()
    if not lost.any():
        return placed, trouble
    # which of the lost ones the clock passes twice: placeable as either DST or standard time
    as_dst = naive[lost].dt.tz_localize(tz, ambiguous=np.ones(int(lost.sum()), bool), nonexistent="NaT")
    twice = as_dst.notna()
    amb_idx, gap_idx = twice.index[twice], twice.index[~twice]
    if len(amb_idx):
        if ambiguous in ("earliest", "latest"):
            flags = np.full(len(amb_idx), ambiguous == "earliest")   # True = DST = the earlier instant
            placed[amb_idx] = naive[amb_idx].dt.tz_localize(tz, ambiguous=flags)
        else:
            trouble[amb_idx] = AMBIGUOUS_TIME
    if len(gap_idx):
        if nonexistent in ("shift_forward", "shift_backward"):
            placed[gap_idx] = naive[gap_idx].dt.tz_localize(tz, ambiguous="NaT", nonexistent=nonexistent)
        else:
            trouble[gap_idx] = NONEXISTENT_TIME
    return placed, trouble


def _rewrite_chinese_dates(t: pd.Series) -> pd.Series:
    """`2023年12月22日8时30分` → `2023-12-22 8:30`; `2023/12/22` and `2023.12.22` → `2023-12-22`."""
    return (t.str.replace(r"(\d)\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?\s*", r"\1-\2-\3 ", regex=True)
            .str.replace(r"(\d)\s*时\s*(\d{1,2})\s*分?", r"\1:\2", regex=True)
            .str.replace(r"(\d)\s*时", r"\1:00", regex=True)
            .str.replace(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})", r"\1-\2-\3", regex=True)
            .str.strip())


@dataclass
class ReadContext:
    """What a validation needs to know about the file beyond its text: the units it measures in,
    its time zone and policies, the registries names are looked up in."""

    units: dict = field(default_factory=dict)        # field → units.Unit of the file
    bad_units: dict = field(default_factory=dict)    # field → (column, unit text) the hub cannot read
    tz: str | None = None
    ambiguous: str = "quarantine"
    nonexistent: str = "quarantine"
    date_format: str | None = None
    refs: "References | None" = None
    profile: Profile | None = None       # the source's profile (a loader's prepare may read its options)
    file_sha256: str | None = None       # the file being read
    path: Path | None = None
    private_columns: dict = field(default_factory=dict)   # file column → mask (personal and free-text fields)
    warnings: list = field(default_factory=list)          # the file's summary warnings (ingest_file's list)

    def warn(self, text: str) -> None:
        """A line for the file's summary (`注意：…`), said once: a loader's prepare tells what it
        noticed about the file (daily weather recognised …)."""
        if text not in self.warnings:
            self.warnings.append(text)


_FULL_WIDTH_ALNUM = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
                     for c in range(r[0], r[1] + 1)}


def _distinct(s: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """A column as codes into its distinct values (the last one NA, for missing cells): department
    files repeat a handful of markets, commodities and results thousands of times, so the text
    work (normalising, parsing, looking up) is done once per distinct value, not once per row."""
    codes, uniq = pd.factorize(s.to_numpy() if s.dtype == object else s.to_numpy(dtype=object),
                               use_na_sentinel=True)
    codes = np.where(codes < 0, len(uniq), codes)
    return codes, pd.Series(np.concatenate([np.asarray(uniq, dtype=object), np.array([None], dtype=object)]),
                            dtype=object)


def _join(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """'a' + 'b' → 'a; b' elementwise, '' counting as nothing."""
    out = old.copy()
    both = (old != "") & (new != "")
    only_new = (old == "") & (new != "")
    out[only_new] = new[only_new]
    if both.any():
        out[both] = old[both] + "; " + new[both]
    return out


SET_ASIDE_NOTE = "（仅隔离该值，本行其余数值已入库）"


def measured(ds: Dataset, f: Field) -> bool:
    """A measured value (a field with a unit, neither required nor part of the key: the weather's
    temperature, wind, precipitation): one out of its limits is set aside alone, the row loads."""
    return bool(f.unit) and f.kind in ("int", "float") and not f.required and f.name not in ds.key


def validate(ds: Dataset, df: pd.DataFrame, ctx: ReadContext | None = None
             ) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Typed values; per row the reasons it fails ('' when good), and the details (values).

    A caller that cannot set a value aside (`check_values`) gets it as the row's reason."""
    values, reasons, details, aside, aside_details = check_values(ds, df, ctx)
    hit = aside != ""
    if hit.any():
        reasons = pd.Series(_join(reasons.to_numpy(), aside.to_numpy()), index=df.index, dtype=object)
        details = pd.Series(_join(details.to_numpy(), aside_details.to_numpy()), index=df.index, dtype=object)
    return values, reasons, details


def check_values(ds: Dataset, df: pd.DataFrame, ctx: ReadContext | None = None
                 ) -> tuple[pd.DataFrame, pd.Series, pd.Series, pd.Series, pd.Series]:
    """Typed values; per row the reasons it fails ('' when good) and the details (values); and per
    row the measured values set aside (`measured`: outside the field's limits, e.g. a 1048 mph
    wind): their reasons and details. A value set aside is empty in the typed values, so the row's
    other values load; the caller quarantines it with the row as the file had it.

    Each column is checked once per distinct value (`_distinct`), then spread to its rows."""
    ctx = ctx or ReadContext()
    n = len(df)
    reasons = np.full(n, "", dtype=object)
    details = np.full(n, "", dtype=object)
    aside = np.full(n, "", dtype=object)
    aside_details = np.full(n, "", dtype=object)
    out = pd.DataFrame(index=df.index)
    malformed: dict[str, np.ndarray] = {}
    for f in ds.fields:
        if f.name not in df:
            out[f.name] = None
            continue
        codes, orig = _distinct(df[f.name])
        m = len(orig)
        why = np.full(m, "", dtype=object)      # per distinct value: its reasons, its details
        said = np.full(m, "", dtype=object)

        def flag(mask, text, detail=None):
            nonlocal why, said
            mask = np.asarray(pd.Series(mask).fillna(False), dtype=bool)
            if not mask.any():
                return
            add = np.full(m, "", dtype=object)
            add[mask] = text[mask] if isinstance(text, np.ndarray) else text
            why = _join(why, add)
            if callable(detail):   # details are built only for the values that need them
                detail = detail()
            if detail is not None:
                add = np.full(m, "", dtype=object)
                add[mask] = detail if isinstance(detail, str) else np.asarray(detail, dtype=object)[mask]
                said = _join(said, add)

        if f.kind == "str" and not f.refers:   # plain text: in Python over the distinct values, no Series work
            text = []
            for v in orig.tolist():
                if v is None:
                    text.append(None)
                    continue
                s = v if type(v) is str else str(v)
                if not s.isascii():   # text keeps its Chinese punctuation; ０-９ Ａ-Ｚ ａ-ｚ become ASCII
                    s = s.translate(_FULL_WIDTH_ALNUM)
                text.append(s.strip() or None)
            value = pd.Series(text, dtype=object)
            malformed[f.name] = np.zeros(len(df), dtype=bool)
            if f.choices:
                allowed = set(f.choices)
                flag(np.array([t is not None and t not in allowed for t in text], dtype=bool),
                     f"{f.label}取值不在 {'/'.join(f.choices)} 之中",
                     np.array([f"{f.label}: '{'' if t is None else t}'" for t in text], dtype=object))
            flag(np.array([t is not None and len(t) > f.length for t in text], dtype=bool),
                 f"{f.label}超过 {f.length} 个字符")
        else:
            raw = orig.astype("string")
            wide = ~raw.str.isascii().fillna(True)
            if wide.any():  # full-width digits and letters, ideographic spaces
                if f.kind == "str":   # text keeps its Chinese punctuation (，（：); only ０-９ Ａ-Ｚ ａ-ｚ become ASCII
                    raw = raw.where(~wide, raw[wide].str.translate(_FULL_WIDTH_ALNUM))
                else:
                    raw = raw.where(~wide, raw[wide].str.normalize("NFKC"))
            raw = raw.str.strip()
            lower = raw.str.lower()
            missing = raw.isna() | (raw == "") if f.kind == "str" else raw.isna() | lower.isin(_MISSING)
            if f.criterion:   # "≥50%" → 50; a qualitative standard ("阴性") has no number
                raw = raw.str.replace(r"^\s*(?:[≥≤><]=?|不[大小]于|不超过|不低于)\s*", "", regex=True)
                qualitative = ~missing & ~raw.str.contains(r"^[\d.]+\s*\S{0,8}$", regex=True, na=False)
                missing |= qualitative
                raw = raw.str.replace(r"^([\d.]+)\s*\S{0,8}$", r"\1", regex=True)
            def shown():
                return (f"{f.label}: '" + orig.astype("string").fillna("").str.slice(0, 40) + "'").to_numpy(dtype=object)
            trouble = None
            if f.kind == "ts":
                value, trouble = parse_local_times(raw.where(~missing), ctx.tz, ambiguous=ctx.ambiguous,
                                                   nonexistent=ctx.nonexistent, fmt=ctx.date_format)
                bad = raw.where(~missing).notna() & value.isna() & (trouble == "")
                for problem in (AMBIGUOUS_TIME, NONEXISTENT_TIME):
                    flag(trouble == problem, problem,
                         lambda: (f"{f.label}: '" + raw.fillna("") + f"'（{ctx.tz or config.TZ}）").to_numpy(dtype=object))
                flag(trouble == OUT_OF_RANGE_TIME, f"{f.label}{OUT_OF_RANGE_TIME.removeprefix('时间')}", shown)
            else:
                value, bad = _convert(f, raw.where(~missing))
            bad_u = (bad & ~missing).to_numpy(dtype=bool)
            flag(bad_u, _bad_text(f), shown)
            if trouble is not None:   # a time the policy leaves unplaced is reported, not "missing" too
                bad_u = bad_u | (trouble != "").to_numpy(dtype=bool)
            malformed[f.name] = bad_u[codes]
            if f.name in ctx.bad_units:
                column, unit_text = ctx.bad_units[f.name]
                flag(value.notna(), "单位无法识别", f"列“{column}”的单位“{unit_text}”")
                value = value.where(value.isna())
            elif f.kind in ("int", "float") and f.name in ctx.units and f.unit:
                value = units.convert(value, ctx.units[f.name], units.of_field(f.unit))
            if f.kind in ("int", "float"):
                def num(value=value):
                    return (f"{f.label}: " + value.round(3).astype(str)).to_numpy(dtype=object)

                if measured(ds, f):   # the value alone is set aside; the row's other values load
                    low = (value < f.min).fillna(False).to_numpy(bool) if f.min is not None else np.zeros(m, bool)
                    high = (value > f.max).fillna(False).to_numpy(bool) if f.max is not None else np.zeros(m, bool)
                    if (low | high).any():
                        off = np.full(m, "", dtype=object)
                        if f.min is not None:
                            off[low] = f"{f.label}小于下限 {f.min:g}{SET_ASIDE_NOTE}"
                        if f.max is not None:
                            off[high] = f"{f.label}超出上限 {f.max:g}{SET_ASIDE_NOTE}"
                        shown_off = np.where(low | high, num(), "")
                        aside = _join(aside, off[codes])
                        aside_details = _join(aside_details, shown_off.astype(object)[codes])
                        value = value.where(~(low | high))
                else:
                    if f.min is not None:
                        flag(value < f.min, f"{f.label}小于下限 {f.min:g}", num)
                    if f.max is not None:
                        flag(value > f.max, f"{f.label}超出上限 {f.max:g}", num)
            if f.refers and ctx.refs is not None:
                value, refused, refused_detail = ctx.refs.resolve_detailed(f, value)
                flag(refused != "", refused.to_numpy(dtype=object), refused_detail.to_numpy(dtype=object))
            if f.choices:
                flag(value.notna() & ~value.isin(f.choices), f"{f.label}取值不在 {'/'.join(f.choices)} 之中",
                     lambda value=value: (f"{f.label}: '" + value.astype("string").fillna("") + "'").to_numpy(dtype=object))
            if f.kind == "str":
                flag(value.str.len() > f.length, f"{f.label}超过 {f.length} 个字符")
        # spread to the rows
        values = value.to_numpy()
        if values.dtype == object:
            values = values.copy()
            values[pd.isna(values)] = None
        out[f.name] = pd.Series(values[codes], index=df.index) if values.dtype != object else \
            pd.Series(values[codes], index=df.index, dtype=object)
        if (why != "").any():
            reasons = _join(reasons, why[codes])
            details = _join(details, said[codes])
    reasons_s = pd.Series(reasons, index=df.index, dtype=object)
    details_s = pd.Series(details, index=df.index, dtype=object)

    def flag_rows(mask, text, detail=None):
        nonlocal reasons_s, details_s
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            m = mask.to_numpy()
            add = np.full(n, "", dtype=object)
            add[m] = text
            reasons_s = pd.Series(_join(reasons_s.to_numpy(), add), index=df.index, dtype=object)
            if detail is not None:
                add = np.full(n, "", dtype=object)
                add[m] = np.asarray(detail, dtype=object)[m] if not isinstance(detail, str) else detail
                details_s = pd.Series(_join(details_s.to_numpy(), add), index=df.index, dtype=object)

    for f in ds.fields:
        if f.default_from:
            out[f.name] = out[f.name].where(out[f.name].notna(), out[f.default_from])
        if (f.required or f.name in ds.key):
            is_missing = out[f.name].isna()
            for source in (f.name, f.default_from):   # a malformed value is already reported; not twice
                if source in malformed:
                    is_missing &= ~malformed[source]
            flag_rows(is_missing, f"缺少{f.label}")
    for check in checks_of(ds):
        detail = check.detail   # a check may say which values failed it
        bad = check.bad(out)
        flag_rows(bad, check.reason, detail(out) if detail is not None and bad.any() else None)
    return (out, reasons_s, details_s, pd.Series(aside, index=df.index, dtype=object),
            pd.Series(aside_details, index=df.index, dtype=object))


def _convert(f: Field, s: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Convert one column; returns the values and where a present value was malformed."""
    if f.kind == "str":
        return s.astype(object).where(s.notna(), None), pd.Series(False, index=s.index)
    if f.kind in ("int", "float"):
        text = s.str.replace(",", "", regex=False).str.replace(r"%$", "", regex=True)
        num = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = s.notna() & num.isna()
        if f.kind == "int":
            frac = num.notna() & (num != np.floor(num))
            bad |= frac
            num = num.where(~frac)
        return num, bad
    # a date is a calendar day as written: read on UTC's clock so no zone moves it to another day
    ts = parse_timestamps(s, "UTC" if f.kind == "date" else None)
    bad = s.notna() & ts.isna()
    if f.kind == "date":
        return ts.dt.date.where(ts.notna(), None), bad
    return ts, bad


def _bad_text(f: Field) -> str:
    kinds = {"int": "不是整数", "float": "不是数字", "ts": "不是有效的日期时间", "date": "不是有效的日期"}
    return f"{f.label}{kinds.get(f.kind, '格式错误')}"


# ------------------------------------------------------------------ names to codes

class References:
    """The registries a name is looked up in (markets, canteens by name; districts by name,
    short name, adcode or former name), read from the hub once per file.

    A value that is a registered code stays; a registered name becomes its code; a name two
    entries share, or one the registry does not hold, is refused with the closest registered
    names in the reason. Districts are soft: a value that is no district of the city is kept
    as written (other cities' files name their own boroughs)."""

    REGISTRIES = {"markets": ("markets", "market_id", "name", "农贸市场"),
                  "canteens": ("canteens", "canteen_id", "name", "学校食堂")}

    def __init__(self, eng: Engine | None):
        self.eng = eng
        self._held: dict[str, tuple[set, dict, list]] = {}

    def _load(self, registry: str) -> tuple[set, dict, list]:
        if registry not in self._held:
            table, code, name, _ = self.REGISTRIES[registry]
            codes, names, shown = set(), {}, []
            if self.eng is not None:
                t = DATASETS[table].table
                with self.eng.connect() as conn:
                    for c, n in conn.execute(sa.select(t.c[code], t.c[name])):
                        codes.add(str(c))
                        if n:
                            names.setdefault(_name_key(n), set()).add(str(c))
                            shown.append(str(n))
            self._held[registry] = (codes, names, shown)
        return self._held[registry]

    def resolve(self, f: Field, value: pd.Series) -> tuple[pd.Series, pd.Series]:
        """Codes for the names in `value`, and per value why it was refused ('' when it was not)."""
        out, why, _ = self.resolve_detailed(f, value)
        return out, why

    def resolve_detailed(self, f: Field, value: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
        """As `resolve`, with a reason that does not vary with the value (`未登记的农贸市场`,
        `农贸市场名称对应多个编号`: the quarantine's reasons group) and a detail naming the value
        and the closest registered names."""
        why = pd.Series("", index=value.index, dtype=object)
        detail = pd.Series("", index=value.index, dtype=object)
        present = value.notna()
        if not present.any():
            return value, why, detail
        if f.refers == "districts":
            from workbench import geo

            mapping = {}
            for v in value[present].unique():
                d = geo.find(geo.FORMER_NAMES.get(str(v), v))
                mapping[v] = d.name if d else v
            return value.where(~present, value[present].map(mapping)), why, detail
        codes, names, shown = self._load(f.refers)
        if not codes:   # no registry to judge by: the values stay as written
            return value, why, detail
        label = self.REGISTRIES[f.refers][3]
        mapping, reasons = {}, {}
        for v in value[present].unique():
            v = str(v)
            if v in codes:
                mapping[v] = v
                continue
            hits = names.get(_name_key(v), set())
            if len(hits) == 1:
                mapping[v] = next(iter(hits))
            elif len(hits) > 1:
                reasons[v] = (f"{label}名称对应多个编号",
                              f"{f.label}: '{v}' 对应多个编号：{'、'.join(sorted(hits))}")
            else:
                import difflib

                close = difflib.get_close_matches(v, [*dict.fromkeys(shown), *sorted(codes)], n=3, cutoff=0.4)
                hint = f"最接近：{'、'.join(close)}" if close else "名录中没有相近的名称"
                reasons[v] = (f"未登记的{label}", f"{f.label}: '{v}' 未登记，{hint}")
        text = value.astype(object)
        out = text.where(~present, text[present].map(lambda v: mapping.get(str(v))))
        said = text[present].map(lambda v: reasons.get(str(v), ("", "")))
        why[present] = [r for r, _ in said]
        detail[present] = [d for _, d in said]
        return out.where(why == "", text), why, detail


def _name_key(name) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(name))).lower()


class _KeyRegistry:
    """Natural keys seen so far in this file (64-bit hashes), to catch repeats across chunks."""

    def __init__(self):
        self.hashes = np.empty(0, dtype=np.uint64)
        self.lines = np.empty(0, dtype=np.int64)

    def repeats(self, keys: pd.DataFrame, lines: np.ndarray) -> pd.Series:
        """For each row, the line of an earlier row with the same key (0 if none)."""
        h = pd.util.hash_pandas_object(keys.astype(str), index=False).to_numpy()
        first_line = np.zeros(len(h), dtype=np.int64)
        if len(self.hashes):
            pos = np.searchsorted(self.hashes, h)
            pos_c = np.minimum(pos, len(self.hashes) - 1)
            hit = self.hashes[pos_c] == h
            first_line[hit] = self.lines[pos_c[hit]]
        # repeats inside this chunk
        s = pd.Series(h)
        dup_in_chunk = s.duplicated(keep="first").to_numpy() & (first_line == 0)
        if dup_in_chunk.any():
            first = pd.Series(lines, index=h)[~pd.Index(h).duplicated(keep="first")]
            first_line[dup_in_chunk] = first.loc[h[dup_in_chunk]].to_numpy()
        new = (first_line == 0) & ~dup_in_chunk
        add = np.argsort(h[new], kind="stable")   # two sorted runs: the stable sort merges them in linear time
        self.hashes = np.concatenate([self.hashes, h[new][add]])
        self.lines = np.concatenate([self.lines, lines[new][add]])
        order = np.argsort(self.hashes, kind="stable")
        self.hashes, self.lines = self.hashes[order], self.lines[order]
        return pd.Series(first_line, index=keys.index)


# ---------------------------------------------------------------------------- writing

def records(df: pd.DataFrame, ds: Dataset | None = None) -> list[dict]:
    """Rows as dicts of plain Python values, None for missing (NaN/NaT/NA)."""
    cols = {}
    for c in df.columns:
        s = df[c]
        if ds is not None and c in {f.name for f in ds.fields if f.kind == "int"}:
            s = s.astype("Int64")
        arr = s.astype(object).to_numpy(copy=True)
        arr[pd.isna(arr)] = None
        cols[c] = arr
    names = list(cols)
    return [dict(zip(names, row)) for row in zip(*cols.values())]


def insert_new(conn: Connection, ds: Dataset, df: pd.DataFrame) -> int:
    """Insert rows whose natural key the hub does not hold yet; returns how many were new."""
    if df.empty:
        return 0
    table = ds.table
    if conn.dialect.name == "postgresql":
        return _insert_pg(conn, table, ds, df)
    return _insert_sqlite(conn, table, ds, df)


def upsert(conn: sa.Connection, dataset: str, df: pd.DataFrame, update: list[str]) -> tuple[int, int]:
    """Insert rows with new keys; update `update` columns of rows whose key exists and differs.
    Returns (inserted, updated)."""
    if df.empty:
        return 0, 0
    ds = DATASETS[dataset]
    t = ds.table
    (key,) = ds.key
    added = insert_new(conn, ds, df)
    keys = df[key].tolist()
    held = []
    for i in range(0, len(keys), 500):
        res = conn.execute(sa.select(t.c[key], *(t.c[c] for c in update)).where(t.c[key].in_(keys[i:i + 500])))
        held += [dict(r._mapping) for r in res]
    held_by = {h[key]: h for h in held}
    changed = []
    for rec in records(df[[key, *update]], ds):
        h = held_by.get(rec[key])
        if h is not None and any(_norm(rec[c]) != _norm(h[c]) for c in update):
            changed.append({"_key": rec[key], **{c: _py(rec[c]) for c in update}})
    if changed:
        stmt = t.update().where(t.c[key] == sa.bindparam("_key")).values({c: sa.bindparam(c) for c in update})
        conn.execute(stmt, changed)
    return added, len(changed)


def _py(v):
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _norm(v):
    if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, (pd.Timestamp, np.datetime64)) or hasattr(v, "isoformat"):
        return pd.Timestamp(v).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(v, (float, np.floating)):
        return round(float(v), 6)
    if isinstance(v, (np.integer,)):
        return int(v)
    return v


def _insert_sqlite(conn: Connection, table: sa.Table, ds: Dataset, df: pd.DataFrame) -> int:
    """INSERT OR IGNORE through the driver; timestamps in SQLAlchemy's SQLite text format."""
    cols = [c.name for c in table.columns if c.name in df.columns]
    kinds = {f.name: f.kind for f in ds.fields}
    data = {}
    for c in cols:
        col = df[c]
        if kinds.get(c) == "ts":   # SQLAlchemy's SQLite DATETIME text: 2025-01-01 08:11:00.000000
            stamps = pd.to_datetime(col)
            if getattr(stamps.dt, "tz", None) is not None:
                stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
            when = stamps.to_numpy(dtype="datetime64[us]")
            text = np.char.replace(np.datetime_as_string(when, unit="us"), "T", " ").astype(object)
            text[np.isnat(when)] = None
            data[c] = text
            continue
        elif kinds.get(c) == "date":
            codes, uniq = _distinct(col)
            col = pd.Series(np.array([None if _blank(d) else d.isoformat() if hasattr(d, "isoformat") else str(d)
                                      for d in uniq.tolist()], dtype=object)[codes], dtype=object)
        elif kinds.get(c) == "int":
            col = col.astype("Int64")
        arr = col.astype(object).to_numpy(copy=True)
        arr[pd.isna(arr)] = None
        data[c] = arr
    qcols = ", ".join(f'"{c}"' for c in cols)
    marks = ", ".join("?" for _ in cols)
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.executemany(f'INSERT OR IGNORE INTO "{table.name}" ({qcols}) VALUES ({marks})', zip(*data.values()))
        return cur.rowcount
    finally:
        cur.close()


def _insert_pg(conn: Connection, table: sa.Table, ds: Dataset, df: pd.DataFrame) -> int:
    """COPY straight into the table when none of the rows' keys is held (a first load: one pass, in
    a savepoint); else COPY into a temporary staging table, then INSERT … ON CONFLICT DO NOTHING."""
    import psycopg

    cols = [c.name for c in table.columns if c.name in df.columns]
    qcols = ", ".join(f'"{c}"' for c in cols)
    stage = f"_stage_{table.name}"
    cur = conn.connection.dbapi_connection.cursor()
    payload = _copy_text(df, ds, cols)
    cur.execute("SAVEPOINT wb_copy")
    try:
        with cur.copy(f'COPY "{table.name}" ({qcols}) FROM STDIN') as copy:
            copy.write(payload)
        taken = cur.rowcount   # a partitioned table's key trigger skips held keys (0014): count what it took
        cur.execute("RELEASE SAVEPOINT wb_copy")
        return taken if taken is not None and taken >= 0 else len(df)
    except psycopg.errors.UniqueViolation:   # a key the hub holds (or one twice): the careful way
        cur.execute("ROLLBACK TO SAVEPOINT wb_copy")
    cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table.name}" INCLUDING DEFAULTS) '
                f"ON COMMIT DELETE ROWS")
    cur.execute(f'TRUNCATE "{stage}"')
    with cur.copy(f'COPY "{stage}" ({qcols}) FROM STDIN') as copy:
        copy.write(payload)
    keys = ", ".join(f'"{k}"' for k in ds.key)
    cur.execute(f'INSERT INTO "{table.name}" ({qcols}) SELECT {qcols} FROM "{stage}" '
                f"ON CONFLICT ({keys}) DO NOTHING")
    n = cur.rowcount
    cur.execute(f'TRUNCATE "{stage}"')
    return n


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_column(s: pd.Series, kind: str | None) -> np.ndarray:
    """One column in COPY's text format (\\N for NULL), built per column, not per row."""
    if kind == "ts" or pd.api.types.is_datetime64_any_dtype(s.dtype):
        v = pd.to_datetime(s, errors="coerce")
        if getattr(v.dt, "tz", None) is not None:
            v = v.dt.tz_convert("UTC").dt.tz_localize(None)
        arr = v.to_numpy(dtype="datetime64[us]")
        out = np.datetime_as_string(arr, unit="us").astype(object)
        out[np.isnat(arr)] = "\\N"
        return out
    if kind in ("int", "float") or pd.api.types.is_numeric_dtype(s.dtype):
        num = pd.to_numeric(s, errors="coerce")
        if kind == "int":
            num = num.astype("Int64")
        out = num.astype(str).to_numpy(dtype=object)
        out[num.isna().to_numpy()] = "\\N"
        return out
    codes, uniq = _distinct(s)
    text = ["\\N" if v is None else v if type(v) is str else
            v.isoformat() if hasattr(v, "isoformat") else str(v) for v in uniq.tolist()]
    if any(ch in "".join(text[:-1]) for ch in "\\\t\n\r"):   # escape only when a value needs it
        text = [t.translate(_COPY_ESCAPES) for t in text[:-1]] + ["\\N"]
    return np.array(text, dtype=object)[codes]


def _copy_text(df: pd.DataFrame, ds: Dataset, cols: list[str]) -> bytes:
    """The rows of `df` as one COPY … FROM STDIN (text format) payload."""
    kinds = {f.name: f.kind for f in ds.fields}
    if df.empty or not cols:
        return b""
    columns = [_copy_column(df[c], kinds.get(c)).tolist() for c in cols]
    return ("\n".join(map("\t".join, zip(*columns))) + "\n").encode("utf-8")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------------------- corrections

@dataclass
class Written:
    """What writing a chunk did: new rows, corrections applied (old values kept in row_versions),
    re-sends identical to what the hub holds, corrections refused (first wins) and versions
    older than the hub's (by updated_at)."""

    new: int = 0
    updated: int = 0
    same: int = 0
    conflicts: int = 0
    older: int = 0


def held_rows(conn: Connection, ds: Dataset, df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The rows the hub holds for the frame's natural keys: the key columns and `cols`."""
    t = ds.table
    keys = list(ds.key)
    out = []
    kv = df[keys].drop_duplicates()
    step = 2000 if len(keys) == 1 else 400   # bound parameters per statement
    for i in range(0, len(kv), step):
        part = kv.iloc[i:i + step]
        if len(keys) == 1:
            cond = t.c[keys[0]].in_([_py(v) for v in part[keys[0]]])
        else:
            cond = sa.tuple_(*(t.c[k] for k in keys)).in_([tuple(_py(v) for v in r) for r in part.itertuples(index=False)])
        res = conn.execute(sa.select(*(t.c[k] for k in keys), *(t.c[c] for c in cols)).where(cond))
        out += [tuple(r) for r in res]
    return pd.DataFrame(out, columns=keys + cols, dtype=object)


def row_keys(ds: Dataset, df: pd.DataFrame) -> pd.Series:
    """The natural key of each row as the JSON text row_extras / row_versions / personal_data use
    (`["T001"]`, `["S1", "2026-01-05 08:00:00", "2026-01-05 08:00:00"]`); each distinct value once."""
    if df.empty:
        return pd.Series([], index=df.index, dtype=object)
    parts = []
    for k in ds.key:
        codes, uniq = _distinct(df[k])
        parts.append(np.array([json.dumps(_key_text(v), ensure_ascii=False) for v in uniq], dtype=object)[codes])
    text = parts[0]
    for p in parts[1:]:
        text = text + ", " + p
    return pd.Series("[" + text + "]", index=df.index, dtype=object)


def _key_text(v) -> str:
    n = _norm(v)
    return "" if n is None else str(n)


def _comparable(s: pd.Series, column: sa.Column) -> tuple[np.ndarray, np.ndarray]:
    """A column's values as `_norm` compares them (times to the second, floats to 6 places),
    vectorised, and where they are blank (None, NaN, NaT, '')."""
    s = pd.Series(s.to_numpy(dtype=object), dtype=object)
    blank = s.isna().to_numpy(dtype=bool) | (s.to_numpy(dtype=object) == "")
    kind = column.type
    if isinstance(kind, (sa.DateTime, sa.Date)):
        v = pd.to_datetime(s.where(~blank), errors="coerce", format="mixed")
        v = v.dt.floor("s") if isinstance(kind, sa.DateTime) else v.dt.normalize()
        return v.to_numpy(dtype="datetime64[ns]"), blank
    if isinstance(kind, (sa.Float, sa.Integer, sa.Numeric)):
        return pd.to_numeric(s.where(~blank), errors="coerce").astype("float64").round(6).to_numpy(), blank
    return s.where(~blank, None).to_numpy(dtype=object), blank


def _compare(conn: Connection, ds: Dataset, df: pd.DataFrame, present: set[str] | None = None
             ) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    """compare_with_hub, and per row and compared column whether the file's value differs."""
    table_cols = [c.name for c in ds.table.columns]
    cols = [c for c in table_cols if c in df.columns and c not in ds.key and (present is None or c in present)]
    state = pd.Series("new", index=df.index, dtype=object)
    held = held_rows(conn, ds, df, cols)
    diff = pd.DataFrame(False, index=df.index, columns=cols)
    if held.empty:
        return state, held, diff
    held = held.set_index(row_keys(ds, held).to_numpy())
    key = row_keys(ds, df)
    pos = held.index.get_indexer(key)
    has = pos >= 0
    if not has.any():
        return state, held, diff
    for c in cols:
        a, a_blank = _comparable(df[c][has], ds.table.c[c])
        b, b_blank = _comparable(held[c].iloc[pos[has]], ds.table.c[c])
        same = (a == b) | (a_blank & b_blank)
        diff.loc[has, c] = ~same
    differs = diff.loc[has].any(axis=1).to_numpy()
    st = np.where(differs, "differs", "same").astype(object)
    if "updated_at" in cols and differs.any():
        a, a_blank = _comparable(df["updated_at"][has], ds.table.c["updated_at"])
        b, b_blank = _comparable(held["updated_at"].iloc[pos[has]], ds.table.c["updated_at"])
        older = differs & ~a_blank & ~b_blank & (a < b)
        st[older] = "older"
    state[has] = st
    return state, held, diff


def compare_with_hub(conn: Connection, ds: Dataset, df: pd.DataFrame, present: set[str] | None = None
                     ) -> tuple[pd.Series, pd.DataFrame]:
    """Per row: 'new' (key not held), 'same', 'differs' or 'older' (its updated_at is before the
    hub's); and the held values of the columns compared (indexed by row_keys)."""
    state, held, _ = _compare(conn, ds, df, present)
    return state, held


def _blank(v) -> bool:
    return (v is None or (isinstance(v, float) and v != v) or v is pd.NaT or (isinstance(v, str) and v == "")
            or (isinstance(v, np.datetime64) and np.isnat(v)))


def write_rows(conn: Connection, ds: Dataset, df: pd.DataFrame, *, present: set[str] | None = None,
               file_sha256: str | None = None, corrections: str | None = None) -> Written:
    """Insert new rows; a row whose key the hub holds with other content is a correction: with
    the dataset's (or the profile's) `corrections: newest` it updates the row and its replaced
    values go to row_versions; with `first` it is counted as a conflict and the hub keeps its
    row. `present`: the columns the file gave (a column it lacks is not a correction to empty)."""
    w = Written()
    if df.empty:
        return w
    w.new = insert_new(conn, ds, df)
    if w.new == len(df):
        return w
    state, held, diff = _compare(conn, ds, df, present)
    # rows just inserted compare equal to themselves
    w.same = int((state == "same").sum()) - w.new
    w.older = int((state == "older").sum())
    differs = df[state == "differs"]
    if differs.empty:
        return w
    if (corrections or ds.corrections) == "first":
        w.conflicts = len(differs)
        return w
    t = ds.table
    keys = list(ds.key)
    now = _now()
    key_text = row_keys(ds, differs)
    versions = []
    for i, r in differs.iterrows():
        h = held.loc[key_text[i]]
        changed = [c for c in diff.columns if diff.at[i, c]]
        stmt = t.update().where(*(t.c[k] == _py(r[k]) for k in keys)).values({c: _py(_none(r[c])) for c in changed})
        conn.execute(stmt)
        versions.append({"dataset": ds.name, "row_key": key_text[i], "ts": now, "file_sha256": file_sha256,
                         "old_json": json.dumps({c: _norm(_py(h[c])) for c in changed}, ensure_ascii=False, default=str),
                         "new_json": json.dumps({c: _norm(_py(r[c])) for c in changed}, ensure_ascii=False, default=str)})
    conn.execute(row_versions.insert(), versions)
    w.updated = len(versions)
    return w


def _none(v):
    return None if _blank(v) else v


def _upsert(conn: Connection, table: sa.Table, rows: list[dict], keys: list[str], update: list[str]) -> None:
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
    for i in range(0, len(rows), 5000):
        conn.execute(stmt, rows[i:i + 5000])


def keep_extras(conn: Connection, ds: Dataset, key: pd.Series, extras: pd.DataFrame, lines, sha: str) -> int:
    """Columns the hub has no field for, kept with their row (row_extras; newest wins)."""
    if extras is None or extras.empty:
        return 0
    now = _now()
    # a column the hub does not know may hold a phone or an ID number (手机号码, 备注): masked here,
    # the original kept in the protected table as field "extra:<column>"
    masked, originals = {}, []
    for c in extras.columns:
        m, has = privacy.mask_text_series(extras[c])
        masked[c] = m.to_numpy(dtype=object)
        if has.any():
            originals += [{"dataset": ds.name, "row_key": key[i], "field": f"extra:{c}"[:64], "value": str(v)[:1024],
                           "file_sha256": sha, "stored_at": now} for i, v in extras[c][has].items()]
    rows = []
    names = list(masked)
    for k, line, cells in zip(key.tolist(), lines, zip(*masked.values())):
        data = {c: v for c, v in zip(names, cells) if v not in ("", None) and v == v}
        if data:
            rows.append({"dataset": ds.name, "row_key": k, "data": json.dumps(data, ensure_ascii=False),
                         "file_sha256": sha, "line": int(line), "updated_at": now})
    _upsert(conn, row_extras, rows, ["dataset", "row_key"], ["data", "file_sha256", "line", "updated_at"])
    _upsert(conn, personal_data, originals, ["dataset", "row_key", "field"], ["value", "file_sha256", "stored_at"])
    return len(rows)


def keep_personal(conn: Connection, ds: Dataset, key: pd.Series, values: dict[str, pd.Series], sha: str) -> int:
    """Personal values and the originals of masked texts, in the protected table (newest wins)."""
    now = _now()
    rows = [{"dataset": ds.name, "row_key": key[i], "field": name, "value": str(v)[:1024],
             "file_sha256": sha, "stored_at": now}
            for name, s in values.items() for i, v in s.items() if not _blank(v)]
    if not rows:
        return 0
    # a value replaced by a correction stays in the protected table as "<field>@<when it was stored>"
    t = personal_data
    held = {}
    keys = sorted({r["row_key"] for r in rows})
    for i in range(0, len(keys), 400):
        for k, f, v, sha_old, at in conn.execute(sa.select(t.c.row_key, t.c.field, t.c.value, t.c.file_sha256,
                                                           t.c.stored_at).where(
                t.c.dataset == ds.name, t.c.row_key.in_(keys[i:i + 400]), t.c.field.in_(list(values)))):
            held[(k, f)] = (v, sha_old, at)
    old = []
    for r in rows:
        h = held.get((r["row_key"], r["field"]))
        if h is not None and h[0] != r["value"]:
            old.append({"dataset": ds.name, "row_key": r["row_key"],
                        "field": f"{r['field']}@{pd.Timestamp(h[2]).isoformat(timespec='seconds')}",
                        "value": h[0], "file_sha256": h[1], "stored_at": now})
    _upsert(conn, personal_data, old, ["dataset", "row_key", "field"], ["value", "file_sha256", "stored_at"])
    _upsert(conn, personal_data, rows, ["dataset", "row_key", "field"], ["value", "file_sha256", "stored_at"])
    return len(rows)


def extras(dataset: str, eng: Engine | None = None, *, limit: int | None = None,
           source: bool = False) -> pd.DataFrame:
    """The columns a dataset's files brought that the hub has no field for, one row per record:
    its natural key's columns, then the extra columns (text as the file wrote them). `limit`:
    the newest records only; `source`: also the file (file_sha256), its line and when the
    columns were kept (kept_at)."""
    ds = DATASETS[dataset]
    t = row_extras
    query = sa.select(t.c.row_key, t.c.data, t.c.file_sha256, t.c.line, t.c.updated_at).where(t.c.dataset == dataset)
    if limit is not None:
        query = query.order_by(t.c.updated_at.desc(), t.c.row_key).limit(limit)
    with (eng or hub.engine()).connect() as conn:
        rows = conn.execute(query).all()
    recs = []
    for k, data, sha, line, kept in rows:
        rec = dict(zip(ds.key, json.loads(k)))
        rec.update(json.loads(data))
        if source:
            rec.update({"file_sha256": sha, "line": line, "kept_at": kept})
        recs.append(rec)
    return pd.DataFrame(recs, columns=None if recs else list(ds.key))


def versions(dataset: str, eng: Engine | None = None, *, limit: int | None = None) -> pd.DataFrame:
    """The corrections a dataset received: key, when, what was replaced and by what (in the
    order they came; `limit`: the newest only, newest first)."""
    t = row_versions
    query = sa.select(t).where(t.c.dataset == dataset)
    query = query.order_by(t.c.id) if limit is None else query.order_by(t.c.id.desc()).limit(limit)
    with (eng or hub.engine()).connect() as conn:
        return pd.DataFrame(conn.execute(query).mappings().all(), columns=[c.name for c in t.columns])


# ---------------------------------------------------------------------------- entry point

@dataclass
class Preview:
    """What a file would do, written nowhere (`--preview`, the 数据中台 upload)."""

    mapping: list[dict] = field(default_factory=list)   # column, field, label, unit conversion
    unknown: list[str] = field(default_factory=list)
    sample: list[dict] = field(default_factory=list)    # converted good rows (Chinese labels)
    quarantine_sample: list[dict] = field(default_factory=list)


def ingest_file(dataset: str, path: Path | str, eng: Engine | None = None, *,
                progress: bool = False, force: bool = False, profile: str | Path | Profile | None = None,
                preview: bool = False, who=None) -> IngestSummary:
    """Take one file into the hub. Raises IngestError when the file cannot be read.

    `profile`: how the source writes its files (workbench.store.profiles); `preview`: read and
    check everything, compare with the hub, write nothing (no raw copy, no rows, no quarantine).
    `who`: the workbench.access.Principal taking the file in (None: access.current(), i.e. the
    user of $WORKBENCH_USER or the operator at the shell; in a Voilà kernel without a signed-in
    user the file is refused). Each file taken in is one audit row "ingest.file" under `who`, with
    its name, sha256 and counts, in the transaction that marks it finished."""
    if dataset not in DATASETS:
        raise IngestError(path, f"未知的数据集 '{dataset}'，可选：{', '.join(DATASETS)}")
    ds = DATASETS[dataset]
    path = Path(path)
    if path.is_symlink():   # the raw copy and the hash never follow a link (a link to /etc/passwd …)
        raise IngestError(path, f"拒绝读取符号链接（指向 {os.readlink(path)}）：请给出文件本身")
    if not path.is_file():
        raise IngestError(path, "文件不存在 (no such file)")
    prof = _profile(profile, ds, path)
    eng = eng or hub.engine()
    if not preview:   # whose file it is, before anything is written
        who = _taker(who, path, eng)
    if preview:
        sha, raw_path = _sha256(path), None
    else:
        sha, raw_path = _sha256_and_keep(path)
    summary = IngestSummary(dataset, path.name, sha, profile=prof.name if prof else None)
    if preview:
        summary.preview = Preview()
    load = loader_of(ds)
    read_as = getattr(load, "read_as", None) or ds   # how the file's columns are named
    prepare = getattr(load, "prepare", None)

    file_id = None
    progress_ = _Progress()
    if not preview:
        try:   # any file a dead process left "running" is marked interrupted (one query, usually empty)
            mark_interrupted(eng)
        except sa.exc.SQLAlchemyError:
            pass
        with eng.begin() as conn:
            prev = conn.execute(sa.select(ingest_files).where(
                ingest_files.c.dataset == dataset, ingest_files.c.sha256 == sha)).mappings().first()
            if prev is not None and prev["status"] == "running":
                owner = _notes(prev).get("owner") or {}
                if _owner_alive(owner, _notes(prev).get("heartbeat")):
                    raise IngestError(path, f"该文件正由 {owner.get('host')} 上的进程 {owner.get('pid')} 接入，请等它结束后再试")
                prev = _mark_interrupted(conn, prev)
            if prev is not None and prev["status"] == "done" and not force:
                summary.skipped = True
                summary.rows_read = prev["rows_read"]
                summary.duplicates = prev["rows_read"]
                summary.encoding = prev["encoding"]
                return summary
            resume = _notes(prev).get("resume") if prev is not None and prev["status"] in ("interrupted", "failed") else None
            if resume and (prev["profile"] or None) == summary.profile and resume.get("line"):
                progress_ = _Progress.of(resume)
                progress_.restore(summary)
            running = json.dumps({"owner": _owner(), "heartbeat": _now().isoformat(), "resume": progress_.state()},
                                 ensure_ascii=False)
            if prev is None:
                file_id = conn.execute(ingest_files.insert().values(
                    sha256=sha, dataset=dataset, filename=path.name, size_bytes=path.stat().st_size,
                    raw_path=str(raw_path), received_at=_now(), status="running", profile=summary.profile,
                    notes=running,
                )).inserted_primary_key[0]
            else:
                file_id = prev["file_id"]
                conn.execute(ingest_files.update().where(ingest_files.c.file_id == file_id).values(
                    status="running", received_at=_now(), message=None, filename=path.name, profile=summary.profile,
                    notes=running))

    def finish(status: str, message: str | None = None):
        if preview:
            return
        notes = {**summary.notes(), "who": getattr(who, "actor", str(who))}
        counts = dict(rows_read=summary.rows_read, loaded=summary.loaded,
                      quarantined=summary.quarantined, duplicates=summary.duplicates)
        if status != "done":   # what is committed, and where a re-run goes on from
            notes["resume"] = progress_.state()
            counts = progress_.counts()
        with eng.begin() as conn:
            conn.execute(ingest_files.update().where(ingest_files.c.file_id == file_id).values(
                status=status, message=message and message[:1024], finished_at=_now(), encoding=summary.encoding,
                notes=json.dumps(notes, ensure_ascii=False), **counts))
            from workbench import access, audit

            if status == "interrupted":
                audit.record(conn, "ingest.interrupted", access.system("数据接入"), subject=path.name,
                             dataset=dataset, sha256=sha, message=message, committed_line=progress_.line)
            else:   # the file taken in (or stopped, with what it committed), under whoever took it in
                audit.record(conn, "ingest.file", who, subject=path.name, dataset=dataset, sha256=sha,
                             status=status, **counts, **({"message": message[:300]} if message else {}))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"{ds.label} {path.name}",
                   leave=False)
    plan = ctx = reading = None
    in_memory = eng.dialect.name == "sqlite" and eng.url.database in (None, "", ":memory:")   # one connection per thread
    writer = None if preview or not PIPELINE or in_memory else _Writer()
    try:
        _, summary.encoding, chunks = _open_chunks(read_as, path, prof, bar)
        header = next(chunks)
        summary.mapping = [{"column": h} for h in _unique_header(header)]   # until the plan says more
        plan = _column_plan(read_as, header, path, prof)
        ctx = _context(ds, plan, prof, path, eng, summary)
        reading = _READING.set(ctx)
        takes_ctx = prepare is not None and _positional(prepare) >= 3
        summary.mapping = _mapping(ds, plan, ctx)
        ctx.private_columns = _private_columns(ds, read_as, plan)
        summary.unknown_columns = [plan.header[i] for i in plan.unknown]
        if preview:
            summary.preview.mapping, summary.preview.unknown = summary.mapping, summary.unknown_columns
        keys = _KeyRegistry()
        first = True
        for rows, lines, malformed in chunks:
            frame, extra = _frames(read_as, plan, rows, prof)
            if prepare is not None:   # prepare(frame, path) or prepare(frame, path, ctx): ctx.refs.eng is the hub
                frame = prepare(frame, path, ctx) if takes_ctx else prepare(frame, path)
            if first:
                _check_units(ds, plan, frame, ctx, prof, path)
                first = False
            _load_chunk(eng, ds, summary, file_id, sha, path, frame, extra, rows, plan, lines, malformed, keys,
                        ctx, prof, preview, writer, progress_)
        if writer is not None:
            writer.close()
            writer = None
    except IngestError as exc:
        # what a mapping screen needs when the file stops (a unit to declare, a column to name)
        exc.header = summary.mapping and [m["column"] for m in summary.mapping]
        exc.mapping = _mapping(ds, plan, ctx) if plan is not None and ctx is not None else None
        writer = _stop(writer)
        finish("failed", exc.problem)
        raise
    except Exception as exc:  # never leave a file marked running without a word
        writer = _stop(writer)
        finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    except BaseException:   # Ctrl-C, SystemExit: what is committed stays, a re-run goes on from there
        writer = _stop(writer)
        finish("interrupted", _interrupted_message(progress_.line, "接入被中止"))
        raise
    finally:
        if writer is not None:   # stopped early: let the chunk in flight end, keep the first error
            writer.close(finish=False)
        if reading is not None:
            _READING.reset(reading)
        if bar is not None:
            bar.close()
    if summary.rows_read == 0:
        finish("failed", "没有数据行 (no data rows below the header)")
        raise IngestError(path, "没有数据行：表头下面是空的 (no data rows)")
    finish("done")
    return summary


def _taker(who, path: Path, eng: Engine):
    """The Principal a file is taken in as (see ingest_file's `who`); IngestError when nobody."""
    if who is not None:
        return who
    from workbench import access

    try:
        who = access.current(eng)
    except access.AccessDenied as exc:
        raise IngestError(path, exc.problem) from None
    if who is None:
        raise IngestError(path, "请先登录：页面没有已验证的用户，不能接入数据（接入的每个文件都记在接入人名下）")
    return who


# ---------------------------------------------------------------- interrupted ingests

STALE_AFTER_S = 600   # a running file whose owner is on another host and silent this long is interrupted


@dataclass
class _Progress:
    """What an ingest has committed so far (kept on its ingest_files row, in the transaction of
    each chunk): counts, the quarantine reasons, and the last line committed. A re-run of an
    interrupted file starts from these and reads on after `line`."""

    line: int = 0
    rows_read: int = 0
    loaded: int = 0
    updated: int = 0
    conflicts: int = 0
    older: int = 0
    quarantined: int = 0
    set_aside: int = 0
    duplicates: int = 0
    damaged: int = 0
    reasons: dict = field(default_factory=dict)

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, state: dict) -> "_Progress":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in (state or {}).items() if k in names})

    def counts(self) -> dict:
        return dict(rows_read=self.rows_read, loaded=self.loaded, quarantined=self.quarantined,
                    duplicates=self.duplicates)

    def after(self, w: "Written", n_read: int, n_good: int, bad_rows: list, last_line: int,
              aside_rows: list = ()) -> "_Progress":
        reasons = dict(self.reasons)
        damaged = _count_reasons(reasons, list(bad_rows) + list(aside_rows))
        return _Progress(line=max(self.line, last_line), rows_read=self.rows_read + n_read,
                         loaded=self.loaded + w.new, updated=self.updated + w.updated,
                         conflicts=self.conflicts + w.conflicts, older=self.older + w.older,
                         quarantined=self.quarantined + len(bad_rows), set_aside=self.set_aside + len(aside_rows),
                         duplicates=self.duplicates + n_good - w.new - w.updated - w.conflicts - w.older,
                         damaged=self.damaged + damaged, reasons=reasons)

    def restore(self, summary: "IngestSummary") -> None:
        for name in ("rows_read", "loaded", "updated", "conflicts", "older", "quarantined", "set_aside", "duplicates",
                     "damaged"):
            setattr(summary, name, getattr(self, name))
        summary.reasons = dict(self.reasons)
        summary.resumed_from = self.line


def _notes(row) -> dict:
    try:
        return json.loads(row["notes"] or "{}") if row is not None else {}
    except (TypeError, ValueError):
        return {}


def _owner() -> dict:
    import psutil

    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "started": round(me.create_time(), 2)}


def _owner_alive(owner: dict, heartbeat: str | None) -> bool:
    """Whether the process that marked a file running still runs: on this host by its pid and
    start time (a pid reused by another process does not count), elsewhere by its heartbeat."""
    import psutil

    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        try:
            beat = datetime.fromisoformat(heartbeat) if heartbeat else None
        except ValueError:
            beat = None
        return beat is not None and (_now() - beat).total_seconds() < STALE_AFTER_S
    try:
        p = psutil.Process(int(owner.get("pid")))
        return abs(p.create_time() - float(owner.get("started") or 0)) < 1 and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, TypeError, ValueError):
        return False


def _interrupted_message(line: int, why: str) -> str:
    done = f"第 {line} 行及以前已入库" if line else "尚无数据入库"
    return f"{why}：{done}；重新接入同一文件将从中断处继续，不会重复隔离或计为重复"


def _mark_interrupted(conn: Connection, row) -> dict:
    """A file left "running" by a process that is gone: marked interrupted (with what was
    committed) and audited; returns the row as it is now."""
    from workbench import access, audit

    notes = _notes(row)
    resume = notes.get("resume") or {}
    owner = notes.get("owner") or {}
    message = _interrupted_message(resume.get("line") or 0,
                                   f"接入中断（进程 {owner.get('pid', '?')} 已不在）")
    counts = _Progress.of(resume).counts() if resume else {}
    conn.execute(ingest_files.update().where(ingest_files.c.file_id == row["file_id"]).values(
        status="interrupted", message=message, finished_at=_now(),
        notes=json.dumps({"resume": resume}, ensure_ascii=False), **counts))
    audit.record(conn, "ingest.interrupted", access.system("数据接入"), subject=row["filename"],
                 dataset=row["dataset"], sha256=row["sha256"], message=message, committed_line=resume.get("line"))
    return conn.execute(sa.select(ingest_files).where(ingest_files.c.file_id == row["file_id"])).mappings().first()


def mark_interrupted(eng: Engine | None = None) -> list[str]:
    """Every file left "running" by a process that is gone, marked interrupted (the CLI and the
    hub's status call this); returns their names."""
    eng = eng or hub.engine()
    out = []
    with eng.begin() as conn:
        for row in conn.execute(sa.select(ingest_files).where(ingest_files.c.status == "running")).mappings().all():
            notes = _notes(row)
            if not _owner_alive(notes.get("owner") or {}, notes.get("heartbeat")):
                _mark_interrupted(conn, row)
                out.append(row["filename"])
    return out



def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _profile(profile, ds: Dataset, path: Path) -> Profile | None:
    from workbench.store import profiles

    if profile is None or isinstance(profile, Profile):
        prof = profile
    else:
        try:
            prof = profiles.load(profile)
        except profiles.ProfileError as exc:
            raise IngestError(path, f"配置无法使用：{exc}")
    if prof is not None and prof.dataset != ds.name:
        raise IngestError(path, f"配置“{prof.name}”是{DATASETS[prof.dataset].label}（{prof.dataset}）的，"
                                f"不能用于{ds.label}（{ds.name}）")
    return prof


_READING: contextvars.ContextVar["ReadContext | None"] = contextvars.ContextVar("ingest_reading", default=None)


def reading() -> "ReadContext | None":
    """The context of the file being read, while `ingest_file` reads it (None otherwise): what a
    department's row check needs beyond the rows, e.g. the hub being loaded (`.refs.eng`)."""
    return _READING.get()


def _context(ds: Dataset, plan: ColumnPlan, prof: Profile | None, path: Path, eng, summary) -> ReadContext:
    ctx = ReadContext(tz=(prof.timezone if prof else None), refs=References(eng), profile=prof,
                      file_sha256=summary.sha256, path=path, warnings=summary.warnings)
    if prof is not None:
        ctx.ambiguous, ctx.nonexistent, ctx.date_format = prof.ambiguous, prof.nonexistent, prof.date_format
        for col in plan.missing:
            summary.warnings.append(f"{path.name}：配置“{prof.name}”中的列“{col}”不在文件中")
    names = {f.name for f in ds.fields}
    given = set(plan.fields.values())
    for name, text in plan.units.items():
        f = ds.field(name) if name in names else None
        if f is None or name not in given:   # a profile's unit for a column this file lacks: nothing converted
            continue
        column = plan.column_of(name) or name
        if f.unit_field:
            continue   # the unit is a value of the record (rapid tests: 单位), written in by _frames
        if not f.unit:
            if plan.unit_from.get(name) == "配置":
                summary.warnings.append(f"{f.label}没有单位，配置中的单位“{text}”未使用")
            continue
        unit = units.parse(text)
        target = units.of_field(f.unit)
        if unit is None or unit.quantity != target.quantity:
            ctx.bad_units[name] = (column, text)
            summary.warnings.append(f"{path.name}：列“{column}”的单位“{text}”无法识别（{f.label}应为{target.label}等"
                                    f"{'/'.join(u.name for u in [target, *units.alternatives(target)])}），"
                                    f"该列有值的行已隔离")
        else:
            ctx.units[name] = unit
            if unit != target:
                summary.conversions.append(f"{f.label}：{unit.name} → {target.name}（列“{column}”，{plan.unit_from[name]}声明）")
    return ctx


def _frames(ds: Dataset, plan: ColumnPlan, rows: list[list[str]], prof: Profile | None
            ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The mapped fields (text) and the extra columns of a chunk of rows."""
    width = len(plan.header)
    full = pd.DataFrame(rows, columns=range(width), dtype=object) if rows else pd.DataFrame(columns=range(width), dtype=object)
    frame = full[list(plan.fields)].copy()
    frame.columns = list(plan.fields.values())
    extra = None
    if plan.extra:
        extra = full[plan.extra].copy()
        extra.columns = [plan.header[i] for i in plan.extra]
    if prof is not None:
        for name, value in prof.defaults.items():
            if name not in frame:
                frame[name] = value
            else:
                frame[name] = frame[name].where(frame[name].astype("string").str.strip().fillna("") != "", value)
    for name, text in plan.units.items():
        f = next((f for f in ds.fields if f.name == name), None)
        if f is not None and f.unit_field:   # 检测值(%) → 单位 %, where the row has none
            if f.unit_field not in frame:
                frame[f.unit_field] = text
            else:
                frame[f.unit_field] = frame[f.unit_field].where(
                    frame[f.unit_field].astype("string").str.strip().fillna("") != "", text)
    for f in ds.fields:
        if f.criterion and f.name in frame and f.criterion not in frame:
            frame[f.criterion] = frame[f.name]   # the standard as written, beside its number
    return frame, extra


def _map_values(frame: pd.DataFrame, prof: Profile | None, plan: ColumnPlan, ds: Dataset
                ) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """A profile's value maps; values a map does not cover are reasons (the row is quarantined)."""
    reasons = pd.Series("", index=frame.index, dtype=object)
    details = pd.Series("", index=frame.index, dtype=object)
    if prof is None or not prof.values:
        return frame, reasons, details
    frame = frame.copy()
    for name, mapping in prof.values.items():
        if name not in frame:
            continue
        keep = mapping.get("*") == "keep"
        table = {_name_key(k): v for k, v in mapping.items() if k != "*"}
        text = frame[name].astype("string").str.strip()
        mapped = text.map(lambda v: table.get(_name_key(v)) if v is not pd.NA else None)
        uncovered = text.notna() & (text != "") & mapped.isna()
        frame[name] = mapped.where(~uncovered, text if keep else None).astype(object)
        if not keep and uncovered.any():
            column = plan.column_of(name) or name
            label = ds.field(name).label
            reasons[uncovered] = f"值映射未覆盖：{label}"
            details[uncovered] = f"列“{column}”的值 '" + text[uncovered].str.slice(0, 40) + "' 不在配置的 values." + name + " 中"
    return frame, reasons, details


def _check_units(ds: Dataset, plan: ColumnPlan, frame: pd.DataFrame, ctx: ReadContext, prof, path) -> None:
    """Stop with one message when a column is implausible in its unit and plausible in another."""
    for f in ds.fields:
        if not f.unit or f.kind != "float" or f.name not in frame or f.name in ctx.bad_units:
            continue
        rng = units.plausible_range(ds.name, f.name, prof.plausible if prof else None)
        if rng is None:
            continue
        target = units.of_field(f.unit)
        claimed = ctx.units.get(f.name, target)
        text = frame[f.name].astype("string").str.strip().str.replace(",", "", regex=False)
        values = pd.to_numeric(text, errors="coerce")
        alt = units.suggest(values, claimed, target, rng)
        if alt is None:
            continue
        column = plan.column_of(f.name) or f.name
        share = units.share_outside(units.convert(values.dropna(), claimed, target), rng)
        how = f"按{plan.unit_from.get(f.name, '默认')}的单位 {claimed.name}" if f.name in ctx.units else f"按默认单位 {claimed.name}"
        raise IngestError(path, (
            f"列“{column}”（{f.label}）的数值{how} 不合理：{share:.0%} 超出 {rng[0]:g}~{rng[1]:g} {target.name}；"
            f"按 {alt.name}（{alt.label}）则合理。请在表头注明单位（如“{column}({alt.name})”），"
            f"或在配置 units 中写 {f.name}: {alt.name}"))


class _Writer:
    """One chunk's transaction at a time, in a thread of its own, while the next chunk is read and
    checked: the database's work (SQLite's pages, PostgreSQL's COPY and index upkeep in its own
    process) overlaps ours. Chunks commit in file order; a failure is raised at the next submit
    or at `close`, and nothing after it is written."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        self.pending = None

    def wait(self) -> None:
        if self.pending is not None:
            future, then = self.pending
            self.pending = None
            then(future.result())

    def submit(self, commit, then) -> None:
        self.wait()
        self.pending = (self.pool.submit(contextvars.copy_context().run, commit), then)

    def close(self, finish: bool = True) -> None:
        try:
            if finish:
                self.wait()
            elif self.pending is not None:
                self.pending[0].cancel()
                try:
                    self.pending[0].result()
                except Exception:  # noqa: BLE001 - already failing: the first error is the one raised
                    pass
        finally:
            self.pool.shutdown(wait=True)


def _stop(writer: "_Writer | None") -> None:
    """Stop a failing file's writer (the chunk in flight ends or is cancelled) before its row is
    marked, so the row's committed progress is the last chunk really committed."""
    if writer is not None:
        writer.close(finish=False)
    return None


def _load_chunk(eng, ds, summary, file_id, sha, path, frame, extra, rows, plan, lines, malformed, keys,
                ctx, prof, preview, writer: "_Writer | None" = None, progress_: "_Progress | None" = None):
    skip_to = summary.resumed_from or 0   # a resumed file: lines up to here were committed by the run it resumes
    if skip_to:
        malformed = [m for m in malformed if m[0] > skip_to]
    fresh = lines > skip_to
    n_read = int(fresh.sum()) + len(malformed)
    summary.rows_read += n_read
    frame, map_reasons, map_details = _map_values(frame, prof, plan, ds)
    map_fields = list(prof.values) if prof is not None else []
    values, reasons, details, aside, aside_details = check_values(ds, frame, ctx)
    hit = map_reasons != ""
    if hit.any():   # the value the map left empty is not "missing" as well
        for name in map_fields:
            where = hit & map_details.str.contains(f" values.{name} 中", regex=False)
            if where.any():
                drop = f"缺少{ds.field(name).label}"
                reasons[where] = reasons[where].map(lambda r: "; ".join(x for x in r.split("; ") if x != drop))
        reasons[hit] = map_reasons[hit] + np.where(reasons[hit] == "", "", "; ") + reasons[hit]
        details[hit] = map_details[hit] + np.where(details[hit] == "", "", "; ") + details[hit]
    bad_now = (reasons != "") & (aside != "")   # a row quarantined whole keeps its set-aside values' reasons too
    if bad_now.any():
        reasons[bad_now] = reasons[bad_now] + "; " + aside[bad_now].str.replace(SET_ASIDE_NOTE, "", regex=False)
        details[bad_now] = details[bad_now] + np.where(details[bad_now] == "", "", "; ") + aside_details[bad_now]
    good = reasons == ""
    load = loader_of(ds)
    if good.any():
        key = list(getattr(load, "repeat_key", None) or ds.key)
        rep = keys.repeats(values.loc[good, key], lines[good.to_numpy()])
        rep_rows = rep[rep > 0]
        reasons.loc[rep_rows.index] = "文件内主键重复"
        details.loc[rep_rows.index] = "与文件第 " + rep_rows.astype(str) + " 行相同"
        good = reasons == ""
    if skip_to:   # the repeats above still know the committed rows' keys
        good = good & fresh
        if n_read == 0:
            return
    personal = split_personal(ds, values)
    bad = ~good.to_numpy() & fresh
    header = plan.header
    bad_rows = [
        (int(line), reason, detail, dict(zip(header, rows[pos])))
        for pos, (line, reason, detail) in zip(np.flatnonzero(bad), zip(lines[bad], reasons[bad], details[bad]))
    ] + malformed
    set_aside = (good.to_numpy() & fresh & (aside != "").to_numpy())   # loaded, one value or more kept apart
    aside_rows = [
        (int(line), reason, detail, dict(zip(header, rows[pos])))
        for pos, (line, reason, detail) in zip(np.flatnonzero(set_aside),
                                               zip(lines[set_aside], aside[set_aside], aside_details[set_aside]))
    ]
    bad_rows, kept_apart = _mask_quarantined(bad_rows, ctx.private_columns)
    aside_rows, aside_apart = _mask_quarantined(aside_rows, ctx.private_columns)
    kept_apart += aside_apart
    good_values = values[good]
    present = set(frame.columns)
    if preview:
        _preview_chunk(eng, ds, summary, good_values, present, bad_rows + aside_rows,
                       prof.corrections if prof else None)
    else:
        last_line = max([int(lines[fresh].max()) if fresh.any() else 0] + [m[0] for m in bad_rows])

        def commit() -> Written:
            now = _now()
            with eng.begin() as conn:
                w = _commit_chunk(conn, now)
                if progress_ is not None and file_id is not None:   # what is committed, in the same transaction
                    nxt = progress_.after(w, n_read, len(good_values), bad_rows, last_line, aside_rows)
                    conn.execute(ingest_files.update().where(ingest_files.c.file_id == file_id).values(
                        **nxt.counts(), notes=json.dumps({"owner": _owner(), "heartbeat": now.isoformat(),
                                                          "resume": nxt.state()}, ensure_ascii=False)))
            if progress_ is not None and file_id is not None:
                progress_.__dict__.update(nxt.__dict__)
            return w

        def _commit_chunk(conn, now) -> Written:
            if load is not None:
                res = load(conn, ds, good_values, **_write_args(load, present=present, file_sha256=sha,
                                                                corrections=prof.corrections if prof else None,
                                                                ctx=ctx))
            else:
                res = write_rows(conn, ds, good_values, present=present, file_sha256=sha,
                                 corrections=prof.corrections if prof else None)
            w = res if isinstance(res, Written) else Written(new=int(res), same=len(good_values) - int(res))
            if not good_values.empty and (extra is not None or personal):
                key_text = row_keys(ds, good_values)
                if extra is not None:
                    keep_extras(conn, ds, key_text, extra[good], lines[good.to_numpy()], sha)
                if personal:
                    keep_personal(conn, ds, key_text, {n: s[good] for n, s in personal.items()}, sha)
            if kept_apart:   # the quarantined rows' personal cells, whole, in the protected table
                by_line: dict[int, dict] = {}
                for line, column, v in kept_apart:
                    by_line.setdefault(line, {})[column] = v
                keep_quarantined(conn, ds.name, sha, list(by_line), list(by_line.values()), now)
            if bad_rows or aside_rows:   # a value set aside: its row as the file had it, the reason says which
                conn.execute(quarantine.insert(), [
                    {"dataset": ds.name, "file_sha256": sha, "filename": path.name, "line": line,
                     "reason": reason[:512], "detail": (detail or None) and detail[:1024],
                     "row_json": json.dumps(row, ensure_ascii=False, default=str), "quarantined_at": now}
                    for line, reason, detail, row in bad_rows + aside_rows
                ])
            return w

        def count(w: Written) -> None:
            summary.loaded += w.new
            summary.updated += w.updated
            summary.conflicts += w.conflicts
            summary.older += w.older
            summary.duplicates += len(good_values) - w.new - w.updated - w.conflicts - w.older

        if writer is None:
            count(commit())
        else:
            writer.submit(commit, count)
    summary.quarantined += len(bad_rows)
    summary.set_aside += len(aside_rows)
    summary.damaged += _count_reasons(summary.reasons, bad_rows + aside_rows)


def _count_reasons(reasons: dict, bad_rows) -> int:
    """Adds the rows' quarantine reasons to `reasons`; returns how many rows are damaged lines."""
    damaged = 0
    for _, reason, _, _ in bad_rows:
        if reason in DAMAGED:
            damaged += 1
        for r in reason.split("; "):
            reasons[r] = reasons.get(r, 0) + 1
    return damaged



def _private_columns(ds: Dataset, read_as: Dataset, plan: ColumnPlan) -> dict:
    """The file's columns that hold personal data (masked by their field's mask) or free text
    (phone and ID numbers in it masked): what quarantine must not keep in clear."""
    out = {}
    fields = {f.name: f for f in read_as.fields} | {f.name: f for f in ds.fields}
    for i, name in plan.fields.items():
        f = fields.get(name)
        if f is not None and f.personal:
            out[plan.header[i]] = privacy.MASKS.get(name, privacy.mask_name)
        elif f is not None and f.free_text:
            out[plan.header[i]] = privacy.mask_text
    return out


def _mask_quarantined(bad_rows: list, private: dict) -> tuple[list, list]:
    """Quarantined rows with their personal cells masked, and those cells' originals
    (line, column, text) for the protected table (personal_data, dataset "quarantine", row_key
    [dataset, file sha256, line]): the row stays whole for those allowed to see it."""
    if not bad_rows:
        return bad_rows, []
    out, apart = [], []
    for line, reason, detail, row in bad_rows:
        masked, originals = _mask_row(row, private)
        apart += [(line, c, v) for c, v in originals.items()]
        if detail:   # the offending values it quotes: phone and ID numbers masked there too
            detail = privacy.mask_text(detail)
        out.append((line, reason, detail, masked))
    return out, apart


def _mask_row(row: dict, private: dict) -> tuple[dict, dict]:
    """A row as a file had it, with personal cells masked by their field's mask and phone or ID
    numbers in every other cell masked (privacy.mask_text); and the originals of what changed."""
    masked, originals = dict(row), {}
    for column, v in row.items():
        if not isinstance(v, str) or not v:
            continue
        m = private.get(column, privacy.mask_text)(v)
        if m != v:
            masked[column], originals[column] = m, v
    return masked, originals


def keep_quarantined(conn: Connection, dataset: str, sha256: str, lines, originals_per_row: list[dict],
                     now: datetime | None = None) -> int:
    """The originals of the cells `mask_quarantined` masked, in the protected table: personal_data
    with dataset "quarantine", row_key JSON [dataset, sha256, line], field = the column. With the
    masked row in quarantine.row_json the row stays whole for those allowed to see it."""
    now = now or _now()
    rows = [{"dataset": "quarantine", "row_key": json.dumps([dataset, sha256, int(line)], ensure_ascii=False),
             "field": str(column)[:64], "value": str(v)[:1024], "file_sha256": sha256, "stored_at": now}
            for line, originals in zip(lines, originals_per_row) for column, v in (originals or {}).items()]
    _upsert(conn, personal_data, rows, ["dataset", "row_key", "field"], ["value", "file_sha256", "stored_at"])
    return len(rows)


def split_personal(ds: Dataset, values: pd.DataFrame) -> dict[str, pd.Series]:
    """Personal data at the door: the record's personal fields are taken out for the protected
    table, and phone and ID numbers typed into free text are masked in place (workbench.privacy),
    their originals taken out. Changes `values`; returns {field: values to keep apart}."""
    out: dict[str, pd.Series] = {}
    for f in ds.fields:
        if f.name not in values:
            continue
        if f.personal:
            out[f.name] = values[f.name]
        elif f.free_text:
            masked, has = privacy.mask_text_series(values[f.name])
            if has.any():
                out[f.name] = values[f.name].where(has)
                values[f.name] = masked
    return out


def mask_quarantined(rows: list[dict], dataset: str, profile: Profile | None = None) -> tuple[list[dict], list[dict]]:
    """Rows as a source sent them (column → text), made fit for the quarantine table: cells of
    columns that name a personal field masked by its mask, phone and ID numbers in any other cell
    masked. Returns the masked rows and, per row, the originals of the cells that changed
    ({column: text}), which belong in personal_data (dataset "quarantine"), as ingest_file keeps them."""
    ds = DATASETS[dataset]
    read_as = _read_as(dataset)
    hmap = _header_map(read_as, profile)
    fields = {f.name: f for f in read_as.fields} | {f.name: f for f in ds.fields}
    out, kept = [], []
    for row in rows:
        private = {}
        for column in row:
            f = fields.get(_match_header(hmap, column)[0] or "")
            if f is not None and f.personal:
                private[column] = privacy.MASKS.get(f.name, privacy.mask_name)
        masked, originals = _mask_row(row, private)
        out.append(masked)
        kept.append(originals)
    return out, kept


def _takes(fn, *names: str) -> set[str]:
    """Which of `names` a loader (or its prepare) accepts as keywords."""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return set(names)
    return {n for n in names if n in params}


def _positional(fn) -> int:
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 99
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _write_args(load, **args) -> dict:
    """The convention for loaders: `load(conn, ds, values, *, present=, file_sha256=, corrections=,
    ctx=)` gets each of these keywords its signature names (or all with **kw), so it can call
    write_rows as the plain path does (a column its file lacks is no correction to empty); `ctx` is
    the ReadContext (profile, file hash, hub engine in ctx.refs.eng). `prepare(frame, path, ctx)`
    gets the same ReadContext when it takes three positional arguments."""
    return {k: v for k, v in args.items() if k in _takes(load, *args)}


def _shown(v, f: Field) -> str:
    """A converted value as a person checks it: times in the city's clock, numbers rounded."""
    if _blank(v) or (f.kind == "ts" and pd.isna(v)):
        return ""
    if f.kind == "ts":
        from workbench import clock

        return clock.to_local(pd.Timestamp(v)).strftime("%Y-%m-%d %H:%M")
    if f.kind == "float":
        return f"{float(v):.4g}"
    return str(v)


def _mapping(ds: Dataset, plan: ColumnPlan, ctx: ReadContext) -> list[dict]:
    out = []
    labels = {f.name: f for f in ds.fields}
    for i, h in enumerate(plan.header):
        name = plan.fields.get(i)
        f = labels.get(name)
        conv = ""
        if name in ctx.units and f is not None and f.unit and ctx.units[name].name != f.unit:
            conv = f"{ctx.units[name].name} → {f.unit}"
        out.append({"column": h, "field": name or ("~" if i in plan.aside else None),
                    "label": f.label if f else ("保留在原行（未映射）" if i in plan.extra else ""),
                    "unit": conv})
    return out


def _preview_chunk(eng, ds, summary, good_values, present, bad_rows, corrections=None) -> None:
    with eng.connect() as conn:
        state, _ = compare_with_hub(conn, ds, good_values, present) if not good_values.empty else (pd.Series(dtype=object), None)
    policy = corrections or ds.corrections
    summary.loaded += int((state == "new").sum())
    summary.updated += int((state == "differs").sum()) if policy == "newest" else 0
    summary.conflicts += int((state == "differs").sum()) if policy == "first" else 0
    summary.older += int((state == "older").sum())
    summary.duplicates += int((state == "same").sum())
    pv = summary.preview
    for _, r in good_values.head(5 - len(pv.sample)).iterrows():   # the caller shown masked, as everywhere
        pv.sample.append({f.label: (privacy.MASKS.get(f.name, privacy.mask_name)(_shown(r[f.name], f))
                                    if f.personal and not _blank(r[f.name]) else _shown(r[f.name], f))
                          for f in ds.fields if f.name in present or not _blank(r[f.name])})
    if len(pv.quarantine_sample) < 5:
        for line, reason, detail, row in bad_rows[:5 - len(pv.quarantine_sample)]:
            pv.quarantine_sample.append({"行号": line, "原因": reason, "说明": detail or "", **row})
