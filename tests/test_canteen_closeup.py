"""The close-up stage: person crops, the crop set, a bad model file, and the committed
classifier seeing cigarettes and phones the detector misses."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from workbench import config
from workbench.canteen import closeup as cu
from workbench.canteen.classes import CLASSES
from workbench.canteen.detector import Detections, Detector, ModelError

MODEL = config.ROOT / "models" / "kitchen" / cu.MODEL_FILE
DETECTOR = config.ROOT / "models" / "kitchen" / "kitchen-yolo11n.onnx"
trained = pytest.mark.skipif(not MODEL.exists() or not DETECTOR.exists(), reason="the committed models are missing")


def test_crop_is_the_upper_body_square_and_pads_outside_the_frame():
    img = np.zeros((360, 640, 3), np.uint8)
    img[100:300, 300:340] = 255  # a white "person", 200 px tall
    box = np.array([300, 100, 340, 300], np.float32)
    x0, y0, side = cu.crop_box(box)
    assert side == pytest.approx(150)
    assert 300 <= x0 + side / 2 <= 340 and 100 <= y0 + side / 2 <= 300  # its centre is in the person's box
    crop = cu.cut(img, box)
    assert crop.shape == (cu.IMGSZ, cu.IMGSZ, 3)
    assert crop[cu.IMGSZ // 2, cu.IMGSZ // 2].min() == 255 and crop[cu.IMGSZ // 2, 0].max() == 0
    edge = cu.cut(img, np.array([600, -40, 660, 200], np.float32))  # cut off at the top and the right
    assert edge.shape == (cu.IMGSZ, cu.IMGSZ, 3)
    assert (edge[0, 0] == 114).all() and (edge[-1, -1] == 114).all()
    r = cu.region(box)
    assert r[0] >= 300 and r[1] >= 100 and r[2] <= 340 and r[3] <= 300


def test_crop_set_is_an_ultralytics_classification_folder_and_deterministic(tmp_path):
    a = cu.make_crops(tmp_path / "a", n_images=24, seed=5, workers=1)
    b = cu.make_crops(tmp_path / "b", n_images=24, seed=5, workers=2)

    def digest(root):
        h = hashlib.sha256()
        for f in sorted(root.rglob("*.jpg")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
        return h.hexdigest()

    counts = {c: len(list((a / "train" / c).glob("*.jpg"))) + len(list((a / "val" / c).glob("*.jpg")))
              for c in cu.CROP_CLASSES}
    assert counts["none"] > 0 and counts["phone"] + counts["cigarette"] > 0
    assert sorted(p.name for p in (a / "train").iterdir()) == sorted(cu.CROP_CLASSES)
    assert cv2.imread(str(next((a / "train" / "none").glob("*.jpg")))).shape == (cu.IMGSZ, cu.IMGSZ, 3)
    assert digest(a) == digest(b)  # the same set in one process or two


def test_a_file_that_is_not_a_closeup_model_is_refused_by_name(tmp_path):
    bad = tmp_path / "closeup.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="closeup.onnx"):
        cu.CloseUp(bad)
    with pytest.raises(ModelError, match="不存在"):
        cu.CloseUp(tmp_path / "missing.onnx")
    if DETECTOR.exists():  # a model, but the detector: its classes are not the close-up's
        with pytest.raises(ModelError, match="类别"):
            cu.CloseUp(DETECTOR)


def test_watch_names_a_bad_closeup_model_and_stops(tmp_path):
    from click.testing import CliRunner

    from workbench.canteen.cli import canteen

    bad = tmp_path / "c.onnx"
    bad.write_text("x")
    r = CliRunner().invoke(canteen, ["watch", str(tmp_path / "none.mp4"), "--closeup", str(bad), "--no-hub",
                                     "--mqtt", "off"])
    assert r.exit_code == 2 and "c.onnx" in r.output


def _held_out_crops(n_images=160, seed=4242):
    out = {c: [] for c in cu.CROP_CLASSES}
    for i in range(n_images):
        for label, crop in cu._person_crops((seed, i, cu.IMGSZ)):
            out[label].append(crop)
    return out


@trained
def test_committed_classifier_tells_cigarettes_and_phones_on_held_out_crops():
    model = cu.CloseUp(MODEL)
    crops = _held_out_crops()
    for k, c in enumerate(cu.CROP_CLASSES):
        assert len(crops[c]) >= 25, c
        pred = model.classify(crops[c]).argmax(1)
        assert (pred == k).mean() >= 0.85, f"{c}: {(pred == k).mean():.2f}"


@trained
def test_detector_adds_closeup_boxes_inside_their_person():
    from workbench.canteen.synthkitchen import Odds, _render

    rng = np.random.default_rng(77)
    frames = [_render(rng, 640, 360, Odds(mask=0.0, phone=0.5, smoking=0.5))[0] for _ in range(6)]
    plain = Detector(DETECTOR, closeup=None)
    both = Detector(DETECTOR)
    assert both.closeup is not None and both.closeup.path == MODEL
    a, b = plain.detect(frames), both.detect(frames)
    added = 0
    targets = {CLASSES.index("phone"), CLASSES.index("cigarette")}
    for x, y in zip(a, b):
        assert np.array_equal(y.xyxy[:len(x)], x.xyxy)  # the detector's own boxes stay as they were
        extra = y.where(np.arange(len(y)) >= len(x))
        assert set(extra.cls.tolist()) <= targets
        persons = x.where((x.cls == 0) & (x.conf >= 0.3))
        for bx in extra.xyxy:
            cx, cy = (bx[0] + bx[2]) / 2, (bx[1] + bx[3]) / 2
            assert any(p[0] <= cx <= p[2] and p[1] <= cy <= p[3] for p in persons.xyxy)
        added += len(extra)
    assert added >= 3  # half of these people hold a phone or smoke


def test_closeup_leaves_frames_without_people_alone(tmp_path):
    if not MODEL.exists():
        pytest.skip("the committed close-up model is missing")
    model = cu.CloseUp(MODEL)
    d = Detections.from_rows([("rodent", 0.9, 10, 10, 40, 30)])
    out = model.add([np.zeros((360, 640, 3), np.uint8)], [d])
    assert out[0] is d and model.crops == 0


@pytest.mark.slow
def test_training_smoke_makes_a_loadable_classifier(tmp_path):
    data = cu.make_crops(tmp_path / "crops", n_images=40, seed=9, workers=2)
    best = cu.train_closeup(data, epochs=1, out=tmp_path / "runs", workers=0, batch=16, plots=False)
    from workbench.canteen.train import export_onnx

    onnx = export_onnx(best, imgsz=cu.IMGSZ, out=tmp_path / "c.onnx")
    model = cu.CloseUp(onnx)
    report = cu.evaluate(onnx, data)
    assert model.classify([np.zeros((cu.IMGSZ, cu.IMGSZ, 3), np.uint8)]).shape == (1, 3)
    assert sum(r["crops"] for r in report["per_class"].values()) == sum(map(sum, report["confusion"]))
