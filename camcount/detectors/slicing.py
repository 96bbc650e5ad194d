"""Slicing: small, distant objects found in overlapping tiles of a frame.

A detector sees a frame shrunk to its input (300x300 for the person
SSDLite): on an 854x480 street seen from above, a person 90 px tall and 30
wide is 56 by 11 px there, and in a crowd the model misses most such
people. Slicing also shows the model overlapping tiles of the frame, each
shrunk less, and merges what the tiles and the whole frame found into one
frame's detections, as supervision's ``InferenceSlicer`` and SAHI do. It costs one model input per
region, so it is set per camera and off by default.

The contract, in order:

1. ``plan_regions``: for a frame size, the regions to detect in: the whole
   frame (unless turned off) and then tiles in whole pixels that cover the
   frame to its last row and column, never reach outside it, and overlap
   their neighbours by at least ``overlap`` of a tile (to a pixel). A frame
   no larger than one tile is detected whole, once.
2. Each region is cropped and prepared like a frame (``slice_frame``) and
   travels beside a ``FrameMeta`` whose ``region`` names it, so
   ``Detector.detect`` returns its boxes in the frame's pixels.
3. ``merge_detections``: per class, the most confident box first, every
   other box that matches it (IoS by default: a box cut by a tile border
   lies inside the whole one) is folded into it, as SAHI's greedy NMM does
   (``nmm``: the kept box grows to cover them, and what matches the grown
   box joins too, so the halves of a person cut by a border and the whole
   frame's box of them become one person) or dropped (``nms``). An object
   takes at most one box from each region, and boxes of different classes
   never merge.

``detect_sliced`` runs the three on an in-process detector (``camcount
count``); the Serve deployment runs step 3 on what its batches found for
the regions a camera sent (steps 1 and 2), so both paths count alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from camcount.detectors.base import Detector, Frame, FrameMeta, Region, prepare_frame
from camcount.detectors.detections import Detections
from camcount.errors import SlicingError

MergeKind = Literal["nmm", "nms"]
MatchMetric = Literal["ios", "iou"]

#: More regions than this per frame is a setting mistake (a tile of a few
#: pixels on a large frame), refused with the count rather than run.
MAX_REGIONS = 64


@dataclass(frozen=True, slots=True)
class SliceSettings:
    """How one camera's frames are cut and merged.

    Exactly one of ``tile_px`` (tile width and height in frame pixels) and
    ``grid`` (columns and rows) sets the tiles; ``overlap`` is the share of
    a tile its neighbour covers too, so an object on a border is whole in
    one of them when it is smaller than the overlap.
    """

    tile_px: tuple[int, int] | None = None
    grid: tuple[int, int] | None = None
    overlap: float = 0.2
    whole_frame: bool = True
    merge: MergeKind = "nmm"
    match_metric: MatchMetric = "ios"
    match_threshold: float = 0.5

    def __post_init__(self) -> None:
        if (self.tile_px is None) == (self.grid is None):
            raise SlicingError(
                f"give exactly one of tile_px and grid, got tile_px={self.tile_px} "
                f"and grid={self.grid}"
            )
        for name in ("tile_px", "grid"):
            pair = getattr(self, name)
            if pair is not None and (len(pair) != 2 or min(pair) < 1):
                raise SlicingError(f"{name} must be two whole numbers of at least 1, got {pair}")
        if not 0.0 <= self.overlap < 1.0:
            raise SlicingError(f"overlap must be in [0, 1), got {self.overlap}")
        if not 0.0 < self.match_threshold <= 1.0:
            raise SlicingError(f"match_threshold must be in (0, 1], got {self.match_threshold}")
        if self.merge not in ("nmm", "nms") or self.match_metric not in ("ios", "iou"):
            raise SlicingError(
                f"merge must be nmm or nms and match_metric ios or iou, got "
                f"{self.merge!r} and {self.match_metric!r}"
            )


# ------------------------------------------------------------------ step 1


def _starts(length: int, tile: int, count: int) -> list[int]:
    """``count`` tile starts spread evenly from 0 to ``length - tile``."""
    if count == 1:
        return [0]
    return [i * (length - tile) // (count - 1) for i in range(count)]


def _axis(length: int, settings: SliceSettings, axis: int) -> tuple[int, list[int]]:
    """One axis's tile length and starts."""
    if settings.grid is not None:
        count = min(settings.grid[axis], length)
        # n tiles that overlap by a share r span t * (n - (n - 1) * r).
        tile = min(length, math.ceil(length / (count - (count - 1) * settings.overlap)))
        return tile, _starts(length, tile, count)
    assert settings.tile_px is not None  # __post_init__: one of the two
    tile = min(settings.tile_px[axis], length)
    step = tile * (1.0 - settings.overlap)
    if step < 1.0:
        raise SlicingError(
            f"tiles of {tile} px overlapping by {settings.overlap} would step by "
            f"{step:.2f} px; use larger tiles or less overlap"
        )
    count = 1 if tile == length else math.ceil((length - tile) / step - 1e-9) + 1
    return tile, _starts(length, tile, count)


