"""Camera sources and the watcher: bad input per camera (corrupt or truncated video, an
unreadable image, an unreachable RTSP URL, a zone outside the frame, a model file that is
not a model) gets a clear message naming the camera, the other cameras keep running, and
Ctrl-C ends cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from workbench import config
from workbench.canteen.rules import camera_rules
from workbench.canteen.sources import ImageFolderSource, SourceError, StreamSource, VideoFileSource, kind_of
from workbench.canteen.synthkitchen import make_video

DEAD_RTSP = "rtsp://127.0.0.1:9/Streaming/Channels/101"  # nothing listens on port 9


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    good = make_video(d / "good.mp4", seconds=6, fps=10, seed=3, size=(320, 180)).path
    avi = make_video(d / "whole.avi", seconds=6, fps=10, seed=4, size=(320, 180)).path
    data = avi.read_bytes()
    trunc = d / "trunc.avi"
    trunc.write_bytes(data[: len(data) // 2])
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(20_000))
    return {"good": good, "avi": avi, "trunc": trunc, "corrupt": corrupt, "dir": d}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The trained demo model when it is there, else an untrained one (same network)."""
    from workbench.canteen.untrained import untrained_model

    trained = config.ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"
    if trained.exists():
        return trained
    return untrained_model(tmp_path_factory.mktemp("model") / "untrained.pt", imgsz=320)


def test_source_kinds(clips):
    assert kind_of("rtsp://10.0.0.1/x") == "stream" and kind_of(str(clips["dir"])) == "images"
    assert kind_of(str(clips["good"])) == "video"


def test_video_sampled_at_the_configured_rate(clips):
    frames = list(VideoFileSource("C1", str(clips["good"]), fps=2).frames())
    assert len(frames) == 12 and [f.t for f in frames[:3]] == [0.0, 0.5, 1.0]
    assert frames[1].ts - frames[0].ts == __import__("datetime").timedelta(seconds=0.5)


def test_corrupt_and_missing_video(clips):
    with pytest.raises(SourceError, match="摄像头 C1: 无法打开视频文件.*corrupt.mp4"):
        list(VideoFileSource("C1", str(clips["corrupt"]), fps=2).frames())
    with pytest.raises(SourceError, match="视频文件不存在"):
        list(VideoFileSource("C1", str(clips["dir"] / "none.mp4"), fps=2).frames())


def test_truncated_video_keeps_what_it_has_and_says_so(clips):
    seen = []
    frames = list(VideoFileSource("C2", str(clips["trunc"]), fps=2, on_status=seen.append).frames())
    assert 0 < len(frames) < 12
    assert [s.kind for s in seen] == ["problem"] and "中断" in seen[0].message and "trunc.avi" in seen[0].message


def test_image_folder_skips_an_unreadable_image(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.full((90, 160, 3), 80 * i, np.uint8))
    (tmp_path / "1b.jpg").write_bytes(b"not a jpeg")
    seen = []
    frames = list(ImageFolderSource("C3", str(tmp_path), fps=1, on_status=seen.append).frames())
    assert len(frames) == 3 and "1b.jpg" in seen[0].message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="没有图片"):
        list(ImageFolderSource("C3", str(empty), fps=1).frames())


def test_unreachable_stream_goes_offline_and_keeps_trying():
    seen = []
    src = StreamSource("C4", DEAD_RTSP, 1, None, seen.append, open_timeout_s=0.5, offline_after_s=0.5,
                       max_backoff_s=0.5)
    import threading

    got = []
    th = threading.Thread(target=lambda: got.extend(src.frames()), daemon=True)
    th.start()
    deadline = time.monotonic() + 15
    while not seen and time.monotonic() < deadline:
        time.sleep(0.1)
    src.stop()
    th.join(5)
    assert not th.is_alive() and got == []
    assert seen and seen[0].kind == "offline" and "无法连接视频流" in seen[0].message and seen[0].camera_id == "C4"


