"""Train, export and evaluate the kitchen detector (a thin wrapper over ultralytics).

Used by notebooks/canteen_train.ipynb, the GPU script benchmarks/canteen_gpu_train.sh and
``python -m workbench.canteen.train``. ultralytics is imported lazily, after
:func:`workbench.canteen.yolo_env.ensure_yolo_env` (offline, project-local settings).

The dataset is any YOLO-format ``data.yaml`` whose ``names`` are exactly
:data:`workbench.canteen.classes.CLASSES` in that order; without one, the synthetic
kitchen set is rendered first (:func:`workbench.canteen.synthkitchen.make_dataset`).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from workbench import config
from workbench.canteen.classes import CLASSES, LABELS_ZH
from workbench.canteen.yolo_env import CheckpointError, checked_checkpoint, ensure_yolo_env

MODEL_DIR = config.ROOT / "models" / "kitchen"
MODEL_NAME = "kitchen-yolo11n"


class DatasetError(ValueError):
    """A data.yaml that cannot train this detector (the message says why)."""


@dataclass
class TrainResult:
    save_dir: Path
    weights: Path                  # best.pt (last.pt when no best was written)
    results_csv: Path | None
    data_yaml: Path
    epochs_done: int
    seconds: float
    args: dict = field(default_factory=dict)


def check_data_yaml(data_yaml) -> dict:
    """Read a data.yaml and check its class names match CLASSES (order included)."""
    import yaml

    path = Path(data_yaml)
    if not path.is_file():
        raise DatasetError(f"{path}: no such data.yaml")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DatasetError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(cfg, dict) or "names" not in cfg or "train" not in cfg or "val" not in cfg:
        raise DatasetError(f"{path}: needs 'train', 'val' and 'names'")
    names = cfg["names"]
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    if tuple(names) != CLASSES:
        raise DatasetError(f"{path}: class names {names} differ from workbench.canteen.classes.CLASSES "
                           f"{list(CLASSES)}; relabel the dataset to the same names in the same order")
    return cfg


def synthetic_data(out_dir, n_train=2000, n_val=200, imgsz=640, seed=0, workers=None, progress=None) -> Path:
    """Render the synthetic kitchen set under out_dir (reused when complete with the same settings).

    A stamp file `synth.json` marks the folder as ours: only such a folder is ever deleted
    (for other settings, or after an interrupted render); any other non-empty folder is refused.
    """
    from workbench.canteen.synthkitchen import cpu_count, make_dataset

    out_dir = Path(out_dir)
    stamp = out_dir / "synth.json"
    want = {"n_train": int(n_train), "n_val": int(n_val), "imgsz": int(imgsz), "seed": int(seed)}
    if stamp.is_file():
        if json.loads(stamp.read_text()) == {**want, "complete": True} and (out_dir / "data.yaml").is_file():
            return out_dir / "data.yaml"
        shutil.rmtree(out_dir)
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise DatasetError(f"{out_dir}: exists and is not a synthetic kitchen set; choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({**want, "complete": False}))
    path = make_dataset(out_dir, n_train=n_train, n_val=n_val, imgsz=imgsz, seed=seed,
                        workers=workers or cpu_count(), progress=progress)
    stamp.write_text(json.dumps({**want, "complete": True}))
    return path


def _trust_amp_offline():
    """ultralytics' AMP check downloads yolo26n.pt; offline, trust AMP on a CUDA GPU instead."""
    import ultralytics.engine.trainer as trainer

    trainer.check_amp = lambda model: next(model.parameters()).device.type == "cuda"


