"""Training wrapper and the committed demo model: dataset checks, a tiny CPU training,
ONNX export, per-class box metrics, and what the committed weights can see."""
from __future__ import annotations

import numpy as np
import pytest
import yaml

from workbench.canteen import synthkitchen as sk
from workbench.canteen import train as tr
from workbench.canteen.classes import CLASSES

PT = tr.MODEL_DIR / f"{tr.MODEL_NAME}.pt"
ONNX = tr.MODEL_DIR / f"{tr.MODEL_NAME}.onnx"


# ----------------------------------------------------------------------------- data.yaml checks
def test_data_yaml_missing_is_a_clear_error(tmp_path):
    with pytest.raises(tr.DatasetError, match="no such data.yaml"):
        tr.check_data_yaml(tmp_path / "nope.yaml")


def test_data_yaml_not_yaml(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text("names: [person\n  - : :", encoding="utf-8")
    with pytest.raises(tr.DatasetError, match="not valid YAML"):
        tr.check_data_yaml(p)


def test_data_yaml_without_splits(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text(yaml.safe_dump({"names": list(CLASSES)}), encoding="utf-8")
    with pytest.raises(tr.DatasetError, match="needs 'train', 'val' and 'names'"):
        tr.check_data_yaml(p)


def test_data_yaml_with_other_classes_is_refused(tmp_path):
    p = tmp_path / "data.yaml"
    names = list(CLASSES)
    names[1], names[2] = names[2], names[1]            # same names, wrong order
    p.write_text(yaml.safe_dump({"train": "a", "val": "b", "names": names}), encoding="utf-8")
    with pytest.raises(tr.DatasetError, match="differ from workbench.canteen.classes.CLASSES"):
        tr.check_data_yaml(p)
    p.write_text(yaml.safe_dump({"train": "a", "val": "b", "names": {i: n for i, n in enumerate(CLASSES)}}),
                 encoding="utf-8")
    assert tr.check_data_yaml(p)["train"] == "a"    # the dict form of names is fine


def test_training_refuses_a_wrong_dataset_before_starting(tmp_path):
    p = tmp_path / "data.yaml"
    p.write_text(yaml.safe_dump({"train": "a", "val": "b", "names": ["cat", "dog"]}), encoding="utf-8")
    with pytest.raises(tr.DatasetError):
        tr.train(data=p, out=tmp_path / "runs", epochs=1, imgsz=64, device="cpu")
    assert not (tmp_path / "runs").exists()


def test_synthetic_data_is_reused_when_complete(tmp_path):
    a = tr.synthetic_data(tmp_path / "d", n_train=3, n_val=2, imgsz=128, seed=0, workers=1)
    stamp = (tmp_path / "d" / "images" / "train" / "kitchen_train_000000.jpg").stat().st_mtime_ns
    b = tr.synthetic_data(tmp_path / "d", n_train=3, n_val=2, imgsz=128, seed=0, workers=1)
    assert a == b and (tmp_path / "d" / "images" / "train" / "kitchen_train_000000.jpg").stat().st_mtime_ns == stamp
    tr.synthetic_data(tmp_path / "d", n_train=4, n_val=2, imgsz=128, seed=0, workers=1)   # other counts: redone
    assert len(list((tmp_path / "d" / "images" / "train").glob("*.jpg"))) == 4
    stamp = tmp_path / "d" / "synth.json"                                  # an interrupted render: redone
    stamp.write_text(stamp.read_text().replace("true", "false"))
    tr.synthetic_data(tmp_path / "d", n_train=4, n_val=2, imgsz=128, seed=0, workers=1)
    assert '"complete": true' in stamp.read_text()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("a user's file")
    with pytest.raises(tr.DatasetError, match="not a synthetic kitchen set"):
        tr.synthetic_data(tmp_path / "mine", n_train=1, n_val=1, imgsz=64, workers=1)
    assert (tmp_path / "mine" / "keep.txt").is_file()


# ----------------------------------------------------------------------------- a tiny real training
@pytest.mark.slow
def test_smoke_training_export_and_evaluate(tmp_path):
    data = sk.make_dataset(tmp_path / "ds", n_train=9, n_val=4, imgsz=160, seed=0)
    (tmp_path / "ds" / "labels" / "train" / "kitchen_train_000008.txt").write_text("0 0.5 0.5 0.2\n")
    res = tr.train(data=data, out=tmp_path / "runs", epochs=1, imgsz=160, batch=4, workers=0, device="cpu",
                   plots=False, skip_bad_labels=True)
    assert res.weights.is_file() and res.epochs_done == 1 and res.results_csv.is_file()
    kept = (res.save_dir / "label_problems.csv").read_text(encoding="utf-8")
    assert "kitchen_train_000008.txt" in kept and "字段数不是5" in kept   # the quarantine record
    from ultralytics import YOLO

    model = YOLO(str(res.weights))
    assert [model.names[i] for i in range(len(CLASSES))] == list(CLASSES)
    img, _ = sk.render_image(np.random.default_rng(1), 160)
    r = model.predict(img, imgsz=160, device="cpu", verbose=False)[0]
    assert r.boxes is not None and r.orig_shape == (160, 160)
    onnx_path = tr.export_onnx(res.weights, imgsz=160, out=tmp_path / "m.onnx")
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.zeros((2, 3, 160, 160), np.float32)                   # dynamic batch
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert out.shape[0] == 2 and out.shape[1] == 4 + len(CLASSES)
    df = tr.evaluate_boxes(res.weights, res.data_yaml, imgsz=160, device="cpu", batch=4)
    assert list(df["class"]) == ["all", *CLASSES]
    assert {"precision", "recall", "map50", "map50_95", "instances"} <= set(df.columns)
    assert df.loc[df["class"] == "person", "instances"].item() > 0


# ----------------------------------------------------------------------------- the committed model
def test_committed_model_files_and_card():
    assert PT.is_file() and ONNX.is_file()
    card = (tr.MODEL_DIR / "MODEL_CARD.md").read_text(encoding="utf-8")
    for name in CLASSES:
        assert f"`{name}`" in card
    assert "mAP50" in card and "synthetic" in card.lower()
    assert (tr.MODEL_DIR / "training" / "results.csv").is_file()


def test_committed_onnx_takes_a_batch_of_frames():
    import onnxruntime as ort

    sess = ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])
    x = np.zeros((3, 3, 384, 640), np.float32)
    out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert out.shape[:2] == (3, 4 + len(CLASSES))


