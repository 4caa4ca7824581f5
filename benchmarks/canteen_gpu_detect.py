"""Frames per second of batched kitchen detection (ultralytics YOLO, .pt or .onnx weights).

Two figures per (batch, precision):
  * net: the network alone on a preprocessed batch already on the device (upper bound);
  * e2e: ``model.predict`` on a list of BGR camera frames (letterbox, transfer, network, NMS),
    what the pipeline's ``Detector.detect`` pays per batch of camera frames.

Usage (GPU):  python benchmarks/canteen_gpu_detect.py models/kitchen/kitchen-yolo11n.pt --device 0
Usage (CPU):  python benchmarks/canteen_gpu_detect.py models/kitchen/kitchen-yolo11n.pt --device cpu \
                  --batches 1 8 --precisions fp32 --seconds 2
Prints one JSON object (and writes it with --json PATH). Frames are synthetic kitchen frames.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workbench.canteen.yolo_env import ensure_yolo_env  # noqa: E402


def _frames(n, size=(640, 360), seed=0):
    import numpy as np

    from workbench.canteen.synthkitchen import render_image

    out = []
    for i in range(n):
        img, _ = render_image(np.random.default_rng([seed, 5, i]), max(size))
        out.append(np.ascontiguousarray(img[: size[1], : size[0]]))
    return out


def measure(weights, imgsz=640, device="0", batches=(1, 8, 32), precisions=("fp32", "fp16"), seconds=3.0,
            frame_size=(640, 360)) -> dict:
    ensure_yolo_env()
    import torch
    from ultralytics import YOLO

    cuda = str(device) != "cpu"
    dev = torch.device(f"cuda:{device}" if cuda and str(device).isdigit() else ("cuda" if cuda else "cpu"))
    frames = _frames(max(batches), frame_size)
    res = {"weights": str(weights), "imgsz": imgsz, "frame_size": list(frame_size), "device": str(dev),
           "gpu": torch.cuda.get_device_name(dev) if cuda else None, "torch": torch.__version__, "runs": []}

    def timed(fn, sync):
        for _ in range(5):
            fn()
        sync()
        n, t0 = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            sync()
            dt = time.perf_counter() - t0
            if dt >= seconds and n >= 3:
                return n, dt

    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    for prec in precisions:
        half = prec == "fp16"
        if half and not cuda:
            continue
        is_pt = str(weights).endswith(".pt")
        if is_pt:
            net = YOLO(str(weights)).model.to(dev).eval().fuse()
            net = net.half() if half else net.float()
        for b in batches:
            net_fps = None
            if is_pt:   # an .onnx runs through ONNX Runtime: end-to-end only
                x = torch.rand(b, 3, imgsz, imgsz, device=dev, dtype=torch.float16 if half else torch.float32)
                with torch.inference_mode():
                    n, dt = timed(lambda: net(x), sync)
                net_fps = round(n * b / dt, 1)
            batch_frames = frames[:b]
            pred = YOLO(str(weights))
            n2, dt2 = timed(lambda: pred.predict(batch_frames, imgsz=imgsz, device=dev, verbose=False, conf=0.25,
                                                 quantize=16 if half else None), sync)
            res["runs"].append({"precision": prec, "batch": b, "net_fps": net_fps,
                                "e2e_fps": round(n2 * b / dt2, 1), "e2e_ms_per_batch": round(1000 * dt2 / n2, 2)})
            print(json.dumps(res["runs"][-1]), file=sys.stderr, flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--device", default="0")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "fp16"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = measure(a.weights, a.imgsz, a.device, a.batches, a.precisions, a.seconds)
    text = json.dumps(res, indent=1)
    if a.json:
        Path(a.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
