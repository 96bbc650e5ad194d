"""The tracker on hand-built detections."""

from __future__ import annotations

import pickle
from dataclasses import fields

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from camcount.config import TrackerConfig
from camcount.detectors.detections import Detections
from camcount.vision import assignment, kalman
from camcount.vision.assignment import assign, iou_matrix, near_pairs, overlap_candidates
from camcount.vision.tracking import TENTATIVE, Tracker, TrackerSettings, TrackerState, TrackFrame


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


def test_low_confidence_keeps_a_track_alive_and_starts_one_only_once_it_moves():
    frames = [[(50 + 5 * i, 100, 0.9 if i < 5 else 0.3, 0)] for i in range(10)]
    out = walk(Tracker(), frames)
    assert [list(o.detections.tracker_id) for o in out[5:]] == [[1]] * 5
    # Weak boxes alone: one that stays put (jittering a pixel) never becomes a
    # track; one that walks 5 px a frame (its height a second) does, once it
    # has travelled a quarter of its height over weak_min_hits sightings.
    still = walk(Tracker(), [[(50 + i % 2, 100, 0.3, 0)] for i in range(30)])
    assert all(len(o.detections) == 0 for o in still)
    walking = walk(Tracker(), [[(50 + 5 * i, 100, 0.3, 0)] for i in range(10)])
    assert [len(o.detections) for o in walking] == [0, 0, 0] + [1] * 7


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


@pytest.mark.parametrize(
    ("bad", "name"),
    [
        ({"min_hits": 0}, "min_hits"),
        ({"weak_min_hits": 0}, "weak_min_hits"),
        ({"tentative_max_misses": -1}, "tentative_max_misses"),
        ({"match_distance": -0.5}, "match_distance"),
        ({"birth_distance": -1.0}, "birth_distance"),
        ({"max_size_ratio": 0.9}, "max_size_ratio"),
    ],
)
def test_invalid_settings_name_the_value(bad, name):
    with pytest.raises(ValueError, match=name):
        TrackerSettings(**bad)


def test_every_tracker_setting_but_fps_is_configurable_with_the_same_default():
    names = {f.name for f in fields(TrackerSettings)} - {"fps"}
    assert set(TrackerConfig.model_fields) == names
    assert TrackerSettings(**TrackerConfig().model_dump()) == TrackerSettings()


def fast_weak_and_flickering(i: int) -> list[tuple[float, float, float, int]]:
    """A frame of tracks in every state a snapshot can catch: a car seen
    once, then matched by distance; people with scores below
    new_track_threshold; sightings missed now and then."""
    rows = [(30 + 120 * i, 300, 0.9, 1)]  # 120 px/frame: no overlap from frame to frame
    if i % 4 != 2:
        rows.append((50 + 4 * i, 100, 0.55, 0))  # weak: confirms after weak_min_hits
    if i % 5 != 1:
        rows.append((400 - 3 * i, 200, 0.9 if i % 2 else 0.35, 0))
    return rows


def test_snapshot_restore_mid_chain_gives_identical_output():
    """A tracker restored from any frame, through pickle as checkpoints
    store it, confirms the same tracks at the same frames with the same ids."""
    frames = [fast_weak_and_flickering(i) for i in range(10)]
    reference = walk(Tracker(), frames)
    assert {int(t) for o in reference for t in o.detections.tracker_id} == {1, 2, 3}
    for cut in range(1, len(frames)):
        a = Tracker()
        walk(a, frames[:cut])
        state = pickle.loads(pickle.dumps(a.snapshot(), protocol=5))
        assert state.chain is not None
        b = Tracker.from_state(state)
        np.testing.assert_array_equal(b.snapshot().chain, state.chain)
        for i in range(cut, len(frames)):
            ob = b.update(dets(frames[i]), i, i / 10)
            np.testing.assert_array_equal(
                ob.detections.tracker_id, reference[i].detections.tracker_id
            )
            np.testing.assert_allclose(ob.detections.xyxy, reference[i].detections.xyxy)


