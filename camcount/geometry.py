"""Lines, polygons and box anchors, all vectorised over many points.

Coordinates are image pixels with y pointing down. Config may give them
normalised to [0, 1]; ``to_pixels`` converts once the frame size is known.
The frame is the rectangle from (0, 0) to (width, height): a shape is usable
when some of it lies there, and every coordinate is a finite number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
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


def format_point(p: Sequence[float]) -> str:
    """A point as messages show it: ``(5, 2.5)``."""
    return f"({p[0]:g}, {p[1]:g})"


def _require_finite(what: str, values: Iterable[float]) -> None:
    """NaN or an infinity in a shape makes every comparison false, so the
    shape would silently count nothing: refused where it is built."""
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise GeometryError(f"{what} needs finite coordinates, got {bad[0]}")


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
        _require_finite("a line", (*self.start, *self.end))
        if not math.isfinite(self.band_px):
            raise GeometryError(f"band_px must be a finite number, got {self.band_px}")
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

    def distance(self, points: Points) -> npt.NDArray[np.float64]:
        """Distance to the segment itself, its ends included: how far a point
        is from any place where a move could count."""
        sx, sy = self.start
        dx, dy = self.end[0] - sx, self.end[1] - sy
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        t = np.clip(((pts[:, 0] - sx) * dx + (pts[:, 1] - sy) * dy) / self.length**2, 0.0, 1.0)
        return np.hypot(pts[:, 0] - (sx + t * dx), pts[:, 1] - (sy + t * dy))

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

    def length_within(self, frame_size: tuple[int, int]) -> float:
        """How much of the segment lies in the frame (Liang-Barsky clipping);
        0 for a line that no track in the picture could ever cross."""
        w, h = frame_size
        (x0, y0), (x1, y1) = self.start, self.end
        dx, dy = x1 - x0, y1 - y0
        t0, t1 = 0.0, 1.0
        for p, q in ((-dx, x0), (dx, w - x0), (-dy, y0), (dy, h - y0)):
            if p == 0:
                if q < 0:  # parallel to this frame edge and beyond it
                    return 0.0
                continue
            t = q / p
            if p < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
        return max(0.0, t1 - t0) * self.length


@dataclass(frozen=True, slots=True)
class Polygon:
    """A closed zone; points inside it, and their distance to its border."""

    vertices: tuple[Point, ...]

    def __post_init__(self) -> None:
        if len(self.vertices) < 3:
            raise GeometryError(f"a polygon needs at least 3 points, got {len(self.vertices)}")
        _require_finite("a polygon", (c for v in self.vertices for c in v))
        if _on_one_line(self.vertices):
            raise GeometryError(f"polygon has zero area: {self.vertices}")
        crossing = self_intersection(self.vertices)
        if crossing is not None:
            raise GeometryError(
                f"the polygon crosses itself at {format_point(crossing)}: "
                "list its points in order around its border"
            )
        if abs(self.area) < 1e-6:
            raise GeometryError(f"polygon has zero area: {self.vertices}")

    @property
    def area(self) -> float:
        v = np.asarray(self.vertices, dtype=np.float64)
        x, y = v[:, 0], v[:, 1]
        return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))

    def contains(self, points: Points) -> npt.NDArray[np.bool_]:
        """Inside or on the border: the even-odd rule, vectorised over points
        and edges, with the border included so that a polygon drawn along the
        frame's edge holds the anchors that lie on it (the bottom centre of a
        box cut by the bottom of the picture)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        v = np.asarray(self.vertices, dtype=np.float64)
        x0, y0 = v[:, 0][None, :], v[:, 1][None, :]
        x1, y1 = np.roll(v[:, 0], -1)[None, :], np.roll(v[:, 1], -1)[None, :]
        px, py = pts[:, 0:1], pts[:, 1:2]
        straddles = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        hits = straddles & (px < x_cross)
        inside = (hits.sum(axis=1) % 2) == 1
        if not inside.all():
            out = ~inside
            inside[out] = self.distance_to_border(pts[out]) <= ON_BORDER_PX
        return inside

    def distance_to_border(self, points: Points) -> npt.NDArray[np.float64]:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        a = np.asarray(self.vertices, dtype=np.float64)
        b = np.roll(a, -1, axis=0)
        ab = b - a
        ap = pts[:, None, :] - a[None, :, :]
        t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
        nearest = a[None] + t[..., None] * ab[None]
        return np.sqrt(((pts[:, None, :] - nearest) ** 2).sum(-1)).min(axis=1)

    def area_within(self, frame_size: tuple[int, int]) -> float:
        """The area of the polygon inside the frame (Sutherland-Hodgman
        clipping, exact for any simple polygon against a rectangle); 0 for a
        zone no anchor in the picture could ever be in."""
        w, h = frame_size
        pts = [(float(x), float(y)) for x, y in self.vertices]
        # Each frame edge as (coordinate index, limit, keep when below it).
        for axis, limit, below in ((0, 0.0, False), (0, float(w), True),
                                   (1, 0.0, False), (1, float(h), True)):  # fmt: skip
            pts = _clip_half_plane(pts, axis, limit, below)
            if len(pts) < 3:
                return 0.0
        x = np.array([p[0] for p in pts])
        y = np.array([p[1] for p in pts])
        return float(abs(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))))


