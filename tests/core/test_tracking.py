"""The tracker on hand-built detections."""

from __future__ import annotations

import numpy as np
import pytest

from camcount.detections import Detections
from camcount.tracking import Tracker, TrackerSettings


def box(x: float, y: float, w: float = 20, h: float = 50) -> list[float]:
    return [x - w / 2, y - h, x + w / 2, y]


def dets(rows: list[tuple[float, float, float, int]]) -> Detections:
    """rows of (x, y, confidence, class id)."""
    return Detections.from_arrays(
        np.array([box(x, y) for x, y, _, _ in rows]).reshape(-1, 4),
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


def walk(tracker: Tracker, frames: list[list[tuple[float, float, float, int]]], fps: float = 10.0):
    return [tracker.update(dets(rows), i, i / fps) for i, rows in enumerate(frames)]


def test_a_track_is_confirmed_after_min_hits_and_keeps_its_id():
    out = walk(
        Tracker(TrackerSettings(min_hits=3)), [[(50 + 5 * i, 100, 0.9, 0)] for i in range(10)]
    )
    assert [len(o.detections) for o in out[:3]] == [0, 0, 1]
    assert {int(i) for o in out[2:] for i in o.detections.tracker_id} == {1}


def test_an_occluded_object_keeps_its_id_within_the_lost_buffer():
    frames = [[(50 + 5 * i, 100, 0.9, 0)] if not 10 <= i < 18 else [] for i in range(30)]
    out = walk(Tracker(TrackerSettings(lost_track_buffer_s=1.0)), frames)
    assert {int(i) for o in out for i in o.detections.tracker_id} == {1}
    assert all(list(o.lost_ids) == [1] for o in out[10:18])


def test_after_the_lost_buffer_the_track_is_removed_and_a_new_id_starts():
    frames = [[(50 + 5 * i, 100, 0.9, 0)] if not 10 <= i < 25 else [] for i in range(30)]
    out = walk(Tracker(TrackerSettings(lost_track_buffer_s=1.0)), frames)
    removed = [int(i) for o in out for i in o.removed_ids]
    assert removed == [1]
    assert {int(i) for o in out[26:] for i in o.detections.tracker_id} == {2}


def test_low_confidence_keeps_a_track_alive_but_never_starts_one():
    frames = [[(50 + 5 * i, 100, 0.9 if i < 5 else 0.3, 0)] for i in range(10)]
    out = walk(Tracker(), frames)
    assert [list(o.detections.tracker_id) for o in out[5:]] == [[1]] * 5
    weak_only = walk(Tracker(), [[(50 + 5 * i, 100, 0.3, 0)] for i in range(10)])
    assert all(len(o.detections) == 0 for o in weak_only)


def test_one_misclassified_frame_does_not_change_the_class():
    frames = [[(50 + 5 * i, 100, 0.9, 1 if i == 6 else 0)] for i in range(10)]
    out = walk(Tracker(), frames)
    assert all(list(o.detections.class_id) == [0] for o in out[1:])


def test_false_positives_never_confirm():
    rng = np.random.default_rng(3)
    frames = [
        [(float(rng.uniform(0, 600)), float(rng.uniform(60, 400)), 0.65, 0)] for _ in range(50)
    ]
    out = walk(Tracker(), frames)
    assert all(len(o.detections) == 0 for o in out)


def test_ids_belong_to_each_tracker_instance():
    frames = [[(50 + 5 * i, 100, 0.9, 0), (300, 100 + 3 * i, 0.9, 1)] for i in range(5)]
    a = walk(Tracker(), frames)
    b = walk(Tracker(), frames)
    assert [list(o.detections.tracker_id) for o in a] == [list(o.detections.tracker_id) for o in b]


def test_memory_returns_to_zero_when_everyone_has_left():
    tracker = Tracker(TrackerSettings(lost_track_buffer_s=0.5))
    frames = [
        [(50 + 5 * i, 100 + 20 * k, 0.9, 0) for k in range(5)] if i < 10 else [] for i in range(30)
    ]
    walk(tracker, frames)
    assert tracker.track_count == 0


def test_snapshot_restore_gives_identical_output():
    rng = np.random.default_rng(0)
    frames = [
        [(50 + 5 * i + float(rng.normal(0, 1)), 100 + 40 * k, 0.9, k % 2) for k in range(4)]
        for i in range(20)
    ]
    a = Tracker()
    walk(a, frames[:8])
    b = Tracker.from_state(a.snapshot())
    for i, rows in enumerate(frames[8:], start=8):
        oa = a.update(dets(rows), i, i / 10)
        ob = b.update(dets(rows), i, i / 10)
        np.testing.assert_array_equal(oa.detections.tracker_id, ob.detections.tracker_id)
        np.testing.assert_allclose(oa.detections.xyxy, ob.detections.xyxy)


def test_snapshot_is_a_copy():
    t = Tracker()
    walk(t, [[(50, 100, 0.9, 0)]] * 3)
    state = t.snapshot()
    before = state.mean.copy()
    t.update(dets([(80, 100, 0.9, 0)]), 3, 0.3)
    np.testing.assert_array_equal(state.mean, before)


def test_time_going_backwards_is_refused():
    t = Tracker()
    t.update(Detections.empty(), 0, 1.0)
    with pytest.raises(ValueError, match="backwards"):
        t.update(Detections.empty(), 1, 0.5)


def test_invalid_settings_name_the_value():
    with pytest.raises(ValueError, match="min_hits"):
        TrackerSettings(min_hits=0)
