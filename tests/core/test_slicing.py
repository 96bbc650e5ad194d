"""Slicing: tile geometry, the merge of what the tiles found, and the whole
path on the oracle (exact truth) and on the real person SSDLite.

Real clip: ``ahmetozlu_cutl.mp4`` (a busy shopping street seen from above,
10-18 people a frame), from ahmetozlu/tensorflow_object_counting_api (MIT).
"""

from __future__ import annotations

import json
import re
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from camcount.config import AppConfig, CameraConfig, SlicingConfig, load_config
from camcount.detectors import DetectorSettings, FrameMeta, build_detector
from camcount.detectors.detections import Detections
from camcount.detectors.slicing import (
    MAX_REGIONS,
    SliceSettings,
    detect_sliced,
    match_matrix,
    merge_detections,
    plan_regions,
)
from camcount.errors import SlicingError
from camcount.reference import count_video
from camcount.scenes.synthetic import generate_scene, write_scene
from camcount.vision.video import VideoFile

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
STREET = DATA / "videos" / "ahmetozlu_cutl.mp4"


# --- step 1: where the tiles lie ------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "settings", "tiles"),
    [
        # a 2 x 2 grid on the synthetic scene's frame, neighbours sharing a fifth
        ((640, 360), SliceSettings(grid=(2, 2)), 4),
        # 3 x 2 on the real street clip
        ((854, 480), SliceSettings(grid=(3, 2), overlap=0.25), 6),
        # square tiles of the model's input size: 4 across, 2 down
        ((854, 480), SliceSettings(tile_px=(300, 300)), 8),
        # sizes that do not divide: the last tile still ends on the last pixel
        ((1001, 333), SliceSettings(tile_px=(257, 100), overlap=0.1), 5 * 4),
        # no overlap at all: tiles meet edge to edge
        ((600, 300), SliceSettings(tile_px=(200, 150), overlap=0.0), 3 * 2),
        # a tile wider than the frame spans it; down, 250 px past the first
        # tile in steps of at most 120 px: 3 more tiles
        ((200, 400), SliceSettings(tile_px=(300, 150)), 4),
        # a tall 1 x 3 grid: columns span the frame
        ((320, 960), SliceSettings(grid=(1, 3), overlap=0.5), 3),
    ],
)
def test_tiles_cover_the_frame_inside_it_with_their_overlap(
    frame: tuple[int, int], settings: SliceSettings, tiles: int
) -> None:
    regions = plan_regions(frame, settings)
    w, h = frame
    assert regions[0] == (0, 0, w, h)  # the whole frame first
    cut = regions[1:]
    assert len(cut) == tiles
    covered = np.zeros((h, w), dtype=np.int64)
    for x0, y0, x1, y1 in cut:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1  # every pixel, the last row and column included
    # Neighbours along each axis share at least the overlap (to a pixel).
    for axis in (0, 1):
        starts = sorted({r[axis] for r in cut})
        size = cut[0][axis + 2] - cut[0][axis]
        for a, b in pairwise(starts):
            assert a + size - b >= int(settings.overlap * size)


@pytest.mark.parametrize(
    ("frame", "settings"),
    [
        ((300, 200), SliceSettings(tile_px=(320, 320))),  # smaller than one tile
        ((300, 200), SliceSettings(tile_px=(300, 200))),  # exactly one tile
        ((300, 200), SliceSettings(grid=(1, 1))),
    ],
)
def test_a_frame_no_larger_than_a_tile_is_detected_once(
    frame: tuple[int, int], settings: SliceSettings
) -> None:
    assert plan_regions(frame, settings) == ((0, 0, *frame),)
    # Without the whole-frame pass, the one tile is the whole frame.
    alone = SliceSettings(tile_px=settings.tile_px, grid=settings.grid, whole_frame=False)
    assert plan_regions(frame, alone) == ((0, 0, *frame),)


