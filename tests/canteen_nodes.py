"""Test helper (not a test module): one real node's health, as the cluster's coordinator writes it.

A synthetic kitchen clip is watched by a `NodeRunner` (the code every Ray camera worker runs) with
the committed detector; its status, taken while the camera runs, goes through the coordinator's
own `health_report` and `write_health` into data/cluster/canteen.json — no hand-made health."""
from __future__ import annotations

import json
import time
from pathlib import Path

from workbench import config

MODEL = config.ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"


def real_node_health(folder: Path, camera: str = "K0", node: str = "127.0.0.1:61001", write: bool = True):
    """(health dict, the arguments to write it again fresh: cams, status, node_names)."""
    from workbench.canteen.cluster import LocalStore, NodeRunner, health_report, write_health
    from workbench.canteen.detector import Detector
    from workbench.canteen.rules import load_rules
    from workbench.canteen.synthkitchen import make_video

    folder.mkdir(parents=True, exist_ok=True)
    clip = make_video(folder / f"{camera}.mp4", seconds=30, fps=10, seed=21, size=(640, 360)).path
    meta = json.loads(clip.with_suffix(".meta.json").read_text(encoding="utf-8"))
    (folder / "rules.yaml").write_text(json.dumps({"defaults": {"fps": 2}, "cameras": {camera: {
        "source": str(clip), "start_time": meta["clock_start"], "canteen_id": "CT1"}}}), encoding="utf-8")
    rules = load_rules(folder / "rules.yaml").cameras
    det = Detector(MODEL, imgsz=320, closeup=None, deterministic=True)
    runner = NodeRunner(node, det.detect, LocalStore(), evidence=False)
    runner.set_cameras(rules)
    end = time.monotonic() + 120
    try:
        while time.monotonic() < end:
            runner.step()
            st = runner.status()
            if st["cameras"][camera]["frames"] >= 6 and st["cameras"][camera]["state"] == "running":
                break
        status = {"node-a": runner.status()}
    finally:
        runner.close()
    names = {"node-a": node}
    h = health_report(rules, status, node_names=names, poll_s=2.0)
    if write:
        write_health(h)
    return h, (rules, status, names)