def test_a_model_file_that_is_not_a_model(tmp_path):
    from workbench.canteen.detector import Detector, ModelError

    for name in ("bad.pt", "bad.onnx"):
        (tmp_path / name).write_bytes(b"\x00garbage" * 100)
        with pytest.raises(ModelError) as err:   # a .pt is refused by the checkpoint check, an .onnx by the loader
            Detector(tmp_path / name)
        assert name in str(err.value) and "不是有效的 YOLO 模型" in str(err.value)
    with pytest.raises(ModelError, match="应为 .pt 或 .onnx"):
        (tmp_path / "m.txt").write_text("x")
        Detector(tmp_path / "m.txt")
    from click.testing import CliRunner

    from workbench.cli import main

    r = CliRunner().invoke(main, ["canteen", "watch", "x.mp4", "--model", str(tmp_path / "bad.pt"), "--no-hub",
                                  "--mqtt", "off"])
    assert r.exit_code == 2 and "不是有效的 YOLO 模型" in r.output


@pytest.mark.slow
def test_other_cameras_keep_running(clips, model, hub_engine):
    """Five cameras, four of them broken in a different way: the good one runs to its end."""
    from workbench.canteen.pipeline import Watcher
    from workbench.canteen.sinks import HubSink
    from workbench.store import hub

    cams = [
        camera_rules("GOOD", {"source": str(clips["good"]), "fps": 2}),
        camera_rules("CORRUPT", {"source": str(clips["corrupt"])}),
        camera_rules("TRUNC", {"source": str(clips["trunc"])}),
        camera_rules("RTSP", {"source": DEAD_RTSP}),
        camera_rules("ZONE", {"source": str(clips["avi"]), "zones": {"灶台": [[0, 0], [900, 0], [900, 170]]}}),
    ]
    w = Watcher(cams, model, hub=HubSink(hub_engine), mqtt=None, stream_kw={
        "open_timeout_s": 0.5, "offline_after_s": 0.5, "max_backoff_s": 0.5})
    # the RTSP camera never ends by itself: stop the watcher once the others are done
    import threading

    def stopper():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (w.summary.per_camera == {} and
                                               (w.engines.get("GOOD") is None or w.engines["GOOD"].frames < 12)):
            time.sleep(0.2)
        time.sleep(1.5)
        w.stop()

    threading.Thread(target=stopper, daemon=True).start()
    s = w.run(max_seconds=90)
    assert s.per_camera["GOOD"]["frames"] == 12
    probs = {p.camera_id: p.problem for p in s.problems}
    assert "无法打开视频文件" in probs["CORRUPT"]
    assert "中断" in probs["TRUNC"]
    assert "离线" in probs["RTSP"]
    assert "超出画面 320×180" in probs["ZONE"]
    a = hub.read("alerts", eng=hub_engine)
    assert list(a["category"]) == ["摄像头离线"] and a.iloc[0]["area"] == "RTSP"


@pytest.mark.slow
def test_ctrl_c_ends_cleanly(clips, model, tmp_path):
    env = {**os.environ, "WORKBENCH_DB_URL": f"sqlite:///{tmp_path / 'city.db'}",
           "WORKBENCH_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "workbench.cli", "canteen", "watch", str(clips["good"]), "--camera", "K1",
           "--model", str(model), "--loop", "--realtime", "--mqtt", "off"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=config.ROOT)
    try:
        head = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # imports and the model load take a while on a busy machine
            line = p.stderr.readline()
            head.append(line)
            if "开始监控" in line or not line:
                break
        assert p.poll() is None, "".join(head)
        time.sleep(4)  # a few seconds of video
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        err = "".join(head) + err
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert "正在停止" in err and "Traceback" not in err
    assert "摄像头 1 路" in out and "采样" in out


TRAINED = config.ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"


