"""Reading frames from a video file with OpenCV, sampled to a target rate.

Event time is the container's presentation time plus the source's start
time. Sampling keeps the first frame of every 1/fps slot of event time, so
the same frames are kept whether a file is read from the start or resumed
from a saved position.

A damaged file is told apart from one that ended: OpenCV stops decoding at
the first frame it cannot decode (MP4, AVI), or resynchronises past the
damage and goes on (Matroska, WebM, MPEG-TS) with a jump in the
timestamps; either way fewer frames come out than the container counts.
`VideoFile.damage` names the frame decoding reached, or the jump.
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
class SourcePosition:
    """Enough to resume a file exactly where it was: the next frame to decode
    and the sampling slot and timestamp of the last frame read, and the
    event time of this pass's first frame (a looping file moves it on at
    every pass)."""

    next_index: int
    last_slot: int | None
    last_pts: float | None
    pass_start_time: float | None = None


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    index: int  # position in the source, counting every decoded frame
    time: float  # event time, seconds since the epoch
    image: npt.NDArray[np.uint8]  # BGR, original size
    #: Where a file source resumes after this frame: the decoder runs ahead
    #: of what was counted, so a checkpoint saves the position of the last
    #: frame counted, not the decoder's. None for live sources.
    position: SourcePosition | None = None


#: The reason of a damaged file's end starts with this.
DAMAGED = "damaged or truncated"
#: A timestamp that moves on by more than this many frame periods is a jump:
#: frames were skipped (a damaged file whose demuxer resynchronised). Good
#: files show at most 2 (a last frame held twice as long).
JUMP_PERIODS = 3.0
#: A file may end this many frames short of its container's frame count
#: without being damaged: the count of some containers is an estimate
#: (AVI counts frames that hold no picture; others multiply duration by fps).
END_TOLERANCE_FRAMES = 3
END_TOLERANCE_FRACTION = 0.005


def end_tolerance_frames(frame_count: int) -> int:
    """How many frames short of ``frame_count`` a good file may end."""
    return max(END_TOLERANCE_FRAMES, math.ceil(frame_count * END_TOLERANCE_FRACTION))


@dataclass(frozen=True, slots=True)
class TimestampJump:
    """Decoding went from ``from_s`` to ``to_s`` (seconds from the file's
    start) between frame ``after_index`` and the next one it decoded."""

    after_index: int
    from_s: float
    to_s: float


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
        self.jumps = 0  # forward timestamp jumps of more than JUMP_PERIODS frames
        self.first_jump: TimestampJump | None = None

    @property
    def position(self) -> SourcePosition:
        return SourcePosition(self._next_index, self._last_slot, self._last_pts, self.start_time)

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
            pts = self._advance(period)
            if self.fps is not None:
                slot = math.floor(pts * self.fps + 1e-6)
                if self._last_slot is not None and slot <= self._last_slot:
                    continue
                self._last_slot = slot
            yield DecodedFrame(
                index, self.start_time + pts, cast(npt.NDArray[np.uint8], image), self.position
            )

    def _advance(self, period: float) -> float:
        """Account for the frame just decoded; its timestamp (seconds from
        the file's start), with a forward jump noted as a possible skip."""
        index = self._next_index
        self._next_index += 1
        self.decoded += 1
        pts = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if self._last_pts is None:
            if index > 0 and pts <= 0:
                pts = index * period
        elif pts <= self._last_pts:
            pts = self._last_pts + period  # a container without usable timestamps
        elif pts - self._last_pts > JUMP_PERIODS * period:
            self.jumps += 1
            if self.first_jump is None:
                self.first_jump = TimestampJump(index - 1, self._last_pts, pts)
        self._last_pts = pts
        return pts

    def damage(self) -> str | None:
        """Once decoding has ended: why the file is damaged (the reason, which
        starts with `DAMAGED`), or None when it reached its end.

        Damaged means fewer frames decoded than the container's frame count,
        beyond `end_tolerance_frames` (the count can be an estimate), and
        either the last timestamp also short of the end (decoding stopped
        early) or a timestamp jump on the way (frames skipped). A count short
        while the timestamps run smoothly to the end is an estimate that was
        wrong, not damage. A file without a frame count is never called
        damaged.
        """
        expected = self.frame_count
        if expected <= 0:
            return None
        reached = self._next_index
        tolerance = end_tolerance_frames(expected)
        if reached >= expected - tolerance:
            return None
        period = 1.0 / self.native_fps
        last_pts = self._last_pts if self._last_pts is not None else -period
        stopped_early = last_pts < (expected - 1 - tolerance) * period
        jump = self.first_jump
        if jump is not None:
            more = f" ({self.jumps} skips in all)" if self.jumps > 1 else ""
            return (
                f"{DAMAGED}: decoding skipped from {jump.from_s:.2f} s to {jump.to_s:.2f} s "
                f"after frame {jump.after_index}{more} and stopped at frame {reached} "
                f"of {expected}"
            )
        if stopped_early:
            return f"{DAMAGED}: decoding stopped at frame {reached} of {expected}"
        return None

    def scan(self) -> str | None:
        """Decode the rest of the file without converting frames (OpenCV's
        ``grab``, a fraction of the cost of reading) and return `damage`."""
        period = 1.0 / self.native_fps
        while self._cap.grab():
            self._advance(period)
        return self.damage()

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