#: How near a polygon's border a point counts as on it (float rounding).
ON_BORDER_PX = 1e-9


def _clip_half_plane(pts: list[Point], axis: int, limit: float, below: bool) -> list[Point]:
    """One Sutherland-Hodgman step: the polygon cut to one side of a frame edge."""

    def keep(p: Point) -> bool:
        return p[axis] <= limit if below else p[axis] >= limit

    out: list[Point] = []
    for i, cur in enumerate(pts):
        prev = pts[i - 1]
        if keep(cur) != keep(prev):
            t = (limit - prev[axis]) / (cur[axis] - prev[axis])
            out.append((prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])))
        if keep(cur):
            out.append(cur)
    return out


def _cross(o: Point, a: Point, b: Point) -> float:
    """Twice the signed area of the triangle o, a, b: which side of o->a b is on."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _on_segment(a: Point, b: Point, p: Point) -> bool:
    """For p on the infinite line through a and b: whether it lies between them."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _meet(p1: Point, p2: Point, q1: Point, q2: Point) -> Point | None:
    """A point the segments p1-p2 and q1-q2 share, or None."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        t = d1 / (d1 - d2)
        return (p1[0] + t * (p2[0] - p1[0]), p1[1] + t * (p2[1] - p1[1]))
    for d, a, b, p in ((d1, q1, q2, p1), (d2, q1, q2, p2), (d3, p1, p2, q1), (d4, p1, p2, q2)):
        if d == 0 and _on_segment(a, b, p):
            return p
    return None


def _on_one_line(vertices: Sequence[Sequence[float]]) -> bool:
    """Whether every point lies on one straight line (or on one point)."""
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    d = v - v[0]
    return bool(np.all(np.abs(d[:, 0, None] * d[None, :, 1] - d[:, 1, None] * d[None, :, 0]) == 0))


def self_intersection(vertices: Sequence[Sequence[float]]) -> Point | None:
    """Where a polygon's border meets itself, or None for a simple polygon.

    Edges that are not neighbours must not meet at all (a bow tie, or a
    figure eight touching at a point); neighbours share their corner and
    must not fold back along each other. A point repeated in a row is one
    corner. Inside such a shape the even-odd rule counts some areas out
    and dwell and occupancy stop meaning anything, so it is refused.
    """
    pts: list[Point] = []
    for x, y in vertices:
        p = (float(x), float(y))
        if not pts or p != pts[-1]:
            pts.append(p)
    if len(pts) > 1 and pts[0] == pts[-1]:
        pts.pop()
    n = len(pts)
    if n < 3:
        return None
    edges = [(pts[i], pts[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        a0, a1 = edges[i]
        # The next edge shares a1: it must not run back over this one.
        _, b1 = edges[(i + 1) % n]
        if _cross(a0, a1, b1) == 0:
            if _on_segment(a0, a1, b1):
                return b1
            if _on_segment(a1, b1, a0):
                return a0
        # Edges that are not neighbours share no point at all.
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the last edge is the first one's neighbour
            hit = _meet(a0, a1, *edges[j])
            if hit is not None:
                return hit
    return None
