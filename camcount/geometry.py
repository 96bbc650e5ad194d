"""Lines, polygons and box anchors, all vectorised over many points.

Coordinates are image pixels with y pointing down. Config may give them
normalised to [0, 1]; ``to_pixels`` converts once the frame size is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from camcount.errors import GeometryError

Point = tuple[float, float]
Points = npt.NDArray[np.float64]


class Anchor(StrEnum):
    """Which point of a box stands for the object when testing lines and zones."""

    BOTTOM_CENTER = "bottom_center"
    CENTER = "center"
    TOP_CENTER = "top_center"
    BOTTOM_LEFT = "bottom_left"
    BOTTOM_RIGHT = "bottom_right"


def anchor_points(xyxy: npt.ArrayLike, anchor: Anchor) -> Points:
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    match anchor:
        case Anchor.BOTTOM_CENTER:
            x, y = (x1 + x2) / 2, y2
        case Anchor.CENTER:
            x, y = (x1 + x2) / 2, (y1 + y2) / 2
        case Anchor.TOP_CENTER:
            x, y = (x1 + x2) / 2, y1
        case Anchor.BOTTOM_LEFT:
            x, y = x1, y2
        case Anchor.BOTTOM_RIGHT:
            x, y = x2, y2
    pts = np.empty((len(boxes), 2))  # cheaper than np.stack for the few boxes of a frame
    pts[:, 0] = x
    pts[:, 1] = y
    return pts


def to_pixels(
    points: Sequence[Sequence[float]], frame_size: tuple[int, int], normalized: bool
) -> list[Point]:
    """Scale normalised points by the frame's (width, height); pixels pass through."""
    if not normalized:
        return [(float(x), float(y)) for x, y in points]
    w, h = frame_size
    return [(float(x) * w, float(y) * h) for x, y in points]


@dataclass(frozen=True, slots=True)
class Segment:
    """A counting line from ``start`` to ``end`` with a hysteresis band.

    Orientation: walking from ``start`` to ``end``, side A is on the left and
    side B on the right (image coordinates, y down). Crossing A -> B is
    ``in``, B -> A is ``out``. A point is on a side only once it is further
    than the band from the line; inside the band its side is undecided (0).
    """

    start: Point
    end: Point
    band_px: float = 8.0
    # Counters ask for the length once per frame and per line: computed once.
    _length: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        length = float(np.hypot(self.end[0] - self.start[0], self.end[1] - self.start[1]))
        object.__setattr__(self, "_length", length)  # frozen: set once, here
        if self.length < 1e-6:
            raise GeometryError(f"line has zero length: {self.start} -> {self.end}")
        if self.band_px < 0:
            raise GeometryError(f"band_px must be >= 0, got {self.band_px}")

    @property
    def length(self) -> float:
        return self._length

    def signed_distance(self, points: Points) -> npt.NDArray[np.float64]:
        """Distance to the infinite line: negative on side A, positive on side B."""
        sx, sy = self.start
        dx, dy = self.end[0] - sx, self.end[1] - sy
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return (dx * (pts[:, 1] - sy) - dy * (pts[:, 0] - sx)) / self.length

    def sides(self, points: Points, band_a: float, band_b: float) -> npt.NDArray[np.int8]:
        """-1 beyond the band on side A, +1 beyond it on side B, 0 inside it."""
        d = self.signed_distance(points)
        out = np.zeros(len(d), dtype=np.int8)
        out[d < -band_a] = -1
        out[d > band_b] = 1
        return out

    def crossing_within(self, p0: Points, p1: Points) -> npt.NDArray[np.bool_]:
        """Whether each move p0 -> p1 meets the line between its two ends.

        The move's intersection with the infinite line is projected on the
        segment; a track that passes beyond either end is not counted.
        """
        a = np.asarray(p0, dtype=np.float64).reshape(-1, 2)
        b = np.asarray(p1, dtype=np.float64).reshape(-1, 2)
        da = self.signed_distance(a)
        db = self.signed_distance(b)
        denom = da - db
        frac = np.divide(da, denom, out=np.zeros_like(da), where=np.abs(denom) > 1e-12)
        hit = a + (b - a) * frac[:, None]
        sx, sy = self.start
        dx, dy = self.end[0] - sx, self.end[1] - sy
        t = ((hit[:, 0] - sx) * dx + (hit[:, 1] - sy) * dy) / (self.length**2)
        return (t >= 0.0) & (t <= 1.0)

    def bands_within_frame(self, frame_size: tuple[int, int] | None) -> tuple[float, float]:
        """The band on each side, shrunk where the frame edge is nearer than it.

        A line a few pixels from the frame edge would otherwise never see a
        track leave the band on that side (the object leaves the picture
        first), so lines near the edge could not count.
        """
        if frame_size is None:
            return self.band_px, self.band_px
        w, h = frame_size
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
        d = self.signed_distance(corners)
        reach_a = max(0.0, -float(d.min()))
        reach_b = max(0.0, float(d.max()))
        return min(self.band_px, reach_a / 2), min(self.band_px, reach_b / 2)


@dataclass(frozen=True, slots=True)
class Polygon:
    """A closed zone; points inside it, and their distance to its border."""

    vertices: tuple[Point, ...]

    def __post_init__(self) -> None:
        if len(self.vertices) < 3:
            raise GeometryError(f"a polygon needs at least 3 points, got {len(self.vertices)}")
        if abs(self.area) < 1e-6:
            raise GeometryError(f"polygon has zero area: {self.vertices}")

    @property
    def area(self) -> float:
        v = np.asarray(self.vertices, dtype=np.float64)
        x, y = v[:, 0], v[:, 1]
        return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    def contains(self, points: Points) -> npt.NDArray[np.bool_]:
        """Even-odd rule, vectorised over points and edges."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        v = np.asarray(self.vertices, dtype=np.float64)
        x0, y0 = v[:, 0][None, :], v[:, 1][None, :]
        x1, y1 = np.roll(v[:, 0], -1)[None, :], np.roll(v[:, 1], -1)[None, :]
        px, py = pts[:, 0:1], pts[:, 1:2]
        straddles = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        hits = straddles & (px < x_cross)
        return (hits.sum(axis=1) % 2) == 1

    def distance_to_border(self, points: Points) -> npt.NDArray[np.float64]:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        a = np.asarray(self.vertices, dtype=np.float64)
        b = np.roll(a, -1, axis=0)
        ab = b - a
        ap = pts[:, None, :] - a[None, :, :]
        t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
        nearest = a[None] + t[..., None] * ab[None]
        return np.sqrt(((pts[:, None, :] - nearest) ** 2).sum(-1)).min(axis=1)
