"""PyAV decoding of real H.264 (made with Debian's ffmpeg): key frames only where the GOP
allows 1 frame/s, full decoding + sampling where it does not, resuming at a position, a file
that does not open, and an RTSP stream from a local RTSP server (rtsp-server-perl) on loopback."""
from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest

from workbench.canteen.sources import AvSource, SourceError, gop_seconds
from workbench.canteen.synthkitchen import make_video

FFMPEG = shutil.which("ffmpeg")
RTSP = shutil.which("rtsp-server-perl")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg missing (make system)")


def h264(src, dest, gop: int, fps: int = 25, size: str = "640x360"):
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(src), "-vf", f"fps={fps},scale={size}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
                    "-pix_fmt", "yuv420p", "-an", str(dest)], check=True)
    return dest


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    d = tmp_path_factory.mktemp("h264")
    raw = make_video(d / "raw.mp4", seconds=8, fps=10, seed=5, size=(320, 180)).path
    return {"gop1": h264(raw, d / "gop1s.mp4", 25), "gop4": h264(raw, d / "gop4s.mp4", 100), "dir": d}


def test_key_frames_only_when_the_gop_allows(streams):
    s = AvSource("K1", str(streams["gop1"]), fps=1)
    frames = list(s.frames())
    assert s.mode == "keyframes" and s.gop_s == pytest.approx(1.0)
    assert [round(f.t, 2) for f in frames] == [float(i) for i in range(8)]
    assert s.decoded == len(frames) == 8 and s.packets == 200      # 8 decodes for 200 frames of video
    assert frames[0].image.shape == (360, 640, 3)


def test_full_decode_and_sampling_when_the_gop_is_long(streams):
    s = AvSource("K2", str(streams["gop4"]), fps=1)
    frames = list(s.frames())
    assert s.mode == "full" and s.decoded == 200
    assert [round(f.t, 2) for f in frames] == [float(i) for i in range(8)]
    forced = AvSource("K2", str(streams["gop1"]), fps=1, decode="full")
    assert len(list(forced.frames())) == 8 and forced.decoded == 200


def test_same_frames_either_way(streams):
    a = list(AvSource("K3", str(streams["gop1"]), fps=1, decode="keyframes").frames())
    b = list(AvSource("K3", str(streams["gop1"]), fps=1, decode="full").frames())
    assert len(a) == len(b) and all((x.image == y.image).all() for x, y in zip(a, b))


def test_resume_at_a_position_and_scaled_output(streams):
    s = AvSource("K4", str(streams["gop1"]), fps=1, start_at=5.0, size=(320, 180))
    frames = list(s.frames())
    assert [round(f.t, 2) for f in frames] == [5.0, 6.0, 7.0] and s.decoded == 3
    assert frames[0].image.shape == (180, 320, 3)


def test_gop_of_key_times():
    assert gop_seconds([0.0, 1.0, 2.0]) == 1.0 and gop_seconds([0.0]) is None


def test_a_file_that_does_not_open(streams, tmp_path):
    with pytest.raises(SourceError, match="摄像头 K5: 视频文件不存在"):
        list(AvSource("K5", str(tmp_path / "none.mp4"), fps=1).frames())
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 5000)
    with pytest.raises(SourceError, match="摄像头 K5: 无法打开视频文件.*bad.mp4"):
        list(AvSource("K5", str(bad), fps=1).frames())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(RTSP is None, reason="rtsp-server-perl missing (make system)")
def test_rtsp_stream_from_a_local_server(streams, tmp_path):
    client, source, rtp = _free_port(), _free_port(), 24000 + _free_port() % 2000
    srv = subprocess.Popen([RTSP, "--clientport", str(client), "--serverport", str(source), "--rtp_start_port", str(rtp),
                            "--source_listen_address", "127.0.0.1", "--client_listen_address", "127.0.0.1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pub = None
    try:
        time.sleep(1.5)
        pub = subprocess.Popen([FFMPEG, "-v", "error", "-re", "-stream_loop", "-1", "-i", str(streams["gop1"]),
                                "-c", "copy", "-f", "rtsp", f"rtsp://127.0.0.1:{source}/cam"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)
        s = AvSource("R1", f"rtsp://127.0.0.1:{client}/cam", fps=1, offline_after_s=60)
        got = []
        for f in s.frames():
            got.append(f)
            if len(got) == 3:
                s.stop()
        assert s.mode == "keyframes" and s.decoded <= 5
        assert got[0].image.shape == (360, 640, 3) and got[2].t - got[1].t == pytest.approx(1.0, abs=0.05)
    finally:
        for p in (pub, srv):
            if p is not None:
                p.terminate()
                p.wait(timeout=10)


def test_a_stream_that_never_opens_is_reported_offline_and_retried():
    seen = []
    s = AvSource("R2", "rtsp://127.0.0.1:9/none", fps=1, open_timeout_s=1, offline_after_s=0.5, max_backoff_s=0.5,
                 on_status=seen.append)
    g = s.frames()
    import threading

    threading.Timer(4.0, s.stop).start()
    assert list(g) == []
    assert seen and seen[0].kind == "offline" and "R2" == seen[0].camera_id and "无法连接视频流" in seen[0].message
