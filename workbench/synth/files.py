"""Writing department-style files: GBK/UTF-8 CSV, XLSX with a title row, JSON records.

Every writer is deterministic: the same frame gives the same bytes (XLSX files get fixed
zip timestamps and document dates, which openpyxl would otherwise take from the clock).
"""
from __future__ import annotations

import datetime as dt
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.store.schema import DATASETS


def labels(dataset: str, fields: list[str] | None = None, alias: dict[str, str] | None = None) -> dict[str, str]:
    """field -> header text: the field's Chinese label, or the alias given for it."""
    ds = DATASETS[dataset]
    names = fields or [f.name for f in ds.fields]
    alias = alias or {}
    return {n: alias.get(n, ds.field(n).label) for n in names}


# ---------------------------------------------------------------- timestamps as text

def _dt64(s) -> np.ndarray:
    return pd.to_datetime(pd.Series(s)).to_numpy().astype("datetime64[s]")


def fmt_minute(s) -> pd.Series:
    """`2026-01-05 08:30` (empty for missing)."""
    a = _dt64(s)
    out = pd.Series(np.datetime_as_string(a.astype("datetime64[m]")), dtype=object).str.replace("T", " ", regex=False)
    return out.where(~np.isnat(a), "")


def fmt_second(s) -> pd.Series:
    a = _dt64(s)
    out = pd.Series(np.datetime_as_string(a), dtype=object).str.replace("T", " ", regex=False)
    return out.where(~np.isnat(a), "")


def fmt_iso_offset(s) -> pd.Series:
    """ISO 8601 with the +08:00 offset, as Open311 exports write it."""
    a = _dt64(s)
    out = pd.Series(np.datetime_as_string(a), dtype=object) + "+08:00"
    return out.where(~np.isnat(a), None)


def fmt_date(s) -> pd.Series:
    a = _dt64(s)
    out = pd.Series(np.datetime_as_string(a.astype("datetime64[D]")), dtype=object)
    return out.where(~np.isnat(a), "")


def fmt_chinese(s, with_time: bool = True) -> pd.Series:
    """`2023年12月22日 08:30` (month and day without leading zeros, as Excel writes them)."""
    t = pd.to_datetime(pd.Series(s))
    ok = t.notna()
    y = t.dt.year.astype("Int64").astype(str)
    m = t.dt.month.astype("Int64").astype(str)
    d = t.dt.day.astype("Int64").astype(str)
    out = y + "年" + m + "月" + d + "日"
    if with_time:
        hm = pd.Series(np.datetime_as_string(_dt64(s).astype("datetime64[m]")), dtype=object).str[11:16]
        out = out + " " + hm.to_numpy()
    return out.astype(object).where(ok, "")


# ---------------------------------------------------------------- writers

def write_csv(df: pd.DataFrame, path: Path, headers: dict[str, str], encoding: str = "utf-8") -> Path:
    """Write `df[list(headers)]` with the given header texts. Strings only: format
    timestamps first. Missing values are empty cells. Fields the frame lacks are left out."""
    headers = {k: v for k, v in headers.items() if k in df.columns}
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df[list(headers)].rename(columns=headers)
    out.to_csv(path, index=False, encoding=encoding, lineterminator="\r\n", na_rep="")
    return path


def write_json(records: list[dict], path: Path) -> Path:
    """A JSON list of records, one record per line, UTF-8."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n")
        f.write(",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in records))
        f.write("\n]\n")
    return path


def frame_records(df: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain JSON values (None for missing)."""
    cols = {}
    for c in df.columns:
        arr = df[c].astype(object).to_numpy(copy=True)
        arr[pd.isna(arr)] = None
        if df[c].dtype.kind == "f":
            arr = np.array([None if v is None else float(v) for v in arr], dtype=object)
        elif df[c].dtype.kind in "iu":
            arr = np.array([None if v is None else int(v) for v in arr], dtype=object)
        elif df[c].dtype.kind == "b":
            arr = np.array([bool(v) for v in arr], dtype=object)
        cols[c] = arr
    names = list(cols)
    return [dict(zip(names, row)) for row in zip(*cols.values())]


def write_xlsx(df: pd.DataFrame, path: Path, headers: dict[str, str], title: str | None,
               stamp: dt.datetime, sheet: str = "Sheet1", serial: bool = True) -> Path:
    """An XLSX sheet the way an office makes one: a merged title row (optional), a bold
    header (with 序号 first when `serial`), then the rows. Timestamps stay real date cells.
    Fields the frame lacks are left out."""
    headers = {k: v for k, v in headers.items() if k in df.columns}
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    head = (["序号"] if serial else []) + list(headers.values())
    if title:
        ws.append([title])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=len(head))
        ws.cell(1, 1).font = Font(bold=True, size=14)
        ws.cell(1, 1).alignment = Alignment(horizontal="center")
    ws.append(head)
    hr = ws.max_row
    for c in range(1, len(head) + 1):
        ws.cell(hr, c).font = Font(bold=True)
    cols = []
    for name in headers:
        s = df[name]
        if s.dtype.kind == "M":
            arr = [None if pd.isna(v) else v.to_pydatetime() for v in s]
        else:
            arr = s.astype(object).to_numpy(copy=True)
            arr = [None if (v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA) else
                   (v.item() if isinstance(v, np.generic) else v) for v in arr]
        cols.append(arr)
    for i, row in enumerate(zip(*cols), start=1):
        ws.append(([i] if serial else []) + list(row))
    for j, name in enumerate(head, start=1):
        letter = ws.cell(hr, j).column_letter
        ws.column_dimensions[letter].width = max(8, min(40, 2.2 * len(str(name)) + 4))
        kind = None
        if j > (1 if serial else 0):
            s = df[list(headers)[j - (2 if serial else 1)]]
            kind = s.dtype.kind
        if kind == "M":
            ws.column_dimensions[letter].width = 18
            for r in range(hr + 1, ws.max_row + 1):
                ws.cell(r, j).number_format = "yyyy-mm-dd hh:mm"
    wb.properties.creator = "株洲市城市数智中心"
    wb.properties.created = stamp
    wb.properties.modified = stamp
    buf = io.BytesIO()
    wb.save(buf)
    path.write_bytes(_fixed_zip(buf.getvalue(), stamp))
    return path


def _fixed_zip(data: bytes, stamp: dt.datetime) -> bytes:
    """The same XLSX with fixed entry timestamps and document dates (byte-stable)."""
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)",
                              lambda m: m.group(1) + iso.encode() + m.group(2), body)
            zi = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o600 << 16
            z.writestr(zi, body)
    return out.getvalue()


def insert_rows(df: pd.DataFrame, extra: pd.DataFrame, rng) -> pd.DataFrame:
    """`extra` rows placed at random positions among `df`'s rows (planted dirt)."""
    pos = np.sort(rng.integers(0, len(df) + 1, len(extra)))
    parts, last = [], 0
    for i, p in enumerate(pos):
        parts += [df.iloc[last:p], extra.iloc[[i]]]
        last = p
    parts.append(df.iloc[last:])
    return pd.concat(parts, ignore_index=True)
