"""The detector: ultralytics YOLO from a .pt (torch) or an exported .onnx (ONNX Runtime, run
directly: `OrtYolo`), batched across cameras, and a ByteTrack tracker per camera for the people.

Batching: one `Detector.detect(images)` call runs the frames of several cameras through the
network at once. Tracking: ultralytics' BYTETracker, one per camera, fed with that camera's
person detections from the batch (model.track would tie a tracker to one stream per call and
undo the batching across cameras).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from workbench.canteen.classes import CLASSES

TRACKER_ARGS = dict(track_high_thresh=0.4, track_low_thresh=0.1, new_track_thresh=0.4, track_buffer=30,
                    match_thresh=0.8, fuse_score=True)


class ModelError(Exception):
    """A model file that cannot be used (the message names the file and the problem)."""


@dataclass
class Detections:
    """One frame's detections: boxes (x1, y1, x2, y2 in pixels), scores, class names."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray  # int indices into CLASSES
    # (n, 4) or None: for a box judged on one person's crop (the close-up stage), that
    # person's box, so the box goes to that person and not to whoever else overlaps it; NaN rows otherwise
    owner: np.ndarray | None = None

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_rows(cls, rows) -> "Detections":
        """[(class_name, score, x1, y1, x2, y2), ...] — for rules tests and replaying truth."""
        if not rows:
            return cls.empty()
        return cls(np.array([r[2:6] for r in rows], np.float32), np.array([r[1] for r in rows], np.float32),
                   np.array([CLASSES.index(r[0]) for r in rows], np.int64))

    def __len__(self) -> int:
        return len(self.conf)

    def where(self, mask) -> "Detections":
        return Detections(self.xyxy[mask], self.conf[mask], self.cls[mask],
                          None if self.owner is None else self.owner[mask])

    def names(self) -> list[str]:
        return [CLASSES[i] for i in self.cls]


class _TrackInput:
    """What BYTETracker reads: conf, cls, xywh, boolean indexing."""

    def __init__(self, d: Detections):
        self.conf, self.cls = d.conf, d.cls.astype(np.float32)
        xy = d.xyxy
        self.xywh = np.stack([(xy[:, 0] + xy[:, 2]) / 2, (xy[:, 1] + xy[:, 3]) / 2,
                              xy[:, 2] - xy[:, 0], xy[:, 3] - xy[:, 1]], axis=1) if len(xy) else np.zeros((0, 4))
        self._d = d

    def __len__(self):
        return len(self.conf)

    def __getitem__(self, mask):
        return _TrackInput(self._d.where(mask))


class PersonTracker:
    """ByteTrack over one camera's person boxes; returns (track_id, det_index, box) triples.

    Re-linking: at 1–2 sampled frames a second a cook walking across the kitchen moves further
    than their own width between frames, so ByteTrack (IoU matching) starts a new track every
    frame and no person's vote would ever be the second one (measured on 36 held-out clips:
    events of walkers came 4–8 s late). A new ByteTrack id is therefore reported under the id
    of the nearest person not seen in this frame, lost at most `relink_s` ago, of a similar
    height (0.7–1.4×) and whose box centre is within 1.2 of their heights."""

    KEEP_S = 120.0  # how long a ByteTrack id's alias is remembered (ByteTrack keeps lost tracks 30 frames)

    def __init__(self, relink_s: float = 2.5, **kw):
        from workbench.canteen.yolo_env import ensure_yolo_env

        ensure_yolo_env()
        from ultralytics.trackers.byte_tracker import BYTETracker

        self.tracker = BYTETracker(SimpleNamespace(**{**TRACKER_ARGS, **kw}))
        self.relink_s = float(relink_s)
        self._alias: dict[int, int] = {}                       # ByteTrack id -> reported id
        self._last: dict[int, tuple[float, np.ndarray]] = {}  # reported id -> (t, box) last seen

    def update(self, persons: Detections, t: float | None = None) -> list[tuple[int, int, np.ndarray]]:
        """(track id, detection index, box) of the people seen in this frame at `t` seconds
        (None: no re-linking). A new track is returned from its first frame (ByteTrack would
        show it only once it is matched again): its votes still need `votes_needed` frames, so
        a one-frame ghost decides nothing, and a violation is not judged half a second late."""
        bt = self.tracker
        bt.update(_TrackInput(persons))
        found = []
        for s in bt.tracked_stracks:
            if s.frame_id == bt.frame_id and 0 <= s.idx < len(persons):
                r = s.result
                found.append((int(r[4]), int(r[7]), np.asarray(r[:4], np.float32)))
        if t is None:
            return found
        out, used = [], set()
        taken = {self._alias[b] for b, _, _ in found if b in self._alias}
        for bid, di, box in found:
            if bid not in self._alias:
                near = self._lost_near(box, t, taken)
                self._alias[bid] = bid if near is None else near
                taken.add(self._alias[bid])
            if self._alias[bid] in used:  # the lost track came back beside its stand-in: each its own id
                self._alias[bid] = bid
            rid = self._alias[bid]
            used.add(rid)
            self._last[rid] = (t, box)
            out.append((rid, di, box))
        for rid in [k for k, (ts, _) in self._last.items() if t - ts > self.KEEP_S]:
            del self._last[rid]
        live = set(self._last)
        self._alias = {b: r for b, r in self._alias.items() if r in live}
        return out

    def _lost_near(self, box: np.ndarray, t: float, taken: set) -> int | None:
        x1, y1, x2, y2 = box
        h, cx, cy = y2 - y1, (x1 + x2) / 2, (y1 + y2) / 2
        best = None
        for rid, (ts, b) in self._last.items():
            if rid in taken or not 0 < t - ts <= self.relink_s:
                continue
            sh = b[3] - b[1]
            if sh <= 0 or not 0.7 <= h / sh <= 1.4:
                continue
            d = float(np.hypot(cx - (b[0] + b[2]) / 2, cy - (b[1] + b[3]) / 2))
            if d <= 1.2 * max(h, sh) and (best is None or d < best[0]):
                best = (d, rid)
        return best[1] if best else None


