"""Which INT8 copy of the kitchen detector keeps the float model's scores: candidates side by
side, each measured on frames that are neither its calibration frames nor the vtest.avi that
benchmarks/canteen_capacity.py judges events on.

Validation frames:
- synthetic kitchens: 48 frames rendered from another seed than the calibration's;
- real images nobody here made: the photographs and the Megamind.avi clip (1 frame/s) of
  Debian's opencv-doc examples (vtest.avi left out), and ultralytics' bus.jpg and zidane.jpg;
  every other one calibrates the candidates calibrated on real frames ("real…"), the others
  validate every candidate.
Per candidate: `workbench.canteen.quantize.fidelity` against the float .onnx (score
differences of paired detections; flips at the event engine's thresholds 0.3 / 0.4 / 0.5)
and the network's time per frame at 640 × 480, two frames side by side on the node's cores
(as the pipeline runs it).

    .venv/bin/python benchmarks/canteen_int8_fidelity.py [--candidates all,first,real,real+first,...] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "out" / "canteen"
MODEL = ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"

CANDIDATES = {   # name -> int8_model keyword arguments
    "all": {"keep_float": ()},
    "first": {},                      # int8_model's default: the first two convolutions in float
    "psa": {"keep_float": ("model.10",)},
    "first+psa": {"keep_float": ("model.0", "model.1", "model.10")},
    "percentile": {"keep_float": (), "method": "percentile"},
    "calib128": {"keep_float": (), "frames": 128},
    "real": {"keep_float": (), "calibration": "real"},
    "real+first": {"calibration": "real"},
}


def net_ms(path: Path, reps: int = 20) -> float:
    import numpy as np

    from workbench.canteen.detector import OrtYolo

    y = OrtYolo(path, 640)
    x = [np.full((576, 768, 3), 128, np.uint8)] * 2
    y(x, 0.1)
    t = time.perf_counter()
    for _ in range(reps):
        y(x, 0.1)
    return (time.perf_counter() - t) / (2 * reps) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    from workbench.canteen.detector import Detector
    from workbench.canteen.quantize import fidelity, held_out_frames, int8_model
    from workbench.canteen.yolo_env import ensure_yolo_env

    ensure_yolo_env()
    from canteen_capacity import real_frames

    real = real_frames()
    # real images: every other one calibrates the "real" candidates, the rest validates all
    sets = {"synthetic": held_out_frames(48), "real": real[1::2]}
    calib = real[0::2]
    print({k: len(v) for k, v in sets.items()}, flush=True)
    ref = Detector(MODEL, closeup=None)
    rows = [{"candidate": "float", "net_ms": round(net_ms(MODEL), 1)}]
    print(rows[0], flush=True)
    for name in [c.strip() for c in args.candidates.split(",") if c.strip()]:
        path = OUT / f"int8-{name}.onnx"
        if not path.exists():
            t = time.perf_counter()
            kw = dict(CANDIDATES[name])
            if kw.get("calibration") == "real":
                kw["calibration"] = calib
            int8_model(MODEL, path, **kw)
            print(f"{name}: quantized in {time.perf_counter() - t:.0f} s", flush=True)
        cand = Detector(path, closeup=None)
        row = {"candidate": name, "net_ms": round(net_ms(path), 1)}
        for k, frames in sets.items():
            f = fidelity(ref, cand, frames)
            row |= {f"{k}_{m}": (round(v, 4) if isinstance(v, float) else v) for m, v in f.items()}
        rows.append(row)
        print(row, flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
