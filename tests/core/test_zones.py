"""Zone counting: visits, gaps, dwell, occupancy and per-class accounting."""

from __future__ import annotations

import pytest

from camcount.config import CameraConfig, TrackerConfig, ZoneConfig
from camcount.events import Direction, ZoneSample, ZoneTransition, ZoneVisit
from camcount.geometry import Polygon
from camcount.vision.processor import CameraProcessor
from camcount.vision.zones import ZoneCounter
from tests.core.tracks import CLASSES, detections_along, track_frame

SQUARE = Polygon(((100, 100), (200, 100), (200, 200), (100, 200)))


def make_zone(**kw) -> ZoneCounter:
    return ZoneCounter("cam", "zone", SQUARE, CLASSES, band_px=5, sample_every_s=0, **kw)


def feed(zone: ZoneCounter, frames) -> list:
    return [e for f in frames for e in zone.update(f)]


def kinds(events, cls):
    return [e for e in events if isinstance(e, cls)]


SCENARIOS = [
    # (name, anchors per frame (None: unseen), removed at the end, expected visits)
    ("walks in and out", [(50, 150), (150, 150), (150, 160), (250, 150)], False, 1),
    ("passes outside", [(50, 50), (150, 50), (250, 50)], False, 0),
    (
        "detection gap inside: still one visit",
        [(150, 150), None, None, (150, 155), (260, 150)],
        False,
        1,
    ),
    (
        "jitter on the border: one visit",
        [(150, 150), (202, 150), (198, 150), (203, 150), (150, 150)],
        True,
        1,
    ),
    (
        "leaves and comes back: two visits",
        [(150, 150), (260, 150), (150, 150), (260, 150)],
        False,
        2,
    ),
    ("dropped by the tracker while inside", [(150, 150), (150, 150), None], True, 1),
]


@pytest.mark.parametrize(
    ("name", "points", "removed", "visits"), SCENARIOS, ids=[s[0] for s in SCENARIOS]
)
def test_zone_scenarios(name, points, removed, visits):
    zone = make_zone()
    frames = [
        track_frame(i, [] if p is None else [(1, *p)], lost=[] if p else [1])
        for i, p in enumerate(points)
    ]
    if removed:
        frames.append(track_frame(len(points), [], removed=[1]))
    events = feed(zone, frames)
    assert len(kinds(events, ZoneVisit)) == visits
    enters = [e for e in kinds(events, ZoneTransition) if e.direction is Direction.ENTER]
    assert len(enters) == visits
    assert zone.occupancy == 0


def test_dwell_runs_from_entry_to_last_time_seen_inside():
    zone = make_zone()
    pts = [(50, 150), (150, 150), (150, 150), (150, 150), (150, 150), (260, 150)]
    visits = kinds(feed(zone, [track_frame(i, [(7, *p)]) for i, p in enumerate(pts)]), ZoneVisit)
    assert len(visits) == 1
    v = visits[0]
    assert (v.entry_frame, v.exit_frame) == (1, 4)
    assert v.dwell_s == pytest.approx(0.3)


def test_occupancy_samples_count_open_visits_per_class():
    zone = make_zone()
    events = feed(
        zone,
        [
            track_frame(0, [(1, 150, 150, 0), (2, 160, 160, 1), (3, 50, 50, 0)]),
            track_frame(1, [(2, 160, 160, 1)], lost=[1]),  # 1 is unseen but kept: still inside
        ],
    )
    samples = kinds(events, ZoneSample)
    assert [s.occupancy for s in samples] == [2, 2]
    assert samples[-1].class_names == ("car", "person") and samples[-1].class_counts == (1, 1)


def test_samples_are_spaced_by_event_time():
    zone = ZoneCounter("cam", "zone", SQUARE, CLASSES, sample_every_s=1.0)
    events = feed(zone, [track_frame(i, [(1, 150, 150)]) for i in range(25)])  # 2.5 s at 10 fps
    assert [s.frame_index for s in kinds(events, ZoneSample)] == [0, 10, 20]


