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