def test_a_state_saved_before_chains_existed_still_loads():
    """States of the earlier format have no chain, and settings pickled
    without the fields added since. A tentative track of that format was
    fed confident overlaps only, so its chain is its hit count, and it
    confirms when it would have."""
    tracker = Tracker(TrackerSettings(min_hits=3))
    walk(tracker, [[(50 + 5 * i, 100, 0.9, 0)] for i in range(2)])
    state = tracker.snapshot()
    assert state.status.tolist() == [TENTATIVE] and state.hits.tolist() == [2]
    old_settings = TrackerSettings.__new__(TrackerSettings)
    old_settings.__setstate__(state.settings.__getstate__()[:12])  # the fields up to fps
    assert old_settings == TrackerSettings(min_hits=3)
    old = object.__new__(TrackerState)
    old.__dict__.update({k: v for k, v in vars(state).items() if k != "chain"})
    object.__setattr__(old, "settings", old_settings)
    loaded = pickle.loads(pickle.dumps(old, protocol=5))
    assert loaded.chain is None
    restored = Tracker.from_state(loaded)
    out = restored.update(dets([(60, 100, 0.9, 0)]), 2, 0.2)
    assert out.detections.tracker_id.tolist() == [1]


# ------------------------------------------------- the fast paths vs the plain ones


def random_boxes(rng: np.random.Generator, n: int, spread: float = 400.0) -> np.ndarray:
    xy = rng.uniform(0, spread, size=(n, 2))
    wh = rng.uniform(5, 80, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def test_block_kalman_matches_the_matrix_form():
    rng = np.random.default_rng(1)
    z = kalman.xyxy_to_xyah(random_boxes(rng, 40))
    mean, cov = kalman.initiate(z)
    b_mean, blocks = kalman.initiate_blocks(z)
    np.testing.assert_array_equal(kalman.blocks_to_full(blocks), cov)
    for _ in range(40):
        dt = float(rng.choice([1.0, 0.999, 2.0, 3.5]))  # dropped frames: irregular steps
        mean, cov = kalman.predict(mean, cov, dt)
        b_mean, blocks = kalman.predict_blocks(b_mean, blocks, dt)
        z = mean[:, :4] + rng.normal(0, 3, size=(40, 4))
        mean, cov = kalman.update(mean, cov, z)
        b_mean, blocks = kalman.update_blocks(b_mean, blocks, z)
    np.testing.assert_allclose(b_mean, mean, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(kalman.blocks_to_full(blocks), cov, rtol=1e-10, atol=1e-12)
    # Off-block entries of the matrix form stay exactly zero: the block form loses nothing.
    np.testing.assert_array_equal(kalman.blocks_to_full(kalman.full_to_blocks(cov)) == 0, cov == 0)


def test_a_track_started_from_two_sightings_predicts_the_third():
    first = kalman.xyxy_to_xyah(np.array([[0.0, 0.0, 60.0, 30.0]]))
    second = kalman.xyxy_to_xyah(np.array([[400.0, 20.0, 460.0, 50.0]]))  # two frames later
    mean, cov = kalman.initiate_moving_blocks(first, second, [2.0])
    mean, _ = kalman.predict_blocks(mean, cov, 1.0)
    np.testing.assert_allclose(kalman.xyah_to_xyxy(mean[:, :4]), [[600.0, 30.0, 660.0, 60.0]])


def test_iou_of_known_boxes():
    a = np.array([[0.0, 0.0, 10.0, 10.0]])
    b = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])
    # Buffered by half their size on every side, all become 20x20: the neighbour
    # overlaps on 15x20 (union 400 + 400 - 300), the far box only touches.
    np.testing.assert_allclose(iou_matrix(a, b[2:], np.array([0.5])), [[0.0]])
    np.testing.assert_allclose(iou_matrix(a, b[1:2], np.array([0.5])), [[300 / 500]])


def test_overlap_candidates_contain_every_overlapping_pair(monkeypatch):
    monkeypatch.setattr(assignment, "ALL_PAIRS_UP_TO", 0)  # always the sweep
    rng = np.random.default_rng(2)
    for _ in range(20):
        a, b = random_boxes(rng, 60), random_boxes(rng, 50)
        a[:3, [0, 2]] = a[:3, [2, 0]]  # a few inverted and empty boxes too
        b[:2, 2] = b[:2, 0]
        buffer = rng.uniform(-0.3, 0.7, size=len(a))
        rows, cols = overlap_candidates(a, buffer, b, float(np.abs(buffer).max()))
        assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == len(rows)
        found = np.zeros((len(a), len(b)), dtype=bool)
        found[rows, cols] = True
        for k in (buffer, np.zeros(len(a))):
            positive = iou_matrix(a, b, k) > 0
            assert not (positive & ~found).any()
        assert found.sum() < found.size / 4  # and it does prune


