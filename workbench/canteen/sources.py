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