def test_without_the_whole_frame_only_tiles_are_detected() -> None:
    regions = plan_regions((640, 360), SliceSettings(grid=(2, 2), whole_frame=False))
    assert len(regions) == 4 and (0, 0, 640, 360) not in regions


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (lambda: SliceSettings(), "exactly one of tile_px and grid"),
        (lambda: SliceSettings(tile_px=(10, 10), grid=(2, 2)), "exactly one"),
        (lambda: SliceSettings(grid=(0, 2)), "at least 1"),
        (lambda: SliceSettings(grid=(2, 2), overlap=1.0), "overlap must be in [0, 1)"),
        (lambda: SliceSettings(grid=(2, 2), match_threshold=0.0), "match_threshold"),
        # too many regions for this frame: refused with the count
        (lambda: plan_regions((1920, 1080), SliceSettings(tile_px=(64, 64))), "regions per"),
        # overlap so large the tiles would not move
        (lambda: plan_regions((640, 360), SliceSettings(tile_px=(2, 2), overlap=0.8)), "step"),
    ],
)
def test_settings_that_cannot_slice_are_refused(settings, message: str) -> None:
    with pytest.raises(SlicingError, match=re.escape(message)):
        settings()


def test_the_region_cap_is_reachable_by_a_grid_and_no_further() -> None:
    assert len(plan_regions((1920, 1080), SliceSettings(grid=(9, 7)))) == MAX_REGIONS
    with pytest.raises(SlicingError):
        plan_regions((1920, 1080), SliceSettings(grid=(8, 8)))


# --- step 3: the merge ----------------------------------------------------------------------


