"""Line counting: scenario table, then properties over random trajectories."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camcount.counting import LineCounter, LineCounterState
from camcount.events import Direction
from camcount.geometry import Segment
from tests.core.tracks import CLASSES, path_frames, track_frame

LINE_Y = 100.0
BAND = 5.0


def make_counter(classes: tuple[str, ...] = ()) -> LineCounter:
    # Walking from (0, 100) to (200, 100): moving down (y grows) is "in".
    return LineCounter(
        "cam", "line", Segment((0, LINE_Y), (200, LINE_Y), BAND), CLASSES, classes=classes
    )


def vertical(x: float, ys: list[float | None]) -> list[tuple[float, float] | None]:
    return [None if y is None else (x, y) for y in ys]


def run(counter: LineCounter, frames) -> tuple[int, int]:
    events = [e for f in frames for e in counter.update(f)]
    ins = sum(e.direction is Direction.IN for e in events)
    return ins, len(events) - ins


SCENARIOS = [
    # (name, points, expected (in, out))
    ("straight down through the middle", vertical(100, [60, 80, 100, 120, 140]), (1, 0)),
    ("straight up", vertical(100, [140, 120, 100, 80, 60]), (0, 1)),
    ("jitter inside the band, then on", vertical(100, [80, 98, 103, 97, 104, 96, 120]), (1, 0)),
    ("stop and go on the line", vertical(100, [80, 100, 101, 99, 100, 102, 98, 100, 130]), (1, 0)),
    ("turns back inside the band", vertical(100, [60, 90, 104, 90, 60]), (0, 0)),
    ("crosses, then comes back", vertical(100, [60, 120, 140, 120, 80]), (1, 1)),
    ("three real passes", vertical(100, [60, 120, 60, 120]), (2, 1)),
    (
        "occluded while crossing, same id",
        vertical(100, [60, 80, None, None, None, 130, 150]),
        (1, 0),
    ),
    ("beyond the start point", vertical(-30, [60, 80, 100, 120, 140]), (0, 0)),
    ("beyond the end point", vertical(230, [60, 80, 100, 120, 140]), (0, 0)),
    ("first seen inside the band", vertical(100, [102, 110, 130]), (0, 0)),
    (
        "first seen on the far side (unsupported: nothing to cross)",
        vertical(100, [120, 140]),
        (0, 0),
    ),
]


@pytest.mark.parametrize(("name", "points", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_line_scenarios(name, points, expected):
    assert run(make_counter(), path_frames(points)) == expected


def test_counts_carry_the_class_and_respect_the_filter():
    frames = path_frames(vertical(100, [60, 80, 120]), cls=1)
    counter = make_counter()
    events = [e for f in frames for e in counter.update(f)]
    assert [(e.class_name, e.direction) for e in events] == [("car", Direction.IN)]
    assert counter.totals == {("car", "in"): 1}
    assert run(make_counter(classes=("person",)), frames) == (0, 0)


def test_two_tracks_are_counted_apart():
    counter = make_counter()
    frames = [
        track_frame(0, [(1, 50, 80), (2, 150, 120)]),
        track_frame(1, [(1, 50, 120), (2, 150, 80)]),
    ]
    events = [e for f in frames for e in counter.update(f)]
    assert sorted((e.track_id, e.direction.value) for e in events) == [(1, "in"), (2, "out")]


def test_memory_of_removed_tracks_is_freed():
    counter = make_counter()
    for i in range(50):
        counter.update(track_frame(2 * i, [(i, 100, 60)]))
        counter.update(track_frame(2 * i + 1, [], removed=[i]))
    assert counter.tracked_count == 0


def test_snapshot_and_restore_continue_identically():
    frames = path_frames(vertical(100, [60, 80, 99, 120, 140, 120, 60]))
    a = make_counter()
    for f in frames[:3]:
        a.update(f)
    state = a.snapshot()
    b = make_counter()
    b.restore(state)
    rest_a = [e for f in frames[3:] for e in a.update(f)]
    rest_b = [e for f in frames[3:] for e in b.update(f)]
    assert rest_a == rest_b and len(rest_a) == 2
    assert a.totals == b.totals


def test_near_the_frame_edge_a_line_still_counts():
    counter = LineCounter(
        "cam", "edge", Segment((0, 4), (200, 4), band_px=8), CLASSES, frame_size=(200, 100)
    )
    # The anchor can get no further up than y=0: the band above shrinks to 2 px.
    frames = path_frames(vertical(100, [30, 15, 6, 0, 0]))
    assert run(counter, frames) == (0, 1)


# ------------------------------------------------------------------ properties

offsets = st.lists(st.floats(min_value=-30, max_value=30, allow_nan=False), min_size=2, max_size=60)


def real_passes(ys: list[float]) -> tuple[int, int]:
    """Passes from beyond the band on one side to beyond it on the other."""
    side, ins, outs = 0, 0, 0
    for y in ys:
        s = -1 if y < LINE_Y - BAND else (1 if y > LINE_Y + BAND else 0)
        if s == 0:
            continue
        if side == -1 and s == 1:
            ins += 1
        elif side == 1 and s == -1:
            outs += 1
        side = s
    return ins, outs


@settings(max_examples=300, deadline=None)
@given(offsets)
def test_counts_exactly_once_per_real_pass(ds):
    ys = [LINE_Y + d for d in ds]
    assert run(make_counter(), path_frames(vertical(100, ys))) == real_passes(ys)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=-BAND + 0.01, max_value=BAND - 0.01), min_size=1, max_size=60))
def test_oscillating_inside_the_band_never_counts(ds):
    ys = [LINE_Y - 20] + [LINE_Y + d for d in ds]
    assert run(make_counter(), path_frames(vertical(100, ys))) == (0, 0)


@settings(max_examples=200, deadline=None)
@given(st.lists(offsets, min_size=1, max_size=6), st.integers(0, 2**32 - 1))
def test_in_minus_out_is_the_net_side_change(tracks, seed):
    rng = np.random.default_rng(seed)
    xs = rng.uniform(10, 190, size=len(tracks))
    n = max(len(t) for t in tracks)
    frames = [
        track_frame(
            i, [(tid + 1, xs[tid], LINE_Y + t[i]) for tid, t in enumerate(tracks) if i < len(t)]
        )
        for i in range(n)
    ]
    ins, outs = run(make_counter(), frames)
    net = 0
    for t in tracks:
        decided = [d for d in t if abs(d) > BAND]
        if decided:
            net += (decided[-1] > 0) - (decided[0] > 0)
    assert ins - outs == net


class DictCounter:
    """The counter's rule written plainly, one track at a time: the model the
    array-based LineCounter must agree with."""

    def __init__(self, segment: Segment) -> None:
        self.segment = segment
        self.side: dict[int, int] = {}
        self.point: dict[int, tuple[float, float]] = {}

    def update(self, frame) -> list[tuple[int, str]]:
        events = []
        d = frame.detections
        for tid, box in zip(d.tracker_id.tolist(), d.xyxy.astype(np.float64), strict=True):
            p = ((box[0] + box[2]) / 2, box[3])
            side = int(self.segment.sides(np.array([p]), BAND, BAND)[0])
            if side == 0:
                continue
            prev = self.side.get(tid, 0)
            move = (np.array([self.point.get(tid, p)]), np.array([p]))
            if prev and prev != side and self.segment.crossing_within(*move)[0]:
                events.append((tid, "in" if side > 0 else "out"))
            self.side[tid], self.point[tid] = side, p
        for tid in frame.removed_ids.tolist():
            self.side.pop(tid, None)
            self.point.pop(tid, None)
        return events


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_many_tracks_agree_with_the_plain_model(seed):
    rng = np.random.default_rng(seed)
    counter, model = make_counter(), DictCounter(make_counter().segment)
    alive = {int(i): float(x) for i, x in enumerate(rng.uniform(-40, 240, size=8))}
    next_id = len(alive)
    for i in range(40):
        removed = [t for t in list(alive) if rng.uniform() < 0.05]
        for t in removed:
            del alive[t]
        while len(alive) < 8:  # new ids, not always larger than the others
            alive[int(rng.integers(0, 10**6)) if rng.uniform() < 0.3 else next_id] = 100.0
            next_id += 1
        shown = [(t, x, LINE_Y + float(rng.normal(0, 25))) for t, x in alive.items()]
        shown = [r for r in shown if rng.uniform() > 0.2]  # some unseen this frame
        frame = track_frame(i, shown, removed=removed)
        got = sorted((e.track_id, e.direction.value) for e in counter.update(frame))
        assert got == sorted(model.update(frame))
        assert counter.tracked_count == len(model.side)
    state = counter.snapshot()
    assert state.track_ids.tolist() == sorted(model.side)
    assert state.sides.tolist() == [model.side[t] for t in sorted(model.side)]


def test_restore_accepts_tracks_in_any_order():
    counter = make_counter()
    state = LineCounterState(
        format_version=1,
        counter_id="line",
        track_ids=np.array([9, 2, 5]),
        sides=np.array([-1, 1, -1], dtype=np.int8),
        points=np.array([[100.0, 60.0], [100.0, 140.0], [100.0, 70.0]]),
        totals=(),
    )
    counter.restore(state)
    assert counter.snapshot().track_ids.tolist() == [2, 5, 9]
    events = counter.update(track_frame(0, [(9, 100, 130), (2, 100, 150), (5, 100, 60)]))
    assert [(e.track_id, e.direction) for e in events] == [(9, Direction.IN)]


def test_restoring_a_counter_that_remembers_no_track():
    empty = make_counter().snapshot()
    counter = make_counter()
    counter.restore(empty)
    assert run(counter, path_frames(vertical(100, [60, 80, 120]))) == (1, 0)
