"""One camera's work after detection: filter, track, count.

The camera actor and the one-process reference run both use this class, so
the distributed pipeline and ``camcount count`` cannot disagree by
construction of their logic, only by how frames reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from camcount.config import CameraConfig, TrackerConfig
from camcount.detectors.detections import Detections
from camcount.errors import GeometryError
from camcount.events import (
    CountRow,
    Crossing,
    ZoneSample,
    ZoneTransition,
    ZoneVisit,
    count_row,
    row_order,
)
from camcount.geometry import Anchor, Polygon, Segment, anchor_points, format_point, to_pixels
from camcount.vision.counting import LineCounter, LineCounterState
from camcount.vision.tracking import Tracker, TrackerSettings, TrackerState, TrackFrame
from camcount.vision.zones import ZoneCounter, ZoneCounterState

CameraEvent = Crossing | ZoneTransition | ZoneVisit | ZoneSample


@dataclass(frozen=True)
class ProcessorState:
    camera_id: str
    tracker: TrackerState
    lines: tuple[LineCounterState, ...]
    zones: tuple[ZoneCounterState, ...]
    last_frame_index: int
    last_frame_time: float | None


class CameraProcessor:
    """Filters detections, tracks them and feeds every line and zone counter.

    The region of interest, when set, keeps boxes whose bottom centre lies
    inside it (or on its border). A line, zone or region that cannot be used
    in this camera's frame (wholly outside it, degenerate once in pixels) is
    refused here with a ``GeometryError`` naming the camera and frame size.
    """

    def __init__(
        self,
        camera: CameraConfig,
        tracker: TrackerConfig,
        class_names: Sequence[str],
        frame_size: tuple[int, int],
        fps: float,
    ) -> None:
        self.camera = camera
        self.class_names = tuple(class_names)
        self.frame_size = frame_size
        self.fps = fps
        own = camera.tracker or tracker
        self.tracker = Tracker(TrackerSettings(**own.model_dump(), fps=fps))
        shapes = _Shapes(camera, frame_size)
        self.lines = [
            LineCounter(
                camera.id,
                line.id,
                shapes.segment(
                    f"line {line.id!r}", line.points, line.band_px, ("lines", i, "points")
                ),
                self.class_names,
                anchor=line.anchor,
                classes=line.classes,
                frame_size=frame_size,
            )
            for i, line in enumerate(camera.lines)
        ]
        self.zones = [
            ZoneCounter(
                camera.id,
                zone.id,
                shapes.polygon(f"zone {zone.id!r}", zone.polygon, ("zones", i, "polygon")),
                self.class_names,
                anchor=zone.anchor,
                classes=zone.classes,
                band_px=zone.band_px,
                sample_every_s=zone.sample_every_s,
            )
            for i, zone in enumerate(camera.zones)
        ]
        self._roi = shapes.polygon("roi", camera.roi, ("roi",)) if camera.roi else None
        wanted = camera.classes or self.class_names
        self._class_ok = np.array([c in wanted for c in self.class_names], dtype=bool)
        self.last_frame_index = -1
        self.last_frame_time: float | None = None
        #: The confirmed tracks matched in the latest frame, as the counters saw them.
        self.tracks = Detections.empty()

    def _filter(self, dets: Detections) -> Detections:
        if len(dets) == 0:
            return dets
        keep = self._class_ok[dets.class_id] & (dets.confidence >= self.camera.min_confidence)
        if self._roi is not None:
            keep &= self._roi.contains(anchor_points(dets.xyxy, Anchor.BOTTOM_CENTER))
        return dets[keep]

    def process(
        self, detections: Detections | None, frame_index: int, frame_time: float
    ) -> list[CameraEvent]:
        """A frame's detections through the tracker and counters; None for
        a frame the detector did not see under the detector interval
        (``carry``)."""
        if detections is None:
            return self.carry(frame_index, frame_time)
        frame = self.tracker.update(self._filter(detections), frame_index, frame_time)
        self.tracks = frame.detections
        self.last_frame_index = frame_index
        self.last_frame_time = frame_time
        return self._count(frame)

    def carry(self, frame_index: int, frame_time: float) -> list[CameraEvent]:
        """A frame between two detector calls (``camcount.vision.interval``):
        the tracker is not updated, so its tracks keep their motion model's
        course to the next detection, and the counters see no track, so
        nothing is decided on a predicted position; zones still sample their
        occupancy on time. ``tracks`` shows the confirmed tracks where they
        are predicted, for drawing."""
        forecast = self.tracker.forecast(frame_time)
        self.tracks = self.tracker.predicted(forecast)
        self.last_frame_index = frame_index
        self.last_frame_time = frame_time
        none = np.zeros(0, dtype=np.int64)
        return self._count(TrackFrame(frame_index, frame_time, Detections.empty(), none, none))

    def _count(self, frame: TrackFrame) -> list[CameraEvent]:
        events: list[CameraEvent] = []
        for line in self.lines:
            events.extend(line.update(frame))
        for zone in self.zones:
            events.extend(zone.update(frame))
        return events

    def finish(self) -> list[CameraEvent]:
        """End of a file: close the visits still open at its last frame."""
        if self.last_frame_time is None:
            return []
        events: list[CameraEvent] = []
        for zone in self.zones:
            events.extend(zone.close_all(self.last_frame_index, self.last_frame_time))
        return events

    def occupancy(self) -> dict[str, int]:
        """Tracks inside each zone now, by zone id."""
        return {zone.zone_id: zone.occupancy for zone in self.zones}

    def totals(self) -> list[CountRow]:
        """Counts so far, one row per (counter, class, direction), in
        ``row_order``."""
        rows: list[CountRow] = []
        for line in self.lines:
            for (cls, direction), n in sorted(line.totals.items()):
                rows.append(count_row(self.camera.id, line.counter_id, cls, direction, n))
        for zone in self.zones:
            for cls, n in sorted(zone.entries.items()):
                rows.append(count_row(self.camera.id, zone.zone_id, cls, "enter", n))
            for cls, n in sorted(zone.exits.items()):
                rows.append(count_row(self.camera.id, zone.zone_id, cls, "exit", n))
        return sorted(rows, key=row_order)

    def snapshot(self) -> ProcessorState:
        return ProcessorState(
            self.camera.id,
            self.tracker.snapshot(),
            tuple(line.snapshot() for line in self.lines),
            tuple(zone.snapshot() for zone in self.zones),
            self.last_frame_index,
            self.last_frame_time,
        )

    def restore(self, state: ProcessorState) -> None:
        """Restore by counter id: a counter added since the snapshot starts
        empty, and one removed since is ignored."""
        self.tracker.restore(state.tracker)
        saved_lines = {ls.counter_id: ls for ls in state.lines}
        saved_zones = {zs.zone_id: zs for zs in state.zones}
        for line in self.lines:
            if line.counter_id in saved_lines:
                line.restore(saved_lines[line.counter_id])
        for zone in self.zones:
            if zone.zone_id in saved_zones:
                zone.restore(saved_zones[zone.zone_id])
        self.last_frame_index = state.last_frame_index
        self.last_frame_time = state.last_frame_time


class _Shapes:
    """A camera's lines and polygons in pixels, checked against its frame.

    The frame size is known only once the first frame is decoded, so this
    is where a shape that lies wholly outside the picture (a typo, pixels
    given for normalised coordinates, a config written for another camera)
    is refused: it would count nothing, silently. The error names the
    camera, the shape and the frame size.
    """

    def __init__(self, camera: CameraConfig, frame_size: tuple[int, int]) -> None:
        self.camera = camera
        self.frame_size = frame_size
        self.normalized = camera.coordinates == "normalized"

    def _refuse(self, what: str, problem: str, loc: tuple[str | int, ...]) -> GeometryError:
        w, h = self.frame_size
        return GeometryError(f"camera {self.camera.id!r}, {what} ({w}x{h} frame): {problem}", loc)

    def segment(
        self,
        what: str,
        points: Sequence[Sequence[float]],
        band_px: float,
        loc: tuple[str | int, ...],
    ) -> Segment:
        start, end = to_pixels(points, self.frame_size, self.normalized)
        try:
            segment = Segment(start, end, band_px=band_px)
        except GeometryError as exc:
            raise self._refuse(what, str(exc), loc) from None
        if segment.length_within(self.frame_size) <= 0:
            raise self._refuse(
                what,
                f"the line from {format_point(start)} to {format_point(end)} "
                "lies wholly outside the frame",
                loc,
            )
        return segment

    def polygon(
        self, what: str, points: Sequence[Sequence[float]], loc: tuple[str | int, ...]
    ) -> Polygon:
        vertices = tuple(to_pixels(points, self.frame_size, self.normalized))
        try:
            polygon = Polygon(vertices)
        except GeometryError as exc:
            raise self._refuse(what, str(exc), loc) from None
        if polygon.area_within(self.frame_size) <= 0:
            corners = ", ".join(format_point(v) for v in vertices)
            raise self._refuse(what, f"the polygon {corners} lies wholly outside the frame", loc)
        return polygon
