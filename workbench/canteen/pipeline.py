"""The watcher: many cameras in one process.

One reader thread per camera puts sampled frames on a shared queue (files: every sampled
frame, in order, as fast as they are taken; streams: the newest). The main loop takes up
to `max_batch` frames, asks each camera's motion gate which need the detector, runs those
through the model in one batch (frames of several cameras together), and hands every frame,
in order, to its camera's engine (workbench.canteen.events). Events go to the hub and MQTT
as they happen, with their evidence image. A camera whose source or rules fail is reported
by name and dropped; the others keep running. `stop()` (Ctrl-C in the CLI) ends every open
event and flushes the sinks: no event is lost.
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from workbench.canteen.detector import Detector
from workbench.canteen.events import CameraEngine, Event, EventChange
from workbench.canteen.rules import CameraRules, ConfigError
from workbench.canteen.sources import Frame, SourceError, SourceStatus, open_source, utcnow

log = logging.getLogger(__name__)


@dataclass
class Problem:
    camera_id: str | None
    problem: str
    ts: dt.datetime = field(default_factory=utcnow)

    def line(self) -> str:
        return f"摄像头 {self.camera_id}: {self.problem}" if self.camera_id else self.problem


@dataclass
class WatchSummary:
    cameras: int = 0
    frames: int = 0
    detected: int = 0
    batches: int = 0
    events: int = 0
    ended: int = 0
    seconds: float = 0.0
    per_camera: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    events_list: list = field(default_factory=list)  # every Event that opened (for evaluation)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("problems", "events_list")}
        d["problems"] = [p.line() for p in self.problems]
        return d


class Watcher:
    """Run cameras until their sources end or `stop()` is called."""

    def __init__(self, cameras: list[CameraRules], model: Detector | str, *, hub=None, mqtt=None,
                 evidence: bool = True, max_batch: int = 8, realtime: bool = False, loop: bool = False,
                 use_gate: bool = True, on_change: Callable[[str, Event], None] | None = None,
                 on_problem: Callable[[Problem], None] | None = None, directory=None, stream_kw: dict | None = None,
                 keep_events: bool = False, runtime: str = "onnxruntime"):
        """`model`: a Detector, or a model path loaded with `runtime` ("onnxruntime" or
        "openvino", for an .onnx; workbench.canteen.detector.OrtYolo)."""
        self.detector = model if isinstance(model, Detector) else Detector(model, runtime=runtime)
        self.rules = {c.camera_id: c for c in cameras}
        self.hub, self.mqtt = hub, mqtt
        self.evidence = evidence
        self.max_batch = max(1, int(max_batch))
        self.realtime, self.loop, self.use_gate = realtime, loop, use_gate
        self.on_change = on_change or (lambda kind, ev: None)
        self.on_problem = on_problem or (lambda p: None)
        self.stream_kw = stream_kw or {}
        self.q: queue.Queue = queue.Queue(maxsize=4 * max(1, len(cameras)) + 4)
        self._stop = threading.Event()
        self.summary = WatchSummary(cameras=len(cameras))
        self.engines: dict[str, CameraEngine] = {}
        self.sources = {}
        self.threads: list[threading.Thread] = []
        self._directory = directory
        self.keep_events = keep_events  # every opened Event in summary.events_list (evaluation; grows)

    # ------------------------------------------------------------------ control
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def problem(self, camera_id: str | None, text: str) -> None:
        p = Problem(camera_id, text)
        self.summary.problems.append(p)
        log.warning(p.line())
        self.on_problem(p)

    # ------------------------------------------------------------------ setup
    def _engine(self, rules: CameraRules) -> CameraEngine:
        info = {}
        d = self._directory
        if d is not None and len(d) and rules.camera_id in set(d["camera_id"]):
            info = d[d["camera_id"] == rules.camera_id].iloc[0].to_dict()
        if not rules.staff_hours and isinstance(info.get("staff_hours"), str) and info["staff_hours"]:
            rules = replace(rules, staff_hours=info["staff_hours"])
        return CameraEngine(rules, canteen_id=rules.canteen_id or info.get("canteen_id"),
                            district=rules.district or info.get("district"))

    def _reader(self, cam: str, src) -> None:
        t0 = time.monotonic()
        try:
            for f in src.frames():
                if self.realtime:
                    wait = t0 + f.t - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        break
                while not self._stop.is_set():
                    try:
                        self.q.put(("frame", f), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    break
        except SourceError as exc:
            self.q.put(("error", cam, exc.problem))
        except Exception as exc:  # noqa: BLE001 - one camera's failure must not stop the others
            self.q.put(("error", cam, f"{type(exc).__name__}: {exc}"))
        finally:
            self.q.put(("done", cam, None))

    def _status(self, s: SourceStatus) -> None:
        self.q.put(("status", s.camera_id, s))

    def start(self) -> None:
        for cam, rules in self.rules.items():
            if not rules.source:
                self.problem(cam, "没有配置视频源（source）")
                continue
            try:
                self.engines[cam] = self._engine(rules)
            except ConfigError as exc:
                self.problem(cam, exc.problem)
                continue
            src = open_source(cam, rules.source, rules.thresholds.fps, start_time=rules.start_time,
                              loop=self.loop, on_status=self._status, **self.stream_kw)
            self.sources[cam] = src
            th = threading.Thread(target=self._reader, args=(cam, src), name=f"camera-{cam}", daemon=True)
            self.threads.append(th)
        for th in self.threads:
            th.start()

    # ------------------------------------------------------------------ run
    def run(self, max_seconds: float | None = None) -> WatchSummary:
        """Until every source ended or stop(); returns the summary."""
        t_start = time.perf_counter()
        self.start()
        live = set(self.sources)
        try:
            while live and not self._stop.is_set():
                if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
                    break
                try:
                    items = [self.q.get(timeout=0.2)]
                except queue.Empty:
                    continue
                frames = []
                while True:
                    it = items.pop()
                    if it[0] == "frame":
                        if it[1].camera_id in self.engines:
                            frames.append(it[1])
                    elif it[0] == "done":
                        live.discard(it[1])
                    elif it[0] == "error":
                        self._drop(it[1], it[2])
                        live.discard(it[1])
                    elif it[0] == "status":
                        self._on_status(it[2])
                    if len(frames) >= self.max_batch:
                        break
                    try:
                        items.append(self.q.get_nowait())
                    except queue.Empty:
                        break
                if frames:
                    self._process(frames)
            # the sources ended: what is still queued is processed (nothing lost)
            if not self._stop.is_set():
                self._drain()
        finally:
            self._stop.set()
            for src in self.sources.values():
                src.stop()
            for cam, eng in list(self.engines.items()):
                self._emit(eng.close())
            for th in self.threads:
                th.join(timeout=10)
            if self.mqtt is not None:
                self.mqtt.close()
            self.summary.seconds = time.perf_counter() - t_start
            for cam, eng in self.engines.items():
                self.summary.per_camera[cam] = {"frames": eng.frames, "detected": eng.detected}
        return self.summary

    def _drain(self) -> None:
        frames = []
        while True:
            try:
                it = self.q.get_nowait()
            except queue.Empty:
                break
            if it[0] == "frame" and it[1].camera_id in self.engines:
                frames.append(it[1])
            elif it[0] == "status":
                self._on_status(it[2])
            if len(frames) >= self.max_batch:
                self._process(frames)
                frames = []
        if frames:
            self._process(frames)

    def _process(self, frames: list[Frame]) -> None:
        go = []
        for f in frames:
            eng = self.engines.get(f.camera_id)
            go.append(eng is not None and (not self.use_gate or eng.wants(f.image, f.t)))
        batch = [f.image for f, g in zip(frames, go) if g]
        dets = iter(self.detector.detect(batch)) if batch else iter(())
        if batch:
            self.summary.batches += 1
        for f, g in zip(frames, go):
            eng = self.engines.get(f.camera_id)
            if eng is None:
                continue
            d = next(dets) if g else None
            self.summary.frames += 1
            self.summary.detected += int(g)
            try:
                changes = eng.observe(f.t, f.ts, f.image, d)
            except ConfigError as exc:
                self._drop(f.camera_id, exc.problem)
                continue
            self._emit(changes)

    def _drop(self, cam: str, text: str) -> None:
        self.problem(cam, text)
        src = self.sources.get(cam)
        if src is not None:
            src.stop()
        eng = self.engines.pop(cam, None)
        if eng is not None:
            self._emit(eng.close())

    def _on_status(self, s: SourceStatus) -> None:
        if s.kind == "problem":
            self.problem(s.camera_id, s.message)
        elif s.kind == "offline":
            self.problem(s.camera_id, f"摄像头离线：{s.message}")
            eng = self.engines.get(s.camera_id)
            if self.hub is not None:
                self.hub.camera_offline(s.camera_id, s.message, s.ts or utcnow(), eng.district if eng else None,
                                        canteen_id=eng.canteen_id if eng else None)
            if self.mqtt is not None:
                self.mqtt.availability(s.camera_id, False)
        elif s.kind == "online":
            if self.hub is not None:
                self.hub.camera_online(s.camera_id, s.ts or utcnow())
            if self.mqtt is not None:
                self.mqtt.availability(s.camera_id, True)

    def _emit(self, changes: list[EventChange]) -> None:
        for ch in changes:
            ev = ch.event
            if ch.kind == "new":
                self.summary.events += 1
                if self.keep_events:
                    self.summary.events_list.append(ev)
            elif ch.kind == "end":
                self.summary.ended += 1
            deliver(ch, self.rules[ev.camera_id].timezone, evidence=self.evidence, sink=self.hub, mqtt=self.mqtt,
                    problem=self.problem, on_change=self.on_change)


def deliver(ch: EventChange, timezone: str, *, evidence: bool, sink, mqtt, problem, on_change) -> None:
    """One event change out, the same for one process (Pipeline) and a cluster node: its
    snapshot saved when its best frame changed, the frame freed at the event's end, the change
    written to the hub sink (HubSink: through the outbox) and MQTT — a failure is reported and
    the cameras go on — then `on_change`."""
    from workbench.canteen import evidence as ev_store

    ev = ch.event
    if evidence and ev.best_changed and ch.kind in ("new", "end", "update"):
        try:
            snap = ev_store.save_snapshot(ev, timezone)
        except OSError as exc:
            problem(ev.camera_id, f"抓拍图无法保存：{exc}")
            snap = None
        if snap is not None:
            ev.snapshot, ev.clean_snapshot = snap.snapshot, snap.clean_snapshot
        ev.best_changed = False
    if ch.kind == "end":
        ev.best_image = None  # the frame is written: free it
    try:
        if sink is not None:
            sink.event(ch.kind, ev.record())
        if mqtt is not None:
            mqtt.event(ch.kind, ev.message(ch.kind))
    except Exception as exc:  # noqa: BLE001 - a sink failure is reported, the cameras go on
        problem(ev.camera_id, f"事件 {ev.violation_id} 写入失败：{type(exc).__name__}: {exc}")
    on_change(ch.kind, ev)
