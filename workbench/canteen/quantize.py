"""INT8 ONNX for the CPU: static QDQ quantization (ONNX Runtime) of the backbone and neck,
calibrated on synthetic kitchen frames and, given them, frames of one's own cameras; the first
two convolutions and the detection head's end stay float (the head's output joins box
coordinates, 0–640 px, and class scores, 0–1, in one tensor that a single 8-bit scale would
flatten). `fidelity` says how far a copy's scores are from the float model's. Speed and
fidelity measured: docs/canteen.md and the README (benchmarks/canteen_int8_fidelity.py).
"""
from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path


def int8_model(src: Path | str, out: Path | str | None = None, frames: int = 32, seed: int = 99,
               keep_float: tuple[str, ...] = ("model.0", "model.1"), method: str = "minmax",
               calibration: list | None = None) -> Path:
    """Quantize `src` (.onnx) to `out` (default: `<src>-int8.onnx`); returns the path.
    `calibration`: BGR frames the activation ranges are measured on (frames of the cameras the
    model will watch: `frames_from`), together with `frames` synthetic kitchens (seed `seed`);
    `keep_float`: layers left in float besides the head's last, by ultralytics' layer index
    (default: the first two convolutions, which see the raw pixels; measured to halve the
    score flips at the event engine's thresholds on synthetic frames and cut them by a fifth
    on real ones: benchmarks/canteen_int8_fidelity.py);
    `method`: "minmax" (ranges as seen) or "percentile" (99.999 %: outliers clipped)."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from workbench.canteen.detector import OrtYolo
    from workbench.canteen.synthkitchen import _render

    src = Path(src)
    out = Path(out) if out else src.with_name(src.stem + "-int8.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    runner = OrtYolo(src, _imgsz(src))
    rng = np.random.default_rng(seed)

    class Frames(CalibrationDataReader):
        def __init__(self):
            self.items = [runner._letterbox([_render(rng, runner.imgsz, round(runner.imgsz * 9 / 16))[0]])[0]
                          for _ in range(frames)] + [runner._letterbox([f])[0] for f in (calibration or [])]

        def get_next(self):
            return {runner.input: self.items.pop()} if self.items else None

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        last = max((n.name.split("/")[1] for n in model.graph.node if n.name.startswith("/model.")),
                   key=lambda s: int(s.split(".")[1]) if s.split(".")[1].isdigit() else -1)
        # the head's inner conv layers (cv2.i.0-1: box branch, cv3.i.0-1: class branch) are
        # ordinary feature maps and quantize like the backbone; the last conv of each branch
        # and everything after it (DFL, decode, the joint output) stay float
        inner = re.compile(rf"^/{re.escape(last)}/cv[23]\.\d+/cv[23]\.\d+\.[01]/")
        head = [n.name for n in model.graph.node if n.name.startswith(f"/{last}/") and not inner.match(n.name)]
        head += [n.name for n in model.graph.node if any(n.name.startswith(f"/{k}/") for k in keep_float)]
        calib = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]
        quantize_static(str(pre), str(out), Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=head,
                        calibrate_method=calib)
    # keep ultralytics' metadata (names, imgsz) so the model loads like the float one
    m, q = onnx.load(str(src)), onnx.load(str(out))
    del q.metadata_props[:]
    for p in m.metadata_props:
        q.metadata_props.add(key=p.key, value=p.value)
    onnx.save(q, str(out))
    return out


MEDIA = (".jpg", ".jpeg", ".png", ".bmp")
VIDEOS = (".mp4", ".avi", ".mkv", ".mov", ".ts")


def frames_from(paths, fps: float = 1.0, limit: int = 400, max_side: int = 1280) -> list:
    """BGR frames of images and videos (one frame every 1/`fps` seconds) found at `paths`
    (files or folders, searched recursively, sorted), at most `limit`, each shrunk to at most
    `max_side` pixels on its long side (400 frames of 1080p would hold 2.5 GB); files that
    cannot be read are skipped."""
    import cv2

    files = []
    for p in map(Path, paths):
        files += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    out = []
    for f in files:
        if len(out) >= limit:
            break
        if f.suffix.lower() in MEDIA:
            im = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if im is not None:
                out.append(_smaller(im, max_side))
        elif f.suffix.lower() in VIDEOS:
            cap = cv2.VideoCapture(str(f))
            rate = cap.get(cv2.CAP_PROP_FPS)
            step, k = max(1, round((rate if rate and math.isfinite(rate) else 25) / fps)), 0
            while len(out) < limit:
                ok, im = cap.read()
                if not ok:
                    break
                if k % step == 0:
                    out.append(_smaller(im, max_side))
                k += 1
            cap.release()
    return out


def _smaller(im, max_side: int):
    """A frame no longer than `max_side` on its long side (the network sees 640 anyway)."""
    import cv2

    h, w = im.shape[:2]
    r = max_side / max(h, w)
    return cv2.resize(im, (round(w * r), round(h * r)), interpolation=cv2.INTER_AREA) if r < 1 else im


def held_out_frames(n: int = 24, seed: int = 4242) -> list:
    """Synthetic kitchen frames (640 × 360) from another seed than the calibration's: what a
    copy is checked on when no frames of real cameras are left over."""
    import numpy as np

    from workbench.canteen.synthkitchen import _render

    rng = np.random.default_rng(seed)
    return [_render(rng, 640, 360)[0] for _ in range(n)]


THRESHOLDS = (0.3, 0.4, 0.5)   # the event engine's: min_score, a track's start, a vote's threshold


def fidelity(reference, candidate, images: list, iou: float = 0.5) -> dict:
    """How far `candidate`'s detections (an INT8 copy: workbench.canteen.detector.Detector)
    are from `reference`'s (the float model) on `images` (BGR frames): detections paired by
    class and IoU ≥ `iou` (greedy, the reference's best first), an unpaired one against a
    score of 0. Returns the pairs' score differences (mean, 99th percentile, largest) and
    `flips`: detections that one model has at or above a threshold of the event engine
    (THRESHOLDS) and the other below it, which is what can gain or lose an event."""
    import numpy as np

    diffs, flips, n = [], 0, 0
    ref_all = reference.detect(images)
    cand_all = candidate.detect(images)
    for a, b in zip(ref_all, cand_all):
        used = np.zeros(len(b), bool)
        for i in np.argsort(-a.conf):
            best, best_iou = -1, iou
            for j in np.flatnonzero((b.cls == a.cls[i]) & ~used):
                o = _iou(a.xyxy[i], b.xyxy[j])
                if o >= best_iou:
                    best, best_iou = j, o
            other = 0.0
            if best >= 0:
                used[best] = True
                other = float(b.conf[best])
                diffs.append(other - float(a.conf[i]))
            flips += sum((float(a.conf[i]) >= t) != (other >= t) for t in THRESHOLDS)
            n += 1
        for j in np.flatnonzero(~used):
            flips += sum(float(b.conf[j]) >= t for t in THRESHOLDS)
            n += 1
    d = np.abs(np.asarray(diffs, dtype=float)) if diffs else np.zeros(1)
    return {"images": len(images), "detections": n, "paired": len(diffs), "mean_abs": float(d.mean()),
            "p99_abs": float(np.percentile(d, 99)), "max_abs": float(d.max()), "flips": int(flips)}


def _iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _imgsz(path: Path) -> int:
    from workbench.canteen.detector import _onnx_imgsz

    return _onnx_imgsz(path) or 640