def plan_regions(frame_size: tuple[int, int], settings: SliceSettings) -> tuple[Region, ...]:
    """The regions (x0, y0, x1, y1; x1 and y1 exclusive) to detect in, the
    whole frame first; see the module's step 1."""
    width, height = frame_size
    if width < 1 or height < 1:
        raise SlicingError(f"a frame of {width}x{height} px has nothing to slice")
    tile_w, xs = _axis(width, settings, 0)
    tile_h, ys = _axis(height, settings, 1)
    whole: Region = (0, 0, width, height)
    tiles = [(x, y, x + tile_w, y + tile_h) for y in ys for x in xs]
    regions = [whole, *(t for t in tiles if t != whole)] if settings.whole_frame else tiles
    if len(regions) > MAX_REGIONS:
        raise SlicingError(
            f"{len(regions)} regions per {width}x{height} frame (at most {MAX_REGIONS}): "
            "use larger tiles, a smaller grid or less overlap"
        )
    return tuple(regions)


# ------------------------------------------------------------------ step 2


def slice_frame(
    frame_bgr: Frame,
    regions: Sequence[Region],
    input_size: tuple[int, int] | None,
    color_order: Literal["rgb", "bgr"],
) -> list[Frame]:
    """Each region of a decoded frame, prepared for the model as a frame is."""
    return [
        prepare_frame(frame_bgr[y0:y1, x0:x1], input_size, color_order)
        for x0, y0, x1, y1 in regions
    ]


def region_metas(meta: FrameMeta, regions: Sequence[Region]) -> list[FrameMeta]:
    """The frame's meta once per region; the whole frame keeps ``region``
    None, so its detection is exactly the unsliced one."""
    w, h = meta.frame_size
    return [replace(meta, region=None if r == (0, 0, w, h) else r) for r in regions]


def frame_regions(
    frame_bgr: Frame,
    meta: FrameMeta,
    settings: SliceSettings,
    input_size: tuple[int, int] | None,
    color_order: Literal["rgb", "bgr"],
) -> tuple[list[Frame], list[FrameMeta]]:
    """Steps 1 and 2 for one decoded frame: its regions' model inputs and
    their metas, as a camera sends them and ``detect_sliced`` detects them."""
    regions = plan_regions(meta.frame_size, settings)
    return slice_frame(frame_bgr, regions, input_size, color_order), region_metas(meta, regions)


# ------------------------------------------------------------------ step 3


