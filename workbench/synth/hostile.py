"""Hostile and broken files, made on purpose (issue 13): what a careless sender or an attacker
could drop on the hub. Used by tests/test_hostile_input.py and benchmarks/hostile_inputs.py;
nothing real imports this module.

Every maker streams: none holds the file it writes in memory.
"""
from __future__ import annotations

import pickle
import struct
import time
import zlib
from pathlib import Path

RAPID_HEADER = "检测编号,检测时间,采样时间,市场编号,样品名称,检测项目,检测值,判定限值,检测结果,经营户\n"


def rapid_row(i: int, value: str = "12.5") -> str:
    """One good rapid-test line (its key T + number)."""
    return (f"T{i:07d},2023-12-22 08:30,2023-12-22 08:15,M01,韭菜,有机磷和氨基甲酸酯类农药残留,"
            f"{value},50,阴性,李记\n")


def rapid_csv(path: Path, rows: int, *, start: int = 0, bad_every: int = 0, encoding: str = "utf-8",
              insert: dict[int, bytes] | None = None) -> Path:
    """A rapid-test CSV of `rows` data lines; every `bad_every`-th has an unreadable value (to be
    quarantined); `insert`: {data line index: raw bytes} written in place of that line."""
    insert = insert or {}
    with open(path, "wb") as f:
        f.write(RAPID_HEADER.encode(encoding))
        for i in range(start, start + rows):
            if i - start in insert:
                f.write(insert[i - start])
                continue
            bad = bad_every and i % bad_every == bad_every - 1
            f.write(rapid_row(i, "十二点五" if bad else "12.5").encode(encoding))
    return path


def huge_line(size: int, key: str = "TBIG") -> bytes:
    """A CSV line of `size` bytes (one enormous field), as bytes."""
    head = f"{key},2023-12-22 08:30,2023-12-22 08:15,M01,韭菜,有机磷和氨基甲酸酯类农药残留,12.5,50,阴性,".encode()
    return head + b"A" * max(0, size - len(head) - 1) + b"\n"


def write_huge_line_csv(path: Path, line_bytes: int, rows: int = 100, at: int = 2) -> Path:
    """A CSV with one `line_bytes` line near the top (written in 1 MiB pieces)."""
    with open(path, "wb") as f:
        f.write(RAPID_HEADER.encode())
        for i in range(rows):
            if i == at:
                head = huge_line(0)[:-1]
                f.write(head)
                left = line_bytes - len(head) - 1
                piece = b"A" * (1 << 20)
                while left > 0:
                    f.write(piece[:min(left, len(piece))])
                    left -= len(piece)
                f.write(b"\n")
            f.write(rapid_row(i).encode())
    return path


# ------------------------------------------------------------------------- the XLSX bomb

