"""Event-level evaluation of the pipeline on synthetic kitchen clips with ground truth.

Each clip (workbench.canteen.synthkitchen: `<clip>.mp4`, `<clip>.truth.csv`,
`<clip>.meta.json`) is one camera; all clips run together through the real watcher
(motion gate, batches across cameras, tracker, rules). Then, per violation class:

- recall: truth rows (one person's violation from start_s to end_s) met by an event of
  the same clip and class that overlaps it (± `slack_s`);
- precision: events that overlap a truth row of their class (± `slack_s`);
- latency: for each recalled row, when its event was decided (video seconds) minus the
  row's start; 0 when an event of that class was already open.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd

from workbench.canteen.classes import VIOLATIONS
from workbench.canteen.rules import CameraRules, camera_rules

COLUMNS = ["violation_class", "truth", "recalled", "recall", "events", "correct", "precision",
           "latency_mean_s", "latency_max_s"]


def clip_rules(video: Path | str, fps: float = 2.0, **overrides) -> CameraRules:
    """The rules of a synthetic clip: camera = file stem, its wall-clock start and the staff
    hours its scenario assumed (meta.json)."""
    video = Path(video)
    meta_path = video.with_suffix(".meta.json")
    spec = {"source": str(video), "fps": fps}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        start = dt.datetime.fromisoformat(meta["clock_start"])
        spec["start_time"] = start.isoformat()
        hours = meta.get("staff_hours_assumed")
        if hours:
            spec["staff_hours"] = f"{hours[0]}-{hours[1]}"
    spec.update(overrides)
    return camera_rules(video.stem, spec)


def truth_table(videos) -> pd.DataFrame:
    rows = []
    for v in videos:
        v = Path(v)
        t = pd.read_csv(v.with_suffix(".truth.csv"))
        rows.append(t.assign(camera_id=v.stem))
    if not rows:
        return pd.DataFrame(columns=["camera_id", "violation", "track_id", "start_s", "end_s"])
    return pd.concat(rows, ignore_index=True)


def run_clips(videos, model, fps: float = 2.0, max_batch: int = 8, closeup="auto", **overrides):
    """All clips through the watcher (no hub, no MQTT, no images); returns (events, summary).
    `closeup`: the close-up classifier (workbench.canteen.closeup): "auto", a path, or None."""
    from workbench.canteen.detector import Detector
    from workbench.canteen.pipeline import Watcher

    cams = [clip_rules(v, fps, **overrides) for v in videos]
    det = model if isinstance(model, Detector) else Detector(model, closeup=closeup)
    w = Watcher(cams, det, hub=None, mqtt=None, evidence=False, max_batch=max_batch, keep_events=True)
    s = w.run()
    return events_frame(s.events_list), s


def events_frame(events) -> pd.DataFrame:
    return pd.DataFrame([{
        "camera_id": e.camera_id, "violation_class": e.violation_class, "violation_id": e.violation_id,
        "t_start": e.t_start, "t_opened": e.t_opened, "t_last": e.t_last, "score": e.score, "frames": e.frames,
    } for e in events], columns=["camera_id", "violation_class", "violation_id", "t_start", "t_opened", "t_last",
                                 "score", "frames"])


def match(events: pd.DataFrame, truth: pd.DataFrame, slack_s: float = 2.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Truth rows with recalled / latency_s, and events with correct."""
    truth = truth.copy()
    events = events.copy()
    truth["recalled"], truth["latency_s"] = False, float("nan")
    events["correct"] = False
    for i, r in truth.iterrows():
        ev = events[(events.camera_id == r.camera_id) & (events.violation_class == r.violation)
                    & (events.t_start <= r.end_s + slack_s) & (events.t_last >= r.start_s - slack_s)]
        if len(ev):
            truth.at[i, "recalled"] = True
            truth.at[i, "latency_s"] = max(0.0, float(ev["t_opened"].min()) - float(r.start_s))
    for i, e in events.iterrows():
        tr = truth[(truth.camera_id == e.camera_id) & (truth.violation == e.violation_class)
                   & (truth.start_s <= e.t_last + slack_s) & (truth.end_s >= e.t_start - slack_s)]
        events.at[i, "correct"] = bool(len(tr))
    return truth, events


def scores(events: pd.DataFrame, truth: pd.DataFrame, slack_s: float = 2.0) -> pd.DataFrame:
    """Per violation class: recall, precision and latency (COLUMNS); an 全部 row last."""
    t, e = match(events, truth, slack_s)
    rows = []
    for cls in [c for c in VIOLATIONS if c in set(t["violation"]) | set(e["violation_class"])] + ["全部"]:
        tt = t if cls == "全部" else t[t.violation == cls]
        ee = e if cls == "全部" else e[e.violation_class == cls]
        lat = tt.loc[tt.recalled, "latency_s"]
        rows.append({
            "violation_class": cls, "truth": len(tt), "recalled": int(tt.recalled.sum()),
            "recall": tt.recalled.mean() if len(tt) else float("nan"), "events": len(ee),
            "correct": int(ee.correct.sum()), "precision": ee.correct.mean() if len(ee) else float("nan"),
            "latency_mean_s": lat.mean() if len(lat) else float("nan"),
            "latency_max_s": lat.max() if len(lat) else float("nan"),
        })
    return pd.DataFrame(rows, columns=COLUMNS)




def default_model() -> tuple[Path, bool]:
    """The demo model (models/kitchen/kitchen-yolo11n.onnx or .pt) and whether it is trained;
    without it an untrained yolo11n in benchmarks/out (the pipeline runs, the scores are 0)."""
    from workbench import config
    from workbench.canteen.train import MODEL_DIR, MODEL_NAME

    base = MODEL_DIR / MODEL_NAME
    for suffix in (".onnx", ".pt"):
        if base.with_suffix(suffix).exists():
            return base.with_suffix(suffix), True
    from workbench.canteen.untrained import untrained_model

    return untrained_model(config.ROOT / "benchmarks" / "out" / "canteen" / "untrained.pt"), False


def model_card(model: Path | str) -> str | None:
    p = Path(model).with_name("MODEL_CARD.md")
    return p.read_text(encoding="utf-8") if p.exists() else None


__all__ = ["clip_rules", "truth_table", "run_clips", "events_frame", "match", "scores", "default_model", "model_card"]
