"""The value type that every stage of the per-camera chain takes and returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

NO_TRACK = -1


@dataclass(frozen=True, slots=True)
class Detections:
    """One frame's boxes as parallel arrays, filtered with boolean masks.

    Invariant: every array has the same length N; boxes are ``xyxy`` in
    original frame pixels; ``class_id`` indexes the detector's class names;
    ``tracker_id`` is ``NO_TRACK`` (-1) until a tracker assigns one.
    """

    xyxy: FloatArray
    confidence: FloatArray
    class_id: IntArray
    tracker_id: IntArray

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape (N, 4), got {self.xyxy.shape}")
        for name in ("confidence", "class_id", "tracker_id"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")

    @classmethod
    def empty(cls) -> Detections:
        return cls.from_arrays(np.zeros((0, 4)), np.zeros(0), np.zeros(0))

    @classmethod
    def from_arrays(
        cls,
        xyxy: npt.ArrayLike,
        confidence: npt.ArrayLike,
        class_id: npt.ArrayLike,
        tracker_id: npt.ArrayLike | None = None,
    ) -> Detections:
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(boxes)
        ids = (
            np.full(n, NO_TRACK, dtype=np.int64)
            if tracker_id is None
            else np.asarray(tracker_id, dtype=np.int64).reshape(n)
        )
        return cls(
            boxes,
            np.asarray(confidence, dtype=np.float32).reshape(n),
            np.asarray(class_id, dtype=np.int64).reshape(n),
            ids,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Detections]) -> Detections:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.confidence for p in parts]),
            np.concatenate([p.class_id for p in parts]),
            np.concatenate([p.tracker_id for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(
        self, index: npt.NDArray[np.bool_] | npt.NDArray[np.int64] | slice
    ) -> Detections:
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            self.tracker_id[index],
        )

    @property
    def area(self) -> FloatArray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return (wh[:, 0] * wh[:, 1]).astype(np.float32)
