"""Memory over an hour of one camera: a synthetic kitchen clip looped through the real watcher
(hub on a temporary SQLite, evidence images on) as fast as it goes, 3600 sampled frames =
one hour at 1 frame per second. Prints the process's resident memory (RSS) over time.

    .venv/bin/python benchmarks/canteen_memory.py [--frames 3600] [--model models/kitchen/kitchen-yolo11n.onnx]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out" / "canteen"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=3600)
    ap.add_argument("--model", default=str(ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"))
    ap.add_argument("--every", type=int, default=300, help="Print RSS every this many frames.")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="canteen-memory-"))
    os.environ["WORKBENCH_DB_URL"] = f"sqlite:///{tmp / 'city.db'}"
    os.environ["WORKBENCH_DATA_DIR"] = str(tmp / "data")
    import psutil

    from workbench.canteen.pipeline import Watcher
    from workbench.canteen.rules import camera_rules
    from workbench.canteen.sinks import HubSink
    from workbench.canteen.synthkitchen import make_video

    model = Path(args.model)
    if not model.exists():
        from workbench.canteen.untrained import untrained_model

        print(f"{model} missing: untrained yolo11n (same cost; no events)")
        model = untrained_model(OUT / "untrained.pt", onnx=True)
    clip = OUT / "memory-clip.mp4"
    if not clip.exists():
        make_video(clip, seconds=120, fps=10, seed=5)
    meta = json.loads(clip.with_suffix(".meta.json").read_text(encoding="utf-8"))
    rules = camera_rules("MEM-1", {"source": str(clip), "fps": 1, "staff_hours": "05:30-20:30",
                                   "start_time": meta["clock_start"]})
    proc = psutil.Process()
    w = Watcher([rules], str(model), hub=HubSink(), mqtt=None, loop=True)
    samples = []
    t0 = time.perf_counter()

    def watch():
        last = -1
        while not w.stopping:
            f = w.summary.frames
            if f // args.every != last // args.every or f >= args.frames:
                samples.append({"frames": f, "seconds": round(time.perf_counter() - t0, 1),
                                "rss_mib": round(proc.memory_info().rss / 2**20, 1), "events": w.summary.events})
                print(f"  frames {f:5d}  {samples[-1]['seconds']:7.1f} s  RSS {samples[-1]['rss_mib']:7.1f} MiB  "
                      f"events {w.summary.events}", flush=True)
                last = f
            if f >= args.frames:
                w.stop()
                return
            time.sleep(0.2)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    s = w.run()
    th.join(5)
    rss = [x["rss_mib"] for x in samples if x["frames"] >= args.every]
    print(f"frames {s.frames}, detector {s.detected}, events {s.events}, {s.seconds:.0f} s; "
          f"RSS after warm-up {min(rss):.0f}–{max(rss):.0f} MiB" if rss else "too few samples")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(samples, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
