"""Whether a frame with tracks needs the detector: the detector interval.

The motion gate (``camcount.vision.gating``) skips only frames with no
track at all; on a street people move in every frame, so it saves nothing
there. The interval is the second lever, as in DeepStream's detector
``interval``: after a detector call, the next may wait up to
``max_interval`` frames, and the frames between are *carried*: the tracker
is not updated, its tracks stand where their motion model (the Kalman
filter) puts them, and the counters see no detection at all, so no
crossing and no zone transition is ever decided on a predicted position.

A frame still goes to the detector, whatever the interval, when
(in the order the decision is reported):

1. ``interval``: no frame was detected yet, or ``max_interval`` frames have
   passed since the last detector call;
2. ``tentative``: a track is not yet confirmed: it confirms only through
   consecutive sightings, and a miss would drop it;
3. ``lost``: a confirmed track is lost while its predicted box is still in
   the frame: it may be found again in any frame (a lost track whose
   prediction left the picture is found only by coming back, which is
   motion, rule 4);
4. ``newcomer``: motion (``camcount.vision.motion``) appears outside every
   track's box: something the tracker does not hold may have come in;
5. ``line`` / ``zone``: a confirmed track could be near a counting line or
   a zone's border. Its *reach* is its predicted anchor (the point the
   counter tests) grown by ``sigmas`` standard deviations of the filter's
   prediction, by ``speed_share`` of its speed for every frame since it was
   last detected (a walker turns; the filter's constant velocity does not),
   and by one frame of its speed (so no move between two carried frames
   jumps the line). Within the line's band plus ``margin_px`` of the
   segment, or the zone's band plus ``margin_px`` of its border, the frame
   is detected.

Why counts do not change: a line counter counts a track when it is next
seen beyond the band on the other side of the segment, and a zone counter
changes a visit only when a track is seen inside it or beyond its band
outside. Both happen only near the segment or the border, where every
frame is detected; between two detected frames far from a line, the
predicted path (and the true one, within its reach) never meets it, so the
move the counter joins (last detected point to the next) does not cross it
either. What can differ is bounded and stated in docs/detectors.md: a
track that changes course by more than its reach within one interval; the
frame a track's loss is noticed, and so when a lost track's time runs out
(a zone visit left by a track lost while inside ends up to the interval's
frames earlier, a track that left the frame is dropped up to the
interval's frames later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from camcount.geometry import anchor_points
from camcount.vision.motion import Motion
from camcount.vision.tracking import LOST, TENTATIVE, TRACKED

if TYPE_CHECKING:
    from camcount.vision.processor import CameraProcessor

#: Why a frame with the interval on went to the detector, or was carried.
INTERVAL_REASONS = ("tentative", "lost", "newcomer", "line", "zone", "interval", "carried")

#: The motion measure pads its blobs by a share of their size (MotionSettings.pad);
#: track boxes are grown by as much before comparing, so a track's own
#: motion never looks like a newcomer.
_MOTION_PAD = 0.25
#: A moving blob is a newcomer when more than this share of it lies
#: outside every track's box (two people side by side make one blob: the
#: newcomer is about half of it).
_NEWCOMER_SHARE = 1 / 3
#: Sample points per side of a blob when measuring how much of it tracks cover.
_COVER_GRID = 8

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class IntervalSettings:
    """``max_interval`` is the most frames from one detector call to the
    next: 1 (the default) runs the detector on every frame, as without the
    interval."""

    max_interval: int = 1
    margin_px: float = 16.0
    sigmas: float = 2.0
    speed_share: float = 0.25

    def __post_init__(self) -> None:
        if self.max_interval < 1:
            raise ValueError(f"max_interval must be >= 1, got {self.max_interval}")
        if self.margin_px < 0:
            raise ValueError(f"margin_px must be >= 0, got {self.margin_px}")
        if self.sigmas < 0 or self.speed_share < 0:
            raise ValueError(
                f"sigmas and speed_share must be >= 0, got {self.sigmas}, {self.speed_share}"
            )

    @property
    def enabled(self) -> bool:
        return self.max_interval > 1


def interval_reason(
    settings: IntervalSettings,
    motion: Motion,
    frame_time: float,
    processor: CameraProcessor,
    frames_since_detected: int | None,
) -> str:
    """Why this frame goes to the detector (module docstring, rules 1 to 5),
    or ``"carried"``. ``frames_since_detected`` is None before the first
    detector call, else the frames decided since it (this one excluded)."""
    if frames_since_detected is None:
        return "interval"
    forecast = processor.tracker.forecast(frame_time)
    status = forecast.status
    if (status == TENTATIVE).any():
        return "tentative"
    if (status == LOST).any() and _in_frame(forecast.xyxy[status == LOST], processor).any():
        return "lost"
    reach = (
        settings.sigmas * forecast.spread_px
        + settings.speed_share * forecast.speed_px * np.maximum(forecast.frames_unseen, 0.0)
        + forecast.speed_px
    )
    if motion.moving and _newcomer(motion, forecast.xyxy, reach):
        return "newcomer"
    tracked = status == TRACKED
    boxes, reach = forecast.xyxy[tracked], reach[tracked]
    if len(boxes):
        for line in processor.lines:
            distance = line.segment.distance(anchor_points(boxes, line.anchor))
            if (distance <= line.segment.band_px + settings.margin_px + reach).any():
                return "line"
        for zone in processor.zones:
            distance = zone.polygon.distance_to_border(anchor_points(boxes, zone.anchor))
            if (distance <= zone.band_px + settings.margin_px + reach).any():
                return "zone"
    if frames_since_detected + 1 >= settings.max_interval:
        return "interval"
    return "carried"


def _in_frame(xyxy: FloatArray, processor: CameraProcessor) -> npt.NDArray[np.bool_]:
    """Whether each box's centre lies in the frame."""
    w, h = processor.frame_size
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2
    cy = (xyxy[:, 1] + xyxy[:, 3]) / 2
    inside: npt.NDArray[np.bool_] = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
    return inside


def _newcomer(motion: Motion, xyxy: FloatArray, reach: FloatArray) -> bool:
    """Whether a moving blob lies mostly outside every track's box (each
    grown by its reach and the motion measure's padding)."""
    if not motion.regions:
        return False
    if len(xyxy) == 0:
        return True
    size = np.stack([xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], axis=1)
    grow = size * _MOTION_PAD + reach[:, None]  # (T, 2): x, y
    lo = xyxy[:, :2] - grow
    hi = xyxy[:, 2:] + grow
    steps = (np.arange(_COVER_GRID) + 0.5) / _COVER_GRID
    for x1, y1, x2, y2 in motion.regions:
        gx, gy = np.meshgrid(x1 + (x2 - x1) * steps, y1 + (y2 - y1) * steps)
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1)  # (P, 2)
        inside = (pts[:, None, :] >= lo[None]) & (pts[:, None, :] <= hi[None])
        covered = np.all(inside, axis=2).any(axis=1)
        if 1.0 - float(covered.mean()) > _NEWCOMER_SHARE:
            return True
    return False