def _area(boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
    return wh[:, 0] * wh[:, 1]


def match_matrix(
    xyxy: npt.NDArray[np.float32],
    metric: MatchMetric,
    others: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float64]:
    """Overlap of every box with every one of ``others`` (default: with each
    other): intersection over union, or over the smaller box's area (1 for
    a box inside another); 0 where a box has no area."""
    a = xyxy.astype(np.float64)
    b = a if others is None else others.astype(np.float64)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    area_a, area_b = _area(a)[:, None], _area(b)[None, :]
    denominator = area_a + area_b - inter if metric == "iou" else np.minimum(area_a, area_b)
    out = np.zeros_like(inter)
    np.divide(inter, denominator, out=out, where=denominator > 0)
    return out


def _cover(boxes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The smallest box that covers every one of ``boxes``."""
    return np.concatenate([boxes[:, :2].min(axis=0), boxes[:, 2:].max(axis=0)])


def merge_detections(parts: Sequence[Detections], settings: SliceSettings) -> Detections:
    """One frame's detections from its regions' (already in frame pixels,
    one ``Detections`` per region); see the module's step 3. The result is
    ordered by confidence, highest first, and carries no track ids.

    An object takes at most one box from each region, the one that matches
    it best: two boxes one region found are two objects to the model (its
    own NMS kept them apart), such as two people one half hides the other,
    whose intersection over the smaller box may well pass the threshold.
    """
    found = Detections.concatenate(parts)
    if len(found) == 0:
        return found
    region = np.concatenate([np.full(len(p), k, dtype=np.int64) for k, p in enumerate(parts)])
    # Most confident first; a stable sort keeps equal scores in region order.
    order = np.argsort(-found.confidence, kind="stable")
    xyxy, conf = found.xyxy[order], found.confidence[order]
    classes, region = found.class_id[order], region[order]
    alive = np.ones(len(order), dtype=bool)
    used = np.zeros(len(parts), dtype=bool)  # regions the object being formed took a box from
    kept: list[int] = []
    boxes: list[npt.NDArray[np.float32]] = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        alive[i] = False
        kept.append(i)
        box = xyxy[i]
        used[:] = False
        used[region[i]] = True
        # With nmm the grown box is the object as far as it is known, and a
        # piece that matches it and not the box it grew from (the lower half
        # of a person whose upper half a tile found best) is that object too.
        while True:
            candidates = np.flatnonzero(alive & (classes == classes[i]) & ~used[region])
            if not len(candidates):
                break
            score = match_matrix(box[None], settings.match_metric, xyxy[candidates])[0]
            fits = score >= settings.match_threshold
            if not fits.any():
                break
            best: dict[int, int] = {}
            for j in candidates[fits][np.argsort(-score[fits], kind="stable")]:
                best.setdefault(int(region[j]), int(j))
            taken = np.fromiter(best.values(), dtype=np.int64)
            alive[taken] = False
            used[region[taken]] = True
            if settings.merge == "nms":
                break
            box = _cover(np.vstack([box[None], xyxy[taken]]))
        boxes.append(box)
    index = np.asarray(kept, dtype=np.int64)
    return Detections.from_arrays(np.stack(boxes), conf[index], classes[index])


# ------------------------------------------------------------ in process


def detect_sliced(
    detector: Detector,
    frames_bgr: Sequence[Frame],
    metas: Sequence[FrameMeta],
    settings: SliceSettings,
    batch_size: int | None = None,
) -> list[Detections]:
    """Detections per decoded frame, the regions of all frames detected
    ``batch_size`` to a ``detect`` call (all at once with None), as the
    Serve deployment batches them up to its ``max_batch_size``: on a CPU
    the person SSDLite took 1.6 times as long per input in batches of 40 as
    in batches of 8."""
    images: list[Frame] = []
    item_metas: list[FrameMeta] = []
    counts: list[int] = []
    for frame, meta in zip(frames_bgr, metas, strict=True):
        inputs, input_metas = frame_regions(
            frame, meta, settings, detector.input_size, detector.color_order
        )
        images.extend(inputs)
        item_metas.extend(input_metas)
        counts.append(len(inputs))
    step = batch_size or max(len(images), 1)
    found: list[Detections] = []
    for lo in range(0, len(images), step):
        found.extend(detector.detect(images[lo : lo + step], item_metas[lo : lo + step]))
    out, start = [], 0
    for count in counts:
        out.append(merge_detections(found[start : start + count], settings))
        start += count
    return out
