"""Camera sources: video files, image folders and RTSP/HTTP streams (OpenCV/FFmpeg),
sampled at a configured rate.

A source yields `Frame`s. Files are read as fast as the consumer takes them (no frame is
dropped; `t` is the position in the video); live streams keep only the newest frame and
reconnect with exponential back-off when they drop. What happens to a source that is not
a frame (it went offline, came back, a file is damaged) is reported through `on_status`
as a `SourceStatus`, never raised into the other cameras.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceError(Exception):
    """A source that cannot deliver at all (the message names the camera and the problem)."""

    def __init__(self, camera: str, problem: str):
        self.camera = camera
        self.problem = problem
        super().__init__(f"摄像头 {camera}: {problem}")


@dataclass
class Frame:
    camera_id: str
    index: int              # sampled frame number
    t: float                # seconds since the source started (video position for files)
    ts: dt.datetime         # naive UTC of the moment shown
    image: np.ndarray       # BGR


@dataclass
class SourceStatus:
    camera_id: str
    kind: str               # offline | online | problem | ended
    message: str = ""
    ts: dt.datetime | None = None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def kind_of(source: str) -> str:
    s = str(source)
    if s.lower().startswith(STREAM_SCHEMES):
        return "stream"
    p = Path(s)
    if p.is_dir():
        return "images"
    return "video"


class _Base:
    def __init__(self, camera_id: str, source: str, fps: float, start_time: dt.datetime | None = None,
                 on_status: Callable[[SourceStatus], None] | None = None):
        self.camera_id = camera_id
        self.source = str(source)
        self.fps = float(fps)
        self.start_time = start_time or utcnow()
        self.on_status = on_status or (lambda s: None)
        self.stop_event = threading.Event()

    def stop(self) -> None:
        self.stop_event.set()

    def status(self, kind: str, message: str = "") -> None:
        self.on_status(SourceStatus(self.camera_id, kind, message, utcnow()))

    def frames(self) -> Iterator[Frame]:  # pragma: no cover - interface
        raise NotImplementedError


class VideoFileSource(_Base):
    """A video file, sampled at `fps` by the video's own clock; `loop` starts it over at the end."""

    def __init__(self, *args, loop: bool = False, **kw):
        super().__init__(*args, **kw)
        self.loop = loop

    def open(self) -> cv2.VideoCapture:
        path = Path(self.source)
        if not path.exists():
            raise SourceError(self.camera_id, f"视频文件不存在：{path}")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            cap.release()
            raise SourceError(self.camera_id, f"无法打开视频文件（文件损坏或格式不支持）：{path.name}")
        return cap

    def frames(self) -> Iterator[Frame]:
        index, offset = 0, 0.0
        while not self.stop_event.is_set():
            cap = self.open()
            native = cap.get(cv2.CAP_PROP_FPS) or 0.0
            native = native if 1 <= native <= 240 else 25.0
            expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            step = max(1, round(native / self.fps))
            n, got = 0, 0
            try:
                while not self.stop_event.is_set():
                    if n % step == 0:
                        ok, img = cap.read()
                    else:
                        ok, img = cap.grab(), None
                    if not ok:
                        break
                    if img is not None:
                        got += 1
                        t = offset + n / native
                        yield Frame(self.camera_id, index, t, self.start_time + dt.timedelta(seconds=t), img)
                        index += 1
                    n += 1
            finally:
                cap.release()
            if n == 0:
                raise SourceError(self.camera_id, f"视频文件损坏或没有可解码的画面：{Path(self.source).name}")
            if expected and n < 0.9 * expected and not self.stop_event.is_set():
                self.status("problem", f"视频文件在第 {n} 帧中断（文件头记录 {expected} 帧），可能被截断或损坏："
                                       f"{Path(self.source).name}")
                return
            offset += n / native
            if not self.loop:
                return


class ImageFolderSource(_Base):
    """Images in a folder, in name order, one sampled frame each (`fps` gives their spacing)."""

    def frames(self) -> Iterator[Frame]:
        folder = Path(self.source)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(self.camera_id, f"图片目录中没有图片（jpg/png/bmp/webp）：{folder}")
        bad = 0
        index = 0
        for p in files:
            if self.stop_event.is_set():
                return
            img = cv2.imread(str(p))
            if img is None:
                bad += 1
                self.status("problem", f"图片无法解码，已跳过：{p.name}")
                continue
            t = index / self.fps
            yield Frame(self.camera_id, index, t, self.start_time + dt.timedelta(seconds=t), img)
            index += 1
        if index == 0:
            raise SourceError(self.camera_id, f"图片目录中的 {bad} 张图片都无法解码：{folder}")