def train(data=None, epochs: int = 30, imgsz: int = 640, model: str = "yolo11n.yaml", device=None,
          out=None, name: str = MODEL_NAME, batch: int = 16, workers: int = 2, cache=False,
          time_hours: float | None = None, seed: int = 0, n_train: int = 2000, n_val: int = 200,
          val: bool = True, plots: bool = True, patience: int = 100, skip_bad_labels: bool = False,
          **overrides) -> TrainResult:
    """Train a detector; `data` None renders the synthetic set under `out/data`.

    `out` (default :func:`default_out`, git-ignored) holds the run folder `out/<name>`.

    `model` is a model yaml (from scratch, e.g. yolo11n.yaml) or a .pt to fine-tune.
    `time_hours` caps the training time (ultralytics re-plans the epochs to fit).
    Bad label lines (:func:`label_problems`) stop it with a DatasetError, unless
    `skip_bad_labels`: then those images stay out of training and the lines are kept in
    ``<run>/label_problems.csv``.
    """
    checked_checkpoint(model, "起始模型")   # a .pt to fine-tune is unpickled by ultralytics: checked first
    out = Path(out).resolve() if out else default_out()
    if data is None:
        data = synthetic_data(out / "data", n_train=n_train, n_val=n_val, imgsz=imgsz, seed=seed)
    data = Path(data).resolve()
    check_data_yaml(data)
    problems = label_problems(data)
    if len(problems) and not skip_bad_labels:
        first = "; ".join(f"{Path(r.file).name}:{r.line} {r.reason}" for r in problems.head(5).itertuples())
        raise DatasetError(f"{data}: {len(problems)} bad label lines in "
                           f"{problems['file'].nunique()} files ({first} ...); fix them, or pass "
                           f"skip_bad_labels=True to train without those images (listed in label_problems.csv)")
    ensure_yolo_env()
    _trust_amp_offline()
    from ultralytics import YOLO

    t0 = dt.datetime.now()
    yolo = YOLO(model)
    args = dict(data=str(data), epochs=int(epochs), imgsz=int(imgsz), batch=int(batch), workers=int(workers),
                cache=cache, project=str(out), name=name, exist_ok=True, pretrained=str(model).endswith(".pt"),
                seed=int(seed), deterministic=False, val=bool(val), plots=bool(plots), patience=int(patience),
                verbose=True)
    if device is not None:
        args["device"] = device
    if time_hours:
        args["time"] = float(time_hours)
    args.update(overrides)
    yolo.train(**args)
    save_dir = Path(yolo.trainer.save_dir)
    if len(problems):
        problems.to_csv(save_dir / "label_problems.csv", index=False)
    best, last = save_dir / "weights" / "best.pt", save_dir / "weights" / "last.pt"
    results_csv = save_dir / "results.csv"
    epochs_done = 0
    if results_csv.is_file():
        epochs_done = max(0, len(results_csv.read_text().strip().splitlines()) - 1)
    return TrainResult(save_dir=save_dir, weights=best if best.is_file() else last,
                       results_csv=results_csv if results_csv.is_file() else None, data_yaml=data,
                       epochs_done=epochs_done, seconds=(dt.datetime.now() - t0).total_seconds(), args=args)


def export_onnx(weights, imgsz: int = 640, out: Path | None = None, dynamic: bool = True) -> Path:
    """Export weights to ONNX (dynamic batch and size, simplified); returns the .onnx path."""
    checked_checkpoint(weights)
    ensure_yolo_env()
    from ultralytics import YOLO

    path = Path(YOLO(str(weights)).export(format="onnx", imgsz=int(imgsz), dynamic=dynamic, simplify=True,
                                          device="cpu"))
    if out is not None and Path(out) != path:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        path = Path(out)
    return path


