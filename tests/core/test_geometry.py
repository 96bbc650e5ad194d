import numpy as np
import pytest

from camcount.errors import GeometryError
from camcount.geometry import Anchor, Polygon, Segment, anchor_points, to_pixels


def test_anchor_points_of_a_box():
    box = [[10, 20, 30, 60]]
    assert anchor_points(box, Anchor.BOTTOM_CENTER).tolist() == [[20, 60]]
    assert anchor_points(box, Anchor.CENTER).tolist() == [[20, 40]]
    assert anchor_points(box, Anchor.TOP_CENTER).tolist() == [[20, 20]]
    assert anchor_points(box, Anchor.BOTTOM_LEFT).tolist() == [[10, 60]]
    assert anchor_points(box, Anchor.BOTTOM_RIGHT).tolist() == [[30, 60]]


def test_sides_follow_the_orientation_and_the_band():
    seg = Segment((0, 100), (200, 100), band_px=5)  # walking right: below is side B
    pts = np.array([[50, 90], [50, 97], [50, 103], [50, 110]])
    assert seg.sides(pts, 5, 5).tolist() == [-1, 0, 0, 1]
    reverse = Segment((200, 100), (0, 100), band_px=5)
    assert reverse.sides(pts, 5, 5).tolist() == [1, 0, 0, -1]


@pytest.mark.parametrize(
    ("p0", "p1", "within"),
    [
        ((100, 50), (100, 150), True),  # straight through the middle
        ((0, 50), (0, 150), True),  # exactly at the start point
        ((-5, 50), (-5, 150), False),  # just beyond the start
        ((250, 50), (250, 150), False),  # beyond the end
        ((-50, 50), (50, 150), True),  # diagonal, meets the line at x=0
    ],
)
def test_crossing_within_the_segment(p0, p1, within):
    seg = Segment((0, 100), (200, 100))
    assert seg.crossing_within(np.array([p0]), np.array([p1])).tolist() == [within]


def test_band_shrinks_near_the_frame_edge():
    seg = Segment((0, 4), (640, 4), band_px=8)
    band_a, band_b = seg.bands_within_frame((640, 360))
    assert band_a == pytest.approx(2.0)  # only 4 px of frame above the line
    assert band_b == 8


def test_degenerate_shapes_are_refused():
    with pytest.raises(GeometryError, match="zero length"):
        Segment((1, 1), (1, 1))
    with pytest.raises(GeometryError, match="at least 3"):
        Polygon(((0, 0), (1, 1)))
    with pytest.raises(GeometryError, match="zero area"):
        Polygon(((0, 0), (1, 1), (2, 2)))


def test_polygon_contains_and_distance():
    square = Polygon(((0, 0), (10, 0), (10, 10), (0, 10)))
    pts = np.array([[5, 5], [15, 5], [-1, -1], [10, 5]])
    assert square.contains(pts).tolist()[:3] == [True, False, False]
    assert square.distance_to_border(pts)[:3] == pytest.approx([5, 5, np.sqrt(2)])
    concave = Polygon(((0, 0), (10, 0), (10, 10), (5, 5), (0, 10)))
    assert concave.contains(np.array([[5, 8], [5, 2]])).tolist() == [False, True]


def test_normalised_coordinates_scale_by_frame_size():
    assert to_pixels([(0.5, 0.25)], (640, 360), normalized=True) == [(320.0, 90.0)]
    assert to_pixels([(3, 4)], (640, 360), normalized=False) == [(3.0, 4.0)]


def test_segment_length_is_computed_once_and_stays_out_of_equality():
    seg = Segment((0, 0), (3, 4), band_px=5)
    assert seg.length == 5.0
    assert seg == Segment((0, 0), (3, 4), band_px=5)
    assert hash(seg) == hash(Segment((0, 0), (3, 4), band_px=5))
    assert "_length" not in repr(seg)