def ort_session(path, threads: int | None = None):
    """An ONNX Runtime CPU session whose threads do not spin while idle (see OrtYolo), on the
    model as exported, or with its DFL softmax along the last axis (last_axis_dfl) where it
    has one."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 0
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = last_axis_dfl(path)
    return ort.InferenceSession(model if model is not None else str(path), so, providers=["CPUExecutionProvider"])


def last_axis_dfl(path) -> bytes | None:
    """The exported YOLO with its DFL (the box decoder: a softmax over 16 distance bins, then
    their expected value) computed along the last axis, serialized; None when the model has
    no such DFL. Ultralytics exports it as Transpose → Softmax(axis 1) → 1×1 Conv with the
    weights 0…15, a softmax across a non-last axis that ONNX Runtime runs through transposes
    of its own: measured at 11 % of the whole network's time (8.6 of 81 ms a frame, one core,
    640 × 480). Here: Transpose → Softmax(last axis) → MatMul with the same weights, the same
    arithmetic (the boxes agree with the exported graph's to float rounding; the class
    scores do not pass through it)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    by_out = {o: n for n in g.node for o in n.output}
    weights = {t.name: t for t in g.initializer}
    for sm in [n for n in g.node if n.op_type == "Softmax"]:
        tr = by_out.get(sm.input[0])
        conv = next((n for n in g.node if n.op_type == "Conv" and n.input[0] == sm.output[0]), None)
        if tr is None or tr.op_type != "Transpose" or conv is None or len(conv.input) != 2 \
                or conv.input[1] not in weights:
            continue
        perm = next((list(a.ints) for a in tr.attribute if a.name == "perm"), None)
        axis = next((a.i for a in sm.attribute if a.name == "axis"), None)
        w = numpy_helper.to_array(weights[conv.input[1]])
        if perm != [0, 2, 1, 3] or axis != 1 or w.ndim != 4 or w.shape[0] != 1 or w.shape[2:] != (1, 1):
            continue
        if sum(1 for n in g.node for i in n.input if i in (tr.output[0], sm.output[0])) != 2:
            continue  # something else reads the transposed or softmaxed tensor: leave it alone
        for a in tr.attribute:
            if a.name == "perm":
                a.ints[:] = [0, 1, 3, 2]          # (b, 4, 16, a) -> (b, 4, a, 16)
        for a in sm.attribute:
            if a.name == "axis":
                a.i = 3
        name = conv.input[1] + "_last_axis"
        if sum(1 for n in g.node for i in n.input if i == conv.input[1]) == 1:   # the conv's weights: no one else's
            g.initializer.remove(weights[conv.input[1]])
        g.initializer.append(numpy_helper.from_array(w.reshape(w.shape[1], 1), name))
        k = list(g.node).index(conv)
        g.node.remove(conv)
        g.node.insert(k, helper.make_node("MatMul", [sm.output[0], name], [conv.output[0]], name=conv.name + "_last_axis"))
        changed = {tr.output[0], sm.output[0], conv.output[0]}   # their recorded shapes no longer hold
        for v in [v for v in g.value_info if v.name in changed]:
            g.value_info.remove(v)
        return model.SerializeToString()   # (b, 4, a, 1): the Reshape after it takes it as (b, 4, a)
    return None


