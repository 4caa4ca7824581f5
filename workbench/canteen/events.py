"""From one camera's detections to 明厨亮灶 events (new / update / end), Frigate-style.

Per sampled frame that went through the detector:

1. detections below `min_score` are dropped; people are tracked (ByteTrack) and a person
   counts when the bottom centre of its box lies in a kitchen zone (no zones: the frame);
2. a person's attributes are votes: each frame the hat / mask / uniform boxes whose centre
   lies in the person's box vote yes (compliant) or no (violation); phone and cigarette vote
   "violation" when seen, "compliant" when not. Over the last `votes` judged frames an
   attribute is a violation when at least `votes_needed` agree and their mean score reaches
   `threshold`; compliant when as many say so; otherwise 未判定 (not judged). A person in a
   kitchen zone outside staff hours is 陌生人闯入 (votes the same way; the dress rules still
   hold for them). Rodents and open bins are scene objects voted per camera;
3. a violation class is present in a frame when any person (or the scene) has it confirmed;
   `inertia` consecutive present frames open one event per camera and class, which starts
   at the first of them. Present frames update it; it ends when the class has been absent for
   `cooldown_s`, so one person without a hat for ten minutes, lost and found again by the
   tracker, is one event and not hundreds. Frames the motion gate skipped only move time on.

The engine keeps the best frame of each event (highest score) for the evidence image.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from workbench.canteen.classes import CLASSES
from workbench.canteen.detector import Detections, PersonTracker
from workbench.canteen.motion import MotionGate
from workbench.canteen.rules import CameraRules

SOURCE = "明厨亮灶AI"
NOT_JUDGED = "未判定"

# violation -> (detector classes that say "violation", classes that say "compliant";
# None: not seeing the object on a seen person is the compliant vote)
PERSON_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "未戴厨师帽": (("no_chef_hat",), ("chef_hat",)),
    "未戴口罩": (("no_mask",), ("mask",)),
    "未穿工作服": (("no_uniform",), ("uniform",)),
    "赤膊": (("shirtless",), ("uniform", "no_uniform")),
    "玩手机": (("phone",), None),
    "抽烟": (("cigarette",), None),
}
SCENE_RULES = {"老鼠": "rodent", "垃圾桶未盖": "bin_open"}
# a person's attributes as shown (Tencent-style 是 / 否 / 未判定): name, and whether the
# violation verdict means 否 (not wearing) or 是 (doing it)
ATTRIBUTES = {"未戴厨师帽": ("戴厨师帽", "否"), "未戴口罩": ("戴口罩", "否"), "未穿工作服": ("穿工作服", "否"),
              "赤膊": ("赤膊", "是"), "玩手机": ("玩手机", "是"), "抽烟": ("抽烟", "是")}
STRANGER = "陌生人闯入"
CLASS_CODES = {"老鼠": "RAT", "抽烟": "SMK", "未戴厨师帽": "HAT", "未戴口罩": "MSK", "未穿工作服": "UNI",
               "玩手机": "PHN", "赤膊": "SHR", "陌生人闯入": "STR", "垃圾桶未盖": "BIN"}
_PERSON = CLASSES.index("person")


@dataclass
class Box:
    label: str          # Chinese, drawn on the evidence image
    xyxy: tuple[float, float, float, float]
    violation: bool     # red when True
    person: bool = False  # its head region is blurred


@dataclass
class Event:
    violation_id: str
    camera_id: str
    canteen_id: str | None
    district: str | None
    violation_class: str
    severity: str
    ts: dt.datetime            # first frame of the violation (naive UTC)
    t_start: float             # the same, in source seconds
    t_opened: float            # when the event was decided (latency = t_opened - truth start)
    t_last: float
    ts_last: dt.datetime
    ts_end: dt.datetime | None = None
    score: float = 0.0
    frames: int = 0
    track_ids: set = field(default_factory=set)
    status: str = "open"
    best_score: float = -1.0
    best_image: np.ndarray | None = field(default=None, repr=False)
    best_boxes: list = field(default_factory=list, repr=False)
    best_changed: bool = False
    snapshot: str | None = None
    clean_snapshot: str | None = None
    t_emitted: float = 0.0
    ended: bool = False
    attributes: dict = field(default_factory=dict)  # track id -> {戴厨师帽: 是 | 否 | 未判定, …}

    def record(self, updated_at: dt.datetime | None = None) -> dict:
        """The row for the hub's canteen_violations."""
        return {
            "violation_id": self.violation_id, "ts": self.ts, "ts_end": self.ts_end, "camera_id": self.camera_id,
            "canteen_id": self.canteen_id or self.camera_id, "district": self.district,
            "violation_class": self.violation_class, "severity": self.severity,
            "score": round(float(self.score), 3), "snapshot": self.snapshot, "status": self.status,
            "source": SOURCE, "updated_at": updated_at or self.ts_last,
            "track_ids": ",".join(str(i) for i in sorted(self.track_ids))[:256] or None,
            "frames": int(self.frames), "clean_snapshot": self.clean_snapshot,
        }

    def message(self, kind: str) -> dict:
        """The MQTT payload (docs/canteen.md: MQTT)."""
        iso = lambda d: None if d is None else d.replace(tzinfo=dt.timezone.utc).isoformat()  # noqa: E731
        return {
            "type": kind, "id": self.violation_id, "camera": self.camera_id, "canteen_id": self.canteen_id,
            "district": self.district, "label": self.violation_class, "severity": self.severity,
            "score": round(float(self.score), 3), "start_time": iso(self.ts), "end_time": iso(self.ts_end),
            "last_seen": iso(self.ts_last), "frames": int(self.frames),
            "track_ids": sorted(int(i) for i in self.track_ids if isinstance(i, (int, np.integer))),
            "snapshot": self.snapshot, "has_snapshot": bool(self.snapshot), "status": self.status,
            "attributes": {str(k): v for k, v in self.attributes.items()},
        }


