"""Tracking scenarios on hand-built detection sequences, counted as
``camcount count`` counts them: detections through ``CameraProcessor``
(tracker, then line counters), identities through a tracker with the same
settings. One row per scenario, with what it expects and why.

The objects are boxes moving at constant speed; what varies is what a real
detector does to them: speed beyond the box's own size, missed frames,
scores that hover around the thresholds, neighbours close enough to steal a
detection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from camcount.config import CameraConfig, LineConfig, TrackerConfig, ZoneConfig
from camcount.detectors.detections import Detections
from camcount.events import Crossing, ZoneSample
from camcount.vision.processor import CameraProcessor
from camcount.vision.tracking import Tracker, TrackerSettings, TrackFrame

CLASSES = ("person", "car")
PERSON, CAR = 0, 1
HD = (1280, 720)
FPS = 10.0

Score = Callable[[int], float | None]


def always(score: float) -> Score:
    return lambda _: score


def missing_every(n: int, phase: int = 1, score: float = 0.9) -> Score:
    """Seen at ``score``, missed on every n-th frame from ``phase`` on."""
    return lambda i: None if i % n == phase % n else score


def weak(seed: int, miss_rate: float = 0.15) -> Score:
    """Scores drawn from 0.3 to 0.6, as a detector gives small distant
    people, with seeded misses; never two misses in a row, so no gap is
    longer than one frame."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.3, 0.6, size=1000)
    missed = rng.uniform(size=1000) < miss_rate
    missed[1:] &= ~missed[:-1]
    return lambda i: None if missed[i] else float(scores[i])


@dataclass(frozen=True)
class Mover:
    """One object: its bottom centre at frame ``first``, its step in pixels
    per frame, its box size, class and score per frame (None: missed)."""

    start: tuple[float, float]
    step: tuple[float, float]
    size: tuple[float, float]
    cls: int = PERSON
    score: Score = field(default=always(0.9))
    first: int = 0

    def bottom(self, i: int) -> tuple[float, float]:
        k = i - self.first
        return self.start[0] + k * self.step[0], self.start[1] + k * self.step[1]

    def box(self, i: int) -> list[float]:
        x, y = self.bottom(i)
        w, h = self.size
        return [x - w / 2, y - h, x + w / 2, y]


def detections(
    movers: Sequence[Mover], frames: int, frame_size: tuple[int, int], jitter: float = 0.0
) -> list[Detections]:
    """Each frame's boxes: the movers seen that frame and wholly inside it,
    edges jittered by ``jitter`` px (seeded)."""
    rng = np.random.default_rng(12)
    w, h = frame_size
    out = []
    for i in range(frames):
        boxes, scores, classes = [], [], []
        for m in movers:
            b = np.array(m.box(i)) + rng.normal(0, jitter, size=4) if jitter else m.box(i)
            s = m.score(i) if i >= m.first else None
            if s is None or b[0] < 0 or b[1] < 0 or b[2] > w or b[3] > h:
                continue
            boxes.append(b)
            scores.append(s)
            classes.append(m.cls)
        out.append(Detections.from_arrays(np.reshape(boxes, (-1, 4)), scores, classes))
    return out


@dataclass(frozen=True)
class Outcome:
    crossings: list[Crossing]
    frames: list[TrackFrame]

    @property
    def counts(self) -> tuple[int, int]:
        ins = sum(c.direction.value == "in" for c in self.crossings)
        return ins, len(self.crossings) - ins

    def paths(self) -> dict[int, list[tuple[int, float, float]]]:
        """Per track id: (frame, bottom centre x, y) of every frame it is output."""
        out: dict[int, list[tuple[int, float, float]]] = {}
        for f in self.frames:
            d = f.detections
            for tid, b in zip(d.tracker_id.tolist(), d.xyxy.tolist(), strict=True):
                out.setdefault(tid, []).append((f.frame_index, (b[0] + b[2]) / 2, b[3]))
        return out


