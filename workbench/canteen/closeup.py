"""The close-up check (近景复核): phones and cigarettes judged on a crop of each person.

A cigarette is 2 × 7 px and a phone 3 × 5 px on a far cook in a 640 × 360 frame: the detector,
which sees the whole frame at once, finds a cigarette 1 time in 10 (box recall 0.09, model
card). So the detector is stage 1 and this is stage 2, as in most kitchen-camera products: for
every person the detector found, the upper body (head to waist, :func:`crop_box`) is cut out
of the frame, scaled to `imgsz` (128 px: a far cook is magnified 2–4×) and a small
classifier (ultralytics yolo11n-cls) says cigarette / none / phone. A phone or cigarette
verdict becomes a detection of that class with the classifier's probability as its score, the
upper-body region as its box and the person's box as its owner, so the event engine votes on
it for that person like on any attribute box.

The classifier is trained on crops of the synthetic kitchens (:func:`make_crops`: the same
generator as the detector's set, more phones and cigarettes, frames JPEG-degraded like a
camera's stream, person boxes jittered like a detector's) by :func:`train_closeup`; on a CPU in
tens of minutes (models/kitchen/CLOSEUP_CARD.md). ``python -m workbench.canteen.closeup``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from workbench import config
from workbench.canteen.classes import CLASSES
from workbench.canteen.detector import Detections, ModelError, onnx_meta, ort_session

CROP_CLASSES = ("cigarette", "none", "phone")  # ultralytics orders class folders by name
MODEL_FILE = "kitchen-closeup.onnx"
IMGSZ = 128
MIN_PERSON_PX = 24          # persons shorter than this are not checked (nothing to see)
_PERSON = CLASSES.index("person")
_TARGET = {CROP_CLASSES.index(n): CLASSES.index(n) for n in ("phone", "cigarette")}  # column -> class


class CloseUpError(ModelError):
    """A close-up model that cannot be used (the message names the file and the problem)."""


# ----------------------------------------------------------------------------- geometry
def crop_box(xyxy) -> tuple[float, float, float]:
    """The square (x0, y0, side) around a person's upper body: head to waist, where hands
    hold a phone and a mouth a cigarette. Side = 0.75 × the box height (at least its width)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    h, w = max(y2 - y1, 1.0), max(x2 - x1, 1.0)
    side = max(0.75 * h, min(w, h))
    cx, cy = (x1 + x2) / 2, y1 + 0.33 * h
    return cx - side / 2, cy - side / 2, side


def cut(image: np.ndarray, xyxy, imgsz: int = IMGSZ) -> np.ndarray:
    """The upper-body square of one person, `imgsz` × `imgsz` BGR (outside the frame: grey 114)."""
    x0, y0, side = crop_box(xyxy)
    H, W = image.shape[:2]
    a, b = int(round(x0)), int(round(y0))
    s = max(2, int(round(side)))
    xa, ya, xb, yb = max(a, 0), max(b, 0), min(a + s, W), min(b + s, H)
    if xb <= xa or yb <= ya:
        return np.full((imgsz, imgsz, 3), 114, np.uint8)
    patch = image[ya:yb, xa:xb]
    if (xa, ya, xb, yb) != (a, b, a + s, b + s):
        patch = cv2.copyMakeBorder(patch, ya - b, b + s - yb, xa - a, a + s - xb, cv2.BORDER_CONSTANT,
                                   value=(114, 114, 114))
    inter = cv2.INTER_AREA if s > imgsz else cv2.INTER_LINEAR
    return cv2.resize(patch, (imgsz, imgsz), interpolation=inter)


def region(xyxy) -> np.ndarray:
    """The box a close-up verdict is drawn with: the crop square within the person's box."""
    x0, y0, side = crop_box(xyxy)
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return np.array([max(x0, x1), max(y0, y1), min(x0 + side, x2), min(y0 + side, y2)], np.float32)


# ----------------------------------------------------------------------------- the model
def default_path(detector_model: str | Path | None = None) -> Path | None:
    """kitchen-closeup.onnx beside the detector model (else in models/kitchen), if there."""
    from workbench.canteen.train import MODEL_DIR

    for folder in ([Path(detector_model).parent] if detector_model else []) + [MODEL_DIR]:
        if (folder / MODEL_FILE).is_file():
            return folder / MODEL_FILE
    return None