@pytest.mark.slow
@pytest.mark.skipif(not TRAINED.exists(), reason="the trained demo model models/kitchen/kitchen-yolo11n.onnx is missing")
def test_a_violation_becomes_one_event_in_the_hub_on_mqtt_and_as_evidence(tmp_path, sqlite_hub):
    """A cook without a chef hat for 16 s: one event, live in the hub, on MQTT, with a
    face-blurred snapshot and a clean copy; stopping the watcher mid-event ends the event."""
    import json as _json
    import threading

    import paho.mqtt.client as mqtt

    from workbench.canteen.evidence import find_faces, resolve
    from workbench.canteen.pipeline import Watcher
    from workbench.canteen.sinks import HubSink, MqttSink
    from workbench.store import hub

    scen = {"clock_start": "2026-11-26T10:00:00+08:00", "actors": [
        {"track_id": 1, "kind": "person", "enter_s": 0.0, "leave_s": 16.0, "violations": {"未戴厨师帽": [[0.0, 16.0]]},
         "path": [[0.0, 0.45, 0.75], [16.0, 0.55, 0.75]]}]}
    clip = make_video(tmp_path / "nohat.mp4", seconds=16, fps=10, seed=21, scenario=scen).path
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    ready = threading.Event()
    sub.on_connect = lambda c, u, f, rc, p: (c.subscribe("workbench/canteen/K9/events", qos=1), ready.set())
    sub.on_message = lambda c, u, m: got.append(_json.loads(m.payload))
    try:
        sub.connect("127.0.0.1", 1883)
        sub.loop_start()
        ready.wait(5)
    except OSError:
        sub = None
    rules = camera_rules("K9", {"source": str(clip), "canteen_id": "ST-HT-009", "start_time": scen["clock_start"]})
    w = Watcher([rules], TRAINED, hub=HubSink(sqlite_hub), mqtt=MqttSink() if sub else None)
    seen = []

    def changed(kind, ev):
        seen.append((kind, ev.violation_class))
        if kind == "new":  # while it is open, it is in the hub already (live)
            row = hub.read("canteen_violations", eng=sqlite_hub)
            assert list(row["violation_id"]) == [ev.violation_id] and row["ts_end"].isna().all()
            w.stop()  # as Ctrl-C does: the open event must still end, nothing lost

    w.on_change = changed
    s = w.run()
    time.sleep(0.5)
    if sub:
        sub.loop_stop()
        sub.disconnect()
    assert ("new", "未戴厨师帽") in seen and ("end", "未戴厨师帽") in seen
    rows = hub.read("canteen_violations", eng=sqlite_hub)
    hat = rows[rows["violation_class"] == "未戴厨师帽"].iloc[0]
    assert hat["ts_end"] is not None and hat["ts_end"] >= hat["ts"]
    case = hub.read("cases", eng=sqlite_hub).set_index("case_id").loc[hat["violation_id"]]
    assert case["status"] == "待处理" and case["case_type"] == "canteen_rectification"  # its case, opened live
    assert hat["canteen_id"] == "ST-HT-009" and hat["severity"] == "warning" and hat["frames"] >= 2
    snap, clean = resolve(hat["snapshot"]), resolve(hat["clean_snapshot"])
    assert snap is not None and clean is not None and "evidence/K9/2026-11-26/" in hat["snapshot"]
    assert find_faces(cv2.imread(str(snap))) == []
    if sub:
        kinds = [(m["type"], m["label"]) for m in got]
        assert ("new", "未戴厨师帽") in kinds and ("end", "未戴厨师帽") in kinds
    assert s.events >= 1 and s.per_camera["K9"]["frames"] < 32  # it stopped early


def test_stream_reconnects_and_comes_back_online(clips):
    """An HTTP stream whose server is down: offline; the server starts: online, frames flow."""
    import functools
    import http.server
    import socket
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    seen = []
    src = StreamSource("C5", f"http://127.0.0.1:{port}/whole.avi", 2, None, seen.append, open_timeout_s=1,
                       offline_after_s=0.5, max_backoff_s=0.5)
    got = []

    def take():
        for f in src.frames():
            got.append(f)
            if len(got) >= 3:
                src.stop()

    th = threading.Thread(target=take, daemon=True)
    th.start()
    deadline = time.monotonic() + 15
    while not any(s.kind == "offline" for s in seen) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [s.kind for s in seen] == ["offline"]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clips["dir"]))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        th.join(30)
    finally:
        src.stop()
        httpd.shutdown()
        httpd.server_close()
    assert len(got) >= 3 and got[0].image.shape == (180, 320, 3)
    assert [s.kind for s in seen][:2] == ["offline", "online"]