def run(
    movers: Sequence[Mover],
    lines: Sequence[tuple[tuple[float, float], tuple[float, float]]],
    frames: int,
    frame_size: tuple[int, int] = HD,
    tracker: TrackerConfig | None = None,
    jitter: float = 0.0,
    fps: float = FPS,
) -> Outcome:
    config = tracker or TrackerConfig()
    camera = CameraConfig(
        id="cam",
        source="scenario.mp4",
        lines=tuple(LineConfig(id=f"line-{k}", points=p) for k, p in enumerate(lines)),
    )
    processor = CameraProcessor(camera, config, CLASSES, frame_size, fps)
    seen = Tracker(TrackerSettings(**config.model_dump(), fps=fps))
    crossings, out = [], []
    for i, d in enumerate(detections(movers, frames, frame_size, jitter)):
        events = processor.process(d, i, i / fps)
        crossings.extend(e for e in events if isinstance(e, Crossing))
        out.append(seen.update(d, i, i / fps))
    return Outcome(crossings, out)


def owner(movers: Sequence[Mover], frame: int, x: float, y: float) -> int | None:
    """The mover whose true bottom centre is nearest (x, y) in that frame;
    None where two are about as near (while they overlap, any box is as
    much one's as the other's)."""
    d = np.array([np.hypot(m.bottom(frame)[0] - x, m.bottom(frame)[1] - y) for m in movers])
    order = np.argsort(d)
    widths = min(m.size[0] for m in movers)
    if len(d) > 1 and d[order[1]] - d[order[0]] < widths / 2:
        return None
    return int(order[0])


def identities(movers: Sequence[Mover], outcome: Outcome) -> dict[int, set[int]]:
    """Per mover, the track ids seen nearest to it; one id per mover and one
    mover per id means no identity ever moved from one object to another."""
    ids: dict[int, set[int]] = {k: set() for k in range(len(movers))}
    for tid, path in outcome.paths().items():
        owners = {owner(movers, f, x, y) for f, x, y in path} - {None}
        assert len(owners) == 1, f"track {tid} followed movers {owners}: {path}"
        ids[owners.pop()].add(tid)
    return ids


def monotonic(values: Sequence[float]) -> bool:
    steps = np.diff(values)
    return bool((steps >= 0).all() or (steps <= 0).all())


# ------------------------------------------------------------------ fast objects


