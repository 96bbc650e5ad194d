"""Zone counters: occupancy, entries, exits and visits with dwell time.

A visit opens when a confirmed track's anchor is inside the polygon and
closes when the track is seen more than ``band_px`` outside it, or when the
tracker drops the track for good. A track that is lost (unseen but kept by
the tracker) keeps its visit open, so one person behind an occluder or
missed by the detector for a while is still one visit.

Per class accounting is consistent: a visit keeps the class it entered
with, so entries minus exits equals occupancy for every class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from camcount.detectors.detections import Detections
from camcount.errors import StateError
from camcount.events import Direction, ZoneSample, ZoneTransition, ZoneVisit
from camcount.geometry import Anchor, Polygon, anchor_points
from camcount.vision.tracking import TrackFrame

STATE_FORMAT_VERSION = 1

ZoneEvent = ZoneTransition | ZoneVisit | ZoneSample


@dataclass(frozen=True, slots=True)
class OpenVisit:
    track_id: int
    class_name: str
    entered_at: float
    entry_frame: int
    last_inside_at: float
    last_inside_frame: int


@dataclass(frozen=True)
class ZoneCounterState:
    format_version: int
    zone_id: str
    visits: tuple[OpenVisit, ...]
    next_sample_at: float | None
    entries: tuple[tuple[str, int], ...]
    exits: tuple[tuple[str, int], ...]


class ZoneCounter:
    """Keeps the open visits of one polygon; memory is bounded by live tracks."""

    def __init__(
        self,
        camera_id: str,
        zone_id: str,
        polygon: Polygon,
        class_names: Sequence[str],
        anchor: Anchor = Anchor.BOTTOM_CENTER,
        classes: Sequence[str] = (),
        band_px: float = 8.0,
        sample_every_s: float = 1.0,
    ) -> None:
        if sample_every_s < 0:
            raise ValueError(f"sample_every_s must be >= 0, got {sample_every_s}")
        self.camera_id = camera_id
        self.zone_id = zone_id
        self.polygon = polygon
        self.anchor = anchor
        self.class_names = tuple(class_names)
        self.band_px = band_px
        self.sample_every_s = sample_every_s
        self._allowed = np.array(
            [not classes or n in classes for n in self.class_names], dtype=bool
        )
        self._visits: dict[int, OpenVisit] = {}
        self._next_sample_at: float | None = None
        self.entries: dict[str, int] = {}
        self.exits: dict[str, int] = {}

    @property
    def occupancy(self) -> int:
        return len(self._visits)

    def update(self, frame: TrackFrame) -> list[ZoneEvent]:
        events: list[ZoneEvent] = []
        dets = frame.detections
        if len(dets):
            pts = anchor_points(dets.xyxy, self.anchor)
            inside = self.polygon.contains(pts)
            far_out = ~inside
            if far_out.any():
                far_out[far_out] = self.polygon.distance_to_border(pts[far_out]) > self.band_px
            for row in range(len(dets)):
                tid = int(dets.tracker_id[row])
                visit = self._visits.get(tid)
                if visit is None and inside[row] and self._allowed[dets.class_id[row]]:
                    name = self.class_names[int(dets.class_id[row])]
                    self._visits[tid] = OpenVisit(
                        tid,
                        name,
                        frame.frame_time,
                        frame.frame_index,
                        frame.frame_time,
                        frame.frame_index,
                    )
                    self.entries[name] = self.entries.get(name, 0) + 1
                    events.append(self._transition(frame, tid, name, Direction.ENTER))
                elif visit is not None and inside[row]:
                    self._visits[tid] = OpenVisit(
                        tid,
                        visit.class_name,
                        visit.entered_at,
                        visit.entry_frame,
                        frame.frame_time,
                        frame.frame_index,
                    )
                elif visit is not None and far_out[row]:
                    events.extend(self._close(frame, tid))
        for tid in frame.removed_ids:
            if int(tid) in self._visits:
                events.extend(self._close(frame, int(tid)))
        if self._sample_due(frame.frame_time):
            events.append(self._sample(frame))
        return events

    def close_all(self, frame_index: int, frame_time: float) -> list[ZoneEvent]:
        """End every open visit, as at the end of a file source."""
        frame = TrackFrame(
            frame_index,
            frame_time,
            Detections.empty(),
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
        )
        events: list[ZoneEvent] = []
        for tid in sorted(self._visits):
            events.extend(self._close(frame, tid))
        return events

    def _transition(self, frame: TrackFrame, tid: int, name: str, d: Direction) -> ZoneTransition:
        return ZoneTransition(
            self.camera_id, self.zone_id, tid, frame.frame_index, frame.frame_time, name, d
        )

    def _close(self, frame: TrackFrame, tid: int) -> list[ZoneEvent]:
        v = self._visits.pop(tid)
        self.exits[v.class_name] = self.exits.get(v.class_name, 0) + 1
        return [
            self._transition(frame, tid, v.class_name, Direction.EXIT),
            ZoneVisit(
                self.camera_id,
                self.zone_id,
                tid,
                v.entered_at,
                v.last_inside_at,
                v.class_name,
                v.entry_frame,
                v.last_inside_frame,
            ),
        ]

    def _sample_due(self, t: float) -> bool:
        if self._next_sample_at is None or t >= self._next_sample_at:
            step = self.sample_every_s
            self._next_sample_at = (np.floor(t / step) + 1) * step if step > 0 else t
            return True
        return False

    def _sample(self, frame: TrackFrame) -> ZoneSample:
        per_class: dict[str, int] = {}
        for v in self._visits.values():
            per_class[v.class_name] = per_class.get(v.class_name, 0) + 1
        names = tuple(sorted(per_class))
        return ZoneSample(
            self.camera_id,
            self.zone_id,
            frame.frame_index,
            frame.frame_time,
            len(self._visits),
            names,
            tuple(per_class[n] for n in names),
        )

    def snapshot(self) -> ZoneCounterState:
        return ZoneCounterState(
            STATE_FORMAT_VERSION,
            self.zone_id,
            tuple(self._visits[k] for k in sorted(self._visits)),
            self._next_sample_at,
            tuple(sorted(self.entries.items())),
            tuple(sorted(self.exits.items())),
        )

    def restore(self, state: ZoneCounterState) -> None:
        if state.format_version != STATE_FORMAT_VERSION or state.zone_id != self.zone_id:
            raise StateError(
                f"cannot restore zone {self.zone_id!r} "
                f"from {state.zone_id!r} v{state.format_version}"
            )
        self._visits = {v.track_id: v for v in state.visits}
        self._next_sample_at = state.next_sample_at
        self.entries = dict(state.entries)
        self.exits = dict(state.exits)
