"""The motion gate: an empty kitchen sends the detector only its heartbeat frames, a rat running
across the empty kitchen is motion, and a person is."""
from __future__ import annotations

import numpy as np
import pytest

from workbench.canteen.motion import MotionGate
from workbench.canteen.sources import VideoFileSource
from workbench.canteen.synthkitchen import make_video


def _motion(path, fps=2.0):
    gate = MotionGate()
    return [(f.t, gate.motion(f.image)) for f in VideoFileSource("cam", str(path), fps).frames()], gate


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("motion")
    night = {"clock_start": "2026-11-26T23:00:00+08:00", "actors": [
        {"track_id": 101, "kind": "rodent", "enter_s": 6.0, "leave_s": 9.5, "violations": {"老鼠": [(6.0, 9.5)]}}]}
    quiet = {"clock_start": "2026-11-26T14:00:00+08:00", "actors": []}
    walk = {"clock_start": "2026-11-26T10:00:00+08:00", "actors": [
        {"track_id": 1, "kind": "person", "enter_s": 4.0, "leave_s": 12.0, "violations": {}}]}
    return {name: make_video(d / f"{name}.mp4", seconds=14, fps=10, seed=5, scenario=sc).path
            for name, sc in (("night_rat", night), ("quiet", quiet), ("walk", walk))}


def test_an_empty_kitchen_is_still_and_only_the_heartbeat_reaches_the_detector(clips):
    series, _ = _motion(clips["quiet"])
    assert max(m for t, m in series[1:]) < MotionGate().threshold  # sensor noise is not motion
    gate = MotionGate(heartbeat_s=10.0)
    passed = [f.t for f in VideoFileSource("cam", str(clips["quiet"]), 2.0).frames()
              if gate.decide(f.image, f.t, busy=False)]
    assert passed == [0.0, 10.0]  # the first frame, then one every 10 s


def test_a_rat_running_across_an_empty_kitchen_at_night_is_motion(clips):
    series, gate = _motion(clips["night_rat"])
    during = [m for t, m in series if 6.5 <= t <= 9.0]
    before = [m for t, m in series[1:] if t < 5.5]
    assert max(before) < gate.threshold
    assert sum(m >= gate.threshold for m in during) >= len(during) - 1, during


def test_a_walking_person_is_motion_and_the_gate_follows_it(clips):
    series, gate = _motion(clips["walk"])
    moving = [m for t, m in series if 5.0 <= t <= 11.0]
    assert np.mean([m >= gate.threshold for m in moving]) > 0.8
