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
   the file, the line and the reason.
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import shutil
import unicodedata
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
from workbench.store import hub
from workbench.store.schema import DATASETS, Dataset, Field, ingest_files, quarantine

CHUNK_ROWS = 20_000
HEADER_SCAN_ROWS = 30
_IGNORED_COLUMNS = {"序号", "编号序号", "no", "no.", "index", "行号"}  # row counters in department sheets
_MISSING = {"", "nan", "null", "none", "na", "n/a", "-", "--", "—", "/", "\\n"}


class IngestError(WorkbenchError):
    """A file that cannot be read at all. The message names the file and the problem."""

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
    rows_read: int = 0
    loaded: int = 0
    quarantined: int = 0
    duplicates: int = 0
    skipped: bool = False  # the same file was taken in before
    unknown_columns: list[str] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """One line in Chinese for the terminal."""
        if self.skipped:
            return f"{self.filename}: 已接入过（内容相同），跳过，新增 0 行"
        return (f"{self.filename}: 读取 {self.rows_read} 行，入库 {self.loaded} 行，"
                f"隔离 {self.quarantined} 行，重复 {self.duplicates} 行")


# ---------------------------------------------------------------------------- reading

def _sha256_and_keep(path: Path) -> tuple[str, Path]:
    """Hash the file and keep a copy of the raw bytes under data/raw/ by content hash."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    sha = h.hexdigest()
    raw = config.data_dir() / "raw" / sha[:2] / f"{sha}{path.suffix.lower()}"
    if not raw.exists():
        raw.parent.mkdir(parents=True, exist_ok=True)
        tmp = raw.with_suffix(raw.suffix + ".part")
        shutil.copyfile(path, tmp)
        tmp.replace(raw)
    return sha, raw


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8192)
    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        raise IngestError(path, "文件为空 (empty file)")
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise IngestError(path, "旧版 Excel (.xls) 文件，请另存为 .xlsx 或 CSV 后再导入")
    if b"\x00" in head:
        raise IngestError(path, "不是表格文件：包含二进制内容 (binary content, not a table)")
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] in (b"[", b"{"):
        return "json"
    return "csv"


def _detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM), else GBK, else GB18030; decided on the whole file."""
    with open(path, "rb") as f:
        if f.read(3) == codecs.BOM_UTF8:
            candidates = ["utf-8-sig"]
        else:
            candidates = ["utf-8", "gbk", "gb18030"]
    for enc in candidates:
        dec = codecs.getincrementaldecoder(enc)()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    dec.decode(block)
                dec.decode(b"", final=True)
            return enc
        except UnicodeDecodeError as exc:
            err = exc
    raise IngestError(path, f"无法识别文件编码（不是 UTF-8、GBK 或 GB18030）: {err.reason} at byte {err.start}")


def _norm_header(name) -> str:
    s = unicodedata.normalize("NFKC", str(name or "")).strip().lower()
    return re.sub(r"[\s*＊:：]", "", s)


def _header_map(ds: Dataset) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in ds.fields:
        for alias in (f.name, f.label, *f.aliases):
            out.setdefault(_norm_header(alias), f.name)
    return out


def _find_header(ds: Dataset, rows: list[list], path: Path) -> int:
    """Index of the header row: the first row naming at least one required field."""
    hmap = _header_map(ds)
    required = set(ds.required)
    best, best_hits = None, 0
    for i, row in enumerate(rows[:HEADER_SCAN_ROWS]):
        hits = {hmap[h] for h in map(_norm_header, row) if h in hmap}
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


def _column_plan(ds: Dataset, header: list, path: Path) -> tuple[dict[int, str], list[str]]:
    """Which file column feeds which field; refuses a file without a required column."""
    hmap = _header_map(ds)
    plan: dict[int, str] = {}
    unknown = []
    for i, h in enumerate(header):
        name = hmap.get(_norm_header(h))
        if name is None:
            if str(h or "").strip() and _norm_header(h) not in _IGNORED_COLUMNS:
                unknown.append(str(h))
        elif name not in plan.values():
            plan[i] = name
    missing = [n for n in ds.required if n not in plan.values()]
    if missing:
        raise IngestError(path, f"缺少必需的列：{', '.join(_labels(ds, missing))}")
    return plan, unknown


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