def test_class_is_kept_from_entry_so_per_class_books_balance():
    zone = make_zone()
    feed(zone, [track_frame(0, [(1, 150, 150, 0)]), track_frame(1, [(1, 260, 150, 1)])])
    assert zone.entries == {"person": 1} and zone.exits == {"person": 1}


def test_class_filter():
    zone = make_zone(classes=("car",))
    events = feed(zone, [track_frame(0, [(1, 150, 150, 0)]), track_frame(1, [(1, 260, 150, 0)])])
    assert kinds(events, ZoneVisit) == []


def test_snapshot_restore_mid_visit():
    frames = [track_frame(i, [(1, 150, 150)]) for i in range(3)] + [track_frame(3, [(1, 260, 150)])]
    a = make_zone()
    feed(a, frames[:2])
    b = make_zone()
    b.restore(a.snapshot())
    assert feed(a, frames[2:]) == feed(b, frames[2:])


def test_close_all_ends_open_visits():
    zone = make_zone()
    feed(zone, [track_frame(0, [(1, 150, 150)]), track_frame(1, [(1, 150, 150)])])
    visits = kinds(zone.close_all(1, 0.1), ZoneVisit)
    assert len(visits) == 1 and zone.occupancy == 0


# ------------------------------------------------------------------ frame edges

FRAME = (1280, 720)
W, H = FRAME
# Centres of a 60x160 box walking in from each edge to the middle of the picture.
WALK_IN = {
    "left": [(-30 + 10 * i, 400) for i in range(40)],
    "top": [(600, -80 + 10 * i) for i in range(40)],
    "right": [(W + 30 - 10 * i, 400) for i in range(40)],
    "bottom": [(600, H + 80 - 10 * i) for i in range(40)],
}


def visits_through(edge: str, anchor: str, walk_out: bool) -> tuple[list[ZoneVisit], int]:
    """One object walking in from ``edge`` (and back out, then unseen until
    the tracker drops it) in a zone drawn on the whole frame, in normalised
    coordinates, as ``camcount count`` counts it; and the first frame its
    track is confirmed."""
    whole = ((0, 0), (1, 0), (1, 1), (0, 1))
    camera = CameraConfig(
        id="cam",
        source="v.mp4",
        coordinates="normalized",
        zones=(ZoneConfig(id="frame", polygon=whole, anchor=anchor, sample_every_s=0),),
    )
    processor = CameraProcessor(camera, TrackerConfig(), CLASSES, FRAME, fps=10.0)
    centres = WALK_IN[edge] + (WALK_IN[edge][::-1] + [(-1000, -1000)] * 40 if walk_out else [])
    events, first_tracked = [], None
    for i, dets in enumerate(detections_along(centres, (60, 160), FRAME, 12)):
        events += processor.process(dets, i, i / 10)
        if first_tracked is None and processor.tracker.snapshot().ids.any():
            first_tracked = i
    events += processor.finish()
    assert first_tracked is not None
    return kinds(events, ZoneVisit), first_tracked


EDGE_SCENARIOS = [
    # (edge the object comes in from, anchor, walks back out)
    ("left", "bottom_center", True),
    ("top", "bottom_center", True),
    ("right", "bottom_right", True),  # the anchor lies on the right edge
    ("bottom", "bottom_center", True),  # the anchor lies on the bottom edge
    ("bottom", "bottom_center", False),  # still there when the file ends
]


@pytest.mark.parametrize(("edge", "anchor", "walk_out"), EDGE_SCENARIOS)
def test_a_zone_on_the_frame_counts_objects_coming_in_at_every_edge(edge, anchor, walk_out):
    visits, first_tracked = visits_through(edge, anchor, walk_out)
    assert len(visits) == 1
    # The visit opens as soon as the track is confirmed, while the frame
    # still cuts its box: the anchor on the frame's edge is in the zone.
    assert visits[0].entry_frame == first_tracked
