"""Reading frames from a video file with OpenCV, sampled to a target rate.

Event time is the container's presentation time plus the source's start
time. Sampling keeps the first frame of every 1/fps slot of event time, so
the same frames are kept whether a file is read from the start or resumed
from a saved position.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from camcount.errors import SourceError


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    index: int  # position in the source, counting every decoded frame
    time: float  # event time, seconds since the epoch
    image: npt.NDArray[np.uint8]  # BGR, original size


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Enough to resume a file exactly where it was: the next frame to decode
    and the sampling slot and timestamp of the last frame read."""

    next_index: int
    last_slot: int | None
    last_pts: float | None


def _open(path: str, decode_threads: int) -> cv2.VideoCapture:
    """FFmpeg when it can take the thread count; OpenCV's choice otherwise."""
    if decode_threads > 0:
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, decode_threads])
        if cap.isOpened():
            return cap
        cap.release()
    return cv2.VideoCapture(path)


class VideoFile:
    """A seekable file source; iterating yields the sampled frames in order."""

    def __init__(
        self,
        path: str | Path,
        fps: float | None = None,
        start_time: float = 0.0,
        decode_threads: int = 0,
    ) -> None:
        self.path = str(path)
        self.decode_threads = decode_threads
        if not Path(self.path).is_file():
            raise SourceError(self.path, "no such file")
        self._cap = _open(self.path, decode_threads)
        if not self._cap.isOpened():
            raise SourceError(self.path, "OpenCV cannot open it as a video")
        self.native_fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 25.0
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_size = (
            int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        if self.frame_size[0] <= 0 or self.frame_size[1] <= 0:
            raise SourceError(self.path, "the video reports no frame size")
        if fps is not None and fps <= 0:
            raise SourceError(self.path, f"fps must be > 0, got {fps}")
        self.fps = fps
        self.start_time = start_time
        self._next_index = 0
        self._last_pts: float | None = None
        self._last_slot: int | None = None
        self.decoded = 0

    @property
    def position(self) -> SourcePosition:
        return SourcePosition(self._next_index, self._last_slot, self._last_pts)

    def seek(self, position: SourcePosition) -> None:
        """Continue from a saved position (as after a restore from a checkpoint)."""
        if position.next_index < 0:
            raise SourceError(self.path, f"cannot seek to frame {position.next_index}")
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, position.next_index)
        self._next_index = position.next_index
        self._last_pts = position.last_pts
        self._last_slot = position.last_slot

    def __iter__(self) -> Iterator[DecodedFrame]:
        period = 1.0 / self.native_fps
        while True:
            ok, image = self._cap.read()
            if not ok or image is None:
                return
            index = self._next_index
            self._next_index += 1
            self.decoded += 1
            pts = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if self._last_pts is None:
                if index > 0 and pts <= 0:
                    pts = index * period
            elif pts <= self._last_pts:
                pts = self._last_pts + period  # a container without usable timestamps
            self._last_pts = pts
            if self.fps is not None:
                slot = math.floor(pts * self.fps + 1e-6)
                if self._last_slot is not None and slot <= self._last_slot:
                    continue
                self._last_slot = slot
            yield DecodedFrame(index, self.start_time + pts, cast(npt.NDArray[np.uint8], image))

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
