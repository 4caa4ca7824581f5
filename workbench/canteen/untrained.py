"""An untrained YOLO11n with the kitchen classes: same network, same cost, random weights.

For plumbing checks (the watcher runs end to end, a model loads, exports to ONNX) and for
speed measurements, where the weights do not matter. It finds nothing worth reporting;
the trained demo model is models/kitchen/kitchen-yolo11n.pt (see its MODEL_CARD.md).
"""
from __future__ import annotations

from pathlib import Path

from workbench.canteen.classes import CLASSES


def untrained_model(path: Path | str, imgsz: int = 640, onnx: bool = False) -> Path:
    """Write an untrained yolo11n checkpoint with CLASSES to `path` (.pt); with `onnx`, also
    export it (dynamic batch) and return the .onnx path."""
    from workbench.canteen.yolo_env import ensure_yolo_env

    ensure_yolo_env()
    import torch
    from ultralytics.nn.tasks import DetectionModel

    path = Path(path).with_suffix(".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        torch.manual_seed(0)
        model = DetectionModel("yolo11n.yaml", nc=len(CLASSES), verbose=False)
        model.names = dict(enumerate(CLASSES))
        model.args = {"imgsz": imgsz, "task": "detect"}
        torch.save({"model": model.half(), "train_args": {"imgsz": imgsz, "task": "detect"},
                    "date": None, "version": None}, path)
    if not onnx:
        return path
    out = path.with_suffix(".onnx")
    if not out.exists():
        from ultralytics import YOLO

        YOLO(str(path), task="detect").export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False,
                                              verbose=False)
    return out
