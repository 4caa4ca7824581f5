"""Camera capacity of one process: the naive loop against the 明厨亮灶 pipeline, on the same
videos in one run, and whether the pipeline loses any event the naive loop finds.

Cameras sampled at 1 frame per second. Two video sets:
- synthetic kitchens (workbench.canteen.synthkitchen.write_video_set, 60 s each);
- the real pedestrian footage vtest.avi from Debian's opencv-doc (fetched with
  `apt-get download opencv-doc` + `dpkg-deb -x` into benchmarks/out/ when missing),
  one copy per camera, each starting at a different second.

Naive: for every camera's frame, `ultralytics predict` on that one frame with the .pt model,
twice: with torch's threads as ultralytics sets them at its first predict (`NUM_THREADS` =
cores − 1: one thread on a 2-core node, the other core idle; the baseline of the figures
before 2026-11-30), and with torch on all the node's cores (the fairer baseline: on the
2-core Xeon 1.85× faster). The pipeline is compared with both.
Pipeline variants (`--variants`, all in the same run): the motion gate, then the frames of all
cameras that passed in one batch through the .onnx model, then the close-up classifier:
- `float`: ONNX Runtime, f32 (the default runtime);
- `openvino`: the same .onnx compiled by OpenVINO for the CPU, f32;
- `int8`: the INT8 QDQ copy (`workbench canteen quantize`, made into benchmarks/out/ when
  missing: calibrated on synthetic kitchens) on ONNX Runtime; `int8-real`: the same calibrated
  also on real frames nobody here made (`real_frames`, vtest.avi not among them);
  `openvino-int8`: the `int8` copy in OpenVINO's int8 kernels;
- `float@512` (any variant @ an input size): the same at a smaller input.
All feed the same rules engine (workbench.canteen.events), so their events can be compared:
an event of the naive loop is lost when the variant has no event of the same camera and class
overlapping it (5 s slack); an extra event is one of the variant's that no naive event overlaps.

Frames are decoded before timing (decoding is the same for both and is reported apart, per
camera-second of video at its own frame rate), so the first figure is the analysis capacity:
cameras = sampled frames analysed per second of wall time; the second adds decoding
(every frame of the source decoded, one core per decode, spread over the node's cores):
cameras incl. decode = 1 / (1 / frames_per_s + decode_s_per_camera_s / cores).
The load average of the machine is printed before and after (a shared machine: compare
the ratios of one run, not absolute figures across runs).

    .venv/bin/python benchmarks/canteen_capacity.py [--cameras 8] [--seconds 60] [--model models/kitchen/kitchen-yolo11n.pt]
        [--sets synthetic,vtest] [--variants float,openvino,int8,openvino-int8,float@512]
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


def real_frames() -> list:
    """Real frames nobody here made, other than vtest.avi: the photographs and the Megamind.avi
    clip (1 frame/s) of Debian's opencv-doc examples, and ultralytics' bus.jpg and zidane.jpg.
    Every other one calibrates the INT8 copy `int8-real` (and benchmarks/canteen_int8_fidelity.py's
    "real" candidates); the others are that script's validation frames."""
    import ultralytics

    from workbench.canteen.quantize import frames_from

    data = vtest_path().parent
    files = [p for p in sorted(data.glob("*.jpg")) + sorted(data.glob("*.png"))]
    frames = [f for f in frames_from(files) if min(f.shape[:2]) >= 200]
    frames += frames_from([data / "Megamind.avi"])
    return frames + frames_from([Path(ultralytics.__file__).parent / "assets" / n for n in ("bus.jpg", "zidane.jpg")])


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


VARIANTS = {  # name -> (which model: "float" .onnx or an INT8 copy, runtime)
    "float": ("float", "onnxruntime"),
    "openvino": ("float", "openvino"),
    "int8": ("int8", "onnxruntime"),
    "int8-real": ("int8-real", "onnxruntime"),
    "openvino-int8": ("int8", "openvino"),
}


