"""The one interface every detector backend implements.

A camera resizes each frame once to ``input_size`` in ``color_order`` and
sends uint8 arrays; the backend returns boxes in the coordinates of the
frames it was given, and ``Detector.detect`` scales them back to the
original frame and applies the score threshold and class filter, so no
backend repeats that logic. A frame may also be one region of a decoded
frame (a tile, camcount.detectors.slicing): its boxes are then moved to where that
region lies in the frame.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from camcount.detectors.detections import Detections
from camcount.errors import DetectorError

Frame = npt.NDArray[np.uint8]
ColorOrder = Literal["rgb", "bgr"]
#: A rectangle of a frame in whole pixels: x0, y0, x1, y1 (x1 and y1 exclusive).
Region = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """Where a frame came from; travels beside it to the detector and back.

    Real models ignore it; the oracle and noisy detectors use ``source`` and
    ``frame_index`` to look up the truth, so they run through exactly the
    same path as a real model.
    """

    source: str
    frame_index: int
    frame_size: tuple[int, int]  # original (width, height)
    region: Region | None = None  # the part of the frame this image shows; None: all of it


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    score_threshold: float = 0.3
    classes: tuple[str, ...] = ()  # empty: every class the model knows
    device: str = "cpu"
    weights: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise DetectorError(f"score_threshold must be in [0, 1], got {self.score_threshold}")


class Detector(ABC):
    """Batched detection with the threshold, class filter and scaling done once."""

    name: str = "detector"
    class_names: tuple[str, ...] = ()
    input_size: tuple[int, int] | None = None  # (width, height); None keeps the frame size
    color_order: ColorOrder = "bgr"

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        unknown = [c for c in self.settings.classes if c not in self.class_names]
        if unknown:
            raise DetectorError(
                f"{self.name} knows no class {unknown}; it knows {list(self.class_names)}"
            )
        wanted = self.settings.classes or self.class_names
        self._class_mask = np.array([c in wanted for c in self.class_names], dtype=bool)

    @abstractmethod
    def infer(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        """Raw detections in the coordinates of ``frames``, before filtering."""

    def detect(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        if len(frames) != len(metas):
            raise DetectorError(f"{len(frames)} frames but {len(metas)} metas")
        if not frames:
            return []
        raw = self.infer(frames, metas)
        out = []
        for frame, meta, dets in zip(frames, metas, raw, strict=True):
            h, w = frame.shape[:2]
            ow, oh = meta.frame_size
            if meta.region is not None and len(dets):
                x0, y0, x1, y1 = meta.region
                scale = np.array([(x1 - x0) / w, (y1 - y0) / h] * 2, dtype=np.float32)
                offset = np.array([x0, y0, x0, y0], dtype=np.float32)
                dets = Detections(
                    dets.xyxy * scale + offset, dets.confidence, dets.class_id, dets.tracker_id
                )
            elif (w, h) != (ow, oh) and len(dets):
                scale = np.array([ow / w, oh / h, ow / w, oh / h], dtype=np.float32)
                dets = Detections(
                    dets.xyxy * scale, dets.confidence, dets.class_id, dets.tracker_id
                )
            keep = dets.confidence >= self.settings.score_threshold
            if len(dets):
                keep &= self._class_mask[dets.class_id]
            out.append(dets[keep])
        return out

    def prepare(self, frame_bgr: Frame) -> Frame:
        """Resize and reorder one decoded BGR frame for this model."""
        return prepare_frame(frame_bgr, self.input_size, self.color_order)

    def spec(self) -> InputSpec:
        return InputSpec(self.name, self.class_names, self.input_size, self.color_order)


@dataclass(frozen=True, slots=True)
class InputSpec:
    """What a camera must know to feed a detector it does not load itself."""

    name: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int] | None
    color_order: ColorOrder


def prepare_frame(
    frame_bgr: Frame, input_size: tuple[int, int] | None, color_order: ColorOrder
) -> Frame:
    """Resize once on the camera side, so the least bytes travel to the model."""
    import cv2  # the decoding side only; detectors that never prepare skip the import

    img: npt.NDArray[Any] = frame_bgr
    if input_size is not None and (img.shape[1], img.shape[0]) != tuple(input_size):
        img = cv2.resize(img, tuple(input_size), interpolation=cv2.INTER_AREA)
    if color_order == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(img)