RUNTIMES = ("onnxruntime", "openvino")


class _OvSession:
    """OpenVINO behind ONNX Runtime's `run(None, {input: x})`: a compiled model (the .onnx read
    by OpenVINO directly, no conversion step, no file written) and a pool of infer requests,
    one taken per call, so that calls from several threads run side by side (an infer request
    is not shared between threads). `streams` requests on `streams` CPU streams of
    `threads // streams` threads each."""

    def __init__(self, path: Path, threads: int, streams: int = 1):
        import queue

        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        cfg = {"PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
               "NUM_STREAMS": str(streams), "INFERENCE_NUM_THREADS": str(max(1, threads)),
               "INFERENCE_PRECISION_HINT": "f32"}  # f32: the CPU's bf16/f16 would change the scores
        self.compiled = core.compile_model(model, "CPU", cfg)
        self._free: queue.Queue = queue.Queue()
        for _ in range(max(1, streams)):
            self._free.put(self.compiled.create_infer_request())
        port = self.compiled.inputs[0]
        self._input = SimpleNamespace(name=port.get_any_name(),
                                      shape=[d.get_length() if d.is_static else None for d in port.get_partial_shape()])

    def get_inputs(self):
        return [self._input]

    def run(self, _outputs, feed: dict):
        (x,) = feed.values()
        req = self._free.get()
        try:
            req.infer({0: x})
            return [req.get_output_tensor(0).data.copy()]
        finally:
            self._free.put(req)


def _session(path: Path, threads: int | None, runtime: str, streams: int = 1):
    if runtime == "openvino":
        return _OvSession(path, threads or os.cpu_count() or 1, streams)
    return ort_session(path, threads)


