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


def test_snapshot_state_says_why_there_is_no_image(tmp_path, monkeypatch):
    """A file there: shown; gone although it was recorded and is inside the retention: missing
    (a fault); older than the retention: expired (the sweep's work); never recorded: none."""
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("WORKBENCH_EVIDENCE_RETENTION_DAYS", raising=False)
    ts = dt.datetime(2026, 11, 26, 2, 0, 5)          # 10:00 Beijing time
    now = dt.datetime(2026, 11, 28, 4)
    img = np.full((360, 640, 3), 180, np.uint8)
    evidence.save_frame("V1", "C1", ts, img, [Box("老鼠", (10, 10, 60, 40), True)])
    state = evidence.snapshot_state
    assert state("V1", "C1", ts, recorded="evidence/C1/2026-11-26/V1.jpg", now=now) == evidence.SNAPSHOT_SHOWN
    (tmp_path / "evidence" / "C1" / "2026-11-26" / "V1.jpg").unlink()
    assert state("V1", "C1", ts, recorded="evidence/C1/2026-11-26/V1.jpg", now=now) == evidence.SNAPSHOT_MISSING
    assert state("V1", "C1", ts, recorded=None, now=now) == evidence.SNAPSHOT_NONE
    assert state("V1", "C1", ts, recorded=float("nan"), now=now) == evidence.SNAPSHOT_NONE
    assert state("V1", "C1", ts, recorded="x.jpg", now=dt.datetime(2026, 12, 27, 4)) == evidence.SNAPSHOT_EXPIRED
    assert state("V1", "C1", ts, recorded="x.jpg", now=dt.datetime(2026, 12, 25, 4)) == evidence.SNAPSHOT_MISSING
    monkeypatch.setenv("WORKBENCH_EVIDENCE_RETENTION_DAYS", "1")
    assert state("V1", "C1", ts, recorded="x.jpg", now=now) == evidence.SNAPSHOT_EXPIRED
    assert state("V1", None, ts, recorded="x.jpg", now=now) == evidence.SNAPSHOT_NONE


def test_the_feed_says_plainly_when_a_snapshot_file_is_gone(tmp_path, monkeypatch):
    """The feed's card of a violation whose file was deleted says 文件缺失 (marked as a fault),
    one beyond the retention says so, and one with its file shows it by the application's URL."""
    import pandas as pd

    from workbench.ui import canteen_page

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("s")
    recent, old = now - pd.Timedelta(hours=3), now - pd.Timedelta(days=60)
    img = np.full((360, 640, 3), 180, np.uint8)
    for vid, ts in (("VSHOWN", recent), ("VGONE", recent)):
        evidence.save_frame(vid, "C1", ts.to_pydatetime(), img)
    rel = evidence.find_snapshot("VGONE", "C1", recent)
    rel.unlink()
    v = pd.DataFrame([{"violation_id": vid, "ts": ts, "camera_id": "C1", "canteen_id": "K1", "violation_class": "老鼠",
                       "severity": "critical", "status": "待处理", "snapshot": f"evidence/C1/x/{vid}.jpg"}
                      for vid, ts in (("VSHOWN", recent), ("VGONE", recent - pd.Timedelta(minutes=1)),
                                      ("VOLD", old))])
    feed = canteen_page.feed_html(v, pd.DataFrame({"canteen_id": ["K1"], "name": ["一中食堂"]}))
    cards = feed.split('<div class="wb-cv-card">')[1:]
    assert 'src="/workbench/evidence/VSHOWN"' in cards[0] and "无抓拍图" not in cards[0]
    assert "VGONE" in cards[1] and "wb-cv-missing" in cards[1] and "无抓拍图：文件缺失" in cards[1]
    assert "VOLD" in cards[2] and "保留期限" in cards[2] and "wb-cv-missing" not in cards[2]


@pytest.mark.slow
def test_the_sample_citys_feed_violations_carry_real_snapshots(tmp_path, monkeypatch):
    """The sample city records a snapshot for the violations the feed shows first (the newest of
    the city, of each district, school type and class, inside the retention) and write_snapshots
    renders exactly those where the watcher would: a kitchen frame showing the violation, faces
    (head regions) blurred in the shown copy, the clean copy beside it; the same image again for
    the same violation."""
    import pandas as pd

    from workbench.synth import canteens as ct
    from workbench.synth.city import generate

    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    city = generate(21, 7, dt.date(2026, 11, 27))
    v = city["frames"]["canteen_violations"]
    canteens = city["frames"]["canteens"]
    shown = v[v["snapshot"].notna()]
    assert 0 < len(shown) <= 8 * (1 + 9 + 5 + 9) and len(shown) < len(v)
    newest = v.sort_values("ts").tail(8)["violation_id"]
    assert newest.isin(shown["violation_id"]).all()                       # the feed's first page
    for cls, g in v.merge(canteens[["canteen_id", "school_type"]], on="canteen_id").groupby("violation_class"):
        assert g.sort_values("ts").tail(8)["violation_id"].isin(shown["violation_id"]).all(), cls
    assert (shown["snapshot"] == ct.snapshot_path(shown)).all()
    n = ct.write_snapshots(v.head(0))
    assert n == 0
    few = shown.sort_values("ts").tail(6)
    assert ct.write_snapshots(few) == 6 and ct.write_snapshots(few) == 0   # existing files kept
    for r in few.itertuples():
        ts_utc = pd.Timestamp(r.ts).tz_localize("Asia/Shanghai").tz_convert("UTC").tz_localize(None)
        path = evidence.find_snapshot(r.violation_id, r.camera_id, ts_utc)
        assert path is not None and path == (tmp_path / r.snapshot).resolve()
        img = cv2.imread(str(path))
        clean = cv2.imread(str(evidence.find_snapshot(r.violation_id, r.camera_id, ts_utc, original=True)))
        assert img.shape == clean.shape == (360, 640, 3)
        red = (img[:, :, 2] > 180) & (img[:, :, 1] < 80) & (img[:, :, 0] < 80)
        assert red.sum() > 50, r.violation_class                            # the violation's box
    # every class has its scene; people's heads are blurred in the shown copy
    for cls in ("未戴口罩", "抽烟", "老鼠", "垃圾桶未盖", "陌生人闯入"):
        a, boxes = ct.render_violation(cls, np.random.default_rng([1, 15]))
        b, _ = ct.render_violation(cls, np.random.default_rng([1, 15]))
        assert np.array_equal(a, b) and any(x.violation and x.label == cls for x in boxes), cls
        people = [x for x in boxes if x.person]
        if people:
            out, k = evidence.blur_faces(a, [x.xyxy for x in people], search=False)
            x1, y1, x2, y2 = evidence.head_region(people[0].xyxy, a.shape)
            assert k == len(people) and _sharpness(out, x1, y1, x2, y2) < 0.3 * _sharpness(a, x1, y1, x2, y2)