def dets(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    """Boxes as (x0, y0, x1, y1, confidence, class)."""
    a = np.array(rows, dtype=np.float64).reshape(-1, 6)
    return Detections.from_arrays(a[:, :4], a[:, 4], a[:, 5])


GRID = SliceSettings(grid=(2, 2))
PERSON = (300.0, 150.0, 340.0, 230.0)  # straddles both borders of a 2 x 2 grid on 640 x 360


@pytest.mark.parametrize(
    ("parts", "settings", "expected"),
    [
        # the whole frame and one tile found the same person: one box, the better score
        ([dets((*PERSON, 0.6, 0)), dets((301, 151, 340, 229, 0.8, 0))], GRID,
         [(300, 150, 340, 230, 0.8, 0)]),
        # the whole frame's person and the four pieces the tiles' borders cut it in
        ([dets((*PERSON, 0.7, 0)), dets((300, 150, 340, 200, 0.9, 0)),
          dets((300, 150, 340, 200, 0.9, 0)), dets((300, 160, 340, 230, 0.8, 0)),
          dets((300, 160, 340, 230, 0.8, 0))], GRID, [(300, 150, 340, 230, 0.9, 0)]),
        # the whole frame missed it: two pieces that share the overlap band become one
        ([dets(), dets((300, 150, 340, 200, 0.9, 0)), dets((300, 160, 340, 230, 0.8, 0))],
         GRID, [(300, 150, 340, 230, 0.9, 0)]),
        # the same with nms: the better piece stays, cut
        ([dets((300, 150, 340, 200, 0.9, 0)), dets((300, 160, 340, 230, 0.8, 0))],
         SliceSettings(grid=(2, 2), merge="nms"), [(300, 150, 340, 200, 0.9, 0)]),
        # a piece and its whole overlap by half their union: IoU 0.5 meets 0.6, not merged
        ([dets((*PERSON, 0.7, 0)), dets((300, 150, 340, 190, 0.9, 0))],
         SliceSettings(grid=(2, 2), match_metric="iou", match_threshold=0.6),
         [(300, 150, 340, 190, 0.9, 0), (300, 150, 340, 230, 0.7, 0)]),
        # a person and a car on the same spot are two objects
        ([dets((*PERSON, 0.7, 0)), dets((*PERSON, 0.9, 1))], GRID,
         [(300, 150, 340, 230, 0.9, 1), (300, 150, 340, 230, 0.7, 0)]),
        # two people side by side, touching, seen by two tiles: never one
        ([dets((100, 100, 130, 160, 0.9, 0)), dets((130, 100, 160, 160, 0.8, 0))], GRID,
         [(100, 100, 130, 160, 0.9, 0), (130, 100, 160, 160, 0.8, 0)]),
        # a tile found the upper half best, another the lower half; the whole frame's box
        # joins the upper half, and the lower half, no match for the upper one, matches
        # what they grew into: one person
        ([dets((101, 73, 144, 203, 0.59, 0)), dets((98, 73, 144, 160, 0.88, 0)), dets(),
          dets((86, 128, 147, 204, 0.85, 0)), dets()], GRID, [(86, 73, 147, 204, 0.88, 0)]),
        # two people the whole frame found, one half hidden by the other (IoS 0.65): two
        # to the model, so two here; the tile's box of the nearer joins only that one
        ([dets((202, 65, 256, 227, 0.84, 0), (188, 64, 229, 169, 0.68, 0)),
          dets((200, 64, 258, 228, 0.9, 0))], GRID,
         [(200, 64, 258, 228, 0.9, 0), (188, 64, 229, 169, 0.68, 0)]),
        # nothing anywhere
        ([dets(), dets()], GRID, []),
    ],
)  # fmt: skip
def test_merge(parts: list[Detections], settings: SliceSettings, expected: list) -> None:
    merged = merge_detections(parts, settings)
    columns = zip(merged.xyxy, merged.confidence, merged.class_id, strict=True)
    got = [(*box.round(1).tolist(), round(float(c), 2), int(k)) for box, c, k in columns]
    assert got == [tuple(float(v) for v in row[:4]) + tuple(row[4:]) for row in expected]
    assert (merged.tracker_id == -1).all()


def test_match_matrix_of_a_piece_and_its_whole() -> None:
    boxes = np.array([PERSON, (300, 150, 340, 190), (400, 0, 410, 10), (5, 5, 5, 9)], np.float32)
    ios, iou = match_matrix(boxes, "ios"), match_matrix(boxes, "iou")
    assert ios[0, 1] == ios[1, 0] == 1.0 and iou[0, 1] == pytest.approx(0.5)
    assert ios[0, 2] == iou[0, 2] == 0.0  # apart
    assert (ios[3] == 0).all() and (iou[3] == 0).all()  # a box without area matches nothing


# --- the whole path, on exact truth ---------------------------------------------------------


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    video, _, _ = write_scene(generate_scene(3), tmp_path_factory.mktemp("slicing") / "s3.mp4")
    return video


def test_a_tile_of_the_oracle_sees_what_lies_in_it(scene: Path) -> None:
    """Boxes come back in frame pixels, cut where the tile's border cuts them."""
    oracle = build_detector("oracle")
    with VideoFile(scene) as video:
        frame = next(f for f in video if f.index == 60)
        size = video.frame_size
    whole = oracle.truth(FrameMeta(str(scene), 60, size))
    assert len(whole) >= 2
    region = (220, 100, 420, 300)
    meta = FrameMeta(str(scene), 60, size, region)
    tile = frame.image[100:300, 220:420]
    (seen,) = oracle.detect([oracle.prepare(tile)], [meta])
    clipped = np.clip(whole.xyxy, [220, 100, 220, 100], [420, 300, 420, 300])
    inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    assert 0 < int(inside.sum()) < len(whole)  # the tile sees some of the objects
    assert ((clipped != whole.xyxy).any(axis=1) & inside).any()  # and cuts one

    def rows(boxes: np.ndarray) -> np.ndarray:
        return boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]

    np.testing.assert_allclose(rows(seen.xyxy), rows(clipped[inside]), atol=0.05)


