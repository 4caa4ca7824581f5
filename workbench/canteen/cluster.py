"""The city's kitchen cameras on a Ray cluster (`workbench canteen cluster run|status`).

Thousands of cameras do not fit one process. Here they are spread over the nodes of a Ray
cluster (https://docs.ray.io): a head, and worker nodes that join it (`ray start --address`).

- **Cameras** come from the hub's `cameras` table (a row with a `source_url`: a file or an
  rtsp:// URL); the table is read again every `poll_s` seconds, so cameras added or removed
  while the cluster runs start or stop there.
- **Placement** (`place`): a placement table, camera → worker. A camera stays on its worker
  as long as the worker lives; new cameras and the cameras of a worker that died go to the
  least-loaded workers (ties broken by rendezvous hashing, so the choice is stable); when a
  worker joins, cameras move to it only from workers above the fair share.
- **Per node**: one `CameraWorker` actor (decoding with PyAV, key frames only where the GOP
  allows; the motion gate, tracker, votes and events of its cameras: workbench.canteen.events)
  and one `ModelHolder` actor that holds the detector and runs the frames of the node's
  camera workers in batches. Actors are pinned to their node (node affinity), so a node's
  frames never leave it.
- **Failover**: every camera's engine state (tracks, votes, open events) and its position
  in the source are checkpointed after each batch to the `StateStore` actor on the head. A
  worker that does not answer within `dead_after_s` is given up; its cameras resume on other
  workers from their checkpoints within seconds: an open event is continued (same id), not
  restarted. Frames between the last checkpoint and the death are analysed again (files:
  from the checkpointed position): the event ids are deterministic (camera, class, start)
  and the hub upserts by id, so nothing is lost and nothing doubled.
- **Health**: cameras per worker, frames/s, lag, last frame, and every problem with its
  camera and node (a stream that never opens, a node whose model does not load or is not
  there) — `health()` / `workbench canteen cluster status` and the 明厨亮灶 dashboard read
  it from data/cluster/canteen.json, which the coordinator writes every round.

Everything but the Ray plumbing is in `NodeRunner`, which also runs in one process (the
benchmark's baseline and the tests' reference run).
"""
from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import logging
import os
import pickle
import queue
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable


from workbench.canteen.sources import AvSource, ImageFolderSource, SourceError, SourceStatus, kind_of, utcnow

log = logging.getLogger(__name__)

NAMESPACE = "workbench-canteen"
STORE_NAME = "canteen-state"
MODEL_ENV = "WORKBENCH_CANTEEN_MODEL"    # a node's own model path (set where the node is started)
PASS_ENV = ("WORKBENCH_DB_URL", "WORKBENCH_DATA_DIR", "WORKBENCH_SECRET", MODEL_ENV)


