"""Is anything moving? A cheap answer per frame, so that a camera can skip
the detector on frames where nothing changed.

Most frames of a counting camera change nothing (an empty corridor, a
parked car). The measure is what motion detectors in NVRs do, sized to
cost a small fraction of a detector call:

- the frame is shrunk (``width`` pixels wide), turned grey and blurred, so
  sensor noise and compression blocks average out;
- a background is kept as a running average (``learning_rate`` per frame),
  so slow changes (the sun moving, lights warming up) are learnt, not seen;
- before comparing, the background is scaled to the frame's overall
  brightness, so a sudden global change (a cloud, lights switched on, the
  camera's exposure stepping) is not motion;
- masked areas (a timestamp overlay, a flag in the wind, a screen) are
  ignored;
- what differs by more than ``threshold`` grey levels, in blobs of at least
  ``min_area`` of the frame, is motion, and the blobs' boxes are returned
  so a caller may detect only there.

The first frame has no background to compare with: it counts as motion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class MotionSettings:
    width: int = 160
    threshold: int = 15
    #: Smallest moving blob, as a fraction of the frame's area.
    min_area: float = 0.0004
    learning_rate: float = 0.05
    #: Masked polygons in normalised (0-1) frame coordinates.
    masks: tuple[tuple[tuple[float, float], ...], ...] = ()
    #: Blobs' boxes grow by this fraction of their size on every side:
    #: motion is seen where an object changed, not all of the object.
    pad: float = 0.25

    def __post_init__(self) -> None:
        if self.width < 16:
            raise ValueError(f"motion width must be at least 16 pixels, got {self.width}")
        if not 0 < self.threshold < 255:
            raise ValueError(f"motion threshold must be in 1..254, got {self.threshold}")
        if not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate}")
        if not 0.0 <= self.min_area < 1.0:
            raise ValueError(f"min_area must be in [0, 1), got {self.min_area}")


@dataclass(frozen=True)
class Motion:
    moving: bool
    #: Fraction of the (unmasked) frame that changed.
    fraction: float
    #: Moving blobs in the frame's pixel coordinates (x1, y1, x2, y2).
    regions: tuple[Box, ...]


class MotionDetector:
    def __init__(self, settings: MotionSettings | None = None) -> None:
        self.settings = settings or MotionSettings()
        self._background: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))

    def reset(self) -> None:
        """Forget the background (a seek, a reconnect: the scene may differ)."""
        self._background = None

    def __call__(self, frame: np.ndarray) -> Motion:
        small = self._prepare(frame)
        if self._background is None:
            self._background = small.astype(np.float32)
            h, w = frame.shape[:2]
            return Motion(True, 1.0, ((0.0, 0.0, float(w), float(h)),))
        bg = self._background
        valid = self._mask
        # Scale the background to the frame's overall brightness: a global
        # light change moves both means alike and leaves no difference.
        frame_mean = float(small[valid].mean()) if valid is not None else float(small.mean())
        bg_mean = float(bg[valid].mean()) if valid is not None else float(bg.mean())
        gain = frame_mean / bg_mean if bg_mean > 1.0 else 1.0
        diff = cv2.absdiff(small.astype(np.float32), bg * gain)
        changed = (diff > self.settings.threshold).astype(np.uint8)
        if valid is not None:
            changed[~valid] = 0
        opened: np.ndarray = cv2.morphologyEx(changed, cv2.MORPH_OPEN, self._kernel)
        regions, moving_px = self._blobs(opened, frame.shape[:2])
        # Learn the scene, but not what is moving in it: a person standing
        # still is learnt only slowly, a passer-by not at all.
        rate = self.settings.learning_rate
        learn = np.where(opened > 0, rate * 0.1, rate).astype(np.float32)
        self._background = bg * gain + learn * (small.astype(np.float32) - bg * gain)
        area = float(valid.sum()) if valid is not None else float(small.size)
        fraction = moving_px / area if area else 0.0
        return Motion(bool(regions), fraction, tuple(regions))

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        width = min(self.settings.width, w)
        height = max(1, round(h * width / w))
        grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (3, 3), 0)
        if self._shape != (height, width):
            self._shape = (height, width)
            self._background = None
            self._mask = _unmasked(self.settings.masks, (height, width))
        return small

    def _blobs(self, changed: np.ndarray, frame_hw: tuple[int, int]) -> tuple[list[Box], int]:
        n, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
        h, w = changed.shape
        min_px = max(1.0, self.settings.min_area * h * w)
        sx, sy = frame_hw[1] / w, frame_hw[0] / h
        pad = self.settings.pad
        regions: list[Box] = []
        moving = 0
        for i in range(1, n):
            x, y, bw, bh, px = (int(v) for v in stats[i])
            if px < min_px:
                continue
            moving += px
            px_pad, py_pad = bw * pad, bh * pad
            regions.append(
                (
                    max(0.0, (x - px_pad) * sx),
                    max(0.0, (y - py_pad) * sy),
                    min(float(frame_hw[1]), (x + bw + px_pad) * sx),
                    min(float(frame_hw[0]), (y + bh + py_pad) * sy),
                )
            )
        return regions, moving


def _unmasked(
    masks: Sequence[Sequence[tuple[float, float]]], shape: tuple[int, int]
) -> np.ndarray | None:
    if not masks:
        return None
    h, w = shape
    drawn = np.zeros((h, w), np.uint8)
    for polygon in masks:
        pts = np.array([[x * w, y * h] for x, y in polygon], np.float32).round().astype(np.int32)
        cv2.fillPoly(drawn, [pts], 1)
    return drawn == 0