@pytest.mark.slow
def test_committed_model_sees_the_synthetic_kitchen(tmp_path):
    """On a fresh synthetic val set (a seed it never saw) the demo model finds people,
    heads, faces and bins well; cigarettes are documented as unreliable."""
    data = sk.make_dataset(tmp_path / "ds", n_train=0, n_val=24, imgsz=640, seed=12345)
    df = tr.evaluate_boxes(PT, data, imgsz=640, device="cpu", batch=8).set_index("class")
    assert df.loc["person", "map50"] > 0.8
    assert df.loc[["chef_hat", "no_chef_hat", "mask", "no_mask"], "map50"].mean() > 0.7
    assert df.loc["all", "map50"] > 0.6


# ----------------------------------------------------------------------------- broken label files
def _broken_dataset(tmp_path):
    data = sk.make_dataset(tmp_path / "ds", n_train=3, n_val=1, imgsz=96, seed=0)
    lab = tmp_path / "ds" / "labels" / "train"
    good = (lab / "kitchen_train_000000.txt").read_text()
    (lab / "kitchen_train_000000.txt").write_text(good + "0 0.5 0.5 0.2\n"            # 4 fields
                                                  + "x 0.5 0.5 0.2 0.2\n"           # not a number
                                                  + "13 0.5 0.5 0.2 0.2\n"          # class 13 of 0..12
                                                  + "1 0.95 0.5 0.2 0.2\n"          # sticks out on the right
                                                  + "2 0.5 0.5 0 0.2\n")            # zero width
    (lab / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return data


def test_label_problems_lists_every_bad_line_with_a_reason(tmp_path):
    data = _broken_dataset(tmp_path)
    p = tr.label_problems(data)
    got = sorted(zip(p["line"], p["reason"]))
    n = len((tmp_path / "ds" / "labels" / "train" / "kitchen_train_000000.txt").read_text().splitlines())
    assert got == sorted([(n - 4, "字段数不是5"), (n - 3, "不是数字"), (n - 2, "类别编号超出范围"),
                          (n - 1, "坐标超出0到1"), (n, "宽高不为正"), (0, "标注文件没有对应图片")])
    assert set(p["split"]) == {"train"}
    assert tr.label_problems(sk.make_dataset(tmp_path / "ok", n_train=2, n_val=1, imgsz=96, seed=0)).empty
    # the summary and the preview still work on the broken set (bad lines are skipped, not fixed)
    assert tr.dataset_summary(data)["boxes"].sum() > 0
    assert tr.preview(data, n=2, size=64).shape == (64, 128, 3)


def test_training_stops_on_bad_labels_with_a_clear_error(tmp_path):
    data = _broken_dataset(tmp_path)
    with pytest.raises(tr.DatasetError, match=r"6 bad label lines in 2 files .*skip_bad_labels=True"):
        tr.train(data=data, out=tmp_path / "runs", epochs=1, imgsz=64, device="cpu")
    assert not (tmp_path / "runs").exists()


def test_command_line_renders_a_dataset(tmp_path, capsys):
    assert tr.main(["dataset", "--out", str(tmp_path / "d"), "--n-train", "2", "--n-val", "1", "--imgsz", "64",
                    "--workers", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("data.yaml")
    assert len(list((tmp_path / "d" / "images" / "train").glob("*.jpg"))) == 2
    with pytest.raises(SystemExit):
        tr.main(["train", "--cache", "maybe"])     # argparse-level errors exit, before any work
