"""Decoding counted: what 1 frame/s from a 25 frames/s H.264 camera costs, and the cameras one
node keeps up with end to end (decode + gate + detector + rules).

Streams: vtest.avi (Debian's opencv-doc, see canteen_capacity.py) re-encoded with Debian's ffmpeg
to H.264 at 25 frames/s, 1-s GOP (a camera's usual "I-frame interval = frame rate"), 720p and 1080p
(benchmarks/out/canteen/streams/), and a 4-s GOP copy of the 720p one (where key frames alone
cannot give 1 frame/s).

1. decode: seconds of CPU per camera-second at 1 frame/s — PyAV key frames only, PyAV full decode
   + sampling, OpenCV (grab/read, what `VideoFileSource` does) — from the file, and from an RTSP
   stream served on loopback by rtsp-server-perl (ffmpeg publishing the file in real time).
2. end to end: N cameras (the 720p stream, each from its own second) through `NodeRunner`
   (PyAV decoding threads, motion gate, ONNX detector, rules) in this process, as fast as they
   go: sampled frames analysed per second = cameras at 1 frame/s this node keeps up with.

    .venv/bin/python benchmarks/canteen_decode.py [--cameras 6] [--seconds 40] [--json out.json]
    .venv/bin/python benchmarks/canteen_decode.py --gpu-clips     # the 20-s clips the GPU run carries
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "out" / "canteen"


def make_stream(src: Path, dest: Path, height: int, gop_s: float = 1.0, seconds: float | None = None,
                crf: int = 26) -> Path:
    """`src` re-encoded with ffmpeg: H.264, 25 frames/s, GOP `gop_s` seconds, 16:9 `height`p."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    gop = str(int(25 * gop_s))
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-y", *(["-t", str(seconds)] if seconds else []),
           "-i", str(src), "-vf", f"fps=25,scale={height * 16 // 9}:{height}", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", str(crf), "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p",
           "-an", str(dest)]
    subprocess.run(cmd, check=True)
    return dest


def cpu_seconds(fn) -> tuple[float, float, object]:
    """(CPU seconds of this process, wall seconds, result) of fn()."""
    c0, w0 = time.process_time(), time.perf_counter()
    r = fn()
    return time.process_time() - c0, time.perf_counter() - w0, r