def evaluate_boxes(model_path, data_yaml, imgsz: int = 640, device=None, batch: int = 16, split: str = "val",
                   plots: bool = False, save_dir=None):
    """Box metrics per class (ultralytics val): P, R, mAP50, mAP50-95; an 'all' row first.

    Returns a DataFrame with columns class, class_zh, images, instances, precision,
    recall, map50, map50_95. Classes absent from the split are listed with zero instances
    and NaN metrics.
    """
    import numpy as np
    import pandas as pd

    check_data_yaml(data_yaml)
    checked_checkpoint(model_path)
    ensure_yolo_env()
    from ultralytics import YOLO

    kw = dict(data=str(data_yaml), imgsz=int(imgsz), batch=int(batch), split=split, plots=plots, verbose=False)
    if device is not None:
        kw["device"] = device
    if save_dir is not None:
        kw.update(project=str(Path(save_dir).parent), name=Path(save_dir).name, exist_ok=True)
    m = YOLO(str(model_path)).val(**kw)
    rows = {c: dict(images=0, instances=0, precision=np.nan, recall=np.nan, map50=np.nan, map50_95=np.nan)
            for c in CLASSES}
    nt_img = getattr(m, "nt_per_image", None)
    nt_cls = getattr(m, "nt_per_class", None)
    for i, c in enumerate(m.ap_class_index):
        p, r, ap50, ap = m.class_result(i)
        name = CLASSES[int(c)]
        rows[name].update(precision=float(p), recall=float(r), map50=float(ap50), map50_95=float(ap))
    for k, name in enumerate(CLASSES):
        if nt_img is not None and k < len(nt_img):
            rows[name]["images"] = int(nt_img[k])
        if nt_cls is not None and k < len(nt_cls):
            rows[name]["instances"] = int(nt_cls[k])
    mp, mr, map50, map_ = m.mean_results()
    df = pd.DataFrame([{"class": "all", "class_zh": "全部", "images": None,
                        "instances": int(sum(r["instances"] for r in rows.values())),
                        "precision": mp, "recall": mr, "map50": map50, "map50_95": map_}]
                      + [{"class": c, "class_zh": LABELS_ZH[c], **rows[c]} for c in CLASSES])
    return df


def default_out() -> Path:
    """Where notebook/CLI training runs go by default: <data dir>/models/kitchen-train (git-ignored)."""
    return config.data_dir() / "models" / "kitchen-train"


