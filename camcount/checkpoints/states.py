"""What a camera saves at a barrier, and how it resumes from it.

A camera's snapshot is cut between two frames: the processor (tracker,
line and zone counters) as it stood after the last frame it counted, and
where its source resumes. The decoder runs ahead of counting, so the
position saved is that of the last frame counted (``DecodedFrame.position``),
never the decoder's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from camcount.errors import StateError
from camcount.vision.processor import ProcessorState
from camcount.vision.video import SourcePosition

#: v2: count rows in ``totals`` name the class ``class_name`` (v1: ``class``);
#: a v1 state is read by renaming the key.
CAMERA_STATE_VERSION = 2


@dataclass(frozen=True)
class CameraState:
    """A camera at a checkpoint.

    ``position`` is None before the first counted frame (a file starts
    from its beginning) and for live sources, which resume from now and
    record the time in between as a gap. ``ended`` holds why the source
    ended when it had (``finished``, ``failed: ...``): a restored camera
    that had ended does not read its source again.
    """

    format_version: int
    camera_id: str
    processor: ProcessorState | None
    position: SourcePosition | None
    frames_processed: int
    events: int
    last_frame_time: float | None
    ended: str | None = None
    ended_state: str | None = None
    #: The camera's own counts (status), for a restored camera that had ended.
    totals: tuple[Any, ...] = ()
    #: Wall-clock time of the cut: where a live source's gap starts when it
    #: had counted no frame yet.
    cut_time: float | None = None

    def check(self, camera_id: str) -> CameraState:
        """Refuse a snapshot of another camera or another format."""
        if self.format_version == 1:
            totals = tuple(
                {("class_name" if k == "class" else k): v for k, v in row.items()}
                for row in self.totals
            )
            return replace(self, format_version=CAMERA_STATE_VERSION, totals=totals).check(
                camera_id
            )
        if self.format_version != CAMERA_STATE_VERSION:
            raise StateError(
                f"camera state v{self.format_version}, expected v{CAMERA_STATE_VERSION}"
            )
        if self.camera_id != camera_id:
            raise StateError(f"camera state of {self.camera_id!r} offered to {camera_id!r}")
        return self