class CloseUp:
    """The classifier on ONNX Runtime: crops of the persons in a batch of frames → phone and
    cigarette detections added to the detector's."""

    def __init__(self, path: str | Path, min_person: float = 0.3, conf: float = 0.1, threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise CloseUpError(f"近景复核模型不存在：{path}")
        try:
            self.session = ort_session(path, threads)
        except Exception as exc:  # noqa: BLE001 - whatever onnxruntime says, it is not a model
            raise CloseUpError(f"近景复核模型无法加载：{path.name}：{type(exc).__name__}: {str(exc)[:200]}") from None
        inp = self.session.get_inputs()[0]
        out = self.session.get_outputs()[0]
        names = _onnx_names(path)
        if names is not None and tuple(names) != CROP_CLASSES:
            raise CloseUpError(f"近景复核模型 {path.name} 的类别 {names} 应为 {list(CROP_CLASSES)}")
        if out.shape[-1] not in (len(CROP_CLASSES), None) and not isinstance(out.shape[-1], str):
            raise CloseUpError(f"近景复核模型 {path.name} 输出 {out.shape[-1]} 类，应为 {len(CROP_CLASSES)}")
        self.path, self.input = path, inp.name
        self.imgsz = inp.shape[2] if isinstance(inp.shape[2], int) else IMGSZ
        self.static_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.min_person, self.conf = float(min_person), float(conf)
        self.crops = 0

    def classify(self, crops: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (n, 3) for BGR crops of `imgsz` × `imgsz`."""
        if not crops:
            return np.zeros((0, len(CROP_CLASSES)), np.float32)
        step = self.static_batch or 32
        out = []
        for i in range(0, len(crops), step):
            x = np.stack(crops[i:i + step])[..., ::-1].transpose(0, 3, 1, 2)
            x = np.ascontiguousarray(x, dtype=np.float32) * (1 / 255.0)
            out.append(self.session.run(None, {self.input: x})[0])
        self.crops += len(crops)
        return np.concatenate(out).astype(np.float32)

    def add(self, images: list[np.ndarray], dets: list) -> list:
        """The detections of each frame, with a phone / cigarette box per person the
        classifier calls so (score = its probability; below `conf` nothing is added)."""
        jobs, crops = [], []
        for k, (img, d) in enumerate(zip(images, dets)):
            for i in np.flatnonzero((d.cls == _PERSON) & (d.conf >= self.min_person)):
                box = d.xyxy[i]
                if box[3] - box[1] >= MIN_PERSON_PX:
                    jobs.append((k, box))
                    crops.append(cut(img, box, self.imgsz))
        if not crops:
            return dets
        probs = self.classify(crops)
        extra: dict[int, list] = {}
        for (k, box), p in zip(jobs, probs):
            for c, target in _TARGET.items():
                if p[c] >= self.conf:
                    extra.setdefault(k, []).append((region(box), float(p[c]), target, box))
        out = list(dets)
        for k, rows in extra.items():
            d = dets[k]
            own = d.owner if d.owner is not None else np.full((len(d), 4), np.nan, np.float32)
            out[k] = Detections(np.concatenate([d.xyxy, np.stack([r[0] for r in rows])]).astype(np.float32),
                                np.concatenate([d.conf, np.array([r[1] for r in rows], np.float32)]),
                                np.concatenate([d.cls, np.array([r[2] for r in rows], np.int64)]),
                                np.concatenate([own, np.stack([r[3] for r in rows])]).astype(np.float32))
        return out


def _onnx_names(path: Path) -> list[str] | None:
    """Class names from the export's metadata (ultralytics writes `names`), if any."""
    names = onnx_meta(path, "names")
    if isinstance(names, dict):
        return [names[k] for k in sorted(names)]
    return list(names) if isinstance(names, (list, tuple)) else None


# ----------------------------------------------------------------------------- training data
# the committed classifier's crop set; idle_hands=0.35 (hands raised without a phone or
# cigarette) was tried as hard negatives and not adopted (CLOSEUP_CARD.md)
CROP_ODDS = dict(mask=0.3, phone=0.3, smoking=0.5, idle_hands=0.0)


def _person_crops(args) -> list[tuple[str, np.ndarray]]:
    """Render one frame (more phones and cigarettes), degrade it like a stream, and cut each
    person with a detector-like jittered box; the label is what the engine would assign
    (the phone / cigarette box whose centre is in the smallest person box)."""
    seed, i, imgsz, *rest = args
    odds = dict(rest[0]) if rest else CROP_ODDS
    from workbench.canteen.synthkitchen import Odds, _render

    rng = np.random.default_rng([seed, 7, i])
    img, labels = _render(rng, 640, 360, Odds(**odds))
    q = int(rng.integers(35, 92))
    img = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)
    H, W = img.shape[:2]
    boxes = [(c, np.array([(x - w / 2) * W, (y - h / 2) * H, (x + w / 2) * W, (y + h / 2) * H]))
             for c, x, y, w, h in labels]
    persons = [b for c, b in boxes if c == _PERSON and b[3] - b[1] >= MIN_PERSON_PX]
    tag = {p: "none" for p in range(len(persons))}
    for c, b in boxes:
        if c not in _TARGET.values():
            continue
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        holders = [(float((p[2] - p[0]) * (p[3] - p[1])), k) for k, p in enumerate(persons)
                   if p[0] <= cx <= p[2] and p[1] <= cy <= p[3]]
        if holders:
            k = min(holders)[1]
            tag[k] = CLASSES[c]
    out = []
    for k, p in enumerate(persons):
        w, h = p[2] - p[0], p[3] - p[1]
        jit = rng.normal(0, 0.04, 4) * np.array([w, h, w, h])
        out.append((tag[k], cut(img, p + jit, imgsz)))
    return out


def make_crops(out_dir, n_images: int = 9000, seed: int = 1, imgsz: int = IMGSZ, val_share: float = 0.1,
               none_per_positive: float = 1.5, workers: int = 1,
               progress: Callable[[int], object] | None = None, odds: dict | None = None) -> Path:
    """Render `n_images` synthetic frames and write the person crops as an ultralytics
    classification set: out_dir/{train,val}/{none,phone,cigarette}/*.jpg. Negatives are
    thinned to `none_per_positive` × the positives. Returns out_dir. Deterministic for a seed."""
    out_dir = Path(out_dir)
    for split in ("train", "val"):
        for c in CROP_CLASSES:
            (out_dir / split / c).mkdir(parents=True, exist_ok=True)
    odds = {**CROP_ODDS, **(odds or {})}
    jobs = [(int(seed), i, int(imgsz), tuple(odds.items())) for i in range(int(n_images))]
    step = progress or (lambda _n: None)
    pick = np.random.default_rng([int(seed), 8])
    counts = {(s, c): 0 for s in ("train", "val") for c in CROP_CLASSES}
    pos, neg = 0, 0

    def write(i, crops):
        nonlocal pos, neg
        split = "val" if i < int(n_images * val_share) else "train"
        for j, (label, crop) in enumerate(crops):
            if label == "none":
                if neg >= none_per_positive * max(pos, 20) and pick.random() < 0.9:
                    continue
                neg += 1
            else:
                pos += 1
            cv2.imwrite(str(out_dir / split / label / f"{i:06d}_{j}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            counts[(split, label)] += 1
        step(1)

    if workers and workers > 1:
        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            for i, crops in enumerate(pool.map(_person_crops, jobs, chunksize=16)):
                write(i, crops)
    else:
        for i, job in enumerate(jobs):
            write(i, _person_crops(job))
    (out_dir / "crops.json").write_text(json.dumps(
        {"n_images": int(n_images), "seed": int(seed), "imgsz": int(imgsz), "odds": odds,
         "counts": {f"{s}/{c}": n for (s, c), n in counts.items()}}, indent=1))
    return out_dir


# ----------------------------------------------------------------------------- training
def train_closeup(data_dir, epochs: int = 6, imgsz: int = IMGSZ, device="cpu", batch: int = 64,
                  workers: int = 2, out=None, name: str = "kitchen-closeup", seed: int = 0, init="detector",
                  **overrides) -> Path:
    """Train yolo11n-cls on a crop set; returns best.pt.

    `init`: "detector" starts the backbone from the kitchen detector's weights
    (models/kitchen/kitchen-yolo11n.pt: the same YOLO11n backbone, 192 of 236 tensors), which
    already knows people, faces and hands in these kitchens; from scratch (None) the
    classifier stayed at chance for 3 CPU epochs (the cue is a few pixels in 128 × 128).
    A path: another .pt to start from. Augmentation keeps the whole crop (no random-resized
    crop below 90 %, no erasing): a cigarette is a few pixels at the edge of a face and must
    not be cut or painted over."""
    from workbench.canteen.train import MODEL_DIR, MODEL_NAME, _trust_amp_offline, default_out
    from workbench.canteen.yolo_env import checked_checkpoint, ensure_yolo_env

    if init == "detector":
        init = MODEL_DIR / f"{MODEL_NAME}.pt"
        init = init if init.is_file() else None
    if init:
        checked_checkpoint(init, "起始模型")   # model.load unpickles it with weights_only=False: checked first
    ensure_yolo_env()
    _trust_amp_offline()
    from ultralytics import YOLO

    out = Path(out).resolve() if out else default_out()
    model = YOLO("yolo11n-cls.yaml")
    if init:
        model.load(str(init))
    args = dict(data=str(Path(data_dir).resolve()), epochs=int(epochs), imgsz=int(imgsz), batch=int(batch),
                workers=int(workers), device=device, project=str(out), name=name, exist_ok=True,
                pretrained=bool(init), seed=int(seed), scale=0.1, erasing=0.0, fliplr=0.5, auto_augment=None,
                warmup_epochs=1, cache="ram", plots=True, verbose=True)
    args.update(overrides)
    model.train(**args)
    save_dir = Path(model.trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    return best if best.is_file() else save_dir / "weights" / "last.pt"


def evaluate(model_path, data_dir, split: str = "val") -> dict:
    """Per class of a crop set: crops, recall, precision; and the confusion matrix."""
    cu = CloseUp(model_path)
    truth, pred = [], []
    for k, c in enumerate(CROP_CLASSES):
        files = sorted((Path(data_dir) / split / c).glob("*.jpg"))
        for i in range(0, len(files), 256):
            crops = [cv2.imread(str(f)) for f in files[i:i + 256]]
            pred += list(cu.classify(crops).argmax(1))
            truth += [k] * len(crops)
    truth, pred = np.array(truth), np.array(pred)
    cm = np.zeros((3, 3), int)
    np.add.at(cm, (truth, pred), 1)
    rows = {c: {"crops": int(cm[k].sum()), "recall": round(float(cm[k, k] / max(cm[k].sum(), 1)), 4),
                "precision": round(float(cm[k, k] / max(cm[:, k].sum(), 1)), 4)} for k, c in enumerate(CROP_CLASSES)}
    return {"per_class": rows, "confusion": cm.tolist(), "accuracy": round(float((truth == pred).mean()), 4)}


def main(argv=None) -> int:
    from workbench.canteen.synthkitchen import cpu_count

    ap = argparse.ArgumentParser(prog="python -m workbench.canteen.closeup",
                                 description="Crop set, training, export and evaluation of the close-up classifier.")
    ap.add_argument("--out", default=str(config.ROOT / "data" / "models" / "kitchen-closeup"))
    ap.add_argument("--n-images", type=int, default=9000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--init", default="detector", help="'detector' (the kitchen detector's backbone), a .pt, or 'none'")
    ap.add_argument("--imgsz", type=int, default=IMGSZ)
    ap.add_argument("--idle-hands", type=float, default=CROP_ODDS["idle_hands"],
                    help="share of people raising empty hands to the chest or mouth (hard negatives)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model-out", default=None, help=f"write the .onnx here (default: models/kitchen/{MODEL_FILE})")
    a = ap.parse_args(argv)
    from tqdm import tqdm

    from workbench.canteen.yolo_env import CheckpointError, checked_checkpoint

    if a.init not in ("detector", "none"):   # refused before the crops are rendered, not after
        try:
            checked_checkpoint(a.init, "起始模型")
        except CheckpointError as exc:
            print(exc, file=sys.stderr)
            return 2
    out = Path(a.out)
    data = out / "crops"
    t0 = dt.datetime.now()
    stamp = data / "crops.json"
    if stamp.is_file():  # reuse our own crop set only when it was made with these settings
        made = json.loads(stamp.read_text())
        want = {"n_images": a.n_images, "seed": a.seed, "imgsz": a.imgsz, "odds": {**CROP_ODDS, "idle_hands": a.idle_hands}}
        if any(made.get(k) != v for k, v in want.items()):
            print(f"{data}: made with other settings, rendering again", file=sys.stderr)
            shutil.rmtree(data)
    if not stamp.is_file():
        with tqdm(total=a.n_images, desc="合成人员近景", unit="帧", file=sys.stderr) as bar:
            make_crops(data, a.n_images, a.seed, a.imgsz, workers=cpu_count(), progress=bar.update,
                       odds={"idle_hands": a.idle_hands})
    best = train_closeup(data, epochs=a.epochs, imgsz=a.imgsz, device=a.device, out=out / "runs",
                         init=None if a.init == "none" else a.init)
    from workbench.canteen.train import MODEL_DIR, export_onnx

    onnx_path = export_onnx(best, imgsz=a.imgsz, out=a.model_out or MODEL_DIR / MODEL_FILE)
    report = {"weights": str(best), "onnx": str(onnx_path), "minutes": round((dt.datetime.now() - t0).seconds / 60, 1),
              "crops": json.loads((data / "crops.json").read_text())["counts"], "val": evaluate(onnx_path, data)}
    print(json.dumps(report, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
