"""Which side of a line a box at the frame's edge is on.

An anchor cannot always reach the place a line near the frame edge asks for:
the bottom centre of a box cut by the left edge stays half a visible width
inside the picture, so a line 2 px from that edge, whose band the frame
clips to 1 px on that side (``Segment.bands_within_frame``), would never see
a track reach that side. On a side where the frame leaves a line less room
than twice its band, the frame edge plays the band's part:

1. A detector box that reaches that edge (within ``EDGE_TOUCH_PX``) stands
   for an object that goes on beyond the picture. Its point there is its
   anchor moved just beyond the edge (``BEYOND_EDGE_PX``); only edges whose
   point lies beyond the clipped band, on the clipped side, take part.
2. Such a box is on the clipped side when the edge cuts a side of the box its
   anchor is measured from (the anchor is out of sight: the bottom centre of
   a box cut at the left, right or bottom), or when its anchor is in sight
   but inside the band (the feet of a person leaving at the top, seen a few
   pixels below a line along it).
3. Hysteresis, as the band gives elsewhere: while a box is within
   ``band_px`` of that edge, it is on the other side only when its anchor is
   in sight and beyond twice the band there. A box whose edge flickers on
   and off the frame's edge never counts twice.

An anchor in sight and far from the line keeps its side: a person whose head
the top edge cuts is where their feet are. The point of a box the edge
decides is the one beyond the edge, so the move from the far side meets the
line where the track left the picture, and a track that leaves beyond
either end of the segment is still not counted.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from camcount.geometry import Anchor, Points, Segment

#: A detector box this close to the frame edge (or past it) is cut by it.
EDGE_TOUCH_PX = 1.0
#: How far beyond the frame edge the point of a box cut by it is placed.
BEYOND_EDGE_PX = 1.0

#: The box sides, in xyxy order (left, top, right, bottom), each anchor is
#: measured from: a cut side means the anchor of the whole object is not seen.
ANCHOR_SIDES: dict[Anchor, tuple[bool, bool, bool, bool]] = {
    Anchor.BOTTOM_CENTER: (True, False, True, True),
    Anchor.CENTER: (True, True, True, True),
    Anchor.TOP_CENTER: (True, True, True, False),
    Anchor.BOTTOM_LEFT: (True, False, False, True),
    Anchor.BOTTOM_RIGHT: (False, False, True, True),
}


def edge_gaps(xyxy: npt.ArrayLike, frame_size: tuple[int, int]) -> npt.NDArray[np.float64]:
    """Per box, how far each of its sides is from the frame edge it faces
    (left, top, right, bottom); 0 or less where the edge cuts it."""
    boxes = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w, h = frame_size
    out = boxes.copy()
    out[:, 2] = w - boxes[:, 2]
    out[:, 3] = h - boxes[:, 3]
    return out


def beyond_edges(points: Points, frame_size: tuple[int, int]) -> npt.NDArray[np.float64]:
    """Per point, the point moved just beyond each of the four edges, (N, 4, 2);
    a point already further out stays where it is."""
    w, h = frame_size
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.repeat(pts[:, None, :], 4, axis=1)
    out[:, 0, 0] = np.minimum(pts[:, 0], -BEYOND_EDGE_PX)
    out[:, 1, 1] = np.minimum(pts[:, 1], -BEYOND_EDGE_PX)
    out[:, 2, 0] = np.maximum(pts[:, 0], w + BEYOND_EDGE_PX)
    out[:, 3, 1] = np.maximum(pts[:, 1], h + BEYOND_EDGE_PX)
    return out


class EdgeSides:
    """The rule above for one line, anchor and frame size.

    Built only for a line with a clipped side (``for_line`` gives None
    otherwise), so lines away from the edge pay nothing for it.
    """

    def __init__(
        self,
        segment: Segment,
        anchor: Anchor,
        frame_size: tuple[int, int],
        bands: tuple[float, float],
    ) -> None:
        self.segment = segment
        self.frame_size = frame_size
        self._band_a, self._band_b = bands
        self._clipped_a = bands[0] < segment.band_px
        self._clipped_b = bands[1] < segment.band_px
        self._anchor_sides = np.array(ANCHOR_SIDES[anchor], dtype=bool)

    @classmethod
    def for_line(
        cls, segment: Segment, anchor: Anchor, frame_size: tuple[int, int] | None
    ) -> EdgeSides | None:
        if frame_size is None:
            return None
        bands = segment.bands_within_frame(frame_size)
        if bands[0] >= segment.band_px and bands[1] >= segment.band_px:
            return None
        return cls(segment, anchor, frame_size, bands)

    def decide(
        self,
        sides: npt.NDArray[np.int8],
        anchors: Points,
        observed_xyxy: npt.ArrayLike,
    ) -> tuple[npt.NDArray[np.int8], Points]:
        """``sides`` (from the band test of ``anchors``) with the rule above
        applied, and the point of each box: its anchor, or the point beyond
        the edge for the boxes the edge put on its side.

        ``observed_xyxy`` are the detector's boxes: a tracker's smoothed box
        lags behind one coming in from the edge and may not reach it.
        """
        gaps = edge_gaps(observed_xyxy, self.frame_size)
        rows = np.flatnonzero((gaps <= self.segment.band_px).any(axis=1))
        if rows.size == 0:
            return sides, anchors
        gap = gaps[rows]
        # Step 1: the point beyond each edge, and which edges lead into a
        # clipped side that way.
        beyond = beyond_edges(anchors[rows], self.frame_size)
        d = self.segment.signed_distance(beyond.reshape(-1, 2)).reshape(-1, 4)
        into_a = (d < -self._band_a) if self._clipped_a else np.zeros_like(gap, dtype=bool)
        into_b = (d > self._band_b) if self._clipped_b else np.zeros_like(gap, dtype=bool)
        to_a, to_b = into_a.any(axis=1), into_b.any(axis=1)
        edge_side = np.where(to_a & ~to_b, -1, np.where(to_b & ~to_a, 1, 0)).astype(np.int8)
        into = np.where(edge_side[:, None] < 0, into_a, into_b)
        near = into & (gap <= self.segment.band_px)
        cut = into & (gap <= EDGE_TOUCH_PX)
        unseen = self._anchor_sides[None, :]
        now = sides[rows]
        # Step 2: a cut box whose anchor is out of sight, or in sight and
        # inside the band, is on the edge's side.
        to_edge: npt.NDArray[np.bool_] = (edge_side != 0) & (now != edge_side)
        to_edge &= (cut & unseen).any(axis=1) | (cut.any(axis=1) & (now == 0))
        # Step 3: near the edge, the other side needs an anchor in sight
        # beyond twice the band.
        anchor_d = np.abs(self.segment.signed_distance(anchors[rows]))
        far_band = np.where(edge_side < 0, self._band_b, self._band_a)
        withheld = (edge_side != 0) & (now == -edge_side) & near.any(axis=1) & ~to_edge
        withheld &= (near & unseen).any(axis=1) | (anchor_d <= 2 * far_band)
        if not (to_edge.any() or withheld.any()):
            return sides, anchors
        decided = sides.copy()
        points = anchors.copy()
        decided[rows[withheld]] = 0
        moved = to_edge.nonzero()[0]
        decided[rows[moved]] = edge_side[moved]
        points[rows[moved]] = beyond[moved, cut[moved].argmax(axis=1)]
        return decided, points
