"""Line crossing counters: pure objects fed one ``TrackFrame`` at a time.

A counter remembers, per track, only the last side the track was definitely
on (beyond the hysteresis band) and where it was then. A crossing counts
when the track is next seen definitely on the other side and its move meets
the line between the line's two ends. Jitter inside the band never changes
a side, so it never counts; a track may cross again only by going back to
the first side first, which is itself a crossing the other way. A track
first seen inside the band has no definite side to keep from jitter: it
starts on the side of the line its first sighting was on, and still counts
only once it leaves the band on the other side. Near the
frame edge, where the band has no room, the edge decides the side of a box
it cuts (``camcount.vision.frame_edges``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from camcount.errors import StateError
from camcount.events import Crossing, Direction
from camcount.geometry import Anchor, Segment, anchor_points
from camcount.vision.frame_edges import EdgeSides
from camcount.vision.tracking import TrackFrame

STATE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LineCounterState:
    format_version: int
    counter_id: str
    track_ids: npt.NDArray[np.int64]
    sides: npt.NDArray[np.int8]
    points: npt.NDArray[np.float64]
    totals: tuple[tuple[str, str, int], ...]  # (class, direction, count)


class LineCounter:
    """Counts confirmed tracks crossing one segment, per class and direction.

    ``classes`` limits which classes count (empty: all). ``frame_size`` lets
    the band shrink near the frame edge and the edge decide the side of the
    boxes it cuts, so lines close to it still count.
    """

    def __init__(
        self,
        camera_id: str,
        counter_id: str,
        segment: Segment,
        class_names: Sequence[str],
        anchor: Anchor = Anchor.BOTTOM_CENTER,
        classes: Sequence[str] = (),
        frame_size: tuple[int, int] | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.counter_id = counter_id
        self.segment = segment
        self.anchor = anchor
        self.class_names = tuple(class_names)
        self._allowed = np.array(
            [not classes or name in classes for name in self.class_names], dtype=bool
        )
        self._band_a, self._band_b = segment.bands_within_frame(frame_size)
        self._edges = EdgeSides.for_line(segment, anchor, frame_size)
        # Per remembered track, sorted by id: last definite side and point.
        # Arrays rather than dicts: a frame's lookups and writes are a few
        # vectorised operations whatever the number of tracks.
        self._ids = np.zeros(0, dtype=np.int64)
        self._sides = np.zeros(0, dtype=np.int8)
        self._points = np.zeros((0, 2), dtype=np.float64)
        self.totals: dict[tuple[str, str], int] = {}

    def update(self, frame: TrackFrame) -> list[Crossing]:
        dets = frame.detections
        events: list[Crossing] = []
        if len(frame.born_ids):
            self._remember_births(frame)
        if len(dets):
            pts = anchor_points(dets.xyxy, self.anchor)
            sides = self.segment.sides(pts, self._band_a, self._band_b)
            where = pts
            if self._edges is not None:
                sides, where = self._edges.decide(sides, pts, frame.observed)
            decided = sides.nonzero()[0]  # np.flatnonzero without its Python wrapper
            if decided.size:
                events = self._step(frame, pts, where, sides, decided)
        if len(frame.removed_ids) and len(self._ids):
            self._forget(np.asarray(frame.removed_ids, dtype=np.int64))
        return events

    def _step(
        self,
        frame: TrackFrame,
        pts: npt.NDArray[np.float64],
        where: npt.NDArray[np.float64],
        sides: npt.NDArray[np.int8],
        decided: npt.NDArray[np.intp],
    ) -> list[Crossing]:
        """Count the decided rows that flipped side, then remember all of them.

        ``pts`` are the anchors (what a crossing reports), ``where`` the
        points that decided each side (beyond the frame edge for a box the
        edge decided), which the segment test and the memory use.
        """
        dets = frame.detections
        ids = dets.tracker_id[decided]
        now = sides[decided]
        if len(self._ids) == 0:
            self._remember_new(ids, now, where[decided])
            return []
        # Where each id is (or would go) in the sorted ids; clipped so that
        # an id beyond the last still indexes something to compare with.
        slot = np.minimum(self._ids.searchsorted(ids), len(self._ids) - 1)
        known = self._ids[slot] == ids
        prev = np.where(known, self._sides[slot], 0)
        flip = (prev != 0) & (prev != now)
        events: list[Crossing] = []
        if flip.any():
            flipped = decided[flip]
            within = self.segment.crossing_within(self._points[slot[flip]], where[flipped])
            cls_ok = self._allowed[dets.class_id[flipped]]
            for row in flipped[within & cls_ok]:
                events.append(self._event(frame, pts, int(row), int(sides[row])))
        if known.all():
            self._sides[slot] = now
            self._points[slot] = where[decided]
        else:
            self._sides[slot[known]] = now[known]
            self._points[slot[known]] = where[decided[known]]
            self._remember_new(ids[~known], now[~known], where[decided[~known]])
        return events

    def _remember_births(self, frame: TrackFrame) -> None:
        """Tracks confirmed in this frame start from where they were first
        seen: one that crossed while still tentative (fast, or first seen
        close to the line) then counts in this frame's step, as one that
        crossed later would."""
        boxes = frame.born_xyxy
        known = np.isfinite(boxes).all(axis=1)  # NaN: a state saved before this was kept
        if not known.any():
            return
        boxes, ids = boxes[known], np.asarray(frame.born_ids, dtype=np.int64)[known]
        pts = anchor_points(boxes, self.anchor)
        sides = self.segment.sides(pts, self._band_a, self._band_b)
        # First seen on the line (a person the detector finds only as they
        # reach it): the side of the line itself, the best guess of where
        # the track came from, hysteresis having no side yet to protect.
        on_line = sides == 0
        if on_line.any():
            sides[on_line] = self.segment.sides(pts[on_line], 0.0, 0.0)
        where = pts
        if self._edges is not None:
            sides, where = self._edges.decide(sides, pts, boxes)
        decided = sides != 0
        self._remember_new(ids[decided], sides[decided], where[decided])

    def _remember_new(
        self,
        ids: npt.NDArray[np.int64],
        sides: npt.NDArray[np.int8],
        points: npt.NDArray[np.float64],
    ) -> None:
        """Add tracks seen for the first time, keeping the arrays sorted by id.

        A frame lists a track once; should an id repeat, its last row is
        kept, as a dict would.
        """
        if ids.size == 0:  # nothing new (restoring an empty state included)
            return
        by_id = np.argsort(ids, kind="stable")
        last = by_id[np.append(ids[by_id][1:] != ids[by_id][:-1], True)]
        ids = np.concatenate([self._ids, ids[last]])
        order = np.argsort(ids, kind="stable")
        self._ids = ids[order]
        self._sides = np.concatenate([self._sides, sides[last]])[order]
        self._points = np.concatenate([self._points, points[last]])[order]

    def _forget(self, ids: npt.NDArray[np.int64]) -> None:
        """Drop the tracks the tracker removed for good."""
        slot = np.minimum(self._ids.searchsorted(ids), len(self._ids) - 1)
        keep = np.ones(len(self._ids), dtype=bool)
        keep[slot[self._ids[slot] == ids]] = False
        self._ids = self._ids[keep]
        self._sides = self._sides[keep]
        self._points = self._points[keep]

    def _event(
        self, frame: TrackFrame, pts: npt.NDArray[np.float64], row: int, side: int
    ) -> Crossing:
        d = frame.detections
        direction = Direction.IN if side > 0 else Direction.OUT
        class_name = self.class_names[int(d.class_id[row])]
        key = (class_name, direction.value)
        self.totals[key] = self.totals.get(key, 0) + 1
        return Crossing(
            camera_id=self.camera_id,
            counter_id=self.counter_id,
            track_id=int(d.tracker_id[row]),
            frame_index=frame.frame_index,
            event_time=frame.frame_time,
            class_name=class_name,
            direction=direction,
            confidence=float(d.confidence[row]),
            anchor_x=float(pts[row, 0]),
            anchor_y=float(pts[row, 1]),
        )

    @property
    def tracked_count(self) -> int:
        """How many tracks the counter remembers; bounded by the live tracks."""
        return len(self._ids)

    def snapshot(self) -> LineCounterState:
        return LineCounterState(
            format_version=STATE_FORMAT_VERSION,
            counter_id=self.counter_id,
            track_ids=self._ids.copy(),
            sides=self._sides.copy(),
            points=self._points.copy(),
            totals=tuple((c, d, n) for (c, d), n in sorted(self.totals.items())),
        )

    def restore(self, state: LineCounterState) -> None:
        if state.format_version != STATE_FORMAT_VERSION or state.counter_id != self.counter_id:
            raise StateError(
                f"cannot restore line counter {self.counter_id!r} from "
                f"{state.counter_id!r} v{state.format_version}"
            )
        self._ids = np.zeros(0, dtype=np.int64)
        self._sides = np.zeros(0, dtype=np.int8)
        self._points = np.zeros((0, 2), dtype=np.float64)
        self._remember_new(
            np.asarray(state.track_ids, dtype=np.int64),
            np.asarray(state.sides, dtype=np.int8),
            np.asarray(state.points, dtype=np.float64).reshape(-1, 2),
        )
        self.totals = {(c, d): n for c, d, n in state.totals}