def _split_dirs(data_yaml, split):
    cfg = check_data_yaml(data_yaml)
    root = Path(cfg.get("path") or Path(data_yaml).parent)
    if not root.is_absolute():
        root = (Path(data_yaml).parent / root).resolve()
    images = Path(cfg[split])
    images = images if images.is_absolute() else root / images
    # ultralytics' rule: the last /images/ in an image's path becomes /labels/
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    labels = Path(sb.join(f"{images}{os.sep}".rsplit(sa, 1)))
    return images, labels


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def label_problems(data_yaml):
    """Every bad line of a YOLO dataset's label files, with a stable reason (nothing fixed).

    Returns a DataFrame (split, file, line, reason, text); empty when all labels are good.
    Reasons: 字段数不是5 · 不是数字 · 类别编号超出范围 · 坐标超出0到1 · 宽高不为正 · 标注文件没有对应图片.
    ultralytics leaves an image with a bad label file out of training altogether.
    """
    import math

    import pandas as pd

    rows = []
    for split in ("train", "val"):
        images, labels = _split_dirs(data_yaml, split)
        stems = {p.stem for p in images.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
        for lab in sorted(labels.glob("*.txt")):
            if lab.stem not in stems:
                rows.append((split, str(lab), 0, "标注文件没有对应图片", ""))
            for n, line in enumerate(lab.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                reason = ""
                if len(parts) != 5:
                    reason = "字段数不是5"
                else:
                    try:
                        c, x, y, w, h = (float(v) for v in parts)
                    except ValueError:
                        reason = "不是数字"
                    else:
                        if not all(math.isfinite(v) for v in (c, x, y, w, h)):
                            reason = "不是数字"
                        elif c != int(c) or not 0 <= int(c) < len(CLASSES):
                            reason = "类别编号超出范围"
                        elif w <= 0 or h <= 0:
                            reason = "宽高不为正"
                        elif not (0 <= x - w / 2 + 1e-6 and x + w / 2 <= 1 + 1e-6
                                  and 0 <= y - h / 2 + 1e-6 and y + h / 2 <= 1 + 1e-6):
                            reason = "坐标超出0到1"
                if reason:
                    rows.append((split, str(lab), n, reason, line[:200]))
    return pd.DataFrame(rows, columns=["split", "file", "line", "reason", "text"])


def dataset_summary(data_yaml):
    """Images and boxes per class and split of a YOLO dataset (reads the label files)."""
    import pandas as pd

    rows = []
    for split in ("train", "val"):
        images, labels = _split_dirs(data_yaml, split)
        counts = [0] * len(CLASSES)
        with_boxes = [0] * len(CLASSES)
        n_images = sum(1 for p in images.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for lab in labels.glob("*.txt"):
            seen = set()
            for line in lab.read_text(encoding="utf-8", errors="replace").splitlines():
                parts = line.split()
                if parts:
                    try:
                        c = int(float(parts[0]))
                    except ValueError:
                        continue          # listed by label_problems
                    if 0 <= c < len(CLASSES):
                        counts[c] += 1
                        seen.add(c)
            for c in seen:
                with_boxes[c] += 1
        for c, name in enumerate(CLASSES):
            rows.append({"split": split, "class": name, "class_zh": LABELS_ZH[name], "images": with_boxes[c],
                         "boxes": counts[c], "split_images": n_images})
    return pd.DataFrame(rows)


def preview(data_yaml, split: str = "train", n: int = 4, size: int = 320):
    """A row of n dataset images with their label boxes drawn (BGR array), for a quick look."""
    import cv2
    import numpy as np

    images, labels = _split_dirs(data_yaml, split)
    tiles = []
    for img_path in sorted(images.glob("*"))[:n]:
        img = cv2.imread(str(img_path))
        if img is None:
            continue
        h, w = img.shape[:2]
        lab = labels / f"{img_path.stem}.txt"
        for line in (lab.read_text().splitlines() if lab.is_file() else []):
            try:
                c, x, y, bw, bh = (float(v) for v in line.split()[:5])
                name = CLASSES[int(c)]
            except (ValueError, IndexError):
                continue          # listed by label_problems
            x0, y0 = int((x - bw / 2) * w), int((y - bh / 2) * h)
            x1, y1 = int((x + bw / 2) * w), int((y + bh / 2) * h)
            col = [(0, 200, 0), (0, 160, 255), (255, 0, 255)][int(c) % 3]
            cv2.rectangle(img, (x0, y0), (x1, y1), col, max(1, w // 320))
            cv2.putText(img, name, (x0, max(10, y0 - 2)), cv2.FONT_HERSHEY_SIMPLEX, 0.35 * w / 320,
                        col, 1, cv2.LINE_AA)
        tiles.append(cv2.resize(img, (size, size)))
    return np.hstack(tiles) if tiles else np.zeros((size, size, 3), np.uint8)


def results_frame(results_csv):
    """results.csv of a training run with Chinese column names for the losses."""
    import pandas as pd

    df = pd.read_csv(results_csv)
    df.columns = [c.strip() for c in df.columns]
    names = {"train/box_loss": "框损失", "train/cls_loss": "分类损失", "train/dfl_loss": "DFL损失",
             "metrics/mAP50(B)": "mAP50", "metrics/mAP50-95(B)": "mAP50-95"}
    keep = ["epoch", "time", *[c for c in names if c in df.columns]]
    return df[keep].rename(columns={"epoch": "轮次", "time": "用时(秒)", **names})


def write_model_card(path, result: TrainResult, metrics, note: str = "") -> Path:
    """A draft MODEL_CARD.md for a training run (classes, data, command, metrics, date)."""
    env = environment()
    lines = [f"# Model card: {result.save_dir.name}", "",
             f"- weights: `{result.weights}`", f"- trained: {dt.date.today().isoformat()}, "
             f"{result.epochs_done} epochs in {result.seconds / 3600:.3f} h",
             f"- data: `{result.data_yaml}`", f"- settings: model={result.args.get('model', '')} "
             f"imgsz={result.args.get('imgsz')} batch={result.args.get('batch')} "
             f"device={result.args.get('device', 'auto')}",
             f"- software: torch {env.get('torch')}, ultralytics {env.get('ultralytics')}, gpu {env.get('gpu')}",
             "- classes: " + ", ".join(f"{i} `{c}`" for i, c in enumerate(CLASSES)), "",
             "## Box metrics (val)", "", "| class | instances | P | R | mAP50 | mAP50-95 |",
             "|---|---:|---:|---:|---:|---:|"]
    for _, r in metrics.iterrows():
        lines.append(f"| `{r['class']}` | {r['instances']} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['map50']:.3f} | {r['map50_95']:.3f} |")
    if note:
        lines += ["", note]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def environment() -> dict:
    """Versions of what trained / ran the model (for the model card)."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "ultralytics", "numpy", "cv2", "onnx", "onnxruntime"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:   # noqa: BLE001 - absent is fine
            info[mod] = None
    try:
        import torch

        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:   # noqa: BLE001
        pass
    return info


# ----------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m workbench.canteen.train",
                                 description="Render the synthetic kitchen set, train, export and evaluate.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dataset", help="render the synthetic YOLO dataset")
    d.add_argument("--out", required=True)
    d.add_argument("--n-train", type=int, default=2000)
    d.add_argument("--n-val", type=int, default=200)
    d.add_argument("--imgsz", type=int, default=640)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    t = sub.add_parser("train", help="train a detector")
    t.add_argument("--data", default=None, help="data.yaml (default: render the synthetic set)")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--imgsz", type=int, default=640)
    t.add_argument("--model", default="yolo11n.yaml")
    t.add_argument("--device", default=None)
    t.add_argument("--out", default=None, help="run folder parent (default: data/models/kitchen-train)")
    t.add_argument("--name", default=MODEL_NAME)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--cache", default="false", choices=["false", "ram", "disk", "true"], type=str.lower,
                   help="cache images: false / ram / disk")
    t.add_argument("--time-hours", type=float, default=None)
    t.add_argument("--no-val", action="store_true", help="validate only at the end (faster)")
    t.add_argument("--amp", default="true", choices=["true", "false"], type=str.lower)
    e = sub.add_parser("export", help="export weights to ONNX")
    e.add_argument("weights")
    e.add_argument("--imgsz", type=int, default=640)
    e.add_argument("--out", default=None)
    v = sub.add_parser("val", help="per-class box metrics to CSV")
    v.add_argument("weights")
    v.add_argument("data")
    v.add_argument("--imgsz", type=int, default=640)
    v.add_argument("--device", default=None)
    v.add_argument("--batch", type=int, default=16)
    v.add_argument("--csv", required=True)
    v.add_argument("--save-dir", default=None, help="write val plots here")
    a = ap.parse_args(argv)
    try:
        return _run(a)
    except CheckpointError as exc:   # a .pt that would run code when unpickled: said, nothing loaded
        print(exc, file=sys.stderr)
        return 2


def _run(a) -> int:
    if a.cmd == "dataset":
        from tqdm import tqdm

        with tqdm(total=a.n_train + a.n_val, desc="合成厨房数据", unit="张", file=sys.stderr) as bar:
            path = synthetic_data(a.out, n_train=a.n_train, n_val=a.n_val, imgsz=a.imgsz, seed=a.seed,
                                  workers=a.workers or None, progress=bar.update)
        print(path)
    elif a.cmd == "train":
        cache = {"false": False, "ram": "ram", "disk": "disk", "true": "ram"}[a.cache]
        res = train(data=a.data, epochs=a.epochs, imgsz=a.imgsz, model=a.model, device=a.device, out=a.out,
                    name=a.name, batch=a.batch, workers=a.workers, cache=cache, time_hours=a.time_hours,
                    val=not a.no_val, amp=a.amp == "true")
        print(json.dumps({"save_dir": str(res.save_dir), "weights": str(res.weights),
                          "epochs_done": res.epochs_done, "seconds": round(res.seconds, 1)}))
    elif a.cmd == "export":
        print(export_onnx(a.weights, imgsz=a.imgsz, out=a.out))
    elif a.cmd == "val":
        df = evaluate_boxes(a.weights, a.data, imgsz=a.imgsz, device=a.device, batch=a.batch,
                            plots=a.save_dir is not None, save_dir=a.save_dir)
        Path(a.csv).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(a.csv, index=False)
        print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