@dataclass
class EventChange:
    kind: str   # new | update | end
    event: Event


@dataclass
class Vote:
    violation: bool
    score: float
    t: float = 0.0
    ts: dt.datetime | None = None


class Ballot:
    """The last N votes on one question (hat? mask? …) for one subject."""

    def __init__(self, size: int):
        self.votes: deque[Vote] = deque(maxlen=size)

    def add(self, violation: bool, score: float, t: float = 0.0, ts: dt.datetime | None = None) -> None:
        self.votes.append(Vote(violation, float(score), t, ts))

    def run_start(self) -> tuple[float, dt.datetime | None]:
        """When the trailing run of violation votes began (the violation's first frame)."""
        first = None
        for v in reversed(self.votes):
            if not v.violation:
                break
            first = v
        return (first.t, first.ts) if first else (0.0, None)

    def verdict(self, needed: int, threshold: float) -> tuple[str, float]:
        """('no' = violation | 'yes' = compliant | 未判定, mean score of the violation votes)."""
        pos = [v.score for v in self.votes if v.violation]
        neg = len(self.votes) - len(pos)
        score = float(np.mean(pos)) if pos else 0.0
        if len(pos) >= needed and len(pos) >= neg and score >= threshold:
            return "no", score
        if neg >= needed and neg > len(pos):
            return "yes", score
        return NOT_JUDGED, score


@dataclass
class Subject:
    track_id: int
    box: np.ndarray
    conf: float
    t_seen: float
    ballots: dict = field(default_factory=dict)


@dataclass
class _ClassState:
    streak: int = 0
    streak_t: float = 0.0
    streak_ts: dt.datetime | None = None
    event: Event | None = None
    t_present: float = 0.0


def inside(polys: list[np.ndarray], x: float, y: float) -> bool:
    if not polys:
        return True
    return any(cv2.pointPolygonTest(p, (float(x), float(y)), False) >= 0 for p in polys)


def event_id(camera_id: str, cls: str, ts: dt.datetime, tz: str) -> str:
    import pandas as pd

    local = pd.Timestamp(ts).tz_localize("UTC").tz_convert(tz)
    cam = camera_id if len(camera_id) <= 36 else camera_id[:27] + hashlib.sha1(camera_id.encode()).hexdigest()[:8]
    return f"AI{local:%Y%m%d%H%M%S}-{cam}-{CLASS_CODES.get(cls, 'X')}"