def decode_file(path: Path, how: str) -> dict:
    from workbench.canteen.sources import AvSource, VideoFileSource

    if how == "opencv":
        src = VideoFileSource("B", str(path), 1.0)
    else:
        src = AvSource("B", str(path), 1.0, decode=how, threads=1)
    cpu, wall, frames = cpu_seconds(lambda: sum(1 for _ in src.frames()))
    return {"how": how, "frames": frames, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
            "cpu_s_per_camera_s": round(cpu / frames, 4), "decoded": getattr(src, "decoded", None),
            "mode": getattr(src, "mode", None)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_rtsp(path: Path, seconds: float, how: str) -> dict:
    """The file published in real time to rtsp-server-perl on loopback; read at 1 frame/s."""
    from workbench.canteen.sources import AvSource

    client, source = _free_port(), _free_port()
    srv = subprocess.Popen(["rtsp-server-perl", "--clientport", str(client), "--serverport", str(source),
                            "--rtp_start_port", str(30000 + client % 2000), "--source_listen_address", "127.0.0.1",
                            "--client_listen_address", "127.0.0.1"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    pub = None
    try:
        time.sleep(1.5)
        pub = subprocess.Popen(["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(path), "-c", "copy",
                                "-f", "rtsp", f"rtsp://127.0.0.1:{source}/cam"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(2.0)
        src = AvSource("R", f"rtsp://127.0.0.1:{client}/cam", 1.0, decode=how, threads=1, offline_after_s=60)
        threading.Timer(seconds, src.stop).start()
        cpu, wall, frames = cpu_seconds(lambda: sum(1 for _ in src.frames()))
        return {"how": f"rtsp-{how}", "frames": frames, "cpu_s": round(cpu, 2), "wall_s": round(wall, 2),
                "cpu_s_per_camera_s": round(cpu / max(wall, 1e-9), 4), "decoded": src.decoded, "mode": src.mode}
    finally:
        for p in (pub, srv):
            if p is not None:
                p.terminate()
                p.wait(timeout=10)


def end_to_end(path: Path, cameras: int, seconds: float, model: Path, imgsz: int | None, decode: str) -> dict:
    """N cameras through NodeRunner (decode threads + gate + batched detector + rules), as fast as they go."""
    from workbench.canteen.cluster import LocalStore, NodeRunner
    from workbench.canteen.detector import Detector
    from workbench.canteen.rules import camera_rules

    det = Detector(model, imgsz=imgsz, closeup=None)
    det.detect([__import__("numpy").zeros((360, 640, 3), "uint8")])
    store = LocalStore()
    rules = {}
    for i in range(cameras):
        rules[f"VT-{i}"] = camera_rules(f"VT-{i}", {"source": str(path), "fps": 1})
    runner = NodeRunner("bench", det.detect, store, evidence=False, decode=decode)
    # each camera from its own second: resume positions
    import datetime as dt

    for i, cam in enumerate(rules):
        store.origins[cam] = dt.datetime(2026, 11, 26, 2, 0)
    runner.set_cameras(rules)
    t0 = time.perf_counter()
    c0 = time.process_time()
    n = 0
    while time.perf_counter() - t0 < seconds:
        n += runner.step()
        if all(r.state in ("ended", "failed") for r in runner.cams.values()) and runner.q.empty():
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    runner.close()
    st = runner.status()
    return {"cameras": cameras, "decode": decode, "frames": n, "seconds": round(wall, 2),
            "frames_per_s": round(n / wall, 2), "cpu_s": round(cpu, 2), "events": st["events"],
            "detected": sum(c["detected"] for c in st["cameras"].values())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=40.0, help="End-to-end run length.")
    ap.add_argument("--rtsp-seconds", type=float, default=20.0)
    ap.add_argument("--model", default=str(ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"))
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--parts", default="decode,rtsp,e2e")
    ap.add_argument("--gpu-clips", action="store_true", help="Only make benchmarks/out/gpu/vtest-<h>p.mp4 (20 s).")
    a = ap.parse_args()
    from canteen_capacity import vtest_path

    vt = vtest_path()
    if a.gpu_clips:
        for h in (360, 720, 1080):
            print(make_stream(vt, ROOT / "benchmarks" / "out" / "gpu" / f"vtest-{h}p.mp4", h, seconds=20, crf=30))
        return
    streams = {f"{h}p": make_stream(vt, OUT / "streams" / f"vtest-{h}p-gop1s.mp4", h) for h in (720, 1080)}
    streams["720p-gop4s"] = make_stream(vt, OUT / "streams" / "vtest-720p-gop4s.mp4", 720, gop_s=4)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
           "load_before": os.getloadavg()[0], "decode": {}, "e2e": []}
    parts = a.parts.split(",")
    for name, p in streams.items():
        if "decode" not in parts:
            break
        hows = ["auto", "full", "opencv"] if "gop4" not in name else ["auto"]
        res["decode"][name] = [decode_file(p, h) for h in hows]
        for r in res["decode"][name]:
            print(f"{name:11s} file {r['how']:7s} ({r['mode'] or '-':9s}): {r['cpu_s_per_camera_s'] * 1000:6.1f} ms CPU "
                  f"per camera-second, {r['decoded'] or '-'} frames decoded for {r['frames']} samples", flush=True)
    if shutil.which("rtsp-server-perl") and "rtsp" in parts:
        for how in ("auto", "full"):
            r = decode_rtsp(streams["720p"], a.rtsp_seconds, how)
            res["decode"].setdefault("720p-rtsp", []).append(r)
            print(f"720p RTSP   {how:7s} ({r['mode']}): {r['cpu_s_per_camera_s'] * 1000:6.1f} ms CPU per camera-second "
                  f"(includes the RTP receive)", flush=True)
    for decode in ("auto", "full") if "e2e" in parts else ():
        r = end_to_end(streams["720p"], a.cameras, a.seconds, Path(a.model), a.imgsz, decode)
        res["e2e"].append(r)
        print(f"end to end 720p, {a.cameras} cameras, decode {decode}: {r['frames_per_s']:.2f} frames/s = cameras at "
              f"1 frame/s (detector on {r['detected']}/{r['frames']}, CPU {r['cpu_s']:.0f} s in {r['seconds']:.0f} s)",
              flush=True)
    res["load_after"] = os.getloadavg()[0]
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
