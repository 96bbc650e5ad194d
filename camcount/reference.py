"""The one-process reference run: decode, detect, track and count a file.

``camcount count`` is this; the distributed pipeline must give the same
counts on the same video and detector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from camcount.config import AppConfig, CameraConfig
from camcount.detectors import Detector, FrameMeta
from camcount.detectors.detections import Detections
from camcount.detectors.slicing import detect_sliced
from camcount.events import CountRow, Crossing, WindowRow, ZoneSample, ZoneTransition, ZoneVisit
from camcount.stream.windows import WatermarkClock, WindowCounts
from camcount.vision.gating import DetectorGate
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
    #: Frames that went to the detector (fewer than processed with the
    #: motion gate or the detector interval on), and the decisions by reason.
    frames_detected: int = 0
    gate: dict[str, int] = field(default_factory=dict)
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


def batches(frames: Iterable[DecodedFrame], size: int) -> Iterator[list[DecodedFrame]]:
    """Frames in batches of ``size``, the last one shorter."""
    batch: list[DecodedFrame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def detect_batch(
    detector: Detector,
    camera: CameraConfig,
    batch: Sequence[DecodedFrame],
    frame_size: tuple[int, int],
    batch_size: int = 8,
) -> list[Detections]:
    """One batch of a camera's frames through the detector as its actor
    sends them: whole, or in tiles when the camera has ``slicing``."""
    metas = [FrameMeta(camera.source, f.index, frame_size) for f in batch]
    if camera.slicing is not None:
        images = [f.image for f in batch]
        return detect_sliced(detector, images, metas, camera.slicing.settings(), batch_size)
    return detector.detect([detector.prepare(f.image) for f in batch], metas)


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

        gate = DetectorGate(camera.motion.settings(), camera.interval.settings())
        none = Detections.empty()

        def take(frame: DecodedFrame, d: Detections | None) -> None:
            events = processor.process(d, frame.index, frame.time)
            _window(events, windows, result)
            clock.observe(camera.id, frame.time)
            result.windows.extend(windows.advance(clock.watermark))
            result.events.extend(events)
            if on_frame is not None:
                on_frame(frame, processor)
            result.frames_processed += 1

        def run(batch: list[DecodedFrame]) -> None:
            dets = detect_batch(detector, camera, batch, video.frame_size, batch_size)
            for frame, d in zip(batch, dets, strict=True):
                take(frame, d)
            result.frames_detected += len(batch)
            if progress is not None:
                progress(video.decoded, max(video.frame_count, video.decoded))

        pending: list[DecodedFrame] = []

        def flush() -> None:
            run(pending)
            pending.clear()

        def tracks() -> int:
            return processor.tracker.track_count

        for frame in video:
            # A frame the gate lets past waits for a full batch, as a
            # camera's requests wait in the detector's queue (with the
            # interval on, each frame's decision needs the one before it:
            # batches of one).
            reason = gate.decide(frame.image, frame.time, tracks, len(pending), flush, processor)
            if reason == "skipped":
                take(frame, none)
                continue
            if reason == "carried":
                take(frame, None)
                continue
            pending.append(frame)
            if len(pending) == batch_size:
                flush()
        if pending:
            flush()
        result.frames_decoded = video.decoded
        result.gate = dict(gate.decisions)
    closing = processor.finish()
    _window(closing, windows, result)
    result.events.extend(closing)
    result.windows.extend(windows.flush())
    result.totals = processor.totals()
    return result


def _window(events: list[CameraEvent], windows: WindowCounts, result: CountResult) -> None:
    countable = [e for e in events if isinstance(e, Crossing | ZoneTransition)]
    result.late += len(windows.add(countable))