# frame, lines, malformed rows as (line, reason, detail, row)
Chunk = tuple[pd.DataFrame, np.ndarray, list[tuple[int, str, str, dict]]]


def _chunks_csv(ds, path, encoding, bar) -> Iterator[Chunk]:
    with open(path, encoding=encoding, newline="") as f:
        first_lines = "".join(f.readline() for _ in range(HEADER_SCAN_ROWS))
    counts = {d: max(line.count(d) for line in first_lines.splitlines() or [""]) for d in ",\t;|"}
    delimiter = max(counts, key=counts.get) if max(counts.values()) else ","
    raw = open(path, "rb")
    try:
        text = io.TextIOWrapper(io.BufferedReader(_CountingReader(raw, bar), 1 << 20),
                                encoding=encoding, newline="")
        reader = csv.reader(text, delimiter=delimiter)
        head_rows = []
        for row in reader:
            head_rows.append((reader.line_num, row))
            if len(head_rows) >= HEADER_SCAN_ROWS:
                break
        if not head_rows:
            raise IngestError(path, "文件为空 (empty file)")
        hidx = _find_header(ds, [r for _, r in head_rows], path)
        header = head_rows[hidx][1]
        plan, unknown = _column_plan(ds, header, path)
        yield unknown  # first item: the unknown columns
        width = len(header)
        cols = list(plan.items())

        def rows_iter():
            yield from head_rows[hidx + 1:]
            try:
                for row in reader:
                    yield reader.line_num, row
            except csv.Error as exc:
                raise IngestError(path, f"CSV 格式错误，第 {reader.line_num} 行: {exc}")
            except UnicodeDecodeError as exc:
                raise IngestError(path, f"编码错误: {exc}")

        buf, lines, bad = [], [], []
        for line, row in rows_iter():
            if not any(c.strip() for c in row):
                continue
            if len(row) != width and not (len(row) > width and not any(c.strip() for c in row[width:])):
                named = {str(header[i] or f"第{i + 1}列") if i < width else f"多余的第{i + 1}列": v
                         for i, v in enumerate(row)}
                bad.append((line, "字段数与表头不符", f"本行 {len(row)} 个字段，表头 {width} 列", named))
                continue
            buf.append([row[i] if i < len(row) else "" for i, _ in cols])
            lines.append(line)
            if len(buf) >= CHUNK_ROWS:
                yield pd.DataFrame(buf, columns=[n for _, n in cols], dtype=object), np.array(lines), bad
                buf, lines, bad = [], [], []
        if buf or bad:
            yield pd.DataFrame(buf, columns=[n for _, n in cols], dtype=object), np.array(lines, dtype=int), bad
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


def _chunks_xlsx(ds, path, bar) -> Iterator[Chunk]:
    import openpyxl

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
        hidx = _find_header(ds, head_rows, path)
        plan, unknown = _column_plan(ds, head_rows[hidx], path)
        yield unknown
        cols = list(plan.items())
        buf, lines = [], []

        def rows_iter():
            for i, row in enumerate(head_rows[hidx + 1:], start=hidx + 2):
                yield i, row
            for i, row in enumerate(it, start=len(head_rows) + 1):
                yield i, [_cell_text(v) for v in row]

        for line, row in rows_iter():
            if not any(c.strip() for c in row):
                continue
            buf.append([row[i] if i < len(row) else "" for i, _ in cols])
            lines.append(line)
            if len(buf) >= CHUNK_ROWS:
                yield pd.DataFrame(buf, columns=[n for _, n in cols], dtype=object), np.array(lines), []
                buf, lines = [], []
        if buf:
            yield pd.DataFrame(buf, columns=[n for _, n in cols], dtype=object), np.array(lines), []
    finally:
        wb.close()