def parse_variant(v: str) -> tuple[str, str, int | None]:
    """"float" / "openvino@512" -> (model kind, runtime, input size or None)."""
    name, _, size = v.partition("@")
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {v!r} (known: {', '.join(VARIANTS)}, each optionally @<input size>)")
    kind, runtime = VARIANTS[name]
    return kind, runtime, int(size) if size else None


class Runner:
    """One way of analysing the cameras, step by step (step i = every camera's i-th frame)."""

    def __init__(self, cams: list[dict], model: str, *, gate: bool, batch: bool, runtime: str = "onnxruntime",
                 imgsz: int | None = None, torch_threads: int | None = None):
        """`torch_threads`: the naive loop's torch threads, set for each of its steps (None:
        what ultralytics chose, `NUM_THREADS` = cores − 1, at its first predict)."""
        from workbench.canteen.detector import Detector
        from workbench.canteen.events import CameraEngine
        from workbench.canteen.rules import camera_rules

        self.cams, self.gate, self.batch = cams, gate, batch
        # the naive loop is the detector alone; the pipeline adds the close-up classifier
        # (phones, cigarettes) when models/kitchen has one: its cost is counted, not hidden
        self.det = Detector(model, imgsz=imgsz, closeup="auto" if gate else None, runtime=runtime)
        self.torch_threads = torch_threads
        self.det.detect([cams[0]["frames"][0]])  # warm-up, not timed (ultralytics sets torch's threads here)
        import torch

        self.default_threads = torch.get_num_threads()
        self.engines = {c["id"]: CameraEngine(camera_rules(c["id"], {"fps": 1, "staff_hours": c["staff_hours"]}))
                        for c in cams}
        self.events, self.frames, self.detected, self.seconds = [], 0, 0, 0.0

    def step(self, i: int) -> None:
        import torch

        torch.set_num_threads(self.torch_threads or self.default_threads)
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
                "torch_threads": self.torch_threads or self.default_threads,
                "frames_per_s": round(self.frames / self.seconds, 2), "events": self.events}


