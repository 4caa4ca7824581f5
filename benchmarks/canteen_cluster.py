"""The cameras on Ray against one process, and failover seconds.

1. overhead: the same N cameras (vtest.avi as 720p H.264, 25 frames/s, 1-s GOP, key frames only,
   each camera its own copy of the clip) analysed as fast as they go (a) by `NodeRunner` in this
   process and (b) by the cluster: a Ray worker node (`ray start`, all cores) holding a camera
   worker and the model holder, frames going from the worker to the holder through Ray.
   Frames/s each, and the overhead (1 - b/a); the goal is ≤ 10 %.
2. failover: two worker nodes, cameras spread over both; one node is killed (SIGKILL of its
   raylet and everything under it); seconds until its cameras run again on the other node
   (their first frame analysed there), with the coordinator polling every second and giving
   a worker up after --dead-after seconds without an answer.

    .venv/bin/python benchmarks/canteen_cluster.py [--cameras 4] [--seconds 60] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def hub_with(cameras: dict, folder: Path):
    import sqlalchemy as sa

    os.environ["WORKBENCH_DB_URL"] = f"sqlite:///{folder / 'city.db'}"
    os.environ["WORKBENCH_DATA_DIR"] = str(folder / "data")
    from workbench.store import hub

    eng = hub.engine()
    with eng.begin() as c:
        c.execute(sa.text("DELETE FROM cameras"))
        c.execute(sa.text("DELETE FROM canteens"))
        c.execute(sa.text("INSERT INTO canteens (canteen_id, name, district) VALUES ('CT1', '基准食堂', '荷塘区')"))
        for cam, src in cameras.items():
            c.execute(sa.text("INSERT INTO cameras (camera_id, canteen_id, source_url) VALUES (:c, 'CT1', :s)"),
                      {"c": cam, "s": src})
    return eng


def frames_of(h) -> int:
    return sum(v["frames"] for w in h["workers"] for v in w["camera_status"].values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--dead-after", type=float, default=5.0)
    ap.add_argument("--json", dest="json_out", default=None)
    a = ap.parse_args()
    from canteen_capacity import vtest_path
    from canteen_decode import make_stream

    from workbench.canteen.cluster import Cluster, LocalNodes, LocalStore, NodeRunner
    from workbench.canteen.detector import Detector
    from workbench.canteen.rules import camera_rules

    work = Path(tempfile.mkdtemp(prefix="cluster-bench-"))
    clip = make_stream(vtest_path(), ROOT / "benchmarks" / "out" / "canteen" / "streams" / "vtest-720p-gop1s.mp4", 720)
    cams = {}
    for i in range(a.cameras):  # a copy per camera (the same file is fine, but copies look like cameras)
        p = work / f"VT-{i}.mp4"
        os.link(clip, p) if clip.stat().st_dev == work.stat().st_dev else p.write_bytes(clip.read_bytes())
        cams[f"VT-{i}"] = str(p)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "cameras": a.cameras,
           "load_before": os.getloadavg()[0]}
    # (a) one process
    det = Detector(ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx", imgsz=a.imgsz, closeup=None)
    det.detect([__import__("numpy").zeros((720, 1280, 3), "uint8")])
    runner = NodeRunner("one-process", det.detect, LocalStore(), evidence=False)
    runner.set_cameras({c: camera_rules(c, {"source": s, "fps": 1}) for c, s in cams.items()})
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < a.seconds:
        n += runner.step()
    one = n / (time.perf_counter() - t0)
    runner.close()
    del det, runner
    res["one_process_frames_per_s"] = round(one, 2)
    print(f"one process: {one:.2f} frames/s = cameras at 1 frame/s", flush=True)
    # (b) a Ray worker node with all the cores
    eng = hub_with(cams, work)
    nodes = LocalNodes(workers=1, cpus=os.cpu_count() or 2, temp_dir=work / "ray").start()
    try:
        cl = Cluster(nodes.address, imgsz=a.imgsz, closeup=None, fps=1, poll_s=1, evidence=False, hub_sink=False)
        cl.start()
        h = cl.tick()
        t_end = time.monotonic() + 120
        while frames_of(h) < 2 * a.cameras and time.monotonic() < t_end:   # warmed up
            time.sleep(1)
            h = cl.tick()
        f0, t0 = frames_of(h), time.perf_counter()
        while time.perf_counter() - t0 < a.seconds:
            time.sleep(2)
            h = cl.tick()
        ray_fps = (frames_of(h) - f0) / (time.perf_counter() - t0)
        cl.shutdown()
    finally:
        nodes.stop()
    res["ray_worker_frames_per_s"] = round(ray_fps, 2)
    res["overhead"] = round(1 - ray_fps / one, 3)
    print(f"Ray worker:  {ray_fps:.2f} frames/s; overhead {100 * res['overhead']:.1f} %", flush=True)
    # failover
    nodes = LocalNodes(workers=2, cpus=1, temp_dir=work / "ray2").start()
    try:
        cl = Cluster(nodes.address, imgsz=a.imgsz, closeup=None, fps=1, poll_s=1, dead_after_s=a.dead_after,
                     evidence=False, hub_sink=False)
        cl.start()
        h = cl.tick()
        t_end = time.monotonic() + 180
        while not (len(h["workers"]) == 2 and all(any(v["frames"] > 2 for v in w["camera_status"].values())
                                                  for w in h["workers"])) and time.monotonic() < t_end:
            time.sleep(1)
            h = cl.tick()
        victim = next(w for w in h["workers"] if w["node"].endswith(f":{nodes.node_ports[0]}"))
        moved = sorted(victim["camera_status"])
        killed = time.monotonic()
        nodes.kill_node(1)
        back = None
        while time.monotonic() - killed < 120:
            h = cl.tick()
            if len(h["workers"]) == 1 and all(h["workers"][0]["camera_status"].get(c, {}).get("frames", 0) > 0
                                              for c in moved):
                back = time.monotonic() - killed
                break
            time.sleep(0.5)
        cl.shutdown()
    finally:
        nodes.stop()
    res["failover_s"] = None if back is None else round(back, 1)
    res["failover_cameras"] = moved
    res["dead_after_s"] = a.dead_after
    res["load_after"] = os.getloadavg()[0]
    print(f"failover: {len(moved)} cameras running again on the other node {back:.1f} s after the kill "
          f"(worker given up after {a.dead_after:g} s without an answer)" if back else "failover: not within 120 s")
    if a.json_out:
        Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_out).write_text(json.dumps(res, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