def _chunks_json(ds, path, encoding, bar) -> Iterator[Chunk]:
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
    hmap = _header_map(ds)
    keys: dict[str, str] = {}
    for rec in doc[:1000]:
        if isinstance(rec, dict):
            for k in rec:
                keys.setdefault(k, hmap.get(_norm_header(k)))
    plan = {}
    for k, name in keys.items():
        if name and name not in plan.values():
            plan[k] = name
    missing = [n for n in ds.required if n not in plan.values()]
    if missing:
        raise IngestError(path, f"缺少必需的字段：{', '.join(_labels(ds, missing))}")
    yield [k for k, n in keys.items() if n is None]
    if bar is not None:
        bar.update(Path(path).stat().st_size)
    for start in range(0, len(doc), CHUNK_ROWS):
        buf, lines, bad = [], [], []
        for i, rec in enumerate(doc[start:start + CHUNK_ROWS], start=start + 1):
            if not isinstance(rec, dict):
                bad.append((i, "记录不是对象", f"类型 {type(rec).__name__}", {"value": rec}))
                continue
            buf.append([_json_cell(rec.get(k)) for k in plan])
            lines.append(i)
        yield pd.DataFrame(buf, columns=list(plan.values()), dtype=object), np.array(lines, dtype=int), bad


def _json_cell(v) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return _cell_text(v)


# ---------------------------------------------------------------------------- validating

_TZ_SUFFIX = r"(?i)(?:z|[+-]\d{2}:?\d{2})$"


def parse_timestamps(s: pd.Series) -> pd.Series:
    """Parse timestamps as departments write them; naive ones are Asia/Shanghai.

    Returns naive UTC datetimes (NaT where unparseable). Handles `2023年12月22日 08:30`,
    `2023/12/22 8:30`, ISO 8601 with or without an offset, and dates alone.
    """
    t = s.astype("string").str.strip()
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[ns]")
    aware = t.str.contains(_TZ_SUFFIX, na=False)
    todo = t.notna()
    for rewrite in (False, True):  # machine exports are ISO already; rewrite only what fails
        if not todo.any():
            break
        part = _rewrite_chinese_dates(t[todo]) if rewrite else t[todo]
        for mask, localize in ((~aware[todo], True), (aware[todo], False)):
            if not mask.any():
                continue
            fmt = "mixed" if rewrite else "ISO8601"
            parsed = pd.to_datetime(part[mask], format=fmt, errors="coerce", utc=not localize)
            if localize:
                parsed = parsed.dt.tz_localize(config.TZ, ambiguous="NaT", nonexistent="NaT")
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
            ok = parsed.notna()
            out[parsed.index[ok]] = parsed[ok]
        todo = todo & out.isna()
    sane = out.isna() | ((out.dt.year >= 1900) & (out.dt.year <= 2100))
    return out.where(sane)


def _rewrite_chinese_dates(t: pd.Series) -> pd.Series:
    """`2023年12月22日8时30分` → `2023-12-22 8:30`; `2023/12/22` and `2023.12.22` → `2023-12-22`."""
    return (t.str.replace(r"(\d)\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?\s*", r"\1-\2-\3 ", regex=True)
            .str.replace(r"(\d)\s*时\s*(\d{1,2})\s*分?", r"\1:\2", regex=True)
            .str.replace(r"(\d)\s*时", r"\1:00", regex=True)
            .str.replace(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})", r"\1-\2-\3", regex=True)
            .str.strip())