class StreamSource(_Base):
    """An RTSP/HTTP stream. A reader thread keeps the newest frame; frames are sampled at
    `fps` on the wall clock. A dropped stream reconnects after 1, 2, 4 … `max_backoff_s`
    seconds; after `offline_after_s` without a frame the camera is reported offline (and
    online again when frames return). It never raises for a stream that is down."""

    def __init__(self, *args, open_timeout_s: float = 5.0, max_backoff_s: float = 30.0,
                 offline_after_s: float = 30.0, **kw):
        super().__init__(*args, **kw)
        self.open_timeout_s = open_timeout_s
        self.max_backoff_s = max_backoff_s
        self.offline_after_s = offline_after_s
        self._latest: tuple[float, np.ndarray] | None = None
        self._lock = threading.Lock()
        self.offline = False
        self.last_error = ""

    def _open(self) -> cv2.VideoCapture | None:
        ms = int(self.open_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _reader(self) -> None:
        backoff = min(1.0, self.max_backoff_s)
        down_since = time.monotonic()
        while not self.stop_event.is_set():
            cap = self._open()
            if cap is None:
                self.last_error = f"无法连接视频流：{self.source}"
            else:
                while not self.stop_event.is_set():
                    ok, img = cap.read()
                    if not ok:
                        self.last_error = f"视频流中断：{self.source}"
                        break
                    with self._lock:
                        self._latest = (time.monotonic(), img)
                    backoff = min(1.0, self.max_backoff_s)
                    down_since = None
                    if self.offline:
                        self.offline = False
                        self.status("online", "视频流已恢复")
                cap.release()
            if down_since is None:
                down_since = time.monotonic()
            if not self.offline and time.monotonic() - down_since >= self.offline_after_s:
                self.offline = True
                self.status("offline", f"{self.last_error}（已持续 {self.offline_after_s:g} 秒，正在重连）")
            self.stop_event.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def frames(self) -> Iterator[Frame]:
        reader = threading.Thread(target=self._reader, name=f"rtsp-{self.camera_id}", daemon=True)
        reader.start()
        t0 = time.monotonic()
        index, last_taken = 0, None
        period = 1.0 / self.fps
        next_t = t0
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                if now < next_t:
                    self.stop_event.wait(next_t - now)
                    continue
                next_t += period
                if next_t < now:  # fell behind: skip to the present, never queue up the past
                    next_t = now + period
                with self._lock:
                    latest = self._latest
                if latest is None or latest[0] == last_taken:
                    continue
                last_taken = latest[0]
                yield Frame(self.camera_id, index, latest[0] - t0, utcnow(), latest[1])
                index += 1
        finally:
            self.stop_event.set()
            reader.join(timeout=self.open_timeout_s + 1)


def open_source(camera_id: str, source: str, fps: float, *, start_time: dt.datetime | None = None,
                loop: bool = False, on_status=None, **stream_kw) -> _Base:
    """The right source for a path or URL."""
    kind = kind_of(source)
    if kind == "stream":
        return StreamSource(camera_id, source, fps, start_time, on_status, **stream_kw)
    if kind == "images":
        return ImageFolderSource(camera_id, source, fps, start_time, on_status)
    return VideoFileSource(camera_id, source, fps, start_time, on_status, loop=loop)


# ---------------------------------------------------------------------------- PyAV decoding
DECODE_MODES = ("auto", "keyframes", "full")


def _av():
    try:
        import av
    except ImportError as exc:  # pragma: no cover - av is a dependency (pyproject.toml)
        raise SourceError("-", f"缺少 PyAV（pip install av）：{exc}") from None
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own console noise; problems are reported here
    return av


def gop_seconds(key_times: list[float]) -> float | None:
    """The longest interval between key frames seen (None: fewer than two key frames)."""
    if len(key_times) < 2:
        return None
    return max(b - a for a, b in zip(key_times, key_times[1:]))


class AvSource(_Base):
    """A video file or RTSP/HTTP stream decoded with PyAV (FFmpeg), sampled at `fps`.

    Decoding is counted: at 1 frame/s from a 25 frames/s H.264 stream, decoding every frame
    costs 25 decodes per sample. Where the stream's key frames come at least as often as the
    samples (GOP ≤ 1/fps), only key frames are decoded (`skip_frame="NONKEY"`, and the other
    packets are not even handed to the decoder): one decode per sample. `decode`:
    "keyframes" | "full" | "auto" (judged from the key frames of the first seconds; falls back
    to full decoding + sampling when the GOP is longer than the sampling period).

    Files: as fast as the consumer takes them, `t` the position in the video; `start_at`
    resumes at a position (a camera moved to another worker). A file that cannot be opened
    raises SourceError naming the camera. Streams: `t` by the stream's own clock since the
    first frame (after a reconnect: the wall-clock seconds since the start, then the clock),
    `ts` = `start_time` + `t`;
    a stream that does not open or drops is retried after 1, 2, 4 … `max_backoff_s` s and
    reported offline after `offline_after_s` (online again when frames return): it never
    raises. `decoded`, `packets` and `mode` tell what the decoding cost."""

    def __init__(self, *args, decode: str = "auto", loop: bool = False, start_at: float = 0.0,
                 open_timeout_s: float = 5.0, max_backoff_s: float = 30.0, offline_after_s: float = 30.0,
                 probe_s: float = 6.0, size: tuple[int, int] | None = None, threads: int | None = None,
                 hwaccel: str | None = None, rtsp_transport: str | None = None, **kw):
        super().__init__(*args, **kw)
        if decode not in DECODE_MODES:
            raise ValueError(f"decode: one of {DECODE_MODES}")
        self.decode = decode
        self.loop = loop
        self.start_at = float(start_at)
        self.open_timeout_s = open_timeout_s
        self.max_backoff_s = max_backoff_s
        self.offline_after_s = offline_after_s
        self.probe_s = probe_s
        self.size = size                   # (w, h): scaled by FFmpeg as it converts (a detector's input)
        self.threads = threads             # decoder threads (None: FFmpeg's choice; 1 for many cameras a process)
        self.hwaccel = hwaccel             # "cuda" (NVDEC) or another of av.codec.hwaccel.hwdevices_available()
        self.rtsp_transport = rtsp_transport  # "tcp" | "udp" | None (FFmpeg's default: UDP, then TCP)
        self.live = kind_of(self.source) == "stream"
        self.mode: str | None = None        # the mode chosen (keyframes | full)
        self.gop_s: float | None = None
        self.decoded = 0                   # frames decoded
        self.packets = 0                   # packets demuxed
        self.offline = False
        self.last_error = ""
        self.position = self.start_at      # the last sampled frame's t (files: where to resume)

    # -------------------------------------------------------------- opening
    def _open(self):
        av = _av()
        opts = {}
        if self.live and self.rtsp_transport and self.source.lower().startswith(("rtsp://", "rtsps://")):
            opts = {"rtsp_transport": self.rtsp_transport}
        if not self.live and not Path(self.source).exists():
            raise SourceError(self.camera_id, f"视频文件不存在：{self.source}")
        kw = {}
        if self.hwaccel:
            from av.codec.hwaccel import HWAccel

            kw["hwaccel"] = HWAccel(self.hwaccel, allow_software_fallback=True)
        try:
            c = av.open(self.source, options=opts, timeout=(self.open_timeout_s, self.open_timeout_s), **kw)
        except Exception as exc:  # noqa: BLE001 - av.error.* (FFmpeg's errors), OSError
            what = "无法连接视频流" if self.live else "无法打开视频文件（文件损坏或格式不支持）"
            raise SourceError(self.camera_id, f"{what}：{self._name()}（{type(exc).__name__}）") from None
        if not c.streams.video:
            c.close()
            raise SourceError(self.camera_id, f"没有视频轨：{self._name()}")
        return c

    def _name(self) -> str:
        return self.source if self.live else Path(self.source).name

    # -------------------------------------------------------------- frames
    def frames(self) -> Iterator[Frame]:
        if self.live:
            yield from self._live()
            return
        index, offset = 0, 0.0
        while not self.stop_event.is_set():
            c = self._open()
            try:
                n, length = 0, 0.0
                for f in self._decode(c, index, offset, self.start_at if offset == 0 else 0.0):
                    yield f
                    index, n = index + 1, n + 1
                length = self._length
            finally:
                c.close()
            if n == 0 and not self.stop_event.is_set() and self.decoded == 0:
                raise SourceError(self.camera_id, f"视频文件损坏或没有可解码的画面：{self._name()}")
            if not self.loop:
                return
            offset += length

    def _live(self) -> Iterator[Frame]:
        backoff = min(1.0, self.max_backoff_s)
        down_since = time.monotonic()
        t0 = time.monotonic()
        index = 0
        while not self.stop_event.is_set():
            try:
                c = self._open()
            except SourceError as exc:
                c, self.last_error = None, exc.problem
            if c is not None:
                try:
                    for f in self._decode(c, index, time.monotonic() - t0, 0.0):
                        if self.offline:
                            self.offline = False
                            self.status("online", "视频流已恢复")
                        down_since = None
                        backoff = min(1.0, self.max_backoff_s)
                        yield f
                        index += 1
                    self.last_error = f"视频流中断：{self.source}"
                except Exception as exc:  # noqa: BLE001 - a dropped stream is retried
                    self.last_error = f"视频流中断：{self.source}（{type(exc).__name__}）"
                finally:
                    c.close()
            if self.stop_event.is_set():
                return
            if down_since is None:
                down_since = time.monotonic()
            if not self.offline and time.monotonic() - down_since >= self.offline_after_s:
                self.offline = True
                self.status("offline", f"{self.last_error}（已持续 {self.offline_after_s:g} 秒，正在重连）")
            self.stop_event.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def _decode(self, c, index: int, offset: float, start_at: float) -> Iterator[Frame]:
        vs = c.streams.video[0]
        if self.threads:
            vs.thread_type = "NONE" if self.threads == 1 else "AUTO"
            vs.codec_context.thread_count = self.threads
        tb = float(vs.time_base or 0) or 1 / 90000
        rate = float(vs.average_rate or vs.guessed_rate or 25) or 25.0
        native = rate if 1 <= rate <= 240 else 25.0
        self._length = float(vs.duration * tb) if vs.duration else (c.duration or 0) / 1e6
        period = 1.0 / self.fps
        tol = 0.5 / native
        packets = c.demux(vs)
        held: list = []
        mode = self.decode
        if mode == "auto":
            keys, first = [], None
            for pkt in packets:
                held.append(pkt)
                if pkt.pts is None:
                    continue
                first = pkt.pts if first is None else first
                if pkt.is_keyframe:
                    keys.append((pkt.pts - first) * tb)
                if len(keys) >= 3 or (pkt.pts - first) * tb > self.probe_s:
                    break
            self.gop_s = gop_seconds(keys)
            mode = "keyframes" if self.gop_s is not None and self.gop_s <= period + tol else "full"
        self.mode = mode
        if mode == "keyframes":
            vs.codec_context.skip_frame = "NONKEY"
        if start_at > 0 and not self.live:
            try:  # to the key frame at or before the position; the frames before it are skipped below
                c.seek(int(start_at / tb), stream=vs, backward=True, any_frame=False)
                held, packets = [], c.demux(vs)
            except Exception:  # noqa: BLE001 - not seekable: decode from the start and skip
                pass
        next_t = start_at
        pts0 = None
        import itertools

        for pkt in itertools.chain(held, packets):
            if self.stop_event.is_set():
                return
            if pkt.size:
                self.packets += 1
            if mode == "keyframes" and pkt.size and not pkt.is_keyframe:
                continue
            try:
                decoded = pkt.decode()
            except Exception as exc:  # noqa: BLE001 - one damaged packet: counted, skipped
                if self.live:
                    raise
                self.last_error = f"{type(exc).__name__}"
                continue
            for fr in decoded:
                self.decoded += 1
                if fr.pts is None:
                    continue
                if pts0 is None:  # files: from the stream's start; streams: from the first frame seen
                    pts0 = fr.pts if self.live else (vs.start_time or 0)
                t = (fr.pts - pts0) * tb
                if t + tol < next_t:
                    continue
                while next_t <= t + tol:
                    next_t += period
                img = fr.to_ndarray(format="bgr24") if self.size is None else \
                    fr.to_ndarray(format="bgr24", width=self.size[0], height=self.size[1])
                self.position = t
                yield Frame(self.camera_id, index, offset + t, self.start_time + dt.timedelta(seconds=offset + t), img)
                index += 1