class OrtYolo:
    """An exported YOLO (.onnx, dynamic batch) on ONNX Runtime, without torch in the loop:
    letterbox with OpenCV, one session.run per batch, class-wise NMS with OpenCV. The
    session does not spin its threads while idle (`allow_spinning` 0), which on a busy
    2-core machine is the difference between faster and slower than torch."""

    def __init__(self, path: Path, imgsz: int, threads: int | None = None, chunk: int | None = 1,
                 streams: int | None = None, deterministic: bool = False, runtime: str = "onnxruntime"):
        """`chunk`: frames per session.run. On the CPU a batch runs no faster than its frames
        one by one (docs/canteen.md: measured 130–200 ms/frame at batch 1–2, more at 4–8 on
        2 cores), so the default feeds the session one frame at a time; None: the whole batch
        (for a GPU execution provider).

        `streams`: the chunks of a batch run side by side, each on its own share of the cores
        (default: 2 on a machine with 2 cores or more), as OpenVINO's throughput streams do:
        a small network spreads badly over cores within one layer, so two frames on one core
        each beat two frames one after the other on both (docs/canteen.md). A lone frame still
        gets every core.

        `deterministic`: every frame through the same one-stream session, whatever the batch
        (a lone frame on all cores and a frame of a batch on one core can differ in the last
        bits, and a score at a threshold then decides differently): a camera resumed on
        another worker then sees exactly what it saw before (the cluster's replay).

        `runtime`: "onnxruntime", or "openvino" (the same .onnx compiled by OpenVINO for the
        CPU, f32; an INT8 QDQ copy runs in OpenVINO's int8 kernels); letterbox and NMS are the
        same code for both."""
        if runtime not in RUNTIMES:
            raise ModelError(f"未知的推理运行时：{runtime}（可选：{'、'.join(RUNTIMES)}）")
        self.runtime = runtime
        self.chunk = chunk
        self.deterministic = deterministic
        self.session = _session(path, threads, runtime)
        cores = threads or os.cpu_count() or 1
        self.streams = max(1, int(streams if streams is not None else min(2, cores)))
        self._pool = self._stream_session = None
        if self.streams > 1 and chunk:
            from concurrent.futures import ThreadPoolExecutor

            if runtime == "openvino":  # one compiled model, one CPU stream and infer request per stream
                self._stream_session = _OvSession(Path(path), cores, self.streams)
            else:
                self._stream_session = ort_session(path, max(1, cores // self.streams))
            self._pool = ThreadPoolExecutor(self.streams, thread_name_prefix="ort-stream")
        self.input = self.session.get_inputs()[0].name
        self.imgsz = int(imgsz)
        shape = self.session.get_inputs()[0].shape
        self.static = all(isinstance(d, int) for d in shape)
        self.static_batch = shape[0] if isinstance(shape[0], int) else None

    def _letterbox(self, images: list[np.ndarray]):
        import cv2

        s = self.imgsz
        if self.static:  # a fixed-size export: pad to the square
            H = W = s
        else:  # rectangular, to a multiple of 32, as ultralytics does (all frames of a batch share it)
            H = int(np.ceil(max(round(im.shape[0] * min(s / im.shape[0], s / im.shape[1])) for im in images) / 32) * 32)
            W = int(np.ceil(max(round(im.shape[1] * min(s / im.shape[0], s / im.shape[1])) for im in images) / 32) * 32)
        # the network's input (RGB, channels first, 0–1, grey 114 around) written straight from
        # each resized frame, channel by channel: the same float32 values as flipping,
        # transposing and scaling a padded uint8 batch, without its two full copies
        scale = np.float32(1 / 255.0)
        x = np.full((len(images), 3, H, W), np.float32(114) * scale, np.float32)
        meta = []
        for i, im in enumerate(images):
            ih, iw = im.shape[:2]
            ri = min(s / ih, s / iw)
            nw, nh = round(iw * ri), round(ih * ri)
            top, left = (H - nh) // 2, (W - nw) // 2
            r = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR) if (nw, nh) != (iw, ih) else im
            for c in range(3):   # BGR frame -> RGB planes
                np.multiply(r[..., 2 - c], scale, out=x[i, c, top:top + nh, left:left + nw], casting="unsafe")
            meta.append((ri, left, top, iw, ih))
        return x, meta

    def __call__(self, images: list[np.ndarray], conf: float, iou: float = 0.7, max_det: int = 300) -> list:
        step = self.static_batch or self.chunk
        if step and (len(images) > step or (self.deterministic and self._pool is not None)):
            parts = [images[i:i + step] for i in range(0, len(images), step)]
            if self._pool is not None:
                done = self._pool.map(lambda part: self._run(part, conf, iou, max_det, self._stream_session), parts)
            else:
                done = (self._run(part, conf, iou, max_det, self.session) for part in parts)
            return [d for part in done for d in part]
        return self._run(images, conf, iou, max_det, self.session)

    def _run(self, images, conf, iou, max_det, session) -> list:
        import cv2

        x, meta = self._letterbox(images)
        pred = session.run(None, {self.input: x})[0]  # (B, 4 + nc, N): cx, cy, w, h, class scores
        out = []
        for p, (r, left, top, iw, ih) in zip(pred, meta):
            scores = p[4:]
            cls = scores.argmax(0)
            sc = scores[cls, np.arange(scores.shape[1])]
            keep = sc >= conf
            if not keep.any():
                out.append((np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)))
                continue
            b, sc, cls = p[:4, keep].T, sc[keep], cls[keep]
            xyxy = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2,
                             b[:, 1] + b[:, 3] / 2], 1)
            xyxy = (xyxy - [left, top, left, top]) / r
            xyxy = np.clip(xyxy, 0, [iw, ih, iw, ih]).astype(np.float32)
            wh = np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], 1)
            idx = cv2.dnn.NMSBoxesBatched(wh.tolist(), sc.tolist(), cls.tolist(), conf, iou)
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)[:max_det]
            idx = idx[np.argsort(-sc[idx])]
            out.append((xyxy[idx], sc[idx].astype(np.float32), cls[idx].astype(np.int64)))
        return out