# ------------------------------------------------------------------ placement
def _score(camera: str, worker: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{camera}|{worker}".encode(), digest_size=8).digest(), "big")


def place(cameras, workers, current: dict[str, str] | None = None) -> dict[str, str]:
    """camera → worker. Kept where its worker still is; the others (new cameras, cameras of a
    worker gone) go to the least-loaded worker, ties by the highest rendezvous score; then, while
    a worker is more than one camera above another, cameras move from the fullest worker to the
    emptiest (the camera whose score prefers the emptiest most). Deterministic."""
    workers = sorted(set(workers))
    cameras = sorted(set(cameras))
    if not workers:
        return {}
    out = {c: w for c, w in (current or {}).items() if c in set(cameras) and w in set(workers)}
    load = {w: 0 for w in workers}
    for w in out.values():
        load[w] += 1
    for c in cameras:
        if c not in out:
            w = min(workers, key=lambda w: (load[w], -_score(c, w)))
            out[c] = w
            load[w] += 1
    while True:
        hi = max(workers, key=lambda w: (load[w], w))
        lo = min(workers, key=lambda w: (load[w], w))
        if load[hi] - load[lo] <= 1:
            return out
        c = max((c for c, w in out.items() if w == hi), key=lambda c: (_score(c, lo), c))
        out[c] = lo
        load[hi] -= 1
        load[lo] += 1


# ------------------------------------------------------------------ checkpoints
class LocalStore:
    """The state store in one process (the Ray `StateStore` has the same methods)."""

    def __init__(self):
        self.checkpoints: dict[str, dict] = {}
        self.origins: dict[str, dt.datetime] = {}
        self.health: dict[str, dict] = {}
        self.problems: list[dict] = []

    def origin(self, camera: str) -> dt.datetime:
        """The wall-clock start of a file camera's video, fixed at its first start (a worker that
        resumes it keeps the same clock, hence the same event ids)."""
        return self.origins.setdefault(camera, utcnow())

    def put(self, camera: str, state: dict) -> None:
        self.checkpoints[camera] = state

    def get(self, camera: str) -> dict | None:
        return self.checkpoints.get(camera)

    def drop(self, camera: str) -> None:
        self.checkpoints.pop(camera, None)
        self.origins.pop(camera, None)

    def report(self, worker: str, status: dict) -> None:
        self.health[worker] = status

    def problem(self, item: dict) -> None:
        self.problems.append(item)
        del self.problems[:-200]

    def snapshot(self) -> dict:
        return {"health": dict(self.health), "problems": list(self.problems),
                "checkpoints": {c: {k: v for k, v in s.items() if k != "engine"} for c, s in self.checkpoints.items()}}


def engine_blob(engine) -> bytes:
    """The engine pickled, without the best frames already written as evidence."""
    held = []
    for ev in engine.open_events():
        if not ev.best_changed and ev.best_image is not None:
            held.append((ev, ev.best_image))
            ev.best_image = None
    try:
        return pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for ev, img in held:
            ev.best_image = img


# ------------------------------------------------------------------ one node's cameras
@dataclass
class CameraRun:
    rules: object                 # CameraRules
    engine: object                # CameraEngine
    source: object = None
    thread: threading.Thread | None = None
    live: bool = False
    t_offset: float = 0.0         # streams: added to the source's t so the engine's clock goes on
    last_t: float | None = None
    frames: int = 0
    detected: int = 0
    events: int = 0
    last_frame: dt.datetime | None = None   # the time shown by the last frame analysed
    last_wall: float | None = None          # when it was analysed (time.time())
    recent: list = field(default_factory=list)  # time.time() of the last frames (frames/s)
    state: str = "starting"       # starting | running | offline | ended | failed
    problem: str = ""
    resumed: bool = False


class NodeRunner:
    """A node's cameras: one decoding thread per camera (PyAV), then batches across cameras:
    motion gate → `detect` (the node's model holder) → engine → sink, and a checkpoint of each
    camera that moved. Used by the `CameraWorker` actor and, alone, in one process."""

    def __init__(self, worker: str, detect: Callable, store, *, sink=None, mqtt=None, evidence: bool = True,
                 max_batch: int = 8, decode: str = "auto", use_gate: bool = True, stream_kw: dict | None = None,
                 on_change: Callable | None = None):
        self.worker = worker
        self.detect = detect
        self.store = store
        self.sink, self.mqtt = sink, mqtt
        self.evidence = evidence
        self.max_batch = max_batch
        self.decode = decode
        self.use_gate = use_gate
        self.stream_kw = stream_kw or {}
        self.on_change = on_change or (lambda kind, ev: None)
        self.cams: dict[str, CameraRun] = {}
        self.q: queue.Queue = queue.Queue(maxsize=64)
        self._carry: collections.deque = collections.deque()   # taken from the queue, for a later batch
        self.lock = threading.RLock()
        self.problems: list[dict] = []
        self.batches = 0
        self.events = 0
        self.started = time.time()

    # -------------------------------------------------------------- cameras
    def set_cameras(self, rules: dict) -> dict:
        """Run exactly these cameras (camera → CameraRules): new ones start (from their
        checkpoint when there is one), the others stop (their open events end when the camera
        was removed from the table; a camera moved to another worker keeps its checkpoint)."""
        started, stopped = [], []
        with self.lock:
            for cam in [c for c in self.cams if c not in rules]:
                self._stop_camera(cam, moved=True)
                stopped.append(cam)
            for cam, r in rules.items():
                if cam not in self.cams:
                    self._start_camera(r)
                    started.append(cam)
        return {"started": started, "stopped": stopped}

    def remove_camera(self, cam: str) -> None:
        """The camera left the table: its open events end, its checkpoint goes."""
        with self.lock:
            run = self.cams.get(cam)
            if run is not None and run.engine is not None:
                self._emit(run, run.engine.close())
                self._stop_camera(cam, moved=False)
            self.store.drop(cam)

    def _start_camera(self, rules) -> None:
        from workbench.canteen.events import CameraEngine

        cam = rules.camera_id
        state = self.store.get(cam)
        if state and state.get("ended"):
            self.cams[cam] = CameraRun(rules, None, state="ended")
            return
        live = kind_of(rules.source) == "stream"
        if state:
            engine = pickle.loads(state["engine"])
            # the next sample after the checkpointed one, on the same grid
            start_at, resumed = (0.0 if live else state["t"] + 1.0 / rules.thresholds.fps), True
        else:
            engine = CameraEngine(rules, canteen_id=rules.canteen_id, district=rules.district)
            start_at, resumed = 0.0, False
        origin = rules.start_time
        if origin is None and not live:
            origin = self.store.origin(cam)
        run = CameraRun(rules, engine, live=live, resumed=resumed)
        if live and state:  # the engine's clock goes on from the checkpoint, plus the time it was away
            run.t_offset = state["t"] + max(0.0, time.time() - state["wall"])
        if kind_of(rules.source) == "images":
            src = ImageFolderSource(cam, rules.source, rules.thresholds.fps, origin, self._status)
        else:
            src = AvSource(cam, rules.source, rules.thresholds.fps, origin, self._status, decode=self.decode,
                           start_at=start_at, threads=1, **self.stream_kw)
        run.source = src
        run.thread = threading.Thread(target=self._read, args=(run,), name=f"camera-{cam}", daemon=True)
        self.cams[cam] = run
        run.thread.start()

    def _stop_camera(self, cam: str, moved: bool) -> None:
        run = self.cams.pop(cam, None)
        if run is not None and run.source is not None:
            run.source.stop()

    def _status(self, s: SourceStatus) -> None:
        run = self.cams.get(s.camera_id)
        if run is not None:
            self.q.put(("status", run, s))

    def _read(self, run: CameraRun) -> None:
        try:
            for f in run.source.frames():
                while not run.source.stop_event.is_set():
                    try:
                        self.q.put(("frame", run, f), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if run.source.stop_event.is_set():
                    return
            self.q.put(("done", run, None))
        except SourceError as exc:
            self.q.put(("error", run, exc.problem))
        except Exception as exc:  # noqa: BLE001 - one camera's failure must not stop the others
            self.q.put(("error", run, f"{type(exc).__name__}: {exc}"))

    # -------------------------------------------------------------- problems
    def problem(self, cam: str | None, text: str) -> None:
        item = {"camera": cam, "node": self.worker, "problem": text, "ts": utcnow().isoformat(timespec="seconds")}
        self.problems.append(item)
        del self.problems[:-100]
        try:
            self.store.problem(item)
        except Exception:  # noqa: BLE001 - the store is where it would be reported
            pass
        log.warning("摄像头 %s（节点 %s）：%s", cam, self.worker, text)

    # -------------------------------------------------------------- the loop
    def _next(self, timeout: float | None):
        if self._carry:
            return self._carry.popleft()
        return self.q.get(timeout=timeout) if timeout else self.q.get_nowait()

    def step(self, timeout: float = 0.2) -> int:
        """One batch, at most one frame per camera (the motion gate of a camera's second frame
        depends on what its first one showed: so a camera sees the same whatever the batching,
        and a replay after a failover decides exactly as the first run did). Returns the frames
        analysed (0 when nothing came within `timeout`)."""
        try:
            items = [self._next(timeout)]
        except queue.Empty:
            return 0
        frames, held, later = [], set(), []
        with self.lock:  # set_cameras waits: once it returns, a camera moved away is never touched here
            while True:
                kind, run, x = items.pop()
                cam = run.rules.camera_id
                if cam in held:                          # this camera's next frame (or its end): next batch
                    later.append((kind, run, x))
                elif self.cams.get(cam) is run:          # frames of a camera stopped meanwhile: dropped
                    if kind == "frame":
                        frames.append((run, x))
                        held.add(cam)
                    elif kind == "done":
                        self._ended(run)
                    elif kind == "error":
                        run.state, run.problem = "failed", x
                        self.problem(run.rules.camera_id, x)
                        self._emit(run, run.engine.close())
                        self._checkpoint(run, ended=True)
                    elif kind == "status":
                        self._on_status(run, x)
                if len(frames) >= self.max_batch or len(later) >= 4 * self.max_batch:
                    break
                try:
                    items.append(self._next(None))
                except queue.Empty:
                    break
            self._carry.extendleft(reversed(later))
            if frames:
                self._process(frames)
        return len(frames)

    def run_until_done(self, max_seconds: float | None = None) -> None:
        """Until every camera's source ended (files) or `max_seconds`."""
        t0 = time.monotonic()
        while any(r.state in ("starting", "running") for r in self.cams.values()) or not self.q.empty() \
                or self._carry:
            if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                break
            self.step()

    def _process(self, frames) -> None:
        go = []
        for run, f in frames:
            t = f.t + run.t_offset
            go.append(not self.use_gate or run.engine.wants(f.image, t))
        batch = [f.image for (run, f), g in zip(frames, go) if g]
        dets = iter(self.detect(batch)) if batch else iter(())
        self.batches += 1
        now = time.time()
        touched = {}
        for (run, f), g in zip(frames, go):
            d = next(dets) if g else None
            t = f.t + run.t_offset
            try:
                changes = run.engine.observe(t, f.ts, f.image, d)
            except Exception as exc:  # noqa: BLE001 - a camera's rules (zones outside the frame): that camera only
                problem = getattr(exc, "problem", f"{type(exc).__name__}: {exc}")
                run.state, run.problem = "failed", problem
                self.problem(run.rules.camera_id, problem)
                run.source.stop()
                continue
            run.frames += 1
            run.detected += int(g)
            run.last_t, run.last_frame, run.last_wall = t, f.ts, now
            run.recent.append(now)
            del run.recent[:-30]
            if run.state in ("starting", "offline"):
                run.state = "running"
            self._emit(run, changes)
            touched[run.rules.camera_id] = run
        for run in touched.values():
            self._checkpoint(run)

    def _checkpoint(self, run: CameraRun, ended: bool = False) -> None:
        if run.engine is None:
            return
        t = run.last_t if run.last_t is not None else -1.0
        self.store.put(run.rules.camera_id, {"engine": engine_blob(run.engine), "t": t - run.t_offset if not run.live
                                             else t, "wall": time.time(), "worker": self.worker, "ended": ended,
                                             "frames": run.frames})

    def _ended(self, run: CameraRun) -> None:
        run.state = "ended"
        self._emit(run, run.engine.close())
        self._checkpoint(run, ended=True)

    def _on_status(self, run: CameraRun, s: SourceStatus) -> None:
        eng = run.engine
        if s.kind == "problem":
            self.problem(s.camera_id, s.message)
        elif s.kind == "offline":
            run.state, run.problem = "offline", s.message
            self.problem(s.camera_id, f"摄像头离线：{s.message}")
            if self.sink is not None:
                self.sink.camera_offline(s.camera_id, s.message, s.ts or utcnow(), eng.district,
                                         canteen_id=eng.canteen_id)
            if self.mqtt is not None:
                self.mqtt.availability(s.camera_id, False)
        elif s.kind == "online":
            run.state, run.problem = "running", ""
            if self.sink is not None:
                self.sink.camera_online(s.camera_id, s.ts or utcnow())
            if self.mqtt is not None:
                self.mqtt.availability(s.camera_id, True)

    def _emit(self, run: CameraRun, changes) -> None:
        from workbench.canteen.pipeline import deliver

        for ch in changes:
            if ch.kind == "new":
                run.events += 1
                self.events += 1
            deliver(ch, run.rules.timezone, evidence=self.evidence, sink=self.sink, mqtt=self.mqtt,
                    problem=self.problem, on_change=self.on_change)

    # -------------------------------------------------------------- health
    def status(self) -> dict:
        now = time.time()
        cams = {}
        runs = list(self.cams.items())  # not under the lock: a slow batch must not make the worker look dead
        for cam, r in runs:
            rec = [x for x in r.recent if now - x <= 10]
            lag = None
            if r.live and r.last_frame is not None:
                lag = round((utcnow() - r.last_frame).total_seconds(), 1)
            cams[cam] = {"state": r.state, "frames": r.frames, "detected": r.detected, "events": r.events,
                         "fps": round(len(rec) / 10, 2) if rec else 0.0,
                         "last_frame": r.last_frame.isoformat(timespec="seconds") if r.last_frame else None,
                         "since_last_s": round(now - r.last_wall, 1) if r.last_wall else None,
                         "lag_s": lag, "resumed": r.resumed, "problem": r.problem,
                         "decode": getattr(r.source, "mode", None)}
        return {"worker": self.worker, "cameras": cams, "batches": self.batches, "events": self.events,
                "queue": self.q.qsize(), "up_s": round(now - self.started, 1), "ts": now}

    def close(self) -> None:
        with self.lock:
            for cam in list(self.cams):
                self._stop_camera(cam, moved=True)


# ------------------------------------------------------------------ the model holder
class Batcher:
    """Frames from several callers (a node's camera workers) put together into one batch per
    detector call; each caller gets its own frames' detections back."""

    def __init__(self, detector, max_batch: int = 16, wait_s: float = 0.01):
        self.detector = detector
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.q: queue.Queue = queue.Queue()
        self.calls = self.frames = 0
        threading.Thread(target=self._loop, name="batcher", daemon=True).start()

    def detect(self, images: list) -> list:
        if not images:
            return []
        box = {"done": threading.Event()}
        self.q.put((images, box))
        box["done"].wait()
        if "error" in box:
            raise box["error"]
        return box["out"]

    def _loop(self) -> None:
        while True:
            reqs = [self.q.get()]
            n = len(reqs[0][0])
            end = time.monotonic() + self.wait_s
            while n < self.max_batch:
                try:
                    r = self.q.get(timeout=max(0.0, end - time.monotonic()))
                except queue.Empty:
                    break
                reqs.append(r)
                n += len(r[0])
            images = [im for imgs, _ in reqs for im in imgs]
            try:
                out = self.detector.detect(images)
                self.calls += 1
                self.frames += len(images)
                k = 0
                for imgs, box in reqs:
                    box["out"] = out[k:k + len(imgs)]
                    k += len(imgs)
            except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
                for _, box in reqs:
                    box["error"] = exc
            for _, box in reqs:
                box["done"].set()


def node_model_path(model: str | None) -> Path:
    """The model on this node: the path given, else $WORKBENCH_CANTEEN_MODEL on the node, else
    the project's default kitchen model."""
    if model:
        return Path(model)
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    from workbench.canteen.cli import _model_path

    return _model_path(None)


# ------------------------------------------------------------------ Ray actors
def _actors():
    import ray

    @ray.remote(num_cpus=0)
    class StateStore(LocalStore):
        pass

    @ray.remote(num_cpus=0, max_concurrency=16)
    class ModelHolder:
        def __init__(self, node: str, model: str | None, imgsz: int | None, closeup, max_batch: int):
            from workbench.canteen.detector import Detector, ModelError

            self.node = node
            path = node_model_path(model)
            try:
                det = Detector(path, imgsz=imgsz, closeup=closeup, deterministic=True)
            except ModelError as exc:
                raise RuntimeError(f"节点 {node}：模型无法加载：{exc}") from None
            self.batcher = Batcher(det, max_batch=max_batch)
            self.info = {"node": node, "model": str(path), "imgsz": det.imgsz, "backend": det.backend}

        def ready(self) -> dict:
            return self.info

        def detect(self, images):
            return self.batcher.detect(images)

        def stats(self) -> dict:
            return {"calls": self.batcher.calls, "frames": self.batcher.frames}

    @ray.remote(num_cpus=0, max_concurrency=4)
    class CameraWorker:
        def __init__(self, name: str, holder, store, opts: dict):
            from workbench.canteen.sinks import HubSink

            self.name = name
            self.holder = holder
            sink = HubSink() if opts.get("hub", True) else None
            self.runner = NodeRunner(name, self._detect, _RayStore(store), sink=sink,
                                     evidence=opts.get("evidence", True), max_batch=opts.get("max_batch", 8),
                                     decode=opts.get("decode", "auto"), use_gate=opts.get("gate", True),
                                     stream_kw=opts.get("stream_kw"))
            self.store = store
            self._stop = threading.Event()
            self.thread = threading.Thread(target=self._loop, daemon=True)
            self.thread.start()

        def _detect(self, images):
            import ray as _ray

            return _ray.get(self.holder.detect.remote(images))

        def _loop(self):
            last = 0.0
            while not self._stop.is_set():
                try:
                    self.runner.step()
                except Exception as exc:  # noqa: BLE001 - reported; the loop goes on
                    self.runner.problem(None, f"{type(exc).__name__}: {exc}")
                    time.sleep(0.5)
                if time.monotonic() - last >= 1.0:
                    last = time.monotonic()
                    try:
                        self.store.report.remote(self.name, self.runner.status())
                    except Exception:  # noqa: BLE001
                        pass

        def set_cameras(self, rules: dict) -> dict:
            return self.runner.set_cameras(rules)

        def remove_camera(self, cam: str) -> None:
            self.runner.remove_camera(cam)

        def status(self) -> dict:
            return self.runner.status()

        def pid(self) -> int:
            return os.getpid()

        def stop(self) -> None:
            self._stop.set()
            self.runner.close()

    return StateStore, ModelHolder, CameraWorker


class _RayStore:
    """The StateStore actor seen as a LocalStore (checkpoints sent without waiting: a caller's
    calls reach an actor in order)."""

    def __init__(self, actor):
        self.a = actor

    def origin(self, camera):
        import ray

        return ray.get(self.a.origin.remote(camera))

    def get(self, camera):
        import ray

        return ray.get(self.a.get.remote(camera))

    def put(self, camera, state):
        self.a.put.remote(camera, state)

    def drop(self, camera):
        self.a.drop.remote(camera)

    def problem(self, item):
        self.a.problem.remote(item)


# ------------------------------------------------------------------ the coordinator
def health_path() -> Path:
    from workbench import config

    return config.data_dir() / "cluster" / "canteen.json"


def read_cameras(eng=None, rules_file=None, fps: float | None = None) -> dict:
    """camera → CameraRules for the cameras of the hub's table with a video source; the rules
    file's settings for a camera it names, the canteen's staff hours and district."""

    from workbench.canteen.rules import ConfigError, camera_rules
    from workbench.store import hub

    cams = hub.read("cameras", eng=eng)
    can = hub.read("canteens", columns=["canteen_id", "district", "staff_hours"], eng=eng)
    cams = cams.merge(can, on="canteen_id", how="left")
    out, problems = {}, []
    for r in cams.itertuples(index=False):
        src = r.source_url if isinstance(r.source_url, str) else ""
        if not src.strip():
            continue
        base = rules_file.cameras.get(r.camera_id) if rules_file is not None else None
        try:
            if base is not None:
                rules = replace(base, source=src)
            else:
                spec = {"source": src}
                if isinstance(r.staff_hours, str) and r.staff_hours:
                    spec["staff_hours"] = r.staff_hours
                rules = camera_rules(r.camera_id, spec, rules_file.defaults if rules_file is not None else None)
            rules = replace(rules, canteen_id=rules.canteen_id or r.canteen_id,
                            district=rules.district or (r.district if isinstance(r.district, str) else None))
            if fps:
                rules = replace(rules, thresholds=replace(rules.thresholds, fps=fps))
        except ConfigError as exc:
            problems.append({"camera": r.camera_id, "node": None, "problem": exc.problem})
            continue
        out[r.camera_id] = rules
    return out, problems


class Cluster:
    """The coordinator: reads the cameras, keeps a worker and a model holder on every node,
    places the cameras, gives up on workers that stop answering, writes the health file."""

    def __init__(self, address: str | None = None, *, model: str | None = None, imgsz: int | None = None,
                 closeup: str | None = None, fps: float | None = None, rules=None, poll_s: float = 2.0,
                 dead_after_s: float = 10.0, max_batch: int = 8, evidence: bool = True, hub_sink: bool = True,
                 decode: str = "auto", cameras: Callable[[], tuple[dict, list]] | None = None,
                 stream_kw: dict | None = None):
        self.address = address
        self.model, self.imgsz, self.closeup = model, imgsz, closeup
        self.fps, self.rules_file = fps, rules
        self.poll_s, self.dead_after_s = poll_s, dead_after_s
        self.opts = {"max_batch": max_batch, "evidence": evidence, "hub": hub_sink, "decode": decode,
                     "stream_kw": stream_kw}
        self._cameras = cameras
        self.workers: dict[str, object] = {}      # node id → CameraWorker
        self.holders: dict[str, object] = {}      # node id → ModelHolder
        self.node_names: dict[str, str] = {}      # node id → name shown (ip:port)
        self.bad_nodes: dict[str, float] = {}     # node id → when given up (not used again for a while)
        self.placement: dict[str, str] = {}       # camera → node id
        self.problems: list[dict] = []
        self.failovers: list[dict] = []
        self.store = None
        self.retry_s = 300.0                      # a node given up is tried again after this long

    # -------------------------------------------------------------- start
    def start(self) -> None:
        import ray

        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ and k != MODEL_ENV}
        if not ray.is_initialized():
            ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False,
                     runtime_env={"env_vars": env} if env else None, include_dashboard=False
                     if self.address is None else None, configure_logging=False)
        StateStore, self._Holder, self._Worker = _actors()
        # detached: a coordinator started again finds the checkpoints (and the files' clocks) where they were
        self.store = StateStore.options(name=STORE_NAME, get_if_exists=True, lifetime="detached",
                                        **self._on_head()).remote()

    def _on_head(self) -> dict:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        head = next((n["NodeID"] for n in ray.nodes() if n.get("Alive")
                     and "node:__internal_head__" in n.get("Resources", {})), None)
        if head is None:  # not marked: the node this coordinator connected to
            return {"scheduling_strategy": NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=True)}
        # on the head (a worker node that dies must not take the checkpoints with it)
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(head, soft=False)}

    def _problem(self, camera, node, text) -> None:
        item = {"camera": camera, "node": node, "problem": text, "ts": utcnow().isoformat(timespec="seconds")}
        if not any(p["camera"] == camera and p["node"] == node and p["problem"] == text for p in self.problems):
            self.problems.append(item)
            log.warning("摄像头 %s（节点 %s）：%s", camera, node, text)
        del self.problems[:-200]

    # -------------------------------------------------------------- nodes
    def nodes(self) -> dict[str, str]:
        """Alive nodes with CPUs (a head started with --num-cpus=0 runs no cameras)."""
        import ray

        out = {}
        for n in ray.nodes():
            if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0:
                out[n["NodeID"]] = f"{n.get('NodeManagerAddress')}:{n.get('NodeManagerPort')}"
        return out

    def _ensure(self, missing: dict[str, str]) -> None:
        """A model holder and a camera worker on each of these nodes (node id → name), started
        side by side; a node whose model does not load runs no cameras and is named."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if not missing:
            return
        pins = {node: NodeAffinitySchedulingStrategy(node, soft=False) for node in missing}
        holders = {node: self._Holder.options(scheduling_strategy=pins[node]).remote(
            name, self.model, self.imgsz, self.closeup, max(8, 2 * self.opts["max_batch"]))
            for node, name in missing.items()}
        workers = {}
        for node, h in holders.items():
            name = missing[node]
            try:
                ray.get(h.ready.remote(), timeout=180)
            except Exception as exc:  # noqa: BLE001 - the node's model does not load: it runs no cameras
                text = _cause(exc)
                self._problem(None, name, text if text.startswith("节点") else f"节点 {name}：模型无法加载：{text}")
                self.bad_nodes[node] = time.monotonic()
                ray.kill(h)
                continue
            workers[node] = self._Worker.options(scheduling_strategy=pins[node]).remote(name, h, self.store, self.opts)
        for node, w in workers.items():
            name = missing[node]
            try:
                ray.get(w.status.remote(), timeout=180)   # started (a new process: seconds)
            except Exception as exc:  # noqa: BLE001
                self._problem(None, name, f"节点 {name}：摄像头工作进程无法启动：{_cause(exc)}")
                self.bad_nodes[node] = time.monotonic()
                for a in (w, holders[node]):
                    ray.kill(a)
                continue
            self.holders[node], self.workers[node], self.node_names[node] = holders[node], w, name

    def _give_up(self, node: str, why: str) -> None:
        import ray

        name = self.node_names.get(node, node[:8])
        for a in (self.workers.pop(node, None), self.holders.pop(node, None)):
            if a is not None:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
        self.bad_nodes[node] = time.monotonic()
        moved = sorted(c for c, n in self.placement.items() if n == node)
        self.failovers.append({"node": name, "why": why, "cameras": moved, "at": time.time()})
        self._problem(None, name, f"节点 {name} 的摄像头工作进程失联（{why}），其 {len(moved)} 路摄像头转到其他节点")

    # -------------------------------------------------------------- one round
    def tick(self) -> dict:
        import ray

        cams, problems = self._cameras() if self._cameras else read_cameras(rules_file=self.rules_file, fps=self.fps)
        for p in problems:
            self._problem(p["camera"], p["node"], p["problem"])
        alive = self.nodes()
        for node in list(self.workers):
            if node not in alive:
                self._give_up(node, "节点已退出集群")
        self._ensure({node: name for node, name in alive.items() if node not in self.workers
                      and not (node in self.bad_nodes and time.monotonic() - self.bad_nodes[node] < self.retry_s)})
        # who answers
        pings = {node: w.status.remote() for node, w in self.workers.items()}
        status = {}
        if pings:
            ready, _ = ray.wait(list(pings.values()), num_returns=len(pings), timeout=self.dead_after_s)
            for node, ref in pings.items():
                if ref not in ready:
                    self._give_up(node, f"{self.dead_after_s:g} 秒无响应")
                    continue
                try:
                    status[node] = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the actor died
                    self._give_up(node, f"进程已退出：{_cause(exc)[:80]}")
        # removed cameras end on their worker
        for cam in [c for c in self.placement if c not in cams]:
            node = self.placement.pop(cam)
            if node in self.workers:
                self.workers[node].remove_camera.remote(cam)
            else:
                self.store.drop.remote(cam)
        before = dict(self.placement)
        self.placement = place(cams, list(self.workers), before)
        # first the workers let go of the cameras they lose, then the others take them (from the checkpoint)
        for keep_only in (True, False):
            calls = []
            for node, w in self.workers.items():
                mine = {c: cams[c] for c, n in self.placement.items() if n == node
                        and (not keep_only or before.get(c) == node)}
                calls.append(w.set_cameras.remote(mine))
            try:
                ray.get(calls, timeout=60)
            except Exception as exc:  # noqa: BLE001 - noticed at the next round's ping
                log.warning("set_cameras: %s", exc)
        return self._write_health(cams, status)

    def _write_health(self, cams, status, stopped: bool = False) -> dict:
        import ray

        try:
            store = ray.get(self.store.snapshot.remote(), timeout=10)
        except Exception:  # noqa: BLE001
            store = {"problems": [], "checkpoints": {}}
        h = health_report(cams, status, node_names=self.node_names, placed=len(self.placement),
                          problems=self.problems, store_problems=store.get("problems", []),
                          failovers=self.failovers, bad_nodes=self.bad_nodes, poll_s=self.poll_s, stopped=stopped)
        self.health = write_health(h)
        return h

    def run(self, max_seconds: float | None = None, stop: threading.Event | None = None,
            until_done: bool = False) -> dict:
        t0 = time.monotonic()
        h = {}
        while not (stop is not None and stop.is_set()):
            h = self.tick()
            if until_done and h["cameras"] and all(
                    v["state"] in ("ended", "failed") for w in h["workers"] for v in w["camera_status"].values()) \
                    and sum(w["cameras"] for w in h["workers"]) >= h["cameras"]:
                break
            if max_seconds is not None and time.monotonic() - t0 > max_seconds:
                break
            time.sleep(self.poll_s)
        return h

    def shutdown(self, disconnect: bool = True) -> None:
        import ray

        last = getattr(self, "health", None)
        if last:  # the dashboard says 集群未运行 (stopped at …), not a coordinator gone silent
            write_health({**last, "stopped": True, "ts": time.time(),
                          "updated": utcnow().isoformat(timespec="seconds")})
        for w in self.workers.values():
            try:
                ray.get(w.stop.remote(), timeout=10)
            except Exception:  # noqa: BLE001
                pass
        for a in list(self.workers.values()) + list(self.holders.values()) + [self.store]:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001
                pass
        end = time.monotonic() + 15
        while time.monotonic() < end:  # the store's name is free again (the next coordinator starts clean)
            try:
                ray.get_actor(STORE_NAME, namespace=NAMESPACE)
            except ValueError:
                break
            time.sleep(0.2)
        if disconnect:
            ray.shutdown()


def _cause(exc: BaseException) -> str:
    """The first line of what an actor raised (Ray wraps it)."""
    text = str(getattr(exc, "cause", None) or exc)
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("RuntimeError:"):
            return line.split(":", 1)[1].strip()
    return text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


# ------------------------------------------------------------------ the health file
def health_report(cams, status: dict, *, node_names: dict | None = None, placed: int | None = None,
                  problems=(), store_problems=(), failovers=(), bad_nodes=(), poll_s: float = 2.0,
                  stopped: bool = False) -> dict:
    """The coordinator's health of one round: `cams` the cameras it runs (camera → rules),
    `status` node id → that node's NodeRunner.status(). Written by write_health."""
    node_names = node_names or {}
    workers = []
    for node, st in status.items():
        c = st["cameras"]
        workers.append({"node": node_names.get(node, node[:8]), "node_id": node, "cameras": len(c),
                        "running": sum(1 for v in c.values() if v["state"] == "running"),
                        "fps": round(sum(v["fps"] for v in c.values()), 2), "events": st["events"],
                        "queue": st["queue"], "camera_status": c})
    problems = list(problems)
    seen = {(p["camera"], p["problem"]) for p in problems}
    problems += [p for p in store_problems if (p["camera"], p["problem"]) not in seen]
    return {"ts": time.time(), "updated": utcnow().isoformat(timespec="seconds"), "cameras": len(cams),
            "placed": len(cams) if placed is None else placed, "workers": workers, "problems": problems[-100:],
            "failovers": list(failovers)[-20:], "bad_nodes": [node_names.get(n, n[:8]) for n in bad_nodes],
            "poll_s": poll_s, "stopped": stopped}


