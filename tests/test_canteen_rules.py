"""明厨亮灶 rules: the YAML config (and its bad input) and the event engine (votes, zones,
inertia, cooldown, staff hours), fed with detections frame by frame."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from workbench.canteen.detector import Detections
from workbench.canteen.events import CameraEngine, Ballot, NOT_JUDGED, event_id
from workbench.canteen.rules import ConfigError, camera_rules, load_rules, parse_hours

IMG = np.zeros((360, 640, 3), np.uint8)
DAY = dt.datetime(2026, 11, 26, 2, 0)  # 10:00 Beijing time


def person(x=300, y=100, w=80, h=220, conf=0.9, hat=None, mask=None, uniform=None, phone=False, smoke=False):
    """A person box plus attribute boxes inside it: hat/mask/uniform True = compliant, False = violation."""
    rows = [("person", conf, x, y, x + w, y + h)]
    head = (x + 20, y, x + w - 20, y + 40)
    if hat is not None:
        rows.append(("chef_hat" if hat else "no_chef_hat", 0.8, *head))
    if mask is not None:
        rows.append(("mask" if mask else "no_mask", 0.8, x + 25, y + 20, x + w - 25, y + 45))
    if uniform is not None:
        rows.append(("uniform" if uniform else "no_uniform", 0.8, x + 5, y + 50, x + w - 5, y + 140))
    if phone:
        rows.append(("phone", 0.7, x + 30, y + 80, x + 45, y + 100))
    if smoke:
        rows.append(("cigarette", 0.7, x + 40, y + 35, x + 50, y + 40))
    return rows


def run(engine, frames, fps=2.0, start=DAY):
    """Feed [rows per frame] at fps; returns all changes."""
    out = []
    for i, rows in enumerate(frames):
        t = i / fps
        out += engine.observe(t, start + dt.timedelta(seconds=t), IMG, Detections.from_rows(rows))
    return out


def engine(**spec):
    return CameraEngine(camera_rules("CAM1", {"canteen_id": "ST-HT-001", **spec}))


# ------------------------------------------------------------------ config

def test_example_config_loads():
    from workbench import config

    rf = load_rules(config.ROOT / "workbench" / "canteen" / "cameras.example.yaml")
    assert not rf.problems and len(rf.cameras) == 2
    c = rf.cameras["ST-HT-001-C1"]
    assert c.violations["老鼠"] == "critical" and c.zones[0].relative and c.thresholds.fps == 2


def test_bad_cameras_are_named_and_the_others_load(tmp_path):
    p = tmp_path / "cams.yaml"
    p.write_text("""
cameras:
  GOOD: {source: a.mp4}
  OUTSIDE: {source: b.mp4, size: [640, 360], zones: {灶台: [[0, 0], [700, 0], [700, 300]]}}
  UNKNOWN: {source: c.mp4, violations: {未戴帽子: warning}}
  BADSEV: {source: c.mp4, violations: {老鼠: deadly}}
  HOURS: {source: d.mp4, staff_hours: "早上"}
  NEG: {source: e.mp4, zones: {a: [[-1, 0], [1, 0], [1, 1]]}}
  THRESH: {source: e.mp4, min_score: 0.9, threshold: 0.5}
