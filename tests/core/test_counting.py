"""Line counting: scenario table, then properties over random trajectories."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camcount.config import CameraConfig, LineConfig, TrackerConfig, ZoneConfig
from camcount.errors import GeometryError
from camcount.events import Crossing, Direction
from camcount.geometry import Segment
from camcount.vision.counting import LineCounter, LineCounterState
from camcount.vision.processor import CameraProcessor
from tests.core.tracks import CLASSES, detections_along, path_frames, track_frame

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


# ------------------------------------------------------------------ frame edges

FRAME = (1280, 720)
W, H = FRAME
PERSON = (60, 160)  # width, height of the object's whole box
# Lines 2 px inside each edge, oriented so that the picture is side B and
# the strip beyond the line side A: leaving the picture is "out".
EDGE_LINES = {
    "left": ((2, H), (2, 0)),
    "top": ((0, 2), (W, 2)),
    "right": ((W - 2, 0), (W - 2, H)),
    "bottom": ((W, H - 2), (0, H - 2)),
}


def leaving(edge: str, speed: float = 8, frames: int = 60) -> list[tuple[float, float]]:
    """Box centres walking from inside the picture out through ``edge``."""
    start = {"left": (250, 400), "top": (600, 250), "right": (W - 250, 400), "bottom": (600, 470)}
    step = {"left": (-1, 0), "top": (0, -1), "right": (1, 0), "bottom": (0, 1)}
    (x, y), (dx, dy) = start[edge], step[edge]
    return [(x + dx * speed * i, y + dy * speed * i) for i in range(frames)]


def count_detections(
    line: tuple[tuple[float, float], tuple[float, float]],
    centres: list[tuple[float, float]],
    anchor: str = "bottom_center",
    min_visible_px: float = 12,
) -> list[Crossing]:
    """What ``camcount count`` does with one object's detections: the
    camera's processor filters, tracks and counts them."""
    camera = CameraConfig(
        id="cam", source="v.mp4", lines=(LineConfig(id="edge", points=line, anchor=anchor),)
    )
    processor = CameraProcessor(camera, TrackerConfig(), CLASSES, FRAME, fps=10.0)
    events = []
    for i, dets in enumerate(detections_along(centres, PERSON, FRAME, min_visible_px)):
        events += processor.process(dets, i, i / 10)
    return [e for e in events if isinstance(e, Crossing)]


def flicker_at_left_edge() -> list[tuple[float, float]]:
    walk_in = [(250 - 10 * i, 400) for i in range(23)]  # the box reaches x=0 at the end
    flicker = [(30 + 2 * (i % 2), 400) for i in range(12)]  # its left side at 0, 2, 0, 2...
    return walk_in + flicker + walk_in[::-1]


# fmt: off
EDGE_SCENARIOS = [
    # (name, line, box centres, anchor, smallest box the detector sees, (in, out))
    *[
        (f"{e}: leaves through the edge", EDGE_LINES[e], leaving(e), "bottom_center", 12, (0, 1))
        for e in ("left", "right", "bottom")
    ],
    *[
        (f"{e}: comes in from the edge", EDGE_LINES[e], leaving(e)[::-1], "bottom_center", 12,
         (1, 0))
        for e in ("left", "right", "bottom")
    ],
    # At the top the bottom centre (the feet) is in sight: it counts once
    # seen within the band of the line, as here where the detector sees the
    # box down to 4 px.
    ("top: feet leave through the edge", EDGE_LINES["top"], leaving("top", 4, 120),
     "bottom_center", 4, (0, 1)),
    ("top: feet come in from the edge", EDGE_LINES["top"], leaving("top", 4, 120)[::-1],
     "bottom_center", 4, (1, 0)),
    # The centre of a box the top edge cuts is out of sight: the edge decides.
    ("top, centre: leaves", EDGE_LINES["top"], leaving("top"), "center", 12, (0, 1)),
    ("top, centre: comes in", EDGE_LINES["top"], leaving("top")[::-1], "center", 12, (1, 0)),
    ("left, centre: leaves", EDGE_LINES["left"], leaving("left"), "center", 12, (0, 1)),
    ("right, top centre: comes in", EDGE_LINES["right"], leaving("right")[::-1], "top_center",
     12, (1, 0)),
    # A person whose head the top edge cuts is where their feet are.
    ("top: head cut, walks down", EDGE_LINES["top"], [(600, 60 + 8 * i) for i in range(40)],
     "bottom_center", 12, (0, 0)),
    ("left: walks along the edge, cut by it", EDGE_LINES["left"],
     [(20, 200 + 8 * i) for i in range(40)], "bottom_center", 12, (0, 0)),
    ("left: leaves beyond the line's end", ((2, 300), (2, 0)), leaving("left"), "bottom_center",
     12, (0, 0)),
    ("left: box edge flickers on the frame edge, then walks back", EDGE_LINES["left"],
     flicker_at_left_edge(), "bottom_center", 12, (1, 1)),
]
# fmt: on