def write_health(h: dict, path: Path | None = None) -> dict:
    """The health file (data/cluster/canteen.json), replaced whole: a reader never sees half."""
    path = path or health_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(h, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return h


# ------------------------------------------------------------------ reading the health
STALE_S = 30.0   # a health older than this (or 3 rounds) is stale: the coordinator may have stopped


def health(max_age_s: float | None = None, now: float | None = None) -> dict | None:
    """The cluster's last health (None: never ran here); `age_s`, and `stale` when older than
    max_age_s (default: 30 s or three of its rounds, whichever is longer) and not stopped."""
    path = health_path()
    try:
        h = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(h, dict):
        return None
    limit = max_age_s if max_age_s is not None else max(STALE_S, 3 * float(h.get("poll_s") or 0))
    h["age_s"] = round((time.time() if now is None else now) - float(h.get("ts", 0) or 0), 1)
    h["stopped"] = bool(h.get("stopped"))
    h["stale"] = not h["stopped"] and h["age_s"] > limit
    return h


STATE_NAMES = {"running": "运行中", "starting": "启动中", "offline": "离线", "ended": "已结束", "failed": "故障"}
NOT_RUNNING = "集群未运行"


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 90:
        return f"{s} 秒前"
    if s < 5400:
        return f"{round(s / 60)} 分钟前"
    if s < 86400 * 2:
        return f"{round(s / 3600)} 小时前"
    return f"{round(s / 86400)} 天前"


def _local(iso: str | None) -> str:
    """An ISO UTC time of the health file in Beijing time, to the second."""
    import pandas as pd

    from workbench import config

    if not iso:
        return "-"
    try:
        t = pd.Timestamp(iso)
    except ValueError:
        return str(iso)
    t = t.tz_localize("UTC") if t.tzinfo is None else t
    return t.tz_convert(config.TZ).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class HealthView:
    """What the dashboard and `cluster status` say of the cluster (one reading of the file)."""
    state: str                 # none | stopped | stale | running
    headline: str              # one plain sentence
    totals: dict = field(default_factory=dict)   # workers, cameras, running, fps, max_lag_s, last_frame
    workers: object = None     # DataFrame: one row per worker
    cameras: object = None     # DataFrame: one row per camera (health_frame)
    problems: list = field(default_factory=list)   # plain sentences, newest last


def health_view(h: dict | None) -> HealthView:
    import pandas as pd

    wcols = ["节点", "摄像头(路)", "运行中(路)", "帧/秒", "违规事件", "待处理帧"]
    if h is None:
        return HealthView("none", f"{NOT_RUNNING}：还没有运行记录（运行 workbench canteen cluster run 启动）。",
                          workers=pd.DataFrame(columns=wcols), cameras=health_frame(None))
    workers = h.get("workers", [])
    cams = [v for w in workers for v in w["camera_status"].values()]
    lags = [v["lag_s"] for v in cams if v.get("lag_s") is not None]
    lasts = [v["last_frame"] for v in cams if v.get("last_frame")]
    totals = {"workers": len(workers), "cameras": int(h.get("cameras", 0)),
              "running": sum(w["running"] for w in workers), "fps": round(sum(w["fps"] for w in workers), 2),
              "max_lag_s": max(lags) if lags else None, "last_frame": max(lasts) if lasts else None,
              "updated": _local(h.get("updated")), "age_s": h.get("age_s", 0.0)}
    when = f"{totals['updated']}（{_age(totals['age_s'])}）"
    if h.get("stopped"):
        state, headline = "stopped", f"{NOT_RUNNING}：上次运行已于 {when}正常停止。"
    elif h.get("stale"):
        state, headline = "stale", (f"运行状态已过期：最后一次更新在 {when}，协调进程可能已停止或失联，"
                                    "以下为当时的状态。")
    else:
        state, headline = "running", (f"集群运行中：{totals['workers']} 个工作节点，摄像头 {totals['cameras']} 路"
                                      f"（运行 {totals['running']} 路），合计 {totals['fps']:g} 帧/秒；"
                                      f"更新于 {when}。")
    wf = pd.DataFrame([{"节点": w["node"], "摄像头(路)": w["cameras"], "运行中(路)": w["running"], "帧/秒": w["fps"],
                        "违规事件": w["events"], "待处理帧": w["queue"]} for w in workers], columns=wcols)
    problems = []
    for f in h.get("failovers", []):
        problems.append(f"节点 {f['node']}（{f['why']}）的 {len(f['cameras'])} 路摄像头已转到其他节点")
    for p in h.get("problems", [])[-20:]:
        who = "，".join(x for x in (f"摄像头 {p['camera']}" if p.get("camera") else "",
                                   f"节点 {p['node']}" if p.get("node") else "") if x)
        at = f"[{_local(p['ts'])}] " if p.get("ts") else ""
        problems.append(f"{at}{who}：{p['problem']}" if who else f"{at}{p['problem']}")
    return HealthView(state, headline, totals, wf, health_frame(h), problems)


def health_frame(h: dict | None):
    """One row per camera: 节点, 摄像头, 状态, 帧率, 延迟, 最后一帧 (Beijing time), 问题 (for the dashboard)."""
    import pandas as pd

    names = STATE_NAMES
    rows = []
    for w in (h or {}).get("workers", []):
        for cam, v in sorted(w["camera_status"].items()):
            rows.append({"节点": w["node"], "摄像头": cam, "状态": names.get(v["state"], v["state"]),
                         "帧/秒": v["fps"], "延迟(秒)": v["lag_s"],
                         "最后一帧": _local(v["last_frame"]) if v.get("last_frame") else "尚无画面",
                         "已分析帧": v["frames"], "违规": v["events"], "解码": {"keyframes": "仅关键帧",
                                                                         "full": "全解码"}.get(v["decode"], "-"),
                         "问题": v["problem"] or ""})
    return pd.DataFrame(rows, columns=["节点", "摄像头", "状态", "帧/秒", "延迟(秒)", "最后一帧", "已分析帧", "违规",
                                       "解码", "问题"])


def health_lines(h: dict | None) -> list[str]:
    """`workbench canteen cluster status` in Chinese: the dashboard's headline, then the detail."""
    v = health_view(h)
    out = [v.headline]
    if h is None:
        return out
    t = v.totals
    lag = f"，最大延迟 {t['max_lag_s']:.1f} 秒" if t["max_lag_s"] is not None else ""
    last = f"，最后一帧 {_local(t['last_frame'])}" if t["last_frame"] else "，尚无画面"
    out.append(f"摄像头 {h['cameras']} 路，已分配 {h['placed']} 路，工作节点 {len(h['workers'])} 个，"
               f"合计 {t['fps']:g} 帧/秒{lag}{last}")
    for w in h["workers"]:
        out.append(f"  节点 {w['node']}：摄像头 {w['cameras']} 路（运行 {w['running']}），"
                   f"{w['fps']:.1f} 帧/秒，违规事件 {w['events']} 起，待处理帧 {w['queue']}")
        for cam, c in sorted(w["camera_status"].items()):
            lag = f"，延迟 {c['lag_s']:.1f} 秒" if c.get("lag_s") is not None else ""
            last = f"，最后一帧 {_local(c['last_frame'])}" if c.get("last_frame") else "，尚无画面"
            prob = f"，问题：{c['problem']}" if c.get("problem") else ""
            out.append(f"    {cam}：{STATE_NAMES.get(c['state'], c['state'])}，{c['fps']:.1f} 帧/秒{lag}{last}{prob}")
    out += [f"问题 {p}" for p in v.problems]
    return out


# ------------------------------------------------------------------ a cluster on one machine
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalNodes:
    """A Ray head and worker nodes as `ray start` processes on 127.0.0.1, each node a raylet of
    its own (for the tests, the benchmarks and trying the cluster on one machine). Every
    process is found by the node's own temp folder and ended by its pid."""

    def __init__(self, workers: int = 2, cpus: int = 1, temp_dir: str | os.PathLike | None = None,
                 memory: int = 1_500_000_000, object_store: int = 150_000_000, worker_env: list | None = None):
        import tempfile

        self.n, self.cpus, self.memory, self.object_store = workers, cpus, memory, object_store
        self.temp = Path(temp_dir or tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        self.worker_env = worker_env or [{}] * workers
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.node_ports: list[int] = []
        self.base = 21000 + (self.port % 60) * 600  # each node's own port range (workers, agents)

    def _ray(self) -> str:
        import shutil
        import sys

        return shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"

    def _ports(self, k: int) -> list[str]:
        b = self.base + 120 * k
        return ["--min-worker-port", str(b), "--max-worker-port", str(b + 99), "--dashboard-agent-listen-port",
                str(b + 100), "--dashboard-agent-grpc-port", str(b + 101), "--metrics-export-port", str(b + 102),
                "--runtime-env-agent-port", str(b + 103), "--node-manager-port", str(b + 104),
                "--object-manager-port", str(b + 105)]

    def start(self, tries: int = 3, rounds: int = 2) -> "LocalNodes":
        """Start the head, then the workers. `ray start` gives a node 30 s to register (fixed in
        Ray); on a loaded machine that can fail: each node is tried again, and if the workers
        cannot join, the whole cluster is started again on other ports."""
        # no token auth unless asked for: Ray turns it on by itself when ~/.ray/auth_token exists
        # (any local ray.init leaves one), and then nodes and drivers disagree
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        for r in range(rounds):
            try:
                return self._start(tries)
            except RuntimeError:
                self.stop()
                if r == rounds - 1:
                    raise
                self.port = _free_port()
                self.address = f"127.0.0.1:{self.port}"
                self.base = 21000 + (self.port % 60) * 600
        return self

    def _start(self, tries: int) -> "LocalNodes":
        import subprocess

        common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats", "--temp-dir", str(self.temp)]
        head = [self._ray(), "start", "--head", "--port", str(self.port), "--num-cpus", "0",
                "--include-dashboard", "false", *common, *self._ports(0), "--system-config",
                json.dumps({"health_check_period_ms": 1000, "health_check_failure_threshold": 3})]
        for attempt in range(tries):
            p = subprocess.run(head, capture_output=True, timeout=300, env=dict(os.environ))
            if p.returncode == 0:
                break
            self.stop()
            if attempt == tries - 1:
                raise RuntimeError(f"ray start --head failed: {p.stderr.decode()[-800:]}")

        def worker(k):
            env = {**os.environ, **self.worker_env[k - 1]}
            return subprocess.Popen(
                [self._ray(), "start", "--address", self.address, "--num-cpus", str(self.cpus), "--memory",
                 str(self.memory), "--object-store-memory", str(self.object_store), *common, *self._ports(k)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        # one after the other: nodes sharing a temp folder started side by side race for the same
        # socket names (the raylet dies with "Address already in use")
        self.node_ports = [self.base + 120 * k + 104 for k in range(1, self.n + 1)]
        for k in range(1, self.n + 1):
            for attempt in range(tries):
                p = worker(k)
                _, err = p.communicate(timeout=300)
                if p.returncode == 0:
                    break
                self.kill_node(k)
                if attempt == tries - 1:
                    raise RuntimeError(f"ray start (worker node {k}) failed: {err.decode()[-800:]}")
        return self

    def _procs(self, needle: str):
        import psutil

        out = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if p.info["pid"] != os.getpid() and needle in " ".join(p.info["cmdline"] or []):
                    out.append(p)
            except (psutil.Error, TypeError):
                continue
        return out

    def kill_node(self, k: int) -> list[int]:
        """SIGKILL worker node k (1-based): its raylet and every process under it."""
        port = self.node_ports[k - 1]
        return [p.pid for p in _kill_trees(self._procs(f"--node_manager_port={port}"))]

    def stop(self) -> None:
        import psutil

        psutil.wait_procs(_kill_trees(self._procs(str(self.temp))), timeout=10)


def _kill_trees(procs) -> list:
    """SIGKILL each process and everything under it; the processes killed."""
    import psutil

    victims = []
    for p in procs:
        try:
            victims += p.children(recursive=True) + [p]
        except psutil.Error:
            continue
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass
    return victims


def local_name() -> str:
    return socket.gethostname()
