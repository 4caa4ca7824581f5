"""Kitchen cameras on one GPU node, end to end: decode → batch across cameras → network → NMS,
against the network's raw rate on the same input (issue 14, item 6).

Phases (each a few seconds; the whole run well under 8 minutes on a GPU machine):

1. raw: the network alone (ultralytics YOLO11n, fused, fp16 on the GPU / fp32 on the CPU) on a
   batch already on the device, input 384×640 (what a 16:9 camera letterboxes to at 640) and
   640×640, batch 32/64/128: the upper bound.
2. decode: the cameras' H.264 streams (vtest.avi at 25 frames/s, 1-s GOP, 360p / 720p / 1080p,
   made with Debian's ffmpeg: benchmarks/out/gpu/) decoded by PyAV in `--procs` processes,
   `--cams` cameras each, sampled at 1 frame/s by decoding key frames only and scaled by
   FFmpeg to 640×360 as they are converted; with `--hwaccel cuda` also through NVDEC.
3. e2e: the same decoding processes write frames into shared memory; the main process takes
   them in batches across cameras, uploads (pinned memory), runs the network in fp16 and
   NMS on the device, and brings the boxes back. Frames/s over the measured window =
   cameras at 1 frame/s this node keeps up with; its ratio to the raw rate at 384×640 is the
   issue's "≥ 50 % of the network's raw fp16 rate".

Writes gpu_pipeline.json and gpu_pipeline.txt under --out ($OUT when set).

    python3 benchmarks/canteen_gpu_pipeline.py                       # the GPU machine
    .venv/bin/python benchmarks/canteen_gpu_pipeline.py --device cpu --seconds 5   # smoke run here
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

H, W = 384, 640          # letterboxed input of a 16:9 frame at 640 (rectangular, multiple of 32)
FH, FW = 360, 640        # the frame as FFmpeg scales it
PAD = (H - FH) // 2


# ------------------------------------------------------------------ decoding processes
def _decoder(rank, streams, cams, fps, shm_name, nslots, per_proc, free_q, ready_q, stop, counts, hwaccel, threads):
    """Decode `cams` cameras round-robin (each a stream looped from its own start), write each
    sampled frame into a free slot of the shared ring, send the slot ids in small chunks."""
    import numpy as np
    from multiprocessing import shared_memory

    from workbench.canteen.sources import AvSource

    shm = shared_memory.SharedMemory(name=shm_name)
    ring = np.ndarray((nslots, H, W, 3), np.uint8, buffer=shm.buf)
    gens = []
    for c in range(cams):
        src = streams[(rank * cams + c) % len(streams)]
        s = AvSource(f"P{rank}C{c}", src, fps, decode="keyframes", loop=True, start_at=float((rank * 7 + c * 3) % 15),
                     size=(FW, FH), threads=threads, hwaccel=hwaccel)
        gens.append((s, s.frames()))
    chunk, n = [], 0
    try:
        while not stop.is_set():
            for s, g in gens:
                f = next(g)
                if ready_q is None:      # decode-only phase
                    n += 1
                    continue
                while True:
                    try:
                        slot = free_q.get(timeout=0.2)
                        break
                    except queue.Empty:
                        if stop.is_set():
                            return
                ring[slot, PAD:PAD + FH] = f.image
                chunk.append(slot)
                n += 1
                if len(chunk) >= 4:
                    ready_q.put(chunk)
                    chunk = []
                if stop.is_set():
                    break
            counts[rank] = n
            if chunk and ready_q is not None:
                ready_q.put(chunk)
                chunk = []
    finally:
        counts[rank] = n
        for s, _ in gens:
            s.stop()
        del ring
        shm.close()


class Decoders:
    def __init__(self, streams, procs, cams, fps=1.0, nslots_per_proc=48, feed=True, hwaccel=None, threads=1):
        from multiprocessing import shared_memory

        import numpy as np

        ctx = mp.get_context("spawn")
        self.procs, self.per = procs, nslots_per_proc
        self.nslots = procs * nslots_per_proc
        self.shm = shared_memory.SharedMemory(create=True, size=self.nslots * H * W * 3)
        self.ring = np.ndarray((self.nslots, H, W, 3), np.uint8, buffer=self.shm.buf)
        self.ring[:] = 114
        self.stop = ctx.Event()
        self.counts = ctx.Array("q", procs)
        self.ready = ctx.Queue() if feed else None
        self.free = [ctx.Queue() for _ in range(procs)]
        for r in range(procs):
            for k in range(nslots_per_proc):
                self.free[r].put(r * nslots_per_proc + k)
        self.ps = [ctx.Process(target=_decoder, daemon=True,
                               args=(r, streams, cams, fps, self.shm.name, self.nslots, self.per, self.free[r],
                                     self.ready, self.stop, self.counts, hwaccel, threads)) for r in range(procs)]
        for p in self.ps:
            p.start()

    def release(self, slots):
        for s in slots:
            self.free[s // self.per].put(s)

    def decoded(self) -> int:
        return int(sum(self.counts[:]))

    def close(self):
        self.stop.set()
        for p in self.ps:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
        del self.ring
        self.shm.close()
        self.shm.unlink()


# ------------------------------------------------------------------ the network
def load_net(weights: Path, dev, half: bool):
    from workbench.canteen.yolo_env import checkpoint_problem, ensure_yolo_env

    ensure_yolo_env()
    problem = checkpoint_problem(weights)
    if problem:
        raise SystemExit(f"{weights.name}: {problem}")
    from ultralytics import YOLO

    net = YOLO(str(weights)).model.to(dev).eval().fuse()
    return net.half() if half else net.float()


def raw_rate(net, dev, half, batches, shapes, seconds, sync) -> list[dict]:
    import torch

    out = []
    for h, w in shapes:
        for b in batches:
            x = torch.rand(b, 3, h, w, device=dev, dtype=torch.float16 if half else torch.float32)
            with torch.inference_mode():
                for _ in range(3):
                    net(x)
                sync()
                n, t0 = 0, time.perf_counter()
                while True:
                    net(x)
                    n += 1
                    if n % 5 == 0 or not half:
                        sync()
                        if time.perf_counter() - t0 >= seconds:
                            break
                sync()
                dt = time.perf_counter() - t0
            out.append({"input": f"{h}x{w}", "batch": b, "frames_per_s": round(n * b / dt, 1)})
            print(f"  raw {h}x{w} batch {b}: {out[-1]['frames_per_s']:.0f} frames/s", flush=True)
    return out


def decode_rate(streams, procs, cams, seconds, hwaccel=None) -> dict:
    d = Decoders(streams, procs, cams, feed=False, hwaccel=hwaccel)
    try:
        t_end = time.monotonic() + 60
        while d.decoded() < procs and time.monotonic() < t_end:  # every process has started decoding
            time.sleep(0.1)
        n0, t0 = d.decoded(), time.perf_counter()
        time.sleep(seconds)
        n1, t1 = d.decoded(), time.perf_counter()
    finally:
        d.close()
    return {"frames_per_s": round((n1 - n0) / (t1 - t0), 1), "procs": procs, "cams_per_proc": cams}


def e2e_rate(streams, procs, cams, net, dev, half, batch, seconds, sync, hwaccel=None) -> dict:
    """Decoders → shared ring → pinned batch → device → fp16 network → NMS → host."""
    import numpy as np
    import torch
    from ultralytics.utils.nms import non_max_suppression

    cuda = dev.type == "cuda"
    d = Decoders(streams, procs, cams, hwaccel=hwaccel)
    host = [torch.empty((batch, H, W, 3), dtype=torch.uint8, pin_memory=cuda) for _ in range(3)]
    todo: queue.Queue = queue.Queue(maxsize=2)
    free_bufs: queue.Queue = queue.Queue()
    for i in range(len(host)):
        free_bufs.put(i)
    stop = threading.Event()
    done = {"frames": 0, "boxes": 0, "batches": 0}
    marks = []

    def collect():
        pending = []
        while not stop.is_set():
            bi = free_bufs.get()
            dst = host[bi].numpy()
            while len(pending) < batch and not stop.is_set():
                try:
                    pending += d.ready.get(timeout=0.05 if pending else 0.5)
                except queue.Empty:
                    if pending:
                        break
            take, pending = pending[:batch], pending[batch:]
            if not take:
                free_bufs.put(bi)
                continue
            np.take(d.ring, take, axis=0, out=dst[:len(take)])
            d.release(take)
            todo.put((bi, len(take)))

    def infer():
        stream = torch.cuda.Stream(dev) if cuda else None
        while not stop.is_set():
            try:
                bi, n = todo.get(timeout=0.5)
            except queue.Empty:
                continue
            with torch.inference_mode(), (torch.cuda.stream(stream) if cuda else _null()):
                x = host[bi][:n].to(dev, non_blocking=True)
                x = x[..., [2, 1, 0]].permute(0, 3, 1, 2)
                x = (x.half() if half else x.float()).mul_(1 / 255.0)
                pred = net(x)
                pred = pred[0] if isinstance(pred, (list, tuple)) else pred
                res = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.7, max_det=300)
                boxes = sum(int(r.shape[0]) for r in [r.cpu() for r in res])
            free_bufs.put(bi)
            done["frames"] += n
            done["boxes"] += boxes
            done["batches"] += 1
            marks.append((time.perf_counter(), done["frames"]))

    ths = [threading.Thread(target=collect, daemon=True), threading.Thread(target=infer, daemon=True),
           threading.Thread(target=infer, daemon=True)]
    try:
        for t in ths:
            t.start()
        t_end = time.monotonic() + 90
        while done["frames"] < 4 * batch and time.monotonic() < t_end:  # warm-up (processes, cuDNN)
            time.sleep(0.1)
        f0, t0, dec0 = done["frames"], time.perf_counter(), d.decoded()
        time.sleep(seconds)
        f1, t1, dec1 = done["frames"], time.perf_counter(), d.decoded()
    finally:
        stop.set()
        for t in ths:
            t.join(timeout=5)
        d.close()
    fps = (f1 - f0) / (t1 - t0)
    return {"frames_per_s": round(fps, 1), "decoded_per_s": round((dec1 - dec0) / (t1 - t0), 1),
            "batches": done["batches"], "mean_batch": round(done["frames"] / max(done["batches"], 1), 1),
            "boxes": done["boxes"], "procs": procs, "cams_per_proc": cams, "batch": batch}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda (default when there is one) or cpu")
    ap.add_argument("--seconds", type=float, default=15.0, help="Measured window of each e2e run.")
    ap.add_argument("--model", default=str(ROOT / "models" / "kitchen" / "kitchen-yolo11n.pt"))
    ap.add_argument("--streams", default=str(ROOT / "benchmarks" / "out" / "gpu"),
                    help="Folder of vtest-<360|720|1080>p.mp4 (H.264, 25 fps, 1-s GOP).")
    ap.add_argument("--sizes", default="360,720,1080")
    ap.add_argument("--procs", type=int, default=None, help="Decoding processes (default: cores - 2).")
    ap.add_argument("--cams", type=int, default=8, help="Cameras per decoding process.")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--hwaccel", default="auto", help="'cuda' (NVDEC), 'off', or auto (cuda on a GPU).")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "out" / "gpu-run"))
    a = ap.parse_args(argv)
    import torch

    cuda = (a.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    dev = torch.device("cuda:0" if cuda else "cpu")
    half = cuda
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    cores = os.cpu_count() or 2
    procs = a.procs or max(1, cores - 2)
    batch = a.batch or (64 if cuda else 4)
    quick = not cuda
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"machine": {"cpu_cores": cores, "python": platform.python_version(), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(dev) if cuda else None, "device": str(dev),
                       "precision": "fp16" if half else "fp32"},
           "model": Path(a.model).name, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    try:
        import av

        res["machine"]["av"] = av.__version__
    except ImportError:
        raise SystemExit("PyAV (av) is missing: install it first (pip install av==18.1.0, as pyproject.toml pins it)")
    t_all = time.perf_counter()
    print(f"device {dev} {res['machine']['gpu']}, {cores} cores, {procs} decoding processes × {a.cams} cameras",
          flush=True)
    net = load_net(Path(a.model), dev, half)
    print("1. raw network rate", flush=True)
    res["raw"] = raw_rate(net, dev, half, [2] if quick else [32, 64, 128], [(H, W)] if quick else [(H, W), (640, 640)],
                          1.0 if quick else 3.0, sync)
    raw384 = max(r["frames_per_s"] for r in res["raw"] if r["input"] == f"{H}x{W}")
    res["raw_best_384x640"] = raw384
    sizes = [s for s in a.sizes.split(",") if (Path(a.streams) / f"vtest-{s}p.mp4").exists()]
    if not sizes:
        raise SystemExit(f"no vtest-<size>p.mp4 in {a.streams} (benchmarks/canteen_decode.py --gpu-clips makes them)")
    hw = [None]
    if (a.hwaccel == "auto" and cuda) or a.hwaccel == "cuda":
        hw.append("cuda")
    res["decode"], res["e2e"] = [], []
    for size in sizes:
        stream = [str(Path(a.streams) / f"vtest-{size}p.mp4")]
        for h in hw:
            print(f"2. decode {size}p key frames{' (NVDEC)' if h else ''}", flush=True)
            try:
                r = decode_rate(stream, procs, a.cams, 2.0 if quick else 6.0, hwaccel=h)
            except Exception as exc:  # noqa: BLE001 - NVDEC may be unavailable: say so, go on
                r = {"error": f"{type(exc).__name__}: {exc}"}
            res["decode"].append({"stream": f"{size}p", "hwaccel": h, **r})
            print(f"   {r}", flush=True)
        print(f"3. end to end {size}p", flush=True)
        best_hw = max((d for d in res["decode"] if d["stream"] == f"{size}p" and "frames_per_s" in d),
                      key=lambda d: d["frames_per_s"], default={"hwaccel": None})["hwaccel"]
        try:
            r = e2e_rate(stream, procs, a.cams, net, dev, half, batch, a.seconds, sync, hwaccel=best_hw)
            r["of_raw"] = round(r["frames_per_s"] / raw384, 3)
        except Exception as exc:  # noqa: BLE001
            r = {"error": f"{type(exc).__name__}: {exc}"}
        res["e2e"].append({"stream": f"{size}p", "hwaccel": best_hw, **r})
        print(f"   {r}", flush=True)
    res["seconds"] = round(time.perf_counter() - t_all, 1)
    lines = [f"{res['machine']['gpu'] or 'CPU'} ({dev}), {cores} cores, {res['machine']['precision']}, "
             f"{Path(a.model).name}, PyAV {res['machine']['av']}, torch {torch.__version__}",
             "raw network: " + ", ".join(f"{r['input']} b{r['batch']} {r['frames_per_s']:.0f}/s" for r in res["raw"])]
    for d in res["decode"]:
        lines.append(f"decode {d['stream']} key frames{' NVDEC' if d['hwaccel'] else ''}: "
                     + (f"{d['frames_per_s']:.0f} frames/s" if "frames_per_s" in d else d["error"]))
    for e in res["e2e"]:
        lines.append(f"end to end {e['stream']}{' NVDEC' if e['hwaccel'] else ''}: "
                     + (f"{e['frames_per_s']:.0f} frames/s = cameras at 1 frame/s, {100 * e['of_raw']:.0f} % of the raw "
                        f"{H}x{W} rate ({raw384:.0f}/s), mean batch {e['mean_batch']}" if "frames_per_s" in e
                        else e["error"]))
    lines.append(f"total {res['seconds']} s")
    text = "\n".join(lines)
    (out / "gpu_pipeline.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    (out / "gpu_pipeline.txt").write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