@pytest.mark.parametrize(
    ("name", "line", "centres", "anchor", "min_visible", "expected"),
    EDGE_SCENARIOS,
    ids=[s[0] for s in EDGE_SCENARIOS],
)
def test_lines_2px_from_the_frame_edge_count(name, line, centres, anchor, min_visible, expected):
    crossings = count_detections(line, centres, anchor, min_visible)
    ins = sum(c.direction is Direction.IN for c in crossings)
    assert (ins, len(crossings) - ins) == expected


def test_a_crossing_at_the_edge_reports_the_anchor_and_the_frame_it_left_in():
    (crossing,) = count_detections(EDGE_LINES["left"], leaving("left"))
    # The box first reaches the left edge at frame 28 (its centre at x=26).
    assert crossing.frame_index == 28 and crossing.direction is Direction.OUT
    assert crossing.anchor_y == pytest.approx(480, abs=1)
    assert 0 < crossing.anchor_x < 60  # the box's own anchor, in the picture


def test_a_region_of_interest_on_the_frame_keeps_boxes_cut_by_its_edge():
    camera = CameraConfig(
        id="cam",
        source="v.mp4",
        coordinates="normalized",
        roi=((0, 0), (1, 0), (1, 1), (0, 1)),
        lines=(LineConfig(id="edge", points=((1, 718 / H), (0, 718 / H))),),
    )
    processor = CameraProcessor(camera, TrackerConfig(), CLASSES, FRAME, fps=10.0)
    events = []
    for i, dets in enumerate(detections_along(leaving("bottom"), PERSON, FRAME, 12)):
        events += processor.process(dets, i, i / 10)
    assert [e.direction for e in events if isinstance(e, Crossing)] == [Direction.OUT]


@pytest.mark.parametrize(
    ("camera", "message", "loc"),
    [
        (
            {"lines": [{"id": "door", "points": [[1300, 0], [1400, 720]]}]},
            r"camera 'cam', line 'door' \(1280x720 frame\): the line from \(1300, 0\) to "
            r"\(1400, 720\) lies wholly outside the frame",
            ("lines", 0, "points"),
        ),
        (
            # pixels given where normalised coordinates were declared
            {"coordinates": "normalized", "lines": [{"id": "door", "points": [[0, 2], [1, 2]]}]},
            r"camera 'cam', line 'door' \(1280x720 frame\).*outside the frame",
            ("lines", 0, "points"),
        ),
        (
            {"zones": [{"id": "queue", "polygon": [[0, -50], [100, -50], [100, -10]]}]},
            r"camera 'cam', zone 'queue' \(1280x720 frame\): the polygon .* lies wholly outside",
            ("zones", 0, "polygon"),
        ),
        (
            {"roi": [[-30, 0], [-10, 0], [-10, 720]]},
            r"camera 'cam', roi \(1280x720 frame\): .*outside the frame",
            ("roi",),
        ),
    ],
)
def test_geometry_wholly_outside_the_frame_is_refused_when_the_camera_starts(camera, message, loc):
    config = CameraConfig.model_validate({"id": "cam", "source": "v.mp4", **camera})
    with pytest.raises(GeometryError, match=message) as refused:
        CameraProcessor(config, TrackerConfig(), CLASSES, FRAME, fps=10.0)
    assert refused.value.loc == loc  # where in the config, for the REST API's 422


def test_geometry_partly_in_the_frame_is_kept():
    config = CameraConfig(
        id="cam",
        source="v.mp4",
        lines=(LineConfig(id="door", points=((-100, 300), (100, 300))),),
        zones=(ZoneConfig(id="queue", polygon=((1200, 600), (1400, 600), (1400, 800))),),
    )
    processor = CameraProcessor(config, TrackerConfig(), CLASSES, FRAME, fps=10.0)
    assert len(processor.lines) == len(processor.zones) == 1


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
