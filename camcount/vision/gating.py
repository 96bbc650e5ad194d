"""Whether a frame needs the detector: the motion gate.

On CPU the detector is the whole cost of a camera, and most frames of a
counting camera change nothing. A frame skips the detector only when all
of these hold, so that the detector could not have changed the counts:

- nothing moves in it (``MotionDetector``);
- the tracker holds no track at all, tentative, confirmed or lost: a track
  is carried only by detections, so with one alive every frame is detected
  as before (the motion model carrying tracks between detector calls is a
  separate, stricter decision);
- no earlier frame is still waiting for its detections: the tracker's state
  is only known once they are in, so a pipelined caller runs the frame
  (or, given ``flush``, sends what waits at once, and decides after it);
- a keyframe is not due: at least every ``keyframe_s`` of video the
  detector runs anyway, so something motion missed (an object too faint
  for the measure) is found within that time.

With the detector interval on (``camcount.vision.interval``), frames with
tracks are decided by its rules instead of always being detected: a frame
it lets pass is *carried* (reason ``carried``), the tracks standing where
their motion model puts them, and the tracker and counters are not fed.

A skipped frame goes through the tracker and counters with no detections,
which is what the detector's answer would have been for a frame with no
object in it: counts with the gate on and off are the same unless the
detector would have boxed something that does not move, never was
tracked, and is not found by the next keyframe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from camcount.vision.interval import INTERVAL_REASONS, IntervalSettings, interval_reason
from camcount.vision.motion import Motion, MotionDetector, MotionSettings

if TYPE_CHECKING:
    from camcount.vision.processor import CameraProcessor

#: Why a frame went to the detector (or did not): the metric's label.
REASONS = ("off", "motion", "tracks", "pending", "keyframe", "skipped", *INTERVAL_REASONS)
#: The reasons of frames the detector did not see.
NOT_DETECTED = ("skipped", "carried")


@dataclass(frozen=True)
class GateSettings:
    enabled: bool = False
    keyframe_s: float = 2.0
    motion: MotionSettings = field(default_factory=MotionSettings)

    def __post_init__(self) -> None:
        if self.keyframe_s <= 0:
            raise ValueError(f"keyframe_s must be > 0, got {self.keyframe_s}")


class DetectorGate:
    """The motion gate and, given ``interval`` settings that enable it, the
    detector interval: one decision per frame, counted by reason."""

    def __init__(self, settings: GateSettings, interval: IntervalSettings | None = None) -> None:
        self.settings = settings
        self.interval = interval if interval is not None and interval.enabled else None
        measured = settings.enabled or self.interval is not None
        self._motion = MotionDetector(settings.motion) if measured else None
        self._last_detected: float | None = None
        self._since_detected: int | None = None  # frames decided since the last detected one
        self.decisions: dict[str, int] = dict.fromkeys(REASONS, 0)

    def decide(
        self,
        image: np.ndarray,
        frame_time: float,
        tracks: Callable[[], int],
        pending: int,
        flush: Callable[[], None] | None = None,
        processor: CameraProcessor | None = None,
    ) -> str:
        """The reason this frame goes to the detector, or ``"skipped"`` or
        ``"carried"`` (``NOT_DETECTED``).

        ``tracks`` counts the tracker's tracks once every frame before this
        one is in; with ``flush``, still frames behind moving ones send what
        waits at once (to learn what the tracker holds) rather than detect
        every frame of a full batch. With the interval on, every frame needs
        the tracks of the frames before it: what waits is sent at once, and
        ``processor`` (whose tracker and counters it reads) is required."""
        motion = self.measure(image)
        if pending and flush is not None and (not motion.moving or self.interval is not None):
            flush()
            pending = 0
        return self.choose(motion, frame_time, tracks(), pending, processor)

    def measure(self, image: np.ndarray) -> Motion:
        """What moves. Every frame goes through it, detected or not, so the
        background stays current."""
        if self._motion is None:
            h, w = image.shape[:2]
            return Motion(True, 1.0, ((0.0, 0.0, float(w), float(h)),))
        return self._motion(image)

    def choose(
        self,
        motion: Motion,
        frame_time: float,
        tracks: int,
        pending: int,
        processor: CameraProcessor | None = None,
    ) -> str:
        """The decision once the motion and the tracker's state are known
        (for callers that drain their own pending frames)."""
        if self._motion is None:
            reason = "off"
        elif pending:
            reason = "pending"
        elif self.interval is not None and (tracks or not self.settings.enabled):
            if processor is None:
                raise ValueError("the detector interval needs the camera's processor")
            reason = interval_reason(
                self.interval, motion, frame_time, processor, self._since_detected
            )
        elif tracks:
            reason = "tracks"
        elif motion.moving:
            reason = "motion"
        elif (
            self._last_detected is None
            or frame_time - self._last_detected >= self.settings.keyframe_s
        ):
            reason = "keyframe"
        else:
            reason = "skipped"
        if reason in NOT_DETECTED:
            if self._since_detected is not None:
                self._since_detected += 1
        else:
            self._last_detected = frame_time
            self._since_detected = 0
        self.decisions[reason] += 1
        return reason

    @property
    def enabled(self) -> bool:
        """Whether any frame may skip the detector (the gate or the interval is on)."""
        return self._motion is not None

    def reset(self) -> None:
        """After a seek or a restore: the next frame is compared with nothing."""
        if self._motion is not None:
            self._motion.reset()
        self._last_detected = None
        self._since_detected = None

    @property
    def skipped(self) -> int:
        """Frames the detector did not see, skipped or carried."""
        return sum(self.decisions[r] for r in NOT_DETECTED)
