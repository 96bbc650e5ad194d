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

A skipped frame goes through the tracker and counters with no detections,
which is what the detector's answer would have been for a frame with no
object in it: counts with the gate on and off are the same unless the
detector would have boxed something that does not move, never was
tracked, and is not found by the next keyframe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from camcount.vision.motion import MotionDetector, MotionSettings

#: Why a frame went to the detector (or did not): the metric's label.
REASONS = ("off", "motion", "tracks", "pending", "keyframe", "skipped")


@dataclass(frozen=True)
class GateSettings:
    enabled: bool = False
    keyframe_s: float = 2.0
    motion: MotionSettings = field(default_factory=MotionSettings)

    def __post_init__(self) -> None:
        if self.keyframe_s <= 0:
            raise ValueError(f"keyframe_s must be > 0, got {self.keyframe_s}")


class DetectorGate:
    def __init__(self, settings: GateSettings) -> None:
        self.settings = settings
        self._motion = MotionDetector(settings.motion) if settings.enabled else None
        self._last_detected: float | None = None
        self.decisions: dict[str, int] = dict.fromkeys(REASONS, 0)

    def decide(
        self,
        image: np.ndarray,
        frame_time: float,
        tracks: Callable[[], int],
        pending: int,
        flush: Callable[[], None] | None = None,
    ) -> str:
        """The reason this frame goes to the detector, or ``"skipped"``.

        ``tracks`` counts the tracker's tracks once every frame before this
        one is in; with ``flush``, still frames behind moving ones send what
        waits at once (to learn what the tracker holds) rather than detect
        every frame of a full batch."""
        moving = self.measure(image)
        if pending and not moving and flush is not None:
            flush()
            pending = 0
        return self.choose(moving, frame_time, tracks(), pending)

    def measure(self, image: np.ndarray) -> bool:
        """Whether anything moves. Every frame goes through it, detected or
        not, so the background stays current."""
        return self._motion(image).moving if self._motion is not None else True

    def choose(self, moving: bool, frame_time: float, tracks: int, pending: int) -> str:
        """The decision once the motion and the tracker's state are known
        (for callers that drain their own pending frames)."""
        if self._motion is None:
            reason = "off"
        elif pending:
            reason = "pending"
        elif tracks:
            reason = "tracks"
        elif moving:
            reason = "motion"
        elif (
            self._last_detected is None
            or frame_time - self._last_detected >= self.settings.keyframe_s
        ):
            reason = "keyframe"
        else:
            reason = "skipped"
        if reason != "skipped":
            self._last_detected = frame_time
        self.decisions[reason] += 1
        return reason

    @property
    def enabled(self) -> bool:
        return self._motion is not None

    def reset(self) -> None:
        """After a seek or a restore: the next frame is compared with nothing."""
        if self._motion is not None:
            self._motion.reset()
        self._last_detected = None

    @property
    def skipped(self) -> int:
        return self.decisions["skipped"]