def _counts(scene: Path, camera: CameraConfig) -> dict[tuple[str, str, str], int]:
    config = AppConfig(cameras=(camera,))
    result = count_video(config, camera, build_detector("oracle"))
    return {(r["counter_id"], r["class_name"], r["direction"]): r["count"] for r in result.totals}


@pytest.mark.parametrize(
    "slicing",
    [
        # the line at mid height lies in the band the two rows of tiles share
        {"grid": [2, 2]},
        # small tiles: most objects are cut by a border somewhere on their way
        {"tile_px": [160, 120], "overlap": 0.25},
        # tiles alone: the pieces are all there is to merge
        {"tile_px": [200, 150], "whole_frame": False},
    ],
)
def test_slicing_counts_exact_truth_once(scene: Path, slicing: dict) -> None:
    """Every object cut by a tile border is still one object: with the
    oracle's exact boxes, sliced counts are the scene's truth."""
    camera = load_config(scene.with_suffix(".yaml")).cameras[0]
    camera = camera.model_copy(update={"slicing": SlicingConfig.model_validate(slicing)})
    truth = json.loads(scene.with_name("s3.truth.json").read_text())["expected"]
    want = {
        ("line-main", c, d): n
        for c, dirs in truth["lines"]["line-main"].items()
        for d, n in dirs.items()
        if n
    }
    got = {k: v for k, v in _counts(scene, camera).items() if k[0] == "line-main" and v}
    assert got == want


# --- config and the real person detector ----------------------------------------------------


def test_config_default_is_off_and_a_bare_section_is_a_2x2_grid() -> None:
    assert CameraConfig(id="a", source="x").slicing is None
    assert SlicingConfig().settings() == SliceSettings(grid=(2, 2))
    assert SlicingConfig(tile_px=(320, 320)).settings().grid is None


@pytest.mark.skipif(not STREET.is_file(), reason=f"shared real data not found at {STREET}")
def test_slicing_finds_more_people_on_a_busy_street() -> None:
    """On every sampled frame the sliced detections keep every person the
    whole frame found (most of its box lies in one of theirs: where the
    whole frame saw a person's upper half and a tile all of them, the merge
    keeps all of them) and add some: the whole frame shrinks 854 px to the
    model's 300, and people walking in a crowd, thin there, are missed."""
    from camcount.detectors.weights import ssdlite_weights_path

    weights = ssdlite_weights_path()
    if not weights.is_file():
        pytest.skip(f"SSDLite weights not at {weights} (camcount models fetch)")
    model = build_detector(
        "ssdlite-person", DetectorSettings(score_threshold=0.5, weights=str(weights))
    )
    with VideoFile(STREET) as video:
        frames = [f for f in video if f.index % 40 == 0]
        size = video.frame_size
    metas = [FrameMeta(str(STREET), f.index, size) for f in frames]
    whole = model.detect([model.prepare(f.image) for f in frames], metas)
    sliced = detect_sliced(model, [f.image for f in frames], metas, SliceSettings(grid=(2, 2)))
    small = size[1] / 4  # shorter than a quarter of the frame
    for w, s in zip(whole, sliced, strict=True):
        if len(w):
            overlap = match_matrix(np.concatenate([w.xyxy, s.xyxy]), "ios")[: len(w), len(w) :]
            assert (overlap.max(axis=1) >= 0.5).all()
        assert len(s) >= len(w)
    found = sum(len(s) for s in sliced), sum(len(w) for w in whole)
    small_found = [sum(int((d.xyxy[:, 3] - d.xyxy[:, 1] < small).sum()) for d in side)
                   for side in (sliced, whole)]  # fmt: skip
    print(f"\n{len(frames)} frames: people {found[0]} sliced, {found[1]} whole; "
          f"under {small:.0f} px tall {small_found[0]} sliced, {small_found[1]} whole")  # fmt: skip
    assert found[0] > found[1]
    assert small_found[0] > small_found[1]