def vertical_line(x: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Drawn top to bottom: walking down it, rightwards in the image is the
    walker's right to left, so an object moving rightwards counts ``out``."""
    return (x, 0.0), (x, 720.0)


CAR_BOX = (120.0, 60.0)
PERSON_BOX = (50.0, 120.0)

FAST = [
    # (name, speed px/frame, box, class, sampling fps, line x). Boxes that no
    # longer overlap from one frame to the next: the first match is by
    # distance, and such a track confirms at its third sighting (lines
    # crossed before that: the test after this one).
    ("car at 100 px/frame", 100.0, CAR_BOX, CAR, 10.0, 640.0),
    ("car at 200 px/frame", 200.0, CAR_BOX, CAR, 10.0, 640.0),
    ("car at 300 px/frame", 300.0, CAR_BOX, CAR, 10.0, 900.0),
    ("car at 300 px/frame sampled at 2 fps", 300.0, CAR_BOX, CAR, 2.0, 900.0),
    ("person at 200 px/frame sampled at 2 fps", 200.0, PERSON_BOX, PERSON, 2.0, 640.0),
    ("person at 300 px/frame", 300.0, PERSON_BOX, PERSON, 10.0, 900.0),
    ("car at 30 px/frame (boxes overlap)", 30.0, CAR_BOX, CAR, 10.0, 640.0),
]


@pytest.mark.parametrize(
    ("name", "speed", "size", "cls", "fps", "line_x"), FAST, ids=[f[0] for f in FAST]
)
@pytest.mark.parametrize("direction", [1, -1], ids=["rightwards", "leftwards"])
def test_fast_objects_are_counted_once_in_their_direction(
    name, speed, size, cls, fps, line_x, direction
):
    w = size[0]
    start_x = w / 2 + 5 if direction > 0 else HD[0] - w / 2 - 5
    line = line_x if direction > 0 else HD[0] - line_x
    frames = int((HD[0] - w) / speed) + 2
    mover = Mover((start_x, 400.0), (direction * speed, 0.0), size, cls)
    outcome = run([mover], [vertical_line(line)], frames, fps=fps)
    assert outcome.counts == ((0, 1) if direction > 0 else (1, 0))
    assert [c.class_name for c in outcome.crossings] == [CLASSES[cls]]
    assert len(outcome.paths()) == 1


def test_two_fast_cars_in_neighbouring_lanes_keep_their_lanes():
    """Side by side at 200 px/frame, one lane (a box height and a half)
    apart: every match is by the predicted position, and each track stays
    on its own car."""
    cars = [
        Mover((65.0, 300.0), (200.0, 0.0), CAR_BOX, CAR),
        Mover((65.0, 390.0), (200.0, 0.0), CAR_BOX, CAR, score=missing_every(4, 3)),
    ]
    outcome = run(cars, [vertical_line(700.0)], 7, jitter=3.0)
    assert outcome.counts == (0, 2)
    assert all(len(v) == 1 for v in identities(cars, outcome).values())


@pytest.mark.parametrize("line_x", [200.0, 500.0], ids=["after 1st sighting", "after 2nd"])
@pytest.mark.parametrize("direction", [1, -1], ids=["rightwards", "leftwards"])
def test_a_fast_object_crossing_before_its_track_is_confirmed_counts_once(line_x, direction):
    """Sightings that do not overlap confirm a track only at the third; it
    starts for the lines where it was first seen, so a line crossed before
    that (between the first and second sightings, or the second and third)
    counts once, in its direction, in the frame the track is confirmed."""
    start_x = 65.0 if direction > 0 else HD[0] - 65.0
    line = line_x if direction > 0 else HD[0] - line_x
    car = Mover((start_x, 400.0), (direction * 300.0, 0.0), CAR_BOX, CAR)
    outcome = run([car], [vertical_line(line)], 5)
    assert outcome.counts == ((0, 1) if direction > 0 else (1, 0))
    assert [c.frame_index for c in outcome.crossings] == [2]


# ------------------------------------------------------------------ missed frames

MISSES = [
    # (name, step px/frame, score, frames)
    ("walking, missed every third frame", 8.0, missing_every(3), 130),
    ("walking, missed on its second frame and every fifth", 8.0, missing_every(5, 1), 130),
    ("car at 100 px/frame missed every fourth frame", 100.0, missing_every(4, 2), 12),
]


@pytest.mark.parametrize(("name", "step", "score", "frames"), MISSES, ids=[m[0] for m in MISSES])
def test_missed_frames_keep_one_track_and_one_count(name, step, score, frames):
    size = CAR_BOX if step > 50 else PERSON_BOX
    mover = Mover((40.0, 420.0), (step, 0.0), size, CAR if step > 50 else PERSON, score)
    outcome = run([mover], [vertical_line(900.0)], frames)
    assert outcome.counts == (0, 1)
    assert len(outcome.paths()) == 1


# ------------------------------------------------------------------ pairs

SMALL = (640, 360)


def flicker(seed: int, low: float, high: float, miss_rate: float, hidden=(0, 0)) -> Score:
    """Scores drawn from ``low`` to ``high`` with seeded misses, and none
    at all for the frames in ``hidden`` [start, stop)."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(low, high, size=1000)
    missed = rng.uniform(size=1000) < miss_rate
    return lambda i: None if missed[i] or hidden[0] <= i < hidden[1] else float(scores[i])


def side_by_side(
    size: tuple[float, float], gap: float, step: float, scores: tuple[Score, Score]
) -> list[Mover]:
    """Two people walking down together, ``gap`` box widths between them."""
    w = size[0]
    return [
        Mover((300.0, 40.0), (0.0, step), size, score=scores[0]),
        Mover((300.0 + (1 + gap) * w, 40.0), (0.0, step), size, score=scores[1]),
    ]


PAIRS = [
    # (name, movers, frame size, jitter px). Counted twice (both walk down
    # across a line), each keeping one identity from first to last frame.
    (
        "one box width apart",
        side_by_side((40.0, 100.0), 1.0, 6.0, (always(0.9), always(0.9))),
        HD,
        2.0,
    ),
    (
        "touching, jittery boxes, one frame in ten missed",
        side_by_side(
            (12.0, 30.0), 0.0, 2.5, (flicker(1, 0.6, 0.95, 0.1), flicker(2, 0.6, 0.95, 0.1))
        ),
        SMALL,
        2.0,
    ),
    (
        "small, one box width apart, scores 0.3 to 0.6, misses",
        side_by_side((12.0, 30.0), 1.0, 2.5, (weak(3), weak(4))),
        SMALL,
        0.7,
    ),
    (
        # The right one is seen only from frame 20, the left one is then
        # unseen for eight frames: its lost track must not take the other's
        # detections, nor the other's track its own when it comes back.
        "small, one box width apart, one unseen while the other appears",
        side_by_side(
            (12.0, 30.0),
            1.0,
            2.0,
            (flicker(5, 0.3, 0.6, 0.1, hidden=(22, 30)), flicker(6, 0.3, 0.6, 0.1, hidden=(0, 20))),
        ),
        SMALL,
        0.7,
    ),
]


@pytest.mark.parametrize(("name", "movers", "size", "jitter"), PAIRS, ids=[p[0] for p in PAIRS])
def test_pairs_side_by_side_are_two_counts_and_two_identities(name, movers, size, jitter):
    frames = int((size[1] - 40) / movers[0].step[1])
    line_y = size[1] / 2
    outcome = run(movers, [((0.0, line_y), (float(size[0]), line_y))], frames, size, jitter=jitter)
    # The line runs left to right: moving down (y grows) is "in".
    assert outcome.counts == (2, 0)
    ids = identities(movers, outcome)
    assert all(len(v) == 1 for v in ids.values()), ids


CROSSINGS = [
    # (name, box, frame size, speed px/frame, y offset of the second walker
    # in box heights, scores, hidden while overlapping). Two people walk
    # towards each other along a street and pass; each track's path must
    # stay monotonic in x, and each crosses both lines once.
    ("pass at the same depth, both detected", (40.0, 100.0), HD, 8.0, 0.0, (0.6, 0.95), False),
    ("pass one behind the other", (40.0, 100.0), HD, 8.0, 0.25, (0.6, 0.95), False),
    ("the back one hidden while they overlap", (40.0, 100.0), HD, 8.0, 0.25, (0.6, 0.95), True),
    ("small, scores 0.3 to 0.6, misses", (12.0, 30.0), SMALL, 2.5, 0.1, (0.3, 0.6), False),
    ("small, weak, the back one hidden", (12.0, 30.0), SMALL, 2.5, 0.1, (0.3, 0.6), True),
]


@pytest.mark.parametrize(
    ("name", "size", "frame", "speed", "dy", "scores", "hidden"),
    CROSSINGS,
    ids=[c[0] for c in CROSSINGS],
)
def test_people_crossing_each_other_keep_their_identities(
    name, size, frame, speed, dy, scores, hidden
):
    w, h = size
    width = float(frame[0])
    y = frame[1] * 0.6
    a = Mover((width * 0.15, y), (speed, 0.0), size, score=flicker(7, *scores, 0.1))
    b_path = Mover((width * 0.85, y - dy * h), (-speed, 0.0), size)
    b_scores = flicker(8, *scores, 0.1)

    def b_score(i: int) -> float | None:
        overlapping = abs(a.bottom(i)[0] - b_path.bottom(i)[0]) < w / 2
        return None if overlapping and hidden else b_scores(i)

    movers = [a, Mover(b_path.start, b_path.step, size, score=b_score)]
    lines = [vertical_line(width * 0.3), vertical_line(width * 0.7)]
    outcome = run(movers, lines, int(width * 0.7 / speed), frame, jitter=w / 25)
    ids = identities(movers, outcome)
    assert all(len(v) == 1 for v in ids.values()), ids
    for path in outcome.paths().values():
        assert monotonic([x for _, x, _ in path]), path
    # a goes rightwards (out) over both lines, b leftwards (in).
    assert outcome.counts == (2, 2)


def weak_while(start: int, stop: int, weak_score: float = 0.35, score: float = 0.9) -> Score:
    """Seen at ``score``, but only at ``weak_score`` (below the high
    threshold) for the frames [start, stop): a person half hidden, or turned
    away, while someone beside them is seen clearly."""
    return lambda i: weak_score if start <= i < stop else score


SWAPS = [
    # (name, movers, line y). A track's own detection is weak in the frames
    # where a neighbour's strong box overlaps the track's prediction: the
    # track keeps its own box (it overlaps the prediction far better), and
    # the neighbour gets a track of its own. Both cross the line (y grows:
    # "in"), each with one identity.
    (
        # Walking down together; the second appears half a box below and
        # to the side of the first and walks away from it, faster.
        "side by side, then diverging, the first weak as the second appears",
        [
            Mover((300.0, 200.0), (0.0, 3.0), PERSON_BOX, score=weak_while(10, 16)),
            Mover((315.0, 255.0), (6.0, 5.0), PERSON_BOX, first=10),
        ],
        400.0,
    ),
    (
        # Crossing paths: the second, first seen as it steps out beside the
        # first, a little lower in the image, walks across in front of it
        # while the first is half hidden.
        "crossing paths, the one behind weak while the other passes",
        [
            Mover((300.0, 200.0), (0.0, 3.0), PERSON_BOX, score=weak_while(10, 22)),
            Mover((265.0, 270.0), (7.0, 4.0), PERSON_BOX, first=10),
        ],
        400.0,
    ),
]


@pytest.mark.parametrize(("name", "movers", "line_y"), SWAPS, ids=[s[0] for s in SWAPS])
def test_a_weak_box_of_its_own_beats_a_neighbours_strong_one(name, movers, line_y):
    frames = 80
    outcome = run(movers, [((0.0, line_y), (1280.0, line_y))], frames)
    ids = identities(movers, outcome)
    assert all(len(v) == 1 for v in ids.values()), ids
    assert outcome.counts == (2, 0)


# ------------------------------------------------------------------ first seen on the line


@dataclass(frozen=True)
class Turning(Mover):
    """A mover that changes its step at frame ``turn``: a person who stands,
    then walks on, or steps aside."""

    turn: int = 0
    then: tuple[float, float] = (0.0, 0.0)

    def bottom(self, i: int) -> tuple[float, float]:
        if i <= self.turn:
            return super().bottom(i)
        x, y = super().bottom(self.turn)
        k = i - self.turn
        return x + k * self.then[0], y + k * self.then[1]


def seen(*spans: tuple[int, int, float]) -> Score:
    """Seen at the given score in each span [start, stop), else missed."""
    return lambda i: next((sc for a, b, sc in spans if a <= i < b), None)


ON_THE_LINE = [
    # (name, mover). A horizontal line at y = 400 with its 8 px band; each
    # person is first seen with their feet 4 px short of the line, inside
    # the band, and walks on across it: one "in", one identity. A track
    # first seen inside the band starts on the side of the line it was on.
    (
        "first seen on the line, walking on across it",
        Mover((300.0, 396.0), (0.0, 6.0), PERSON_BOX, score=seen((0, 12, 0.9))),
    ),
    (
        # As a detector sees someone it finds hard to see (small, far, half
        # hidden): found only on the line, unseen for three frames as they
        # step forward and aside by a third of a box width, then found again
        # beyond the band by weak boxes, which overlap the prediction only
        # as it has grown uncertain.
        "seen standing on the line, unseen for three frames as they step aside",
        Turning(
            (300.0, 396.0),
            (0.0, 0.5),
            (40.0, 96.0),
            score=seen((0, 4, 0.9), (7, 12, 0.35)),
            turn=3,
            then=(-3.0, 3.0),
        ),
    ),
]


@pytest.mark.parametrize(("name", "mover"), ON_THE_LINE, ids=[s[0] for s in ON_THE_LINE])
def test_a_track_first_seen_on_the_line_counts_when_it_leaves_it(name, mover):
    outcome = run([mover], [((0.0, 400.0), (1280.0, 400.0))], 12)
    assert outcome.counts == (1, 0)
    assert len(outcome.paths()) == 1


# ------------------------------------------------------------------ small and weak


@pytest.mark.parametrize("seed", range(5))
def test_small_people_with_weak_scores_are_counted_once_each(seed):
    """20 to 40 px tall in a 640x360 frame, walking 5 to 10% of their height
    per frame, scores 0.3 to 0.6 and about one frame in seven missed: each
    crosses the line once and counts once, with one identity."""
    rng = np.random.default_rng(seed)
    movers = []
    for k in range(6):
        h = float(rng.uniform(20, 40))
        down = k % 2 == 0
        step = h * float(rng.uniform(0.05, 0.1)) * (1 if down else -1)
        movers.append(
            Mover(
                (float(60 + 90 * k), 60.0 if down else 330.0),
                (float(rng.uniform(-0.3, 0.3)), step),
                (h * 0.4, h),
                score=weak(100 * seed + k),
                first=int(rng.integers(0, 40)),
            )
        )
    frames = max(m.first + int(270 / abs(m.step[1])) for m in movers)
    outcome = run(movers, [((0.0, 180.0), (640.0, 180.0))], frames, SMALL, jitter=0.7)
    # The line runs left to right: moving down (y grows) is "in".
    assert outcome.counts == (3, 3)
    assert all(len(v) == 1 for v in identities(movers, outcome).values())


def test_weak_detections_alone_never_start_a_track():
    """Scores that never reach the high threshold may keep a track but never
    start one (what a persistent weak false positive looks like)."""
    still = Mover((300.0, 200.0), (1.0, 0.0), (20.0, 50.0), score=always(0.45))
    outcome = run([still], [], 40, SMALL)
    assert outcome.paths() == {}


# ------------------------------------------------------------------ faint: weak boxes alone


def faint(seed: int, low: float = 0.35, high: float = 0.45, miss_rate: float = 0.3) -> Score:
    """Scores from ``low`` to ``high``, all under the high threshold, as a
    detector gives someone far away or half hidden, with seeded misses of
    up to two frames in a row."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(low, high, size=1000)
    missed = rng.uniform(size=1000) < miss_rate
    missed[2:] &= ~(missed[1:-1] & missed[:-2])
    return lambda i: None if missed[i] else float(scores[i])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("direction", [1, -1], ids=["rightwards", "leftwards"])
def test_a_walker_boxed_only_weakly_across_a_line_counts_once(seed, direction):
    """Never a box at the high threshold, a third of the frames missed: the
    walker's boxes start a faint track, which confirms once it has moved a
    quarter of its height, and counts the crossing from where it was first
    seen."""
    start = 540.0 if direction == 1 else 740.0
    walker = Mover((start, 500.0), (6.0 * direction, 0.0), PERSON_BOX, score=faint(seed))
    outcome = run([walker], [vertical_line(640.0)], 40)
    assert outcome.counts == ((0, 1) if direction == 1 else (1, 0))
    assert len(outcome.paths()) == 1


@pytest.mark.parametrize("score", [0.35, 0.45])
def test_a_still_object_boxed_weakly_in_every_frame_is_never_a_track(score):
    """A bin or a poster the detector scores just under the high threshold
    in every frame, its box jittering a pixel: no track, so no crossing of
    the line through it and no occupant of the zone around it."""
    camera = CameraConfig(
        id="cam",
        source="scenario.mp4",
        lines=(LineConfig(id="line", points=vertical_line(300.0)),),
        zones=(
            ZoneConfig(
                id="around",
                polygon=((200, 300), (400, 300), (400, 500), (200, 500)),
                sample_every_s=0,
            ),
        ),
    )
    processor = CameraProcessor(camera, TrackerConfig(), CLASSES, HD, FPS)
    tracker = Tracker(TrackerSettings(fps=FPS))
    bin_ = Mover((300.0, 450.0), (0.0, 0.0), PERSON_BOX, score=always(score))
    events = []
    for i, d in enumerate(detections([bin_], 300, HD, jitter=1.0)):
        events.extend(processor.process(d, i, i / FPS))
        assert len(tracker.update(d, i, i / FPS).detections) == 0
    samples = [e for e in events if isinstance(e, ZoneSample)]
    assert len(samples) == 300
    assert all(s.occupancy == 0 for s in samples)
    assert not [e for e in events if not isinstance(e, ZoneSample)]


@pytest.mark.parametrize("frames", [2, 3])
def test_a_flicker_of_weak_boxes_never_confirms(frames):
    """A walker boxed weakly for two or three frames, then not at all: too
    few sightings to tell a person from a flicker, however far it moved."""
    flicker_ = Mover((600.0, 500.0), (15.0, 0.0), PERSON_BOX, score=seen((5, 5 + frames, 0.4)))
    outcome = run([flicker_], [vertical_line(640.0)], 30)
    assert outcome.paths() == {}
    assert outcome.counts == (0, 0)


@pytest.mark.parametrize("score", [0.35, 0.45])
def test_a_weak_duplicate_box_on_a_tracked_walker_is_not_a_second_person(score):
    """Detectors often add a weaker box on part of someone already boxed
    (the upper body, a half-overlapping second guess). It moves with them,
    so travel alone cannot tell it from a faint person: a low box lying on
    a box of this frame that a track took, or on a strong one, is that
    object's, and starts nothing. One walker, one crossing."""
    walker = Mover((540.0, 500.0), (6.0, 0.0), PERSON_BOX)
    upper = Mover((540.0, 440.0), (6.0, 0.0), (50.0, 60.0), score=always(score))
    outcome = run([walker, upper], [vertical_line(640.0)], 40)
    assert outcome.counts == (0, 1)
    assert len(outcome.paths()) == 1
