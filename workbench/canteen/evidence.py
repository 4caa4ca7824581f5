"""Evidence images: the best frame of each event as a JPEG with the boxes drawn and faces
blurred (children appear on kitchen cameras), plus the clean frame kept for review, under
data/evidence/<camera>/<local date>/, and a retention sweep in days.

Faces are found with OpenCV's Haar cascades (frontal and profile) and, as a safety net
(real footage can defeat Haar), the head region of every person box (its top part,
at least a fifth of its height, up to two fifths for a person bending over) is blurred too.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from workbench import config

if TYPE_CHECKING:
    import cv2
    import numpy as np

# OpenCV and numpy are imported where an image is made or read: finding a snapshot (the
# dashboard's feed, the server's evidence handler) must not pay for loading OpenCV

EVIDENCE = "evidence"
JPEG_QUALITY = 85
DETECT_WIDTH = 640
RED, GREEN = (40, 40, 220), (60, 170, 60)


def evidence_root() -> Path:
    return config.data_dir() / EVIDENCE


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    import cv2
    c = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name))
    if c.empty():  # pragma: no cover - the wheel carries them
        raise RuntimeError(f"OpenCV Haar cascade missing: {name}")
    return c


def find_faces(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face rectangles (x, y, w, h): Haar frontal, profile and mirrored profile."""
    import cv2
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    scale = min(1.0, DETECT_WIDTH / grey.shape[1])  # Haar on a 640-px copy: 10× faster, same faces
    if scale < 1:
        grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)
    h, w = grey.shape
    min_side = max(10, min(h, w) // 40)
    found = []
    for name, flip in (("haarcascade_frontalface_default.xml", False), ("haarcascade_profileface.xml", False),
                       ("haarcascade_profileface.xml", True)):
        g = cv2.flip(grey, 1) if flip else grey
        rects = _cascade(name).detectMultiScale(g, scaleFactor=1.1, minNeighbors=4, minSize=(min_side, min_side))
        for x, y, fw, fh in (rects if len(rects) else []):
            if flip:
                x = w - x - fw
            found.append((int(x / scale), int(y / scale), int(fw / scale), int(fh / scale)))
    return found


def head_region(box, shape) -> tuple[int, int, int, int]:
    """The top of a person box where the head is: (x1, y1, x2, y2), clipped to the frame."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    head_h = min(h * 0.4, max(w / 2.2, h * 0.2))
    H, W = shape[:2]
    return (int(max(0, x1)), int(max(0, y1)), int(min(W, x2)), int(min(H, y1 + head_h)))


def _blur(image: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> None:
    import cv2
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    roi = image[y1:y2, x1:x2]
    # pixelate to about 5 blocks across, then blur: unrecognisable, still reads as "a face was here"
    bw, bh = x2 - x1, y2 - y1
    n = max(bw, bh) / 5
    small = cv2.resize(roi, (max(1, round(bw / n)), max(1, round(bh / n))), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (bw, bh), interpolation=cv2.INTER_NEAREST)
    roi[:] = cv2.GaussianBlur(big, (0, 0), max(1.0, n / 3))


def blur_faces(image: np.ndarray, person_boxes=(), search: bool = True) -> tuple[np.ndarray, int]:
    """A copy with every face found (`search`: Haar) and every person's head region blurred; and
    how many regions were blurred."""
    out = image.copy()
    H, W = out.shape[:2]
    regions = []
    for x, y, w, h in (find_faces(image) if search else []):
        pad = int(0.15 * max(w, h))
        regions.append((max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)))
    regions += [head_region(b, out.shape) for b in person_boxes]
    for r in regions:
        _blur(out, *r)
    return out, len(regions)


@lru_cache(maxsize=1)
def _font(size: int):
    from PIL import ImageFont

    for path in ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
                 "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
                 "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
                 "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"):
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    try:  # any font matplotlib knows that covers Chinese (the core does not import the screens' theme)
        from matplotlib import font_manager

        cjk = next((f.fname for f in font_manager.fontManager.ttflist
                    if any(k in f.name for k in ("CJK", "Han Sans", "WenQuanYi", "YaHei", "PingFang", "SimHei"))), None)
        if cjk:
            return ImageFont.truetype(cjk, size)
    except Exception:  # noqa: BLE001 - fall back to ASCII-capable default
        pass
    return ImageFont.load_default()


def draw_boxes(image: np.ndarray, boxes) -> np.ndarray:
    """Boxes (events.Box) drawn in place: red for violations, green otherwise, Chinese labels."""
    import cv2
    import numpy as np
    from PIL import Image, ImageDraw

    H, W = image.shape[:2]
    thick = max(2, round(min(H, W) / 240))
    for b in boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in b.xyxy)
        cv2.rectangle(image, (x1, y1), (x2, y2), RED if b.violation else GREEN, thick)
    size = max(12, min(H, W) // 30)
    pil = Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    draw = ImageDraw.Draw(pil)
    font = _font(size)
    for b in boxes:
        x1, y1 = int(b.xyxy[0]), int(b.xyxy[1])
        text = str(b.label)
        l, t, r, bt = draw.textbbox((0, 0), text, font=font)
        ty = y1 - (bt - t) - 4 if y1 - (bt - t) - 4 >= 0 else y1 + 2
        color = (220, 40, 40) if b.violation else (60, 170, 60)
        draw.rectangle([x1, ty, x1 + (r - l) + 6, ty + (bt - t) + 4], fill=color)
        draw.text((x1 + 3, ty + 2 - t), text, font=font, fill=(255, 255, 255))
    image[:] = cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)
    return image


@dataclass
class Snapshot:
    snapshot: str        # relative to the data folder: evidence/<camera>/<date>/<id>.jpg
    clean_snapshot: str  # …/<id>.clean.jpg
    faces_blurred: int


def event_dir(camera_id: str, ts: dt.datetime, tz: str = config.TZ) -> Path:
    import pandas as pd

    local = pd.Timestamp(ts).tz_localize("UTC").tz_convert(tz)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in camera_id)
    return Path(EVIDENCE) / safe / f"{local:%Y-%m-%d}"


def save_snapshot(event, tz: str = config.TZ) -> Snapshot | None:
    """Write the event's best frame: annotated + blurred, and the clean copy. None without a frame."""
    if event.best_image is None:
        return None
    return save_frame(event.violation_id, event.camera_id, event.ts, event.best_image, event.best_boxes, tz)


def save_frame(violation_id: str, camera_id: str, ts, image: np.ndarray, boxes=(),
               tz: str = config.TZ, everyone_boxed: bool = False) -> Snapshot:
    """One violation's frame as evidence, where find_snapshot looks for it (by id, camera and
    time): the shown copy with every face and every person's head blurred and the boxes drawn,
    and the clean copy for review. `ts` is naive UTC; `boxes` are events.Box.

    `everyone_boxed`: every person in the image has a person box (a rendered frame, whose
    painter knows them all), so their head regions are the faces and Haar is not run; a camera's
    frame never says so (the detector may miss someone)."""
    import cv2
    rel = event_dir(camera_id, ts, tz)
    folder = config.data_dir() / rel
    for part in (config.data_dir() / EVIDENCE, folder.parent, folder):   # children may appear: owner only
        part.mkdir(mode=0o700, parents=True, exist_ok=True)
    persons = [b.xyxy for b in boxes if getattr(b, "person", False)]
    shown, n = blur_faces(image, persons, search=not everyone_boxed)
    draw_boxes(shown, boxes)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    snap, clean = rel / f"{violation_id}.jpg", rel / f"{violation_id}.clean.jpg"
    _write(config.data_dir() / snap, shown, params)
    _write(config.data_dir() / clean, image, params)
    return Snapshot(snap.as_posix(), clean.as_posix(), n)


def _write(path: Path, image: np.ndarray, params) -> None:
    import cv2
    ok, buf = cv2.imencode(".jpg", image, params)
    if not ok:  # pragma: no cover
        raise OSError(f"JPEG encoding failed: {path}")
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp")   # writers never share one
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # never readable by other accounts
    with os.fdopen(fd, "wb") as f:
        f.write(buf.tobytes())
    os.chmod(tmp, 0o600)
    tmp.replace(path)  # a dashboard never reads a half-written image


def find_snapshot(violation_id: str, camera_id: str, ts, original: bool = False,
                  tz: str = config.TZ) -> Path | None:
    """The snapshot file the watcher wrote for a violation (…/<id>.jpg, or the unblurred
    …/<id>.clean.jpg), found from the violation's id, camera and time as save_snapshot names it —
    never from a stored path — and only when it is a plain file inside the evidence folder."""
    import os

    vid = str(violation_id or "")
    if not vid or "/" in vid or "\\" in vid or vid.startswith(".") or not camera_id or ts is None:
        return None
    try:
        rel = event_dir(str(camera_id), ts, tz)
    except (TypeError, ValueError):
        return None
    root = os.path.realpath(evidence_root())
    p = config.data_dir() / rel / (f"{vid}.clean.jpg" if original else f"{vid}.jpg")
    if p.is_symlink() or not p.is_file():
        return None
    real = os.path.realpath(p)
    return Path(real) if real.startswith(root + os.sep) else None


def resolve(snapshot: str | None) -> Path | None:
    """The file of a stored snapshot path, if it exists."""
    if not snapshot or not isinstance(snapshot, str):
        return None
    p = Path(snapshot)
    p = p if p.is_absolute() else config.data_dir() / p
    return p if p.is_file() else None


SNAPSHOT_SHOWN, SNAPSHOT_EXPIRED, SNAPSHOT_MISSING, SNAPSHOT_NONE = "shown", "expired", "missing", "none"


def snapshot_state(violation_id, camera_id, ts, recorded=True, now=None, keep_days: float | None = None) -> str:
    """What the feed can say of a violation's snapshot:

    - `shown`: its file is there (found by id, camera and time, as find_snapshot does);
    - `expired`: older than the evidence retention: the sweep removed it, as it should;
    - `none`: no snapshot was recorded for it (`recorded` falsy: the row's stored snapshot
      path), or no camera or time to find one by: nothing to show, nothing wrong;
    - `missing`: one was recorded, it is within the retention period and the file is not
      there: a fault, to be said plainly.

    `ts` naive UTC; `keep_days` default the retention's evidence days."""
    import pandas as pd

    if not violation_id or not camera_id or ts is None or pd.isna(ts):
        return SNAPSHOT_NONE
    if find_snapshot(violation_id, camera_id, ts) is not None:
        return SNAPSHOT_SHOWN
    if keep_days is None:
        from workbench.retention import evidence_days

        keep_days = evidence_days()
    now = pd.Timestamp.now(tz="UTC").tz_localize(None) if now is None else pd.Timestamp(now)
    if now.tzinfo is not None:
        now = now.tz_convert("UTC").tz_localize(None)
    # the sweep deletes whole local days before the cutoff date (now − keep_days)
    local = pd.Timestamp(ts).tz_localize("UTC").tz_convert(config.TZ).date()
    cutoff = (now.tz_localize("UTC").tz_convert(config.TZ) - pd.Timedelta(days=keep_days)).date()
    if local < cutoff:
        return SNAPSHOT_EXPIRED
    if recorded is None or (isinstance(recorded, float) and pd.isna(recorded)) or not recorded:
        return SNAPSHOT_NONE
    return SNAPSHOT_MISSING


def sweep(days: float, now: dt.datetime | None = None, root: Path | None = None) -> dict:
    """Delete evidence folders (one per camera and local date) older than `days` days.
    Returns {'folders': n, 'files': n, 'bytes': n}."""
    root = root or evidence_root()
    now = now or dt.datetime.now()
    cutoff = (now - dt.timedelta(days=days)).date()
    out = {"folders": 0, "files": 0, "bytes": 0}
    if not root.is_dir():
        return out
    for cam in root.iterdir():
        if not cam.is_dir():
            continue
        for day in cam.iterdir():
            try:
                d = dt.date.fromisoformat(day.name)
            except ValueError:
                continue  # not ours
            if day.is_dir() and d < cutoff:
                files = [f for f in day.rglob("*") if f.is_file()]
                out["files"] += len(files)
                out["bytes"] += sum(f.stat().st_size for f in files)
                shutil.rmtree(day)
                out["folders"] += 1
    return out