def test_sides_are_int8_and_decided_only_beyond_the_band():
    seg = Segment((0, 100), (200, 100))
    sides = seg.sides(np.array([[10, 91.9], [10, 92], [10, 108], [10, 108.1]]), 8, 8)
    assert sides.dtype == np.int8
    assert sides.tolist() == [-1, 0, 0, 1]


@pytest.mark.parametrize(
    ("vertices", "point"),
    [
        (((0, 0), (10, 10), (10, 0), (0, 10)), (5, 5)),  # a bow tie
        (((0, 0), (10, 0), (5, 5), (10, 10), (0, 10), (5, 5)), (5, 5)),  # a figure eight
        (((0, 0), (10, 0), (4, 0), (4, 6)), (4, 0)),  # folds back along its first edge
        (((0, 0), (8, 0), (8, 8), (4, -2), (0, 8)), (4.8, 0)),  # a spike through the base
    ],
)
def test_a_border_that_crosses_itself_is_refused_at_the_crossing(vertices, point):
    with pytest.raises(GeometryError, match=rf"crosses itself at \({point[0]:g}, {point[1]:g}\)"):
        Polygon(vertices)


@pytest.mark.parametrize(
    "vertices",
    [
        ((0, 0), (10, 0), (10, 10), (0, 10)),
        ((0, 0), (10, 0), (10, 10), (5, 3), (0, 10)),  # concave
        ((0, 0), (10, 0), (10, 0), (0, 10)),  # a point given twice in a row is one corner
        ((0, 0), (10, 0), (10, 10), (0, 10), (0, 0)),  # closed by repeating the first point
    ],
)
def test_simple_polygons_are_accepted(vertices):
    assert Polygon(vertices).area != 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_shapes_need_finite_coordinates(bad):
    with pytest.raises(GeometryError, match="finite"):
        Segment((0, 0), (bad, 10))
    with pytest.raises(GeometryError, match="finite"):
        Segment((0, 0), (10, 10), band_px=bad)
    with pytest.raises(GeometryError, match="finite"):
        Polygon(((0, 0), (10, 0), (10, bad)))


@pytest.mark.parametrize(
    ("start", "end", "inside"),
    [
        ((100, 100), (200, 100), 100),
        ((-50, 100), (50, 100), 50),  # half of it
        ((0, 0), (0, 360), 360),  # along the left edge: on the frame still
        ((700, 0), (800, 10), 0),  # right of a 640 px wide frame
        ((-10, 5), (5, -10), 0),  # touches the corner and nothing more
        ((-100, 400), (700, 400), 0),  # below the frame, parallel to it
    ],
)
def test_length_of_a_line_within_the_frame(start, end, inside):
    assert Segment(start, end).length_within((640, 360)) == pytest.approx(inside)


def test_area_of_a_zone_within_the_frame():
    frame = (640, 360)
    assert Polygon(((10, 10), (20, 10), (20, 20))).area_within(frame) == pytest.approx(50)
    assert Polygon(((-10, -10), (10, -10), (10, 10), (-10, 10))).area_within(
        frame
    ) == pytest.approx(100)
    assert Polygon(((700, 0), (800, 0), (800, 100))).area_within(frame) == 0
    assert Polygon(((-20, 0), (0, 0), (0, 50), (-20, 50))).area_within(frame) == 0  # shares an edge
    concave = Polygon(((0, 0), (100, 0), (100, 100), (50, 20), (0, 100)))
    assert concave.area_within(frame) == pytest.approx(abs(concave.area))


def test_a_polygon_holds_the_points_on_its_border():
    frame = Polygon(((0, 0), (640, 0), (640, 360), (0, 360)))
    # The bottom centre of a box cut by the bottom edge, and the bottom right
    # of one cut by the right edge, lie on the border of a zone drawn on it.
    pts = np.array([[320, 360], [640, 200], [0, 0], [320, 361], [641, 200]])
    assert frame.contains(pts).tolist() == [True, True, True, False, False]