def validate(ds: Dataset, df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Typed values; per row the reasons it fails ('' when good), and the details (values)."""
    reasons = pd.Series("", index=df.index, dtype=object)
    details = pd.Series("", index=df.index, dtype=object)

    def join(old: pd.Series, new) -> pd.Series:
        return old + np.where(old == "", "", "; ") + new

    def flag(mask, text, detail=None):
        nonlocal reasons, details
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            reasons = reasons.where(~mask, join(reasons, text))
            if detail is not None:
                details = details.where(~mask, join(details, detail))

    out = pd.DataFrame(index=df.index)
    malformed: dict[str, pd.Series] = {}
    for f in ds.fields:
        if f.name not in df:
            out[f.name] = None
            continue
        raw = df[f.name].astype("string")
        wide = ~raw.str.isascii().fillna(True)
        if wide.any():  # full-width digits and letters, ideographic spaces
            raw = raw.where(~wide, raw[wide].str.normalize("NFKC"))
        raw = raw.str.strip()
        lower = raw.str.lower()
        missing = raw.isna() | (raw == "") if f.kind == "str" else raw.isna() | lower.isin(_MISSING)
        value, bad = _convert(f, raw.where(~missing))
        malformed[f.name] = bad & ~missing
        flag(malformed[f.name], _bad_text(f),
             f"{f.label}: '" + df[f.name].astype("string").fillna("").str.slice(0, 40) + "'")
        if f.kind in ("int", "float"):
            if f.min is not None:
                flag(value < f.min, f"{f.label}小于下限 {f.min:g}")
            if f.max is not None:
                flag(value > f.max, f"{f.label}超出上限 {f.max:g}")
        if f.choices:
            flag(value.notna() & ~value.isin(f.choices), f"{f.label}取值不在 {'/'.join(f.choices)} 之中")
        if f.kind == "str":
            flag(value.str.len() > f.length, f"{f.label}超过 {f.length} 个字符")
        out[f.name] = value
    for f in ds.fields:
        if f.default_from:
            out[f.name] = out[f.name].where(out[f.name].notna(), out[f.default_from])
        if (f.required or f.name in ds.key):
            is_missing = out[f.name].isna()
            if f.name in malformed:  # a malformed value is already reported; do not say it twice
                is_missing &= ~malformed[f.name]
            flag(is_missing, f"缺少{f.label}")
    for check in checks_of(ds):
        detail = getattr(check, "detail", None)   # a check may say which values failed it
        bad = check.bad(out)
        flag(bad, check.reason, detail(out) if detail is not None and bad.any() else None)
    return out, reasons, details


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
    ts = parse_timestamps(s)
    bad = s.notna() & ts.isna()
    if f.kind == "date":
        return ts.dt.date.where(ts.notna(), None), bad
    return ts, bad


def _bad_text(f: Field) -> str:
    kinds = {"int": "不是整数", "float": "不是数字", "ts": "不是有效的日期时间", "date": "不是有效的日期"}
    return f"{f.label}{kinds.get(f.kind, '格式错误')}"


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
        self.hashes = np.concatenate([self.hashes, h[new]])
        self.lines = np.concatenate([self.lines, lines[new]])
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
    if v is None:
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
        if kinds.get(c) == "ts":
            col = pd.to_datetime(col).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        elif kinds.get(c) == "date":
            col = col.astype(object).map(lambda d: None if d is None or d != d else d.isoformat())
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
    """COPY into a temporary staging table, then INSERT … ON CONFLICT DO NOTHING."""
    cols = [c.name for c in table.columns if c.name in df.columns]
    qcols = ", ".join(f'"{c}"' for c in cols)
    stage = f"_stage_{table.name}"
    cur = conn.connection.dbapi_connection.cursor()
    cur.execute(f'CREATE TEMP TABLE IF NOT EXISTS "{stage}" (LIKE "{table.name}" INCLUDING DEFAULTS) '
                f"ON COMMIT DELETE ROWS")
    cur.execute(f'TRUNCATE "{stage}"')
    rows = records(df[cols], ds)
    with cur.copy(f'COPY "{stage}" ({qcols}) FROM STDIN') as copy:
        for r in rows:
            copy.write_row([r[c] for c in cols])
    keys = ", ".join(f'"{k}"' for k in ds.key)
    cur.execute(f'INSERT INTO "{table.name}" ({qcols}) SELECT {qcols} FROM "{stage}" '
                f"ON CONFLICT ({keys}) DO NOTHING")
    n = cur.rowcount
    cur.execute(f'TRUNCATE "{stage}"')
    return n


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------------------- entry point

def ingest_file(dataset: str, path: Path | str, eng: Engine | None = None, *,
                progress: bool = False, force: bool = False) -> IngestSummary:
    """Take one file into the hub. Raises IngestError when the file cannot be read."""
    if dataset not in DATASETS:
        raise IngestError(path, f"未知的数据集 '{dataset}'，可选：{', '.join(DATASETS)}")
    ds = DATASETS[dataset]
    path = Path(path)
    if not path.is_file():
        raise IngestError(path, "文件不存在 (no such file)")
    eng = eng or hub.engine()
    sha, raw_path = _sha256_and_keep(path)
    summary = IngestSummary(dataset, path.name, sha)
    load = loader_of(ds)
    read_as = getattr(load, "read_as", None) or ds   # how the file's columns are named
    prepare = getattr(load, "prepare", None)

    with eng.begin() as conn:
        prev = conn.execute(sa.select(ingest_files).where(
            ingest_files.c.dataset == dataset, ingest_files.c.sha256 == sha)).mappings().first()
        if prev is not None and prev["status"] == "done" and not force:
            summary.skipped = True
            summary.rows_read = prev["rows_read"]
            summary.duplicates = prev["rows_read"]
            summary.encoding = prev["encoding"]
            return summary
        if prev is None:
            file_id = conn.execute(ingest_files.insert().values(
                sha256=sha, dataset=dataset, filename=path.name, size_bytes=path.stat().st_size,
                raw_path=str(raw_path), received_at=_now(), status="running",
            )).inserted_primary_key[0]
        else:
            file_id = prev["file_id"]
            conn.execute(ingest_files.update().where(ingest_files.c.file_id == file_id).values(
                status="running", received_at=_now(), message=None, filename=path.name))

    def finish(status: str, message: str | None = None):
        with eng.begin() as conn:
            conn.execute(ingest_files.update().where(ingest_files.c.file_id == file_id).values(
                status=status, message=message, finished_at=_now(), encoding=summary.encoding,
                rows_read=summary.rows_read, loaded=summary.loaded,
                quarantined=summary.quarantined, duplicates=summary.duplicates))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"{ds.label} {path.name}",
                   leave=False)
    try:
        kind = _sniff(path)
        if kind == "xlsx":
            summary.encoding = "xlsx"
            chunks = _chunks_xlsx(read_as, path, bar)
        else:
            summary.encoding = _detect_encoding(path)
            reader = _chunks_csv if kind == "csv" else _chunks_json
            chunks = reader(read_as, path, summary.encoding, bar)
        summary.unknown_columns = next(chunks)
        keys = _KeyRegistry()
        for frame, lines, malformed in chunks:
            if prepare is not None:
                frame = prepare(frame, path)
            _load_chunk(eng, ds, summary, file_id, sha, path, frame, lines, malformed, keys)
    except IngestError as exc:
        finish("failed", exc.problem)
        raise
    except Exception as exc:  # never leave a file marked running without a word
        finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if bar is not None:
            bar.close()
    if summary.rows_read == 0:
        finish("failed", "没有数据行 (no data rows below the header)")
        raise IngestError(path, "没有数据行：表头下面是空的 (no data rows)")
    finish("done")
    return summary


def _load_chunk(eng, ds, summary, file_id, sha, path, frame, lines, malformed, keys):
    summary.rows_read += len(frame) + len(malformed)
    values, reasons, details = validate(ds, frame)
    good = reasons == ""
    load = loader_of(ds)
    if good.any():
        key = list(getattr(load, "repeat_key", None) or ds.key)
        rep = keys.repeats(values.loc[good, key], lines[good.to_numpy()])
        rep_rows = rep[rep > 0]
        reasons.loc[rep_rows.index] = "文件内主键重复"
        details.loc[rep_rows.index] = "与文件第 " + rep_rows.astype(str) + " 行相同"
        good = reasons == ""
    bad = ~good.to_numpy()
    bad_rows = [
        (int(line), reason, detail, {k: v for k, v in row.items() if v not in ("", None)})
        for line, reason, detail, row in zip(lines[bad], reasons[~good], details[~good],
                                             frame[~good].to_dict("records"))
    ] + malformed
    now = _now()
    with eng.begin() as conn:
        new = load(conn, ds, values[good]) if load is not None else insert_new(conn, ds, values[good])
        if bad_rows:
            conn.execute(quarantine.insert(), [
                {"dataset": ds.name, "file_sha256": sha, "filename": path.name, "line": line,
                 "reason": reason[:512], "detail": (detail or None) and detail[:1024],
                 "row_json": json.dumps(row, ensure_ascii=False, default=str), "quarantined_at": now}
                for line, reason, detail, row in bad_rows
            ])
    summary.loaded += new
    summary.duplicates += int(good.sum()) - new
    summary.quarantined += len(bad_rows)
    for _, reason, _, _ in bad_rows:
        for r in reason.split("; "):
            summary.reasons[r] = summary.reasons.get(r, 0) + 1
