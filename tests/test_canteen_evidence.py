"""Evidence images: faces blurred on real photos (ultralytics' zidane.jpg and bus.jpg), boxes
drawn, the clean copy kept, files where the hub says, retention sweep."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import cv2
import numpy as np
import pytest

from workbench.canteen import evidence
from workbench.canteen.events import Box, Event

ASSETS = Path(__import__("ultralytics").__file__).parent / "assets"


def _sharpness(img, x1, y1, x2, y2) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


@pytest.mark.slow
def test_real_faces_are_found_and_blurred():
    img = cv2.imread(str(ASSETS / "bus.jpg"))
    faces = evidence.find_faces(img)
    assert len(faces) >= 2  # the people at the bus stop
    out, n = evidence.blur_faces(img)
    assert n >= len(faces)
    assert evidence.find_faces(out) == []  # nothing a face detector still recognises
    for x, y, w, h in faces:
        assert _sharpness(out, x, y, x + w, y + h) < 0.2 * _sharpness(img, x, y, x + w, y + h)


@pytest.mark.slow
def test_head_region_catches_the_face_haar_misses():
    """zidane.jpg: Zidane shouts in profile; Haar misses him, his person box's head region does not."""
    img = cv2.imread(str(ASSETS / "zidane.jpg"))
    zidane = (120, 195, 1150, 715)  # his person box (x1, y1, x2, y2)
    face = (500, 210, 670, 390)     # his face, inside it
    haar = evidence.find_faces(img)
    assert not any(x < 640 < x + w and y < 300 < y + h for x, y, w, h in haar)  # Haar does miss it
    out, _ = evidence.blur_faces(img, [zidane])
    assert _sharpness(out, *face) < 0.2 * _sharpness(img, *face)
    assert evidence.find_faces(out) == []


def _event(tmp_img, cam="CAM 1/厨房") -> Event:
    ts = dt.datetime(2026, 11, 26, 2, 0, 5)
    ev = Event("AI20261126100005-CAM1-HAT", cam, "ST-HT-001", "荷塘区", "未戴厨师帽", "warning", ts, 5.0, 6.0, 6.0, ts)
    ev.best_image = tmp_img
    ev.best_boxes = [Box("未戴厨师帽", (120, 195, 1150, 715), True, person=True),
                     Box("未戴厨师帽", (500, 200, 680, 300), True)]
    return ev


@pytest.mark.slow
def test_snapshot_written_blurred_with_boxes_and_a_clean_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    img = cv2.imread(str(ASSETS / "zidane.jpg"))
    snap = evidence.save_snapshot(_event(img.copy()))
    assert snap.snapshot == "evidence/CAM_1_厨房/2026-11-26/AI20261126100005-CAM1-HAT.jpg"  # local date, safe name
    shown = cv2.imread(str(tmp_path / snap.snapshot))
    clean = cv2.imread(str(tmp_path / snap.clean_snapshot))
    assert shown.shape == clean.shape == img.shape
    assert np.abs(clean.astype(int) - img.astype(int)).mean() < 3  # the clean copy is the frame (JPEG)
    assert evidence.find_faces(shown) == []
    red = (shown[:, :, 2] > 180) & (shown[:, :, 1] < 80) & (shown[:, :, 0] < 80)
    assert red[195:200, 120:1150].mean() > 0.5  # the box's top edge is drawn in red
    assert evidence.resolve(snap.snapshot) == tmp_path / snap.snapshot
    assert evidence.resolve("evidence/none.jpg") is None and evidence.resolve(None) is None


def test_no_frame_no_snapshot(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    ev = _event(None)
    assert evidence.save_snapshot(ev) is None


def test_retention_sweep(tmp_path):
    root = tmp_path / "evidence"
    for cam in ("C1", "C2"):
        for day in ("2026-10-01", "2026-11-20", "2026-11-26"):
            d = root / cam / day
            d.mkdir(parents=True)
            (d / "a.jpg").write_bytes(b"x" * 100)
    (root / "C1" / "notes").mkdir()
    out = evidence.sweep(30, now=dt.datetime(2026, 11, 26, 12), root=root)
    assert out == {"folders": 2, "files": 2, "bytes": 200}
    assert sorted(p.name for p in (root / "C1").iterdir()) == ["2026-11-20", "2026-11-26", "notes"]
    out = evidence.sweep(3, now=dt.datetime(2026, 11, 26, 12), root=root)
    assert out["folders"] == 2
    assert evidence.sweep(3, root=tmp_path / "missing") == {"folders": 0, "files": 0, "bytes": 0}


def test_sweep_cli(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from workbench.cli import main

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    old = tmp_path / "evidence" / "C1" / "2020-01-01"
    old.mkdir(parents=True)
    (old / "a.jpg").write_bytes(b"x")
    res = CliRunner().invoke(main, ["canteen", "sweep", "--days", "7"])
    assert res.exit_code == 0, res.output
    assert "已删除 1 个目录" in res.output and not old.exists()


@pytest.mark.parametrize("name", ["zidane.jpg", "bus.jpg"])
def test_draw_boxes_keeps_the_frame_size(name):
    img = cv2.imread(str(ASSETS / name))
    out = evidence.draw_boxes(img.copy(), [Box("人员 1", (10, 10, 200, 300), False), Box("老鼠", (300, 300, 400, 380), True)])
    assert out.shape == img.shape and not np.array_equal(out, img)