class Detector:
    """A YOLO model by path (.pt with torch, .onnx with ONNX Runtime), its classes checked
    against workbench.canteen.classes."""

    def __init__(self, path: str | Path, imgsz: int | None = None, device: str = "cpu", conf: float = 0.1,
                 closeup: str | Path | None = "auto", deterministic: bool = False, runtime: str = "onnxruntime"):
        """`closeup`: the close-up classifier for phones and cigarettes (workbench.canteen.closeup):
        a path, "auto" (kitchen-closeup.onnx beside the model or in models/kitchen, if there)
        or None (the detector alone). `runtime`: for an .onnx, "onnxruntime" (default) or
        "openvino" (see OrtYolo; on this project's 2-core AMD node no faster, docs in the README)."""
        path = Path(path)
        if runtime not in RUNTIMES:
            raise ModelError(f"未知的推理运行时：{runtime}（可选：{'、'.join(RUNTIMES)}）")
        if not path.is_file():
            raise ModelError(f"模型文件不存在：{path}")
        if path.suffix.lower() not in (".pt", ".onnx"):
            raise ModelError(f"模型文件应为 .pt 或 .onnx：{path.name}")
        from workbench.canteen.yolo_env import checkpoint_problem, ensure_yolo_env

        ensure_yolo_env()
        if path.suffix.lower() == ".pt":   # ultralytics unpickles with weights_only=False: checked first
            problem = checkpoint_problem(path)
            if problem:
                raise ModelError(f"{path.name}：{problem}")
        from ultralytics import YOLO

        try:
            self.model = YOLO(str(path), task="detect")
            names = dict(self.model.names)
        except Exception as exc:  # noqa: BLE001 - whatever ultralytics/torch/onnx say, it is not a model
            raise ModelError(f"模型文件无法加载（不是有效的 YOLO 模型）：{path.name}：{type(exc).__name__}: "
                             f"{str(exc)[:200]}") from None
        unknown = sorted(set(names.values()) - set(CLASSES))
        if "person" not in names.values() or unknown:
            raise ModelError(f"模型 {path.name} 的类别与明厨亮灶类别表不符"
                             + (f"（未知类别：{', '.join(unknown[:5])}）" if unknown else "（缺少 person）"))
        self.path = path
        self.backend = "onnx" if path.suffix.lower() == ".onnx" else "torch"
        self._map = np.array([CLASSES.index(names[i]) for i in range(len(names))], np.int64)
        args = getattr(self.model, "overrides", {}) or {}
        meta_imgsz = None
        if self.backend == "onnx":
            meta_imgsz = _onnx_imgsz(path)
        self.imgsz = imgsz or meta_imgsz or args.get("imgsz") or 640
        self.device = device
        self.conf = conf
        if runtime != "onnxruntime" and self.backend != "onnx":
            raise ModelError(f"{runtime} 需要 .onnx 模型：{path.name}")
        self.runtime = runtime if self.backend == "onnx" else "torch"
        try:
            self._ort = OrtYolo(path, self.imgsz, deterministic=deterministic, runtime=runtime) \
                if self.backend == "onnx" else None
        except ImportError as exc:
            raise ModelError(f"推理运行时 {runtime} 不可用：{exc}") from None
        from workbench.canteen.closeup import CloseUp, default_path

        if closeup == "auto":
            closeup = default_path(path)
        self.closeup = CloseUp(closeup) if closeup else None

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections for a batch of BGR frames (one network call), with the close-up
        classifier's phones and cigarettes added when it is on."""
        dets = self._detect(images)
        return self.closeup.add(images, dets) if self.closeup is not None and images else dets

    def _detect(self, images: list[np.ndarray]) -> list[Detections]:
        if not images:
            return []
        if self._ort is not None:
            return [Detections(xy, sc, self._map[c]) for xy, sc, c in self._ort(images, self.conf)]
        res = self.model.predict(images, imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False,
                                 batch=len(images))
        out = []
        for r in res:
            b = r.boxes
            if b is None or len(b) == 0:
                out.append(Detections.empty())
                continue
            data = b.data.cpu().numpy()
            out.append(Detections(data[:, :4].astype(np.float32), data[:, 4].astype(np.float32),
                                  self._map[data[:, 5].astype(np.int64)]))
        return out


def onnx_meta(path: Path, key: str):
    """One entry of an ultralytics ONNX export's metadata (`imgsz`, `names`, ...), parsed as a
    Python literal; None when absent or unreadable (metadata is optional)."""
    try:
        import ast

        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return ast.literal_eval(meta[key]) if key in meta else None
    except Exception:  # noqa: BLE001 - metadata is optional
        return None


def _onnx_imgsz(path: Path) -> int | None:
    sz = onnx_meta(path, "imgsz")
    if sz is None:
        return None
    try:
        return int(sz[0] if isinstance(sz, (list, tuple)) else sz)
    except (TypeError, ValueError, IndexError):
        return None