_CONTENT_TYPES = (b'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                  b'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
                  b'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
                  b'"/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
                  b'sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.'
                  b'openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
_RELS = (b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
         b'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
         b'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>')
_WORKBOOK = (b'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/'
             b'2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
             b'<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
_WORKBOOK_RELS = (b'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                  b'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                  b'officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>')


def _deflated(parts) -> tuple[bytes, int, int]:
    """Raw deflate of the concatenation of `parts` [(bytes, times)], crc32 and size, where each
    repeated part is compressed once (after a full flush the compressor starts afresh, so the
    same input gives the same bytes again): 1.5 GiB costs a second, not a minute."""
    out, crc, size = [], 0, 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    for data, times in parts:
        once = c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)
        out.append(once * times)
        for _ in range(times):
            crc = zlib.crc32(data, crc)
        size += len(data) * times
    out.append(c.flush())
    return b"".join(out), crc, size


def write_xlsx_bomb(path: Path, unpacked: int = int(1.5 * (1 << 30))) -> Path:
    """An XLSX whose sheet XML unpacks to about `unpacked` bytes (~1.5 MB on disk for 1.5 GiB):
    a header row of the rapid-test columns, then the same row again and again, each with a
    vendor name of 16,000 letters (what makes a reader that trusts the file hold gigabytes)."""
    head = RAPID_HEADER.strip().split(",")
    cells = "".join(f'<c t="inlineStr"><is><t>{h}</t></is></c>' for h in head)
    start = ('<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
             f'spreadsheetml/2006/main"><sheetData><row>{cells}</row>').encode()
    values = rapid_row(1).strip().split(",")[:-1] + ["A" * 16_000]   # a vendor name of 16,000 letters
    row = "".join(f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in values)
    block = (f"<row>{row}</row>" * 256).encode()
    sheet = _deflated([(start, 1), (block, max(1, unpacked // len(block))), (b"</sheetData></worksheet>", 1)])
    members = [("[Content_Types].xml", _CONTENT_TYPES), ("_rels/.rels", _RELS), ("xl/workbook.xml", _WORKBOOK),
               ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)]
    return _write_zip(path, [(n, *_deflated([(d, 1)])) for n, d in members] + [("xl/worksheets/sheet1.xml", *sheet)])


def _write_zip(path: Path, members) -> Path:
    """A zip of already deflated members [(name, data, crc, size)] (sizes < 4 GiB: no zip64)."""
    t = time.localtime()
    dtime = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    ddate = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    central, offset = [], 0
    with open(path, "wb") as f:
        for name, data, crc, size in members:
            n = name.encode()
            local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, dtime, ddate, crc, len(data), size, len(n), 0)
            f.write(local + n + data)
            central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, dtime, ddate, crc,
                                       len(data), size, len(n), 0, 0, 0, 0, 0, offset) + n)
            offset += len(local) + len(n) + len(data)
        cd = b"".join(central)
        f.write(cd)
        f.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd), offset, 0))
    return path


# ------------------------------------------------------------------------ a model carrying code

class _WritesMarker:
    """Unpickling this calls open(marker, "w").write(...): code run by loading a model."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def write_malicious_pt(path: Path, marker: Path) -> Path:
    """A `.pt` as torch.save writes it (a zip with data.pkl) whose pickle, when loaded with
    weights_only=False, writes `marker`: what a poisoned checkpoint does."""
    import torch

    torch.save({"model": _WritesMarker(str(marker)), "epoch": 1}, path)
    return path


def write_malicious_pickle(path: Path, marker: Path, protocol: int = 2) -> Path:
    """The same payload as a bare (legacy, non-zip) pickle file (protocol 4: STACK_GLOBAL)."""
    with open(path, "wb") as f:
        pickle.dump({"model": _WritesMarker(str(marker))}, f, protocol=protocol)
    return path


# ------------------------------------------------------- a model calling a class of an allowed package

class _Reduces:
    """Pickles as `func(*args)`: what loading it calls."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def write_memmap_pt(path: Path, target: Path) -> Path:
    """A `.pt` whose unpickling calls numpy.memmap(target, "uint8", "w+", 0, (16,)): it creates
    (or truncates) `target`, a class of numpy doing what code would."""
    import numpy
    import torch

    torch.save({"model": _Reduces(numpy.memmap, (str(target), "uint8", "w+", 0, (16,))), "epoch": 1}, path)
    return path


def write_yolo_loader_pt(path: Path, other: Path) -> Path:
    """A `.pt` whose unpickling calls ultralytics.YOLO(other): ultralytics then loads `other`
    with weights_only=False, unchecked (make `other` with write_malicious_pt to see it run)."""
    import torch

    from workbench.canteen.yolo_env import ensure_yolo_env

    ensure_yolo_env()
    from ultralytics import YOLO

    torch.save({"model": _Reduces(YOLO, (str(other),)), "epoch": 1}, path)
    return path


def write_model_class_call_pt(path: Path, cfg: dict) -> Path:
    """A `.pt` whose every global is a model class of the allow list, but called with the file's
    arguments: DetectionModel(cfg) builds whatever cfg names."""
    import torch

    from workbench.canteen.yolo_env import ensure_yolo_env

    ensure_yolo_env()
    from ultralytics.nn.tasks import DetectionModel

    torch.save({"model": _Reduces(DetectionModel, (cfg,)), "epoch": 1}, path)
    return path
