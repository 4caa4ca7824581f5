"""Camera capacity of one process: the naive loop against the 明厨亮灶 pipeline, on the same
videos in one run, and whether the pipeline loses any event the naive loop finds.

Cameras sampled at 1 frame per second. Two video sets:
- synthetic kitchens (workbench.canteen.synthkitchen.write_video_set, 60 s each);
- the real pedestrian footage vtest.avi from Debian's opencv-doc (fetched with
  `apt-get download opencv-doc` + `dpkg-deb -x` into benchmarks/out/ when missing),
  one copy per camera, each starting at a different second.

Naive: for every camera's frame, `ultralytics predict` on that one frame with the .pt model.
Pipeline: the motion gate, then the frames of all cameras that passed in one batch through the
.onnx model (ONNX Runtime); and the same with the INT8 copy (`workbench canteen quantize`,
made into benchmarks/out/ when missing). All feed the same rules engine (workbench.canteen.events), so
their events can be compared: an event of the naive loop is lost when the pipeline has no
event of the same camera and class overlapping it.

Frames are decoded before timing (decoding is the same for both and is reported apart, per
camera-second of 25 fps video), so the figure is the analysis capacity:
cameras = sampled frames analysed per second of wall time.

    .venv/bin/python benchmarks/canteen_capacity.py [--cameras 8] [--seconds 60] [--model models/kitchen/kitchen-yolo11n.pt]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out" / "canteen"


def vtest_path() -> Path:
    """examples/data/vtest.avi of Debian's opencv-doc, fetched with apt when missing."""
    dest = OUT / "opencv-doc"
    found = list(dest.rglob("vtest.avi")) if dest.exists() else []
    if found:
        return found[0]
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=dest, check=True, capture_output=True)
    deb = next(dest.glob("opencv-doc_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest / "x")], check=True)
    found = list(dest.rglob("vtest.avi"))
    if not found:
        raise SystemExit("vtest.avi not found in opencv-doc")
    return found[0]


def sampled(path: Path, fps: float = 1.0) -> tuple[list, float, float]:
    """Frames at `fps`, the seconds spent decoding, and the video's length in seconds."""
    from workbench.canteen.sources import VideoFileSource

    t = time.perf_counter()
    frames = [f.image for f in VideoFileSource("bench", str(path), fps).frames()]
    secs = time.perf_counter() - t
    import cv2

    cap = cv2.VideoCapture(str(path))
    length = (cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) / (cap.get(cv2.CAP_PROP_FPS) or 25)
    cap.release()
    return frames, secs, length


def cameras_for(kind: str, n: int, seconds: int) -> tuple[list[dict], dict]:
    """[{id, frames, start, staff_hours}] per camera, and decode figures."""
    if kind == "synthetic":
        from workbench.canteen.synthkitchen import write_video_set

        folder = OUT / f"synthetic-{n}x{seconds}"
        clips = sorted(folder.glob("kitchen_*.mp4"))
        if len(clips) < n:
            write_video_set(folder, n=n, seconds=seconds, seed=11)
            clips = sorted(folder.glob("kitchen_*.mp4"))
        cams, dec, length = [], 0.0, 0.0
        for i, c in enumerate(clips[:n]):
            frames, s, ln = sampled(c)
            meta = json.loads(c.with_suffix(".meta.json").read_text(encoding="utf-8"))
            start = dt.datetime.fromisoformat(meta["clock_start"]).astimezone(dt.timezone.utc).replace(tzinfo=None)
            cams.append({"id": f"SYN-{i}", "frames": frames, "start": start, "staff_hours": "05:30-20:30"})
            dec += s
            length += ln
        return cams, {"decode_s_per_video_s": dec / max(length, 1e-9)}
    path = vtest_path()
    frames, s, ln = sampled(path)
    cams = []
    for i in range(n):
        k = (i * 10) % len(frames)
        cams.append({"id": f"VT-{i}", "frames": (frames[k:] + frames[:k])[:seconds],
                     "start": dt.datetime(2026, 11, 26, 2, 0), "staff_hours": None})
    return cams, {"decode_s_per_video_s": s / max(ln, 1e-9), "video": str(path)}


class Runner:
    """One way of analysing the cameras, step by step (step i = every camera's i-th frame)."""

    def __init__(self, cams: list[dict], model: str, *, gate: bool, batch: bool):
        from workbench.canteen.detector import Detector
        from workbench.canteen.events import CameraEngine
        from workbench.canteen.rules import camera_rules

        self.cams, self.gate, self.batch = cams, gate, batch
        # the naive loop is the detector alone; the pipeline adds the close-up classifier
        # (phones, cigarettes) when models/kitchen has one: its cost is counted, not hidden
        self.det = Detector(model, closeup="auto" if gate else None)
        self.det.detect([cams[0]["frames"][0]])  # warm-up, not timed
        self.engines = {c["id"]: CameraEngine(camera_rules(c["id"], {"fps": 1, "staff_hours": c["staff_hours"]}))
                        for c in cams}
        self.events, self.frames, self.detected, self.seconds = [], 0, 0, 0.0

    def step(self, i: int) -> None:
        t0 = time.perf_counter()
        step = []
        for c in self.cams:
            img = c["frames"][i]
            go = self.engines[c["id"]].wants(img, float(i)) if self.gate else True
            step.append((c, img, go))
        todo = [img for _, img, go in step if go]
        if self.batch:
            dets = self.det.detect(todo) if todo else []
        else:
            dets = [self.det.detect([img])[0] for img in todo]
        it = iter(dets)
        for c, img, go in step:
            d = next(it) if go else None
            ts = c["start"] + dt.timedelta(seconds=i)
            for ch in self.engines[c["id"]].observe(float(i), ts, img, d):
                if ch.kind == "new":
                    self.events.append(ch.event)
            self.frames += 1
            self.detected += int(go)
        self.seconds += time.perf_counter() - t0

    def result(self) -> dict:
        for eng in self.engines.values():
            eng.close()
        return {"frames": self.frames, "detected": self.detected, "seconds": round(self.seconds, 2),
                "frames_per_s": round(self.frames / self.seconds, 2), "events": self.events}


def run_all(cams: list[dict], pt: str, onnx: str, int8: str | None) -> list[dict]:
    """The naive loop and the pipeline (float ONNX, and INT8 ONNX), interleaved step by step:
    on a shared, noisy machine all see the same load, so their ratios hold even when the
    absolute figures wander."""
    runners = [Runner(cams, pt, gate=False, batch=False), Runner(cams, onnx, gate=True, batch=True)]
    if int8:
        runners.append(Runner(cams, int8, gate=True, batch=True))
    for i in range(min(len(c["frames"]) for c in cams)):
        for r in runners:
            r.step(i)
    return [r.result() for r in runners]


def lost(naive_events, pipe_events, slack: float = 5.0) -> list:
    out = []
    for a in naive_events:
        if not any(b.camera_id == a.camera_id and b.violation_class == a.violation_class
                   and b.t_start <= a.t_last + slack and a.t_start <= b.t_last + slack for b in pipe_events):
            out.append(a)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=60, help="Seconds of video per camera (1 fps).")
    ap.add_argument("--model", default=str(ROOT / "models" / "kitchen" / "kitchen-yolo11n.pt"),
                    help="The .pt model; the .onnx beside it is the pipeline's.")
    ap.add_argument("--sets", default="synthetic,vtest")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    from workbench.canteen.yolo_env import ensure_yolo_env

    ensure_yolo_env()
    pt = Path(args.model)
    if not pt.exists():
        from workbench.canteen.untrained import untrained_model

        print(f"{pt} missing: using an untrained yolo11n (same network, same cost; events meaningless)")
        pt = untrained_model(OUT / "untrained.pt")
    onnx = pt.with_suffix(".onnx")
    if not onnx.exists():
        from workbench.canteen.untrained import untrained_model

        onnx = untrained_model(pt, onnx=True)
    int8 = onnx.with_name(onnx.stem + "-int8.onnx")
    if not int8.exists():
        int8 = OUT / (onnx.stem + "-int8.onnx")
        if not int8.exists():
            from workbench.canteen.quantize import int8_model

            int8_model(onnx, int8)
    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
          f"python {platform.python_version()}; models {pt.name} / {onnx.name}")
    results = {}
    for kind in args.sets.split(","):
        cams, dec = cameras_for(kind, args.cameras, args.seconds)
        naive, *pipes = run_all(cams, str(pt), str(onnx), str(int8) if int8 else None)
        r = results[kind] = {
            "cameras": len(cams), "decode_s_per_camera_s_at_source_fps": round(dec["decode_s_per_video_s"], 4),
            "naive": {k: v for k, v in naive.items() if k != "events"} | {"events": len(naive["events"])},
        }
        print(f"[{kind}] {len(cams)} cameras × {naive['frames'] // len(cams)} s at 1 fps; decoding costs "
              f"{dec['decode_s_per_video_s'] * 100:.1f} % of a core per camera at the source's frame rate")
        print(f"  naive          (.pt, every frame, one by one): {naive['frames_per_s']:6.2f} frames/s = "
              f"{int(naive['frames_per_s'])} cameras; events {len(naive['events'])}")
        for name, pipe in zip(("pipeline", "pipeline_int8"), pipes):
            miss = lost(naive["events"], pipe["events"])
            ratio = pipe["frames_per_s"] / naive["frames_per_s"]
            r[name] = {k: v for k, v in pipe.items() if k != "events"} | {
                "events": len(pipe["events"]), "speedup": round(ratio, 2), "lost_events": len(miss),
                "lost": [f"{e.camera_id} {e.violation_class} {e.t_start:.0f}s" for e in miss]}
            label = "gate + batch + ONNX" + (" INT8" if name.endswith("int8") else "")
            print(f"  {label:<32s}: {pipe['frames_per_s']:6.2f} frames/s = {int(pipe['frames_per_s'])} cameras; "
                  f"detector on {pipe['detected']}/{pipe['frames']} frames; events {len(pipe['events'])}; "
                  f"{ratio:.2f}× naive, events lost {len(miss)}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
