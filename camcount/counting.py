"""Line crossing counters: pure objects fed one ``TrackFrame`` at a time.

A counter remembers, per track, only the last side the track was definitely
on (beyond the hysteresis band) and where it was then. A crossing counts
when the track is next seen definitely on the other side and its move meets
the line between the line's two ends. Jitter inside the band never changes
a side, so it never counts; a track may cross again only by going back to
the first side first, which is itself a crossing the other way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from camcount.errors import StateError
from camcount.events import Crossing, Direction
from camcount.geometry import Anchor, Segment, anchor_points
from camcount.tracking import TrackFrame

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
    the band shrink near the frame edge, so lines close to it still count.
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
        self._side: dict[int, int] = {}
        self._point: dict[int, tuple[float, float]] = {}
        self.totals: dict[tuple[str, str], int] = {}

    def update(self, frame: TrackFrame) -> list[Crossing]:
        dets = frame.detections
        events: list[Crossing] = []
        if len(dets):
            pts = anchor_points(dets.xyxy, self.anchor)
            sides = self.segment.sides(pts, self._band_a, self._band_b)
            decided = np.flatnonzero(sides != 0)
            ids = dets.tracker_id[decided]
            prev = np.array([self._side.get(int(i), 0) for i in ids], dtype=np.int8)
            flipped = decided[(prev != 0) & (prev != sides[decided])]
            if flipped.size:
                p0 = np.array([self._point[int(i)] for i in dets.tracker_id[flipped]])
                within = self.segment.crossing_within(p0, pts[flipped])
                cls_ok = self._allowed[dets.class_id[flipped]]
                for row in flipped[within & cls_ok]:
                    events.append(self._event(frame, pts, int(row), int(sides[row])))
            for row in decided:
                tid = int(dets.tracker_id[row])
                self._side[tid] = int(sides[row])
                self._point[tid] = (float(pts[row, 0]), float(pts[row, 1]))
        for tid in frame.removed_ids:
            self._side.pop(int(tid), None)
            self._point.pop(int(tid), None)
        return events

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
        return len(self._side)

    def snapshot(self) -> LineCounterState:
        ids = np.array(sorted(self._side), dtype=np.int64)
        return LineCounterState(
            format_version=STATE_FORMAT_VERSION,
            counter_id=self.counter_id,
            track_ids=ids,
            sides=np.array([self._side[int(i)] for i in ids], dtype=np.int8),
            points=np.array([self._point[int(i)] for i in ids], dtype=np.float64).reshape(-1, 2),
            totals=tuple((c, d, n) for (c, d), n in sorted(self.totals.items())),
        )

    def restore(self, state: LineCounterState) -> None:
        if state.format_version != STATE_FORMAT_VERSION or state.counter_id != self.counter_id:
            raise StateError(
                f"cannot restore line counter {self.counter_id!r} from "
                f"{state.counter_id!r} v{state.format_version}"
            )
        self._side = {int(i): int(s) for i, s in zip(state.track_ids, state.sides, strict=True)}
        self._point = {
            int(i): (float(p[0]), float(p[1]))
            for i, p in zip(state.track_ids, state.points, strict=True)
        }
        self.totals = {(c, d): n for c, d, n in state.totals}
