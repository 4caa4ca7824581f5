"""The detector backends agree: our ONNX Runtime path (OrtYolo) gives ultralytics' boxes, a
batch gives what its frames give one by one, and the INT8 copy sees the same things."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from workbench import config
from workbench.canteen.detector import Detector

MODEL = config.ROOT / "models" / "kitchen" / "kitchen-yolo11n"
ASSETS = Path(__import__("ultralytics").__file__).parent / "assets"
pytestmark = pytest.mark.skipif(not MODEL.with_suffix(".onnx").exists(), reason="the trained demo model is missing")


@pytest.fixture(scope="module")
def frames():
    from workbench.canteen.synthkitchen import _render

    rng = np.random.default_rng(3)
    return [_render(rng, 640, 360)[0] for _ in range(3)] + [cv2.imread(str(ASSETS / "bus.jpg"))]


def _sorted(d):
    o = np.lexsort((d.xyxy[:, 1], d.xyxy[:, 0], d.cls))
    return d.xyxy[o], d.conf[o], d.cls[o]


@pytest.mark.slow
def test_onnx_runtime_path_gives_ultralytics_boxes(frames):
    pt, ox = Detector(MODEL.with_suffix(".pt"), closeup=None), Detector(MODEL.with_suffix(".onnx"), closeup=None)
    assert ox.backend == "onnx" and ox.imgsz == 640
    a = pt.detect(frames[:3]) + pt.detect(frames[3:])  # frames of one size per batch, as cameras send them
    b = ox.detect(frames[:3]) + ox.detect(frames[3:])
    assert sum(len(x) for x in a) > 10
    for x, y in zip(a, b):
        assert len(x) == len(y)
        (bx, cx, kx), (by, cy, ky) = _sorted(x), _sorted(y)
        assert np.array_equal(kx, ky)
        assert np.abs(bx - by).max() < 1.0 and np.abs(cx - cy).max() < 0.02
    one_by_one = [ox.detect([f])[0] for f in frames[:3]]
    assert [len(d) for d in one_by_one] == [len(d) for d in b[:3]]


@pytest.mark.slow
def test_int8_copy_sees_the_same(frames, tmp_path):
    from workbench.canteen.quantize import int8_model

    q = Detector(int8_model(MODEL.with_suffix(".onnx"), tmp_path / "k-int8.onnx", frames=8), closeup=None)
    f = Detector(MODEL.with_suffix(".onnx"), closeup=None)
    for im in frames[:3]:
        a, b = f.detect([im])[0], q.detect([im])[0]
        strong = set(np.array(a.names())[a.conf > 0.6])
        assert strong <= set(b.names())  # every confident class is still found
        assert abs(len(a) - len(b)) <= max(2, len(a) // 5)


def _openvino():
    try:
        import openvino  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: no OpenVINO here
        pytest.skip(f"openvino cannot be imported here ({type(exc).__name__}: {exc}): its path is not tested")


def _same(a, b, box_px=0.5, score=1e-3):
    assert len(a) == len(b)
    (bx, cx, kx), (by, cy, ky) = _sorted(a), _sorted(b)
    assert np.array_equal(kx, ky)
    if len(a):
        assert np.abs(bx - by).max() < box_px and np.abs(cx - cy).max() < score


def test_openvino_path_gives_the_onnx_runtime_detections(frames):
    """The same .onnx compiled by OpenVINO (f32) finds the same boxes, classes and scores as
    on ONNX Runtime, for a lone frame and for a batch spread over the streams; bus.jpg
    (ultralytics' asset, a real photo) included."""
    _openvino()
    ox = Detector(MODEL.with_suffix(".onnx"), closeup=None)
    ov = Detector(MODEL.with_suffix(".onnx"), closeup=None, runtime="openvino")
    assert ov.runtime == "openvino" and ox.runtime == "onnxruntime" and ov.backend == "onnx"
    a = ox.detect(frames[:3]) + ox.detect(frames[3:])
    b = ov.detect(frames[:3]) + ov.detect(frames[3:])
    assert sum(len(x) for x in a) > 10 and len(a[3]) > 0  # the bus photo has detections to compare
    for x, y in zip(a, b):
        _same(x, y)
    for f, y in zip(frames[:3], b[:3]):  # a batch gives what its frames give one by one
        _same(ov.detect([f])[0], y)


def test_openvino_runs_the_int8_copy(frames, tmp_path):
    """OpenVINO reads the INT8 QDQ copy into its int8 kernels: it still finds every class the
    float model is confident of."""
    _openvino()
    from workbench.canteen.quantize import int8_model

    q = Detector(int8_model(MODEL.with_suffix(".onnx"), tmp_path / "k-int8.onnx", frames=8), closeup=None,
                 runtime="openvino")
    f = Detector(MODEL.with_suffix(".onnx"), closeup=None)
    for im in frames[:3]:
        a, b = f.detect([im])[0], q.detect([im])[0]
        assert set(np.array(a.names())[a.conf > 0.6]) <= set(b.names())


def test_runtime_choice_is_checked():
    from workbench.canteen.detector import ModelError

    with pytest.raises(ModelError, match="未知的推理运行时：tensorrt"):
        Detector(MODEL.with_suffix(".onnx"), closeup=None, runtime="tensorrt")
    with pytest.raises(ModelError, match="openvino 需要 .onnx 模型"):
        Detector(MODEL.with_suffix(".pt"), closeup=None, runtime="openvino")


def test_the_dfl_on_its_last_axis_gives_the_exported_graphs_output(frames):
    """ONNX Runtime runs the model with its DFL softmax along the last axis (last_axis_dfl):
    the same output as the graph ultralytics exported, on real and synthetic frames; a model
    without that DFL (the close-up classifier) is left as it is."""
    import onnxruntime as ort

    from workbench.canteen.detector import OrtYolo, last_axis_dfl, ort_session

    path = MODEL.with_suffix(".onnx")
    assert last_axis_dfl(path) is not None
    assert last_axis_dfl(config.ROOT / "models" / "kitchen" / "kitchen-closeup.onnx") is None
    exported = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ours = ort_session(path)
    ops = [n.op_type for n in __import__("onnx").load_from_string(last_axis_dfl(path)).graph.node]
    assert "MatMul" in ops and ops.count("Softmax") == 2     # the DFL's conv became a MatMul
    x, _ = OrtYolo(path, 640)._letterbox([frames[0]])
    y, _ = OrtYolo(path, 640)._letterbox([frames[3]])   # bus.jpg
    for inp in (x, y):
        a, b = exported.run(None, {"images": inp})[0], ours.run(None, {"images": inp})[0]
        assert a.shape == b.shape and np.array_equal(a[:, 4:], b[:, 4:])   # the class scores
        assert np.abs(a[:, :4] - b[:, :4]).max() < 1e-3                    # the boxes, in pixels


def test_the_letterbox_is_ultralytics_input(frames):
    """The network's input written channel by channel is, value for value, the padded uint8
    batch flipped to RGB, made channels-first and scaled to 0–1 (ultralytics' preprocessing)."""
    from workbench.canteen.detector import OrtYolo

    y = OrtYolo(MODEL.with_suffix(".onnx"), 640)
    for ims in ([frames[0], frames[1]], [frames[3]], [cv2.resize(frames[3], (320, 240))]):
        x, meta = y._letterbox(ims)
        H, W = x.shape[2:]
        batch = np.full((len(ims), H, W, 3), 114, np.uint8)
        for i, (im, (r, left, top, iw, ih)) in enumerate(zip(ims, meta)):
            nw, nh = round(iw * r), round(ih * r)
            batch[i, top:top + nh, left:left + nw] = cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR) \
                if (nw, nh) != (iw, ih) else im
        ref = np.ascontiguousarray(batch[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) * (1 / 255.0)
        assert x.dtype == np.float32 and np.array_equal(x, ref)


@pytest.mark.slow
def test_quantize_command_calibrates_on_camera_frames_and_says_how_far_from_float(frames, tmp_path):
    """`workbench canteen quantize --calibration`: frames of images and a video calibrate (a
    broken image among them is skipped), the held-out ones compare the copy with the float
    model; a folder with nothing readable is refused, naming it."""
    from click.testing import CliRunner

    from workbench.cli import main

    shots = tmp_path / "shots"
    shots.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(shots / f"cam-{i}.jpg"), f)
    (shots / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    w = cv2.VideoWriter(str(shots / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 5, (640, 360))
    for k in range(15):
        w.write(np.roll(frames[0], k * 8, axis=1))
    w.release()
    out = tmp_path / "k-int8.onnx"
    r = CliRunner().invoke(main, ["canteen", "quantize", str(MODEL.with_suffix(".onnx")), "--out", str(out),
                                  "--calibration", str(shots)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert out.exists() and "实拍 4 帧" in r.output and "与浮点模型比较（3 帧实拍画面" in r.output, r.output
    assert "判断不同" in r.output
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "broken.png").write_bytes(b"PNG? no")
    r = CliRunner().invoke(main, ["canteen", "quantize", str(MODEL.with_suffix(".onnx")), "--out",
                                  str(tmp_path / "x.onnx"), "--calibration", str(empty)])
    assert r.exit_code != 0 and "没有可读的图片或视频" in r.output and str(empty) in r.output
    assert not (tmp_path / "x.onnx").exists()