def test_near_pairs_contain_every_pair_within_the_radius(monkeypatch):
    monkeypatch.setattr(assignment, "ALL_PAIRS_UP_TO", 0)  # always the sweep
    rng = np.random.default_rng(6)
    for _ in range(20):
        a, b = rng.uniform(0, 500, size=(70, 2)), rng.uniform(0, 500, size=(60, 2))
        radius = rng.uniform(0, 60, size=len(a))
        rows, cols = near_pairs(a, radius, b)
        found = np.zeros((len(a), len(b)), dtype=bool)
        found[rows, cols] = True
        near = np.hypot(*(a[:, None] - b[None]).transpose(2, 0, 1)) <= radius[:, None]
        assert not (near & ~found).any()
        assert found.sum() < found.size / 4


def test_assign_is_the_best_matching_over_the_gated_pairs():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n, m = rng.integers(1, 9, size=2)
        sim = rng.uniform(0, 1, size=(n, m)) * (rng.uniform(size=(n, m)) < 0.4)
        r, c = assign(sim, 0.2)
        assert len(set(r.tolist())) == len(r) and len(set(c.tolist())) == len(c)
        assert (sim[r, c] >= 0.2).all()
        # The whole matrix in one problem, same rule: most pairs, then most similarity.
        cost = np.where(sim >= 0.2, -sim, 1e6)
        wr, wc = linear_sum_assignment(cost)
        ok = sim[wr, wc] >= 0.2
        assert sorted(zip(r.tolist(), c.tolist(), strict=True)) == sorted(
            zip(wr[ok].tolist(), wc[ok].tolist(), strict=True)
        )


def crowd(seed: int, n: int = 60, frames: int = 40) -> list[Detections]:
    """Jittery boxes moving in random directions, close enough to compete."""
    rng = np.random.default_rng(seed)
    start = random_boxes(rng, n, spread=300)
    step = rng.normal(0, 4, size=(n, 2))
    out = []
    for i in range(frames):
        seen = rng.uniform(size=n) > 0.15
        boxes = start[seen] + np.tile(step[seen] * i, 2) + rng.normal(0, 3, size=(seen.sum(), 4))
        conf = rng.uniform(0.2, 0.95, size=len(boxes))
        out.append(Detections.from_arrays(boxes, conf, rng.integers(0, 2, size=len(boxes))))
    return out


def test_sweep_and_all_pairs_give_the_same_tracks(monkeypatch):
    def run(limit: int) -> list[TrackFrame]:
        monkeypatch.setattr(assignment, "ALL_PAIRS_UP_TO", limit)
        t = Tracker()
        return [t.update(d, i, i / 10) for i, d in enumerate(crowd(4))]

    sweep, every = run(0), run(10**9)
    assert sum(len(o.detections) for o in sweep) > 500
    for a, b in zip(sweep, every, strict=True):
        np.testing.assert_array_equal(a.detections.tracker_id, b.detections.tracker_id)
        np.testing.assert_array_equal(a.detections.xyxy, b.detections.xyxy)
        np.testing.assert_array_equal(a.lost_ids, b.lost_ids)
        np.testing.assert_array_equal(a.removed_ids, b.removed_ids)


def test_snapshot_holds_full_covariances_and_restores_them():
    t = Tracker()
    for i, d in enumerate(crowd(5, n=10, frames=5)):
        t.update(d, i, i / 10)
    state = t.snapshot()
    assert state.cov.shape == (t.track_count, 8, 8)
    np.testing.assert_array_equal(state.cov, np.transpose(state.cov, (0, 2, 1)))
    np.testing.assert_array_equal(Tracker.from_state(state).snapshot().cov, state.cov)


def test_contested_groups_of_everyday_size_never_load_scipy():
    """Camera processes stay ~50 MB lighter: groups of a few competing
    tracks are solved exactly without scipy; only a crowd brings it in."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from camcount.vision.assignment import assign\n"
        "rng = np.random.default_rng(1)\n"
        "for _ in range(300):\n"
        "    n, m = rng.integers(2, 7, size=2)\n"
        "    assign(rng.uniform(0.3, 1, size=(n, m)), 0.2)\n"
        "print('scipy.optimize' in sys.modules)\n"
        "assign(rng.uniform(0.3, 1, size=(12, 12)), 0.2)\n"
        "print('scipy.optimize' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
