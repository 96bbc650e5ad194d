"""The one-process reference run: decode, detect, track and count a file.

``camcount count`` is this; the distributed pipeline must give the same
counts on the same video and detector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from camcount.config import AppConfig, CameraConfig
from camcount.detectors import Detector, FrameMeta
from camcount.detectors.slicing import detect_sliced
from camcount.events import CountRow, Crossing, WindowRow, ZoneSample, ZoneTransition, ZoneVisit
from camcount.stream.windows import WatermarkClock, WindowCounts
from camcount.vision.processor import CameraEvent, CameraProcessor
from camcount.vision.video import DecodedFrame, VideoFile

Progress = Callable[[int, int], None]
#: Called after each frame is counted, with the processor as that frame left
#: it (its tracks, totals and occupancy): what an annotated copy draws.
FrameHook = Callable[[DecodedFrame, CameraProcessor], None]
E = TypeVar("E")


@dataclass
class CountResult:
    camera_id: str
    frames_decoded: int = 0
    frames_processed: int = 0
    events: list[CameraEvent] = field(default_factory=list)
    totals: list[CountRow] = field(default_factory=list)
    windows: list[WindowRow] = field(default_factory=list)
    late: int = 0

    def of_type(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    @property
    def crossings(self) -> list[Crossing]:
        return self.of_type(Crossing)

    @property
    def visits(self) -> list[ZoneVisit]:
        return self.of_type(ZoneVisit)

    @property
    def samples(self) -> list[ZoneSample]:
        return self.of_type(ZoneSample)


def count_video(
    config: AppConfig,
    camera: CameraConfig,
    detector: Detector,
    batch_size: int = 8,
    progress: Progress | None = None,
    on_frame: FrameHook | None = None,
) -> CountResult:
    """Count one camera's file source from start to end."""
    result = CountResult(camera.id)
    windows = WindowCounts(config.windows.sizes_s)
    clock = WatermarkClock(config.windows.allowed_lateness_s)
    with VideoFile(camera.source, camera.fps, camera.start_timestamp) as video:
        processor = CameraProcessor(
            camera,
            config.tracker,
            detector.class_names,
            video.frame_size,
            camera.fps or video.native_fps,
        )

        slicing = camera.slicing.settings() if camera.slicing is not None else None

        def run(batch: list[DecodedFrame]) -> None:
            metas = [FrameMeta(camera.source, f.index, video.frame_size) for f in batch]
            if slicing is not None:
                images = [f.image for f in batch]
                dets = detect_sliced(detector, images, metas, slicing, batch_size)
            else:
                dets = detector.detect([detector.prepare(f.image) for f in batch], metas)
            for frame, d in zip(batch, dets, strict=True):
                events = processor.process(d, frame.index, frame.time)
                _window(events, windows, result)
                clock.observe(camera.id, frame.time)
                result.windows.extend(windows.advance(clock.watermark))
                result.events.extend(events)
                if on_frame is not None:
                    on_frame(frame, processor)
            result.frames_processed += len(batch)
            if progress is not None:
                progress(video.decoded, max(video.frame_count, video.decoded))

        batch: list[DecodedFrame] = []
        for frame in video:
            batch.append(frame)
            if len(batch) >= batch_size:
                run(batch)
                batch = []
        if batch:
            run(batch)
        result.frames_decoded = video.decoded
    closing = processor.finish()
    _window(closing, windows, result)
    result.events.extend(closing)
    result.windows.extend(windows.flush())
    result.totals = processor.totals()
    return result


def _window(events: list[CameraEvent], windows: WindowCounts, result: CountResult) -> None:
    countable = [e for e in events if isinstance(e, Crossing | ZoneTransition)]
    result.late += len(windows.add(countable))