def run_all(cams: list[dict], pt: str, pipes: list[tuple[str, str, int | None]]) -> list[dict]:
    """The naive loop and the pipeline variants [(model path, runtime, input size)],
    interleaved step by step: on a shared, noisy machine all see the same load, so their
    ratios hold even when the absolute figures wander."""
    cores = os.cpu_count() or 1
    runners = [Runner(cams, pt, gate=False, batch=False), Runner(cams, pt, gate=False, batch=False, torch_threads=cores)]
    runners += [Runner(cams, m, gate=True, batch=True, runtime=rt, imgsz=sz) for m, rt, sz in pipes]
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


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags.split(":", 1)[1].split() if f.startswith(("avx", "amx")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=60, help="Seconds of video per camera (1 fps).")
    ap.add_argument("--model", default=str(ROOT / "models" / "kitchen" / "kitchen-yolo11n.pt"),
                    help="The .pt model; the .onnx beside it is the pipeline's.")
    ap.add_argument("--sets", default="synthetic,vtest")
    ap.add_argument("--variants", default="float,openvino,int8",
                    help=f"Pipeline variants side by side: {', '.join(VARIANTS)}, each optionally @<input size>.")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    parsed = [parse_variant(v) for v in variants]
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
    models = {"float": onnx}
    for kind in {k for k, _, _ in parsed} - {"float"}:
        from workbench.canteen import quantize

        path = models[kind] = onnx.with_name(f"{onnx.stem}-{kind}.onnx")
        if not path.exists():
            path = models[kind] = OUT / f"{onnx.stem}-{kind}.onnx"
            # made again when the quantizer changed since (a copy with old settings is not measured)
            if not path.exists() or path.stat().st_mtime < Path(quantize.__file__).stat().st_mtime:
                from workbench.canteen.quantize import int8_model

                int8_model(onnx, path, calibration=real_frames()[0::2] if kind == "int8-real" else None)
    pipes = [(str(models[kind]), rt, sz) for kind, rt, sz in parsed]
    import torch

    cores = os.cpu_count() or 1
    load0 = os.getloadavg()
    machine = {"cpu": cpu_name(), "cores": cores, "simd": cpu_flags(), "load_before": [round(x, 1) for x in load0]}
    print(f"machine: {machine['cpu']} ({platform.machine()}), {cores} cores, {' '.join(machine['simd'])}; "
          f"torch threads {torch.get_num_threads()}, python {platform.python_version()}; models {pt.name} / "
          f"{onnx.name}; load average {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}")
    results = {"machine": machine, "variants": variants}
    for kind in args.sets.split(","):
        cams, dec = cameras_for(kind, args.cameras, args.seconds)
        naive, naive_all, *outs = run_all(cams, str(pt), pipes)
        d = dec["decode_s_per_video_s"]

        def with_decode(fps: float, d: float = d) -> float:
            return 1 / (1 / fps + d / cores)

        r = results[kind] = {
            "cameras": len(cams), "decode_s_per_camera_s_at_source_fps": round(d, 4),
            "naive": {k: v for k, v in naive.items() if k != "events"} | {
                "events": len(naive["events"]), "cameras_incl_decode": round(with_decode(naive["frames_per_s"]), 1)},
            "naive_all_cores": {k: v for k, v in naive_all.items() if k != "events"} | {
                "events": len(naive_all["events"]), "torch_threads": cores,
                "cameras_incl_decode": round(with_decode(naive_all["frames_per_s"]), 1)},
        }
        print(f"[{kind}] {len(cams)} cameras × {naive['frames'] // len(cams)} s at 1 fps; decoding costs "
              f"{d * 100:.1f} % of a core per camera at the source's frame rate")
        naive_threads = naive["torch_threads"]
        for label, nv in ((f"naive (.pt, torch threads as ultralytics sets them: {naive_threads})", naive),
                          (f"naive (.pt, torch on all {cores} cores)", naive_all)):
            print(f"  {label:<58s}: {nv['frames_per_s']:6.2f} frames/s = {int(nv['frames_per_s'])} cameras "
                  f"({with_decode(nv['frames_per_s']):.1f} incl. decode); events {len(nv['events'])}")
        for name, pipe in zip(variants, outs):
            miss = lost(naive["events"], pipe["events"])
            extra = lost(pipe["events"], naive["events"])
            ratio = pipe["frames_per_s"] / naive["frames_per_s"]
            ratio_all = pipe["frames_per_s"] / naive_all["frames_per_s"]
            r[name] = {k: v for k, v in pipe.items() if k != "events"} | {
                "events": len(pipe["events"]), "speedup": round(ratio, 2), "speedup_vs_all_cores": round(ratio_all, 2),
                "lost_events": len(miss),
                "extra_events": len(extra), "cameras_incl_decode": round(with_decode(pipe["frames_per_s"]), 1),
                "speedup_incl_decode": round(with_decode(pipe["frames_per_s"]) / with_decode(naive["frames_per_s"]), 2),
                "lost": [f"{e.camera_id} {e.violation_class} {e.t_start:.0f}s" for e in miss]}
            print(f"  {'pipeline ' + name:<40s}: {pipe['frames_per_s']:6.2f} frames/s = {int(pipe['frames_per_s'])} "
                  f"cameras ({with_decode(pipe['frames_per_s']):.1f} incl. decode); detector on "
                  f"{pipe['detected']}/{pipe['frames']} frames; events {len(pipe['events'])}; {ratio:.2f}× naive "
                  f"({ratio_all:.2f}× naive on all cores), "
                  f"events lost {len(miss)}, extra {len(extra)}", flush=True)
    load1 = os.getloadavg()
    machine["load_after"] = [round(x, 1) for x in load1]
    print(f"load average after: {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