class CameraEngine:
    """One camera: motion gate, person tracker, votes, event state."""

    def __init__(self, rules: CameraRules, *, canteen_id: str | None = None, district: str | None = None,
                 tracker: PersonTracker | None = None):
        self.rules = rules
        self.th = rules.thresholds
        self.camera_id = rules.camera_id
        self.canteen_id = canteen_id or rules.canteen_id
        self.district = district or rules.district
        self.gate = MotionGate(self.th.motion_threshold, self.th.idle_detect_s, self.th.heartbeat_s)
        self.tracker = tracker or PersonTracker(relink_s=self.th.relink_s)
        self.subjects: dict[int, Subject] = {}
        self.scene: dict[str, Ballot] = {c: Ballot(self.th.votes) for c in SCENE_RULES}
        self.states: dict[str, _ClassState] = {c: _ClassState() for c in rules.violations}
        self._polys: list[np.ndarray] | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0
        self.detected = 0
        self._ids: deque[str] = deque(maxlen=64)  # recent ids: two events of a class in one second differ

    # ---------------------------------------------------------------- state
    @property
    def busy(self) -> bool:
        return bool(self.subjects) or any(s.event for s in self.states.values()) or \
            any(b.votes and b.votes[-1].violation for b in self.scene.values())

    def open_events(self) -> list[Event]:
        return [s.event for s in self.states.values() if s.event is not None]

    def wants(self, image: np.ndarray, t: float) -> bool:
        """The motion gate's decision for this frame."""
        return self.gate.decide(image, t, self.busy)

    def _zones(self, image: np.ndarray) -> list[np.ndarray]:
        h, w = image.shape[:2]
        if self._size != (w, h):
            self.rules.check_frame(w, h)  # ConfigError names the camera
            self._polys = [z.polygon(w, h) for z in self.rules.zones]
            self._size = (w, h)
        return self._polys

    # ---------------------------------------------------------------- one frame
    def observe(self, t: float, ts: dt.datetime, image: np.ndarray | None, dets: Detections | None) -> list[EventChange]:
        """One sampled frame at `t` seconds (`ts` naive UTC). `dets` None: the gate skipped it."""
        self.frames += 1
        changes: list[EventChange] = []
        if dets is not None:
            self.detected += 1
            polys = self._zones(image) if image is not None else []
            present, boxes = self._judge(t, ts, dets, polys)
            for cls, st in self.states.items():
                hit = present.get(cls)
                if hit:
                    changes += self._present(cls, st, t, ts, hit, image, boxes)
                else:
                    st.streak = 0
        for cls, st in self.states.items():
            ev = st.event
            if ev is not None and t - st.t_present >= self.th.cooldown_s:
                changes.append(self._end(st))
        for st in self.states.values():
            ev = st.event
            if ev is not None and not any(c.event is ev for c in changes) and \
                    t - ev.t_emitted >= self.th.update_s and ev.t_last > ev.t_emitted:
                ev.t_emitted = t
                changes.append(EventChange("update", ev))
        return changes

    def close(self) -> list[EventChange]:
        """End every open event (the source ended or the watcher stops): nothing is lost."""
        return [self._end(st) for st in self.states.values() if st.event is not None]

    # ---------------------------------------------------------------- internals
    def _judge(self, t, ts, dets: Detections, polys) -> tuple[dict, list[Box]]:
        th = self.th
        dets = dets.where(dets.conf >= th.min_score)
        names = np.array(CLASSES, dtype=object)[dets.cls] if len(dets) else np.array([], dtype=object)
        persons = dets.where(dets.cls == _PERSON)
        tracked = self.tracker.update(persons, t)
        seen = set()
        for tid, di, box in tracked:
            s = self.subjects.get(tid)
            conf = float(persons.conf[di]) if 0 <= di < len(persons) else 0.0
            if s is None:
                s = self.subjects[tid] = Subject(tid, box, conf, t)
            s.box, s.conf, s.t_seen = box, conf, t
            seen.add(tid)
        for tid in [k for k, s in self.subjects.items() if t - s.t_seen > th.cooldown_s]:
            del self.subjects[tid]
        # attribute boxes go to the smallest person box holding their centre; a close-up box
        # to the person whose crop it was judged on
        owner: dict[int, list[int]] = {}
        live = [self.subjects[k] for k in seen]
        by_box = {tuple(persons.xyxy[di].tolist()): tid for tid, di, _ in tracked if 0 <= di < len(persons)}
        for i, n in enumerate(names):
            if n == "person":
                continue
            if dets.owner is not None and not np.isnan(dets.owner[i, 0]):
                tid = by_box.get(tuple(dets.owner[i].tolist()))
                if tid is not None:
                    owner.setdefault(tid, []).append(i)
                continue
            x1, y1, x2, y2 = dets.xyxy[i]
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            best, area = None, None
            for s in live:
                bx1, by1, bx2, by2 = s.box
                if bx1 <= cx <= bx2 and by1 <= cy <= by2:
                    a = (bx2 - bx1) * (by2 - by1)
                    if area is None or a < area:
                        best, area = s.track_id, a
            if best is not None:
                owner.setdefault(best, []).append(i)
        present: dict[str, list[tuple[object, float]]] = {}
        boxes: list[Box] = []
        staff = self.rules.in_staff_hours(ts)
        for s in live:
            x1, y1, x2, y2 = s.box
            in_zone = inside(polys, (x1 + x2) / 2, y2)
            flagged = []
            if in_zone:
                mine = owner.get(s.track_id, [])
                # dress rules hold for everyone in the kitchen, staff or not
                for cls, (bad, good) in PERSON_RULES.items():
                    if cls not in self.states:
                        continue
                    bad_s = [float(dets.conf[i]) for i in mine if names[i] in bad]
                    good_s = [float(dets.conf[i]) for i in mine if good and names[i] in good]
                    ballot = s.ballots.setdefault(cls, Ballot(th.votes))
                    if bad_s and (not good_s or max(bad_s) >= max(good_s)):
                        ballot.add(True, max(bad_s), t, ts)
                    elif good_s or good is None:
                        ballot.add(False, max(good_s) if good_s else s.conf, t, ts)
                    verdict, score = ballot.verdict(th.votes_needed, th.threshold)
                    if verdict == "no":
                        present.setdefault(cls, []).append((s.track_id, score, *ballot.run_start()))
                        flagged.append(cls)
                if not staff and STRANGER in self.states:
                    ballot = s.ballots.setdefault(STRANGER, Ballot(th.votes))
                    ballot.add(True, s.conf, t, ts)
                    verdict, score = ballot.verdict(th.votes_needed, th.threshold)
                    if verdict == "no":
                        present.setdefault(STRANGER, []).append((s.track_id, score, *ballot.run_start()))
                        flagged.append(STRANGER)
                for i in mine:
                    if names[i] in ("no_chef_hat", "no_mask", "no_uniform", "shirtless", "phone", "cigarette"):
                        boxes.append(Box(_label(names[i]), tuple(map(float, dets.xyxy[i])), True))
            label = "、".join(flagged) if flagged else f"人员 {s.track_id}"
            boxes.append(Box(label, tuple(map(float, s.box)), bool(flagged), person=True))
        for cls, det_name in SCENE_RULES.items():
            if cls not in self.states:
                continue
            idx = [i for i, n in enumerate(names) if n == det_name
                   and inside(polys, (dets.xyxy[i][0] + dets.xyxy[i][2]) / 2, dets.xyxy[i][3])]
            ballot = self.scene[cls]
            if idx:
                ballot.add(True, max(float(dets.conf[i]) for i in idx), t, ts)
            else:
                ballot.add(False, 0.0, t, ts)
            verdict, score = ballot.verdict(th.votes_needed, th.threshold)
            if verdict == "no":
                present.setdefault(cls, []).append((det_name, score, *ballot.run_start()))
            for i in idx:
                boxes.append(Box(cls, tuple(map(float, dets.xyxy[i])), True))
        return present, boxes

    def _present(self, cls, st: _ClassState, t, ts, hits, image, boxes) -> list[EventChange]:
        st.streak += 1
        if st.streak == 1:  # the violation began at the first of its votes, not when confirmed
            first = min((h for h in hits if h[3] is not None), key=lambda h: h[2], default=None)
            st.streak_t, st.streak_ts = (first[2], first[3]) if first else (t, ts)
        st.t_present = t
        score = max(h[1] for h in hits)
        out = []
        ev = st.event
        if ev is None and st.streak >= self.th.inertia:
            vid = event_id(self.camera_id, cls, st.streak_ts, self.rules.timezone)
            n = 2
            base = vid
            while vid in self._ids:
                vid, n = f"{base}{n}", n + 1
            self._ids.append(vid)
            ev = st.event = Event(vid, self.camera_id, self.canteen_id, self.district, cls,
                                  self.rules.violations[cls], st.streak_ts, st.streak_t, t, t, ts,
                                  frames=st.streak - 1, t_emitted=t)
            out.append(EventChange("new", ev))
        if ev is not None:
            if any(h[3] is not None for h in hits):  # seen in this very frame (not only in the votes)
                ev.t_last, ev.ts_last = t, ts
            ev.frames += 1
            ev.score = max(ev.score, score)
            ev.track_ids.update(h[0] for h in hits)
            for h in hits:
                subj = self.subjects.get(h[0]) if isinstance(h[0], int) else None
                if subj is not None:
                    ev.attributes[h[0]] = attributes(subj, self.th)
            if image is not None and score > ev.best_score:
                ev.best_score = score
                ev.best_image = image.copy()
                ev.best_boxes = list(boxes)
                ev.best_changed = True
        return out

    def _end(self, st: _ClassState) -> EventChange:
        ev = st.event
        ev.ts_end = ev.ts_last if ev.ts_last >= ev.ts else ev.ts
        ev.ended = True
        st.event = None
        st.streak = 0
        return EventChange("end", ev)


def attributes(s: Subject, th) -> dict:
    """A tracked person's attributes: 是 / 否 / 未判定 (not judged: too few agreeing frames)."""
    out = {}
    for cls, (name, on_violation) in ATTRIBUTES.items():
        b = s.ballots.get(cls)
        verdict = b.verdict(th.votes_needed, th.threshold)[0] if b else NOT_JUDGED
        if verdict == "no":
            out[name] = on_violation
        elif verdict == "yes":
            out[name] = "是" if on_violation == "否" else "否"
        else:
            out[name] = NOT_JUDGED
    return out


def _label(name: str) -> str:
    from workbench.canteen.classes import LABELS_ZH

    return LABELS_ZH.get(name, name)