""", encoding="utf-8")
    rf = load_rules(p)
    assert list(rf.cameras) == ["GOOD"]
    msgs = {e.camera: e.problem for e in rf.problems}
    assert "超出画面" in msgs["OUTSIDE"] and "700" in msgs["OUTSIDE"]
    assert "未知的违规类型“未戴帽子”" in msgs["UNKNOWN"]
    assert "deadly" in msgs["BADSEV"]
    assert "从业时间" in msgs["HOURS"]
    assert "负坐标" in msgs["NEG"]
    assert "min_score" in msgs["THRESH"]
    assert all(str(e).startswith(f"摄像头 {e.camera}") for e in rf.problems)


def test_unreadable_rules_file(tmp_path):
    with pytest.raises(ConfigError, match="不存在"):
        load_rules(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="不是有效的 YAML"):
        load_rules(bad)
    bad.write_text("defaults: {fps: -1}\ncameras: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="defaults"):
        load_rules(bad)


def test_zone_checked_against_the_real_frame():
    e = engine(zones={"灶台": [[0, 0], [1000, 0], [1000, 300], [0, 300]]})
    with pytest.raises(ConfigError, match="超出画面 640×360"):
        e.observe(0, DAY, IMG, Detections.empty())


def test_parse_hours():
    assert parse_hours("06:30-13:30,15:30-17:30") == [(390, 810), (930, 1050)]
    r = camera_rules("C", {"staff_hours": "06:00-20:00"})
    assert r.in_staff_hours(dt.datetime(2026, 11, 26, 2, 0))       # 10:00 Beijing
    assert not r.in_staff_hours(dt.datetime(2026, 11, 26, 15, 0))  # 23:00 Beijing


# ------------------------------------------------------------------ votes

def test_ballot_yes_no_not_judged():
    b = Ballot(4)
    assert b.verdict(2, 0.5)[0] == NOT_JUDGED
    b.add(True, 0.8)
    assert b.verdict(2, 0.5)[0] == NOT_JUDGED  # one vote is not enough
    b.add(True, 0.7)
    assert b.verdict(2, 0.5) == ("no", pytest.approx(0.75))
    for _ in range(3):
        b.add(False, 0.9)
    assert b.verdict(2, 0.5)[0] == "yes"
    low = Ballot(4)
    low.add(True, 0.35)
    low.add(True, 0.4)
    assert low.verdict(2, 0.5)[0] == NOT_JUDGED  # low scores start, only a higher mean confirms


# ------------------------------------------------------------------ events

def test_no_hat_for_a_minute_is_one_event_with_start_updates_and_end():
    e = engine()
    frames = [person(hat=True)] * 4 + [person(hat=False)] * 120 + [person(hat=True)] * 60
    ch = run(e, frames)
    kinds = [(c.kind, c.event.violation_class) for c in ch]
    assert kinds.count(("new", "未戴厨师帽")) == 1
    assert kinds.count(("end", "未戴厨师帽")) == 1
    assert 3 <= kinds.count(("update", "未戴厨师帽")) <= 8  # throttled to one per update_s
    ev = next(c.event for c in ch if c.kind == "new")
    assert ev.t_start == pytest.approx(2.0)             # the first frame without the hat
    assert ev.t_opened - ev.t_start <= 3.0              # latency within 3 s of video
    assert ev.ts == DAY + dt.timedelta(seconds=2)
    assert ev.ts_end == DAY + dt.timedelta(seconds=61.5)  # the last frame it was seen
    assert ev.severity == "warning" and ev.canteen_id == "ST-HT-001"
    assert ev.violation_id == event_id("CAM1", "未戴厨师帽", ev.ts, "Asia/Shanghai")
    assert ev.violation_id.startswith("AI20261126100002-CAM1-HAT")
    assert ev.best_image is not None or ev.ended


def test_a_single_bad_frame_opens_nothing():
    e = engine()
    frames = [person(hat=True)] * 5 + [person(hat=False)] + [person(hat=True)] * 10
    frames += [[]] * 3 + [person(phone=True)] + [person()] * 5
    assert run(e, frames) == []


def test_person_lost_and_found_within_cooldown_is_still_one_event():
    e = engine()
    frames = [person(hat=False)] * 10 + [[]] * 20 + [person(hat=False)] * 10  # 10 s gap < cooldown 20 s
    ch = run(e, frames) + e.close()
    assert [c.kind for c in ch if c.kind != "update"] == ["new", "end"]
    e2 = engine()
    frames = [person(hat=False)] * 10 + [[]] * 50 + [person(hat=False)] * 10  # 25 s gap > cooldown
    ch = run(e2, frames) + e2.close()
    assert [c.kind for c in ch if c.kind != "update"] == ["new", "end", "new", "end"]


def test_not_judged_mask_is_no_violation():
    """A person seen from behind: no mask / no_mask box, no votes, 未判定 — never an event."""
    e = engine()
    ch = run(e, [person(hat=True, uniform=True)] * 20)
    assert ch == []
    s = next(iter(e.subjects.values()))
    assert s.ballots["未戴口罩"].verdict(2, 0.5)[0] == NOT_JUDGED


def test_two_violations_of_one_person_are_two_events_and_smoking_is_critical():
    e = engine()
    ch = run(e, [person(mask=False, smoke=True)] * 10) + e.close()
    new = sorted(c.event.violation_class for c in ch if c.kind == "new")
    assert new == ["抽烟", "未戴口罩"]
    assert {c.event.violation_class: c.event.severity for c in ch}["抽烟"] == "critical"


def test_zone_uses_the_bottom_centre_of_the_box():
    zone = {"操作台": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}  # lower half of the frame
    e = engine(zones=zone)
    # feet at y=320 (inside) vs a person whose box ends at y=170 (outside; its head is inside nothing)
    inside = run(e, [person(y=100, h=220, hat=False)] * 8)
    assert [c.kind for c in inside] == ["new"]
    e2 = engine(zones=zone)
    assert run(e2, [person(y=0, h=170, hat=False)] * 8) == []


def test_stranger_outside_staff_hours():
    night = dt.datetime(2026, 11, 26, 15, 20)  # 23:20 Beijing
    e = engine(staff_hours="05:30-20:30")
    ch = run(e, [person(hat=True, mask=True, uniform=True)] * 8, start=night)
    assert [c.event.violation_class for c in ch if c.kind == "new"] == ["陌生人闯入"]
    e2 = engine(staff_hours="05:30-20:30")
    assert run(e2, [person(hat=True, mask=True, uniform=True)] * 8) == []  # 10:00: staff at work


def test_scene_objects_rodent_and_open_bin():
    e = engine()
    rat = [("rodent", 0.8, 100, 300, 130, 320)]
    bin_open = [("bin_open", 0.9, 500, 250, 560, 340)]
    ch = run(e, [rat + bin_open] * 6 + [bin_open] * 60) + e.close()
    new = {c.event.violation_class: c.event for c in ch if c.kind == "new"}
    assert set(new) == {"老鼠", "垃圾桶未盖"}
    assert new["老鼠"].severity == "critical" and new["垃圾桶未盖"].severity == "info"
    ends = [c.event.violation_class for c in ch if c.kind == "end"]
    assert sorted(ends) == ["垃圾桶未盖", "老鼠"]


def test_only_configured_violations_count():
    e = engine(violations={"老鼠": "critical"})
    assert run(e, [person(hat=False, mask=False)] * 10) == []


def test_low_scores_never_confirm():
    e = engine()
    rows = [("person", 0.9, 300, 100, 380, 320), ("no_chef_hat", 0.4, 320, 100, 360, 140)]
    assert run(e, [rows] * 20) == []  # 0.4 ≥ min_score 0.3 votes, but the mean stays below threshold 0.5


def test_close_ends_every_open_event():
    e = engine()
    ch = run(e, [person(hat=False, phone=True)] * 6)
    assert sorted(c.event.violation_class for c in ch if c.kind == "new") == ["未戴厨师帽", "玩手机"]
    ends = e.close()
    assert sorted(c.event.violation_class for c in ends) == ["未戴厨师帽", "玩手机"]
    assert all(c.event.ts_end is not None and c.event.ts_end >= c.event.ts for c in ends)
    assert e.open_events() == [] and e.close() == []


def test_records_and_messages_are_complete():
    e = engine()
    ev = next(c.event for c in run(e, [person(hat=False)] * 4) if c.kind == "new")
    rec = ev.record()
    assert rec["status"] == "open" and rec["source"] == "明厨亮灶AI" and rec["frames"] >= 2
    assert rec["track_ids"] == "1"
    msg = ev.message("new")
    assert msg["type"] == "new" and msg["label"] == "未戴厨师帽" and msg["start_time"].endswith("+00:00")
    # the person's attributes: hat judged 否, mask never seen (未判定), phone judged absent (否)
    assert msg["attributes"]["1"]["戴厨师帽"] == "否" and msg["attributes"]["1"]["戴口罩"] == "未判定"
    assert msg["attributes"]["1"]["玩手机"] == "否"


def test_a_cook_walking_faster_than_the_tracker_matches_keeps_their_votes():
    """At 2 frames/s a walker moves more than their own width between frames: the boxes do not
    overlap, ByteTrack starts a new track each frame, and without re-linking no vote would ever
    be the second one. The nearby, same-sized person just lost hands over their ballots."""
    walk = [person(x=20 + 100 * i, uniform=False) for i in range(5)]  # 80 px wide, 100 px per frame
    ch = run(engine(), walk)
    new = [c for c in ch if c.kind == "new"]
    assert [c.event.violation_class for c in new] == ["未穿工作服"]
    assert new[0].event.t_opened == 0.5 and new[0].event.t_start == 0.0  # decided at the second frame
    assert len(new[0].event.track_ids) == 1  # one person, one id, over all five frames
    # two different people far apart, each in view one frame, are not one person
    apart = [person(x=20, uniform=False), person(x=520, y=40, h=300, uniform=False)]
    assert not [c for c in run(engine(), apart) if c.kind == "new"]


def test_a_closeup_box_belongs_to_the_person_whose_crop_it_was_judged_on():
    """The back person holds the phone; their upper-body region also lies inside the smaller box
    of the person in front, which the centre rule would pick. The owner box decides."""
    back, front = (330, 20, 415, 290), (300, 90, 390, 300)
    region = (330, 20, 415, 210)  # its centre (372, 115) is inside both person boxes

    def frame():
        d = Detections.from_rows([("person", 0.9, *back), ("person", 0.9, *front), ("phone", 0.8, *region)])
        own = np.full((3, 4), np.nan, np.float32)
        own[2] = back
        return Detections(d.xyxy, d.conf, d.cls, own)

    eng = engine()
    out = []
    for i in range(3):
        t = i / 2
        out += eng.observe(t, DAY + dt.timedelta(seconds=t), IMG, frame())
    new = [c.event for c in out if c.kind == "new"]
    assert [e.violation_class for e in new] == ["玩手机"]
    holder = [tid for tid, s in eng.subjects.items() if tuple(np.round(s.box)) == back]
    assert new[0].track_ids == set(holder) and len(holder) == 1
    # without the owner, the centre rule gives it to the smaller front box
    eng2 = engine()
    out2 = []
    for i in range(3):
        t = i / 2
        d = frame()
        out2 += eng2.observe(t, DAY + dt.timedelta(seconds=t), IMG, Detections(d.xyxy, d.conf, d.cls))
    front_id = [tid for tid, s in eng2.subjects.items() if tuple(np.round(s.box)) == front]
    assert [c.event.track_ids for c in out2 if c.kind == "new"] == [set(front_id)]
