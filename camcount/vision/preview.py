"""Annotated previews of a camera for people watching the dashboard.

A preview costs a camera nothing unless someone watches: ``PreviewGate``
lets the camera keep a frame only when a preview was asked for within the
last few seconds, and at most ``max_fps`` times a second; the drawing and
JPEG encoding happen only when a preview is asked for, once per kept frame.
Drawing itself is ``camcount.vision.annotate``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from camcount.config import CameraConfig
from camcount.detectors.detections import Detections
from camcount.events import CountRow
from camcount.vision import kalman
from camcount.vision.annotate import Image, draw_counted, draw_label
from camcount.vision.tracking import TRACKED, TrackerState

MAX_PREVIEW_FPS = 10.0
WATCH_S = 5.0  # a preview request keeps frames coming this long
MAX_WIDTH = 640
JPEG_QUALITY = 75


class PreviewGate:
    """When a camera should keep a frame for its preview.

    Invariant: frames are kept only while a request came within ``watch_s``
    and never more often than the fps of the latest request (capped at
    ``MAX_PREVIEW_FPS``). Times are ``time.monotonic()`` values passed in.
    """

    def __init__(self, watch_s: float = WATCH_S) -> None:
        self.watch_s = watch_s
        self._requested_at: float | None = None
        self._kept_at: float | None = None
        self._interval_s = 1.0

    def requested(self, now: float, max_fps: float) -> None:
        fps = min(max(max_fps, 0.1), MAX_PREVIEW_FPS)
        self._interval_s = 1.0 / fps
        self._requested_at = now

    @property
    def watched_since(self) -> float | None:
        return self._requested_at

    def watched(self, now: float) -> bool:
        """Whether someone asked within ``watch_s``: only then are full-size
        frames worth holding on to."""
        return self._requested_at is not None and now - self._requested_at <= self.watch_s

    def keep_frame(self, now: float) -> bool:
        """True (and counted) when this frame should be kept."""
        if not self.watched(now):
            return False
        if self._kept_at is not None and now - self._kept_at < self._interval_s:
            return False
        self._kept_at = now
        return True


@dataclass(frozen=True)
class PreviewFrame:
    """A kept frame and what to draw on it; the image is not copied (the
    decoder makes a new array per frame)."""

    frame_index: int
    frame_time: float
    image: Image
    tracks: Detections
    totals: tuple[CountRow, ...]
    #: Tracks inside each zone at this frame, by zone id (None: not known).
    occupancy: Mapping[str, int] | None = None


def confirmed_tracks(state: TrackerState) -> Detections:
    """The tracks matched in the tracker's latest frame, with their public
    ids, smoothed boxes and voted classes (what the counters saw)."""
    rows = np.flatnonzero((state.status == TRACKED) & (state.ids > 0))
    if rows.size == 0:
        return Detections.empty()
    boxes = kalman.xyah_to_xyxy(state.mean[rows, :4])
    votes = state.class_votes[rows]
    classes = np.argmax(votes, axis=1) if votes.size else np.zeros(rows.size, dtype=np.int64)
    return Detections.from_arrays(boxes, np.ones(rows.size), classes, state.ids[rows])


def render(
    frame: PreviewFrame,
    camera: CameraConfig,
    class_names: Sequence[str],
    max_width: int = MAX_WIDTH,
    quality: int = JPEG_QUALITY,
) -> bytes:
    """The frame with zones, lines (with their counts), tracks and ids, as JPEG."""
    h, w = frame.image.shape[:2]
    scale = min(1.0, max_width / w)
    if scale < 1.0:
        size = (round(w * scale), round(h * scale))
        image: Image = np.asarray(
            cv2.resize(frame.image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8
        )
    else:
        image = frame.image.copy()
    tracks = frame.tracks
    if len(tracks) and scale != 1.0:
        tracks = Detections(
            tracks.xyxy * np.float32(scale), tracks.confidence, tracks.class_id, tracks.tracker_id
        )
    draw_counted(image, camera, tracks, class_names, frame.totals, frame.occupancy, (w, h))
    draw_label(image, f"{camera.id}  frame {frame.frame_index}", (4, image.shape[0]), (40, 40, 40))
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode the preview of {camera.id}")
    return buf.tobytes()
