"""One camera: decode, detect through Serve, track, count, send.

A ``CameraWorker`` runs one camera inside a camera process, a host of
several (actors/camera_host.py, ``pipeline.cameras_per_process``): its
own task on the host's event loop and its own thread for what blocks
(opening the source, waiting for decoded frames, resizing them), so a
stalled or broken source holds up only itself. It is a shell around core
objects: ``Capture`` decodes in a thread
into a bounded queue, ``prepare_frame`` resizes once for the model, the
Serve detector batches frames across cameras, ``CameraProcessor`` tracks
and counts, and a numbered ``channels.Sender`` carries event batches to the
camera's aggregator shard. It never imports torch: the detector's input
size and colour order come from the deployment's ``spec``.

Frames go to the detector a few per request (``detect_many``), at most
``max_in_flight`` frames deep, and their results are applied in frame
order. A camera with ``slicing`` sends each frame as its regions, the whole
frame and its tiles each resized for the model (``detect_sliced``,
camcount.detectors.slicing), and gets one merged result per frame back. When the
detector refuses a request (back-pressure), a file source waits and resends
it (nothing is lost); a live source drops its frames and counts the drops.
A request lost with its detector replica is sent again until a replica
answers: its frames are applied once, in order, when it does.

Checkpoints (docs/checkpoints.md, step 2): ``barrier(n)``
is cut between two frames. The camera sends the events of every frame
counted so far, snapshots its processor and the position after the last
frame counted (``CameraState``), and sends ``Barrier(n)`` carrying that
snapshot in its ordered stream; its shard stores it. A camera built with
a snapshot resumes from it: a file seeks to the saved position, a live
source resumes from now and records the time in between as a ``Gap``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from ray.util import metrics

from actors.placement import ModelCoreAvoider
from camcount.checkpoints.states import CAMERA_STATE_VERSION, CameraState
from camcount.config import CameraConfig, TrackerConfig
from camcount.detectors.base import FrameMeta, InputSpec, prepare_frame
from camcount.detectors.detections import Detections
from camcount.detectors.slicing import frame_regions
from camcount.events import DeadLetter, Gap
from camcount.stream.channels import Barrier, Counted, EndOfStream, Progress, Sender
from camcount.vision.capture import Capture, CaptureStats, EndOfSource, SourceState
from camcount.vision.gating import DetectorGate
from camcount.vision.preview import PreviewFrame, PreviewGate, confirmed_tracks, render
from camcount.vision.processor import CameraEvent, CameraProcessor
from camcount.vision.video import DecodedFrame

log = logging.getLogger("camcount.camera")
_T = TypeVar("_T")


def _backpressure() -> type[Exception]:
    from ray.serve.exceptions import BackPressureError

    return BackPressureError


_LATENCY_BOUNDARIES_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10]
#: How long a request lost with its detector replica is sent again before
#: the camera fails: Serve replaces a dead replica in seconds.
DETECTOR_RETRY_S = 120.0
_NO_IMAGE = np.zeros((0, 0, 3), dtype=np.uint8)
_SOURCE_ENDED = frozenset({SourceState.FINISHED, SourceState.FAILED, SourceState.STOPPED})
#: How long ``start`` waits for the source to open before it answers
#: (``connecting``); the camera goes on opening in its own thread.
OPEN_WAIT_S = 5.0


#: Frames per detector request, at least: a Serve request costs ~2 ms of
#: CPU on each side, shared by the frames it carries; the detector still
#: batches the requests of all cameras together.
MIN_FRAMES_PER_REQUEST = 4


def frames_per_request(max_in_flight: int) -> int:
    """Half the frames in flight when there are many (two requests in
    flight: with one camera alone, whole batches), else all of them in one
    request: with many cameras sharing the detector, the others' requests
    keep it busy while this camera applies its results."""
    return min(max_in_flight, max(MIN_FRAMES_PER_REQUEST, max_in_flight // 2))


@dataclass(frozen=True)
class _Request:
    """Frames sent to the detector, kept (small, resized) for a resend:
    the deployment's method and its arguments."""

    method: str
    args: tuple[Any, ...]
    response: Any


@dataclass(frozen=True)
class CameraIdentity:
    """What a camera says it is, for a restarted controller finding its
    parts: its config (which may have changed since the run's), as which
    incarnation (``sender``)."""

    camera: CameraConfig
    sender: str


#: Ray CPUs a camera asks for: it mostly waits on its decoder and the
#: detector, so four share a core. A camera process asks for its cameras'.
CAMERA_CPUS = 0.25


class CameraMetrics:
    """The camera metrics of one process, made once and shared by its
    cameras: each call names its camera (the ``camera`` label), as a
    process's default tags would name only one."""

    def __init__(self) -> None:
        self.processed = metrics.Counter(
            "camcount_frames_processed", "frames tracked and counted", ("camera",)
        )
        self.dropped = metrics.Counter(
            "camcount_frames_dropped", "live frames dropped", ("camera",)
        )
        self.events = metrics.Counter("camcount_camera_events", "events produced", ("camera",))
        self.latency = metrics.Histogram(
            "camcount_capture_to_events_s",
            "capture to events sent (live sources)",
            boundaries=_LATENCY_BOUNDARIES_S,
            tag_keys=("camera",),
        )
        self.queue = metrics.Gauge(
            "camcount_decode_queue", "frames waiting in the decode queue", ("camera",)
        )
        self.gate = metrics.Counter(
            "camcount_gate_decisions",
            "frames by why they went to the detector, or skipped it "
            "(motion gate, detector interval)",
            ("camera", "reason"),
        )


@dataclass(frozen=True)
class HostServices:
    """What the cameras of one process share: the detector's handle, the
    metrics, the guard that keeps the process off the model's cores, and
    what the process reports about itself (memory, cameras) in each
    camera's status."""

    detector: Any
    metrics: CameraMetrics
    keep_off_model: ModelCoreAvoider
    process_status: Callable[[], dict[str, Any]]


class CameraWorker:
    """One camera of a camera process (module docstring). Nothing of it is
    shared with the other cameras of its process but ``HostServices``: its
    state, its checkpoints, its sender to its shard and its thread are its
    own, and an exception in its loop ends only its loop."""

    def __init__(
        self,
        camera: CameraConfig,
        tracker: TrackerConfig,
        aggregator: Any,
        sender_id: str,
        services: HostServices,
        max_in_flight: int = 4,
        frames_per_batch: int = 8,
        queue_size: int = 4,
        restore: CameraState | None = None,
    ) -> None:
        """``queue_size`` frames wait decoded at full size (6 MB each at
        1080p) besides the ``max_in_flight`` at the detector: a few are
        enough to keep the detector fed, and memory per camera is what
        bounds cameras per node. The configs come checked, as objects: they
        were validated once where they entered (the config file, the REST
        body)."""
        self.camera = camera
        self.tracker = tracker
        self._services = services
        self._detector = services.detector
        self._m = services.metrics
        self._tags = {"camera": camera.id}
        # Its own thread: a source that blocks (an open that never returns,
        # a read that hangs) blocks this camera and no other.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"camera:{camera.id}")
        self._max_in_flight = max_in_flight
        self._frames_per_batch = frames_per_batch
        self._queue_size = queue_size
        self._preview_gate = PreviewGate()
        # Skips the detector where nothing moves, and carries tracks between
        # detector calls under the interval (camcount/vision/gating.py); its
        # background is not state: a restored camera starts it afresh.
        self._gate = DetectorGate(camera.motion.settings(), camera.interval.settings())
        #: Set once the camera has left its process (``close``).
        self.gone = asyncio.Event()
        self._new_identity()
        self._reset(aggregator, sender_id, restore)

    def _in_thread(self, fn: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:
        return asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _new_identity(self) -> None:
        """What this process keeps about the camera it is across its runs:
        empty for a new camera (a new process, or the spare taking one
        over)."""
        self._preview_frame: PreviewFrame | None = None
        self._preview_jpeg: tuple[PreviewFrame, bytes] | None = None
        self._dead_letters: list[DeadLetter] = []
        self._gaps: deque[Gap] = deque(maxlen=10)
        self._fps_window: deque[float] = deque(maxlen=50)
        self._skipped = 0
        self._rejected = 0
        self._detector_errors = 0

    def _reset(self, aggregator: Any, sender_id: str, restore: CameraState | None) -> None:
        """Everything a run of the camera counts from: empty, or a
        checkpoint's snapshot (``restore``). A new process and a rewound
        one (``rewind``) start from here alike."""
        self._aggregator = aggregator
        self._sender = Sender(sender_id)
        self._capture = Capture(
            self.camera.source,
            self.camera.fps,
            self.camera.start_timestamp,
            self._queue_size,
            loop=self.camera.loop,
            realtime=self.camera.realtime,
            decode_threads=self.camera.decode_threads,
        )
        self._processor: CameraProcessor | None = None
        self._spec: InputSpec | None = None
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()
        # Set once the loop has ended (finished, failed, stopped); until then
        # the state is the capture's own.
        self._final: tuple[SourceState, str] | None = None
        self._processed = 0
        self._events = 0
        self._last_frame_time: float | None = None
        # Event time of the last frame with something in it (``camera``
        # alert rules on ``no_detections``, camcount/alerts/camera_states.py).
        self._last_detection_time: float | None = None
        self._pending_pushes: deque[Any] = deque()
        self._outbox: list[CameraEvent | Gap] = []
        self._outbox_frames = 0
        # When the outbox's first event was made (wall clock): its push's
        # ``created`` stamp, what live clients measure delay from.
        self._outbox_created: float | None = None
        self._restore = restore.check(self.camera.id) if restore is not None else None
        self._last_position = restore.position if restore is not None else None
        self._barriers: deque[tuple[int, bool, asyncio.Future[dict[str, Any]]]] = deque()
        self._cut_at: int | None = None
        # A live source resumes from now: what it missed is a recorded gap.
        self._gap_pending = restore is not None and self._capture.live
        self._counted_upto = restore.frames_processed if restore is not None else 0
        if restore is not None:
            self._processed = restore.frames_processed
            self._events = restore.events
            self._last_frame_time = restore.last_frame_time

    def identity(self) -> CameraIdentity:
        return CameraIdentity(self.camera, self._sender.sender_id)

    async def rewind(
        self,
        aggregator: Any,
        sender_id: str,
        restore: CameraState | None,
        max_in_flight: int | None = None,
    ) -> None:
        """Back to a checkpoint's snapshot in this process, as a new
        incarnation (``sender_id``): its region is being rolled back and
        this camera is alive, so it need not be replaced by a new process
        (seconds to start). Nothing of the run before leaves after this
        returns: the loop and the decoder are stopped, and sends still on
        their way carry the old sender id, which the restored shard fences
        off. ``start`` follows, once the new sender is registered."""
        barriers, self._barriers = self._barriers, deque()
        for _, _, future in barriers:
            if not future.done():
                future.set_exception(RuntimeError(f"camera {self.camera.id} rewound"))
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        await asyncio.to_thread(self._capture.stop)
        if max_in_flight is not None:
            self._max_in_flight = max_in_flight
        self._reset(aggregator, sender_id, restore)

    async def start(self) -> dict[str, Any]:
        """Open the source in the camera's thread and start the loop; a file
        that cannot be opened fails with its reason, the other cameras are
        unaffected. A source still opening after ``OPEN_WAIT_S`` (a path
        that blocks) is ``connecting`` meanwhile. A camera restored from a
        snapshot of an ended source stays ended."""
        restored = self._restore
        if restored is not None and restored.ended is not None:
            self._final = (SourceState(restored.ended_state or "finished"), restored.ended)
            return self.status()
        position = restored.position if restored is not None and not self._capture.live else None
        opening = self._in_thread(self._capture.open, position)
        self._task = asyncio.get_running_loop().create_task(self._run(opening))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._opened.wait(), OPEN_WAIT_S)
        return self.status()

    async def _open(self, opening: asyncio.Future[None]) -> bool:
        """Until the source has opened, cutting barriers meanwhile (a camera
        whose source blocks must not hold the checkpoints of the others);
        False when it failed to or a final barrier stopped it."""
        try:
            while not (await asyncio.wait({opening}, timeout=0.2))[0]:
                if await self._barriers_due():
                    return False
            try:
                opening.result()
            except Exception as exc:
                self._final = (SourceState.FAILED, str(exc))
                letter = DeadLetter(self.camera.id, "source", str(exc), time.time(), "camera", 0)
                self._dead_letters.append(letter)
                # In the camera's own stream, so it reaches the dead-letter store.
                await self._send([letter], [EndOfStream(f"failed: {exc}")])
                return False
            if self._final is not None:  # stopped while it opened
                await asyncio.to_thread(self._capture.stop)
                return False
            return True
        finally:
            self._opened.set()

    async def _run(self, opening: asyncio.Future[None]) -> None:
        if not await self._open(opening):
            await self._barriers_due()
            return
        try:
            spec: InputSpec = await self._detector.spec.remote()
            self._spec = spec
            group = frames_per_request(self._max_in_flight)
            in_flight: deque[tuple[list[DecodedFrame], _Request]] = deque()
            waiting = 0  # frames in flight
            while True:
                if await self._barriers_due():
                    return  # a final checkpoint: stopped where it was cut
                items = await self._in_thread(self._capture.get_many, group, 0.2)
                self._refresh_state()
                frames = [i for i in items if isinstance(i, DecodedFrame)]
                if frames and self._processor is None:
                    self._processor = self._build_processor(frames[0])
                if frames and self._gate.enabled:
                    frames, waiting = await self._gated(frames, in_flight, waiting)
                if frames:
                    request = await self._request(frames)
                    if not self._preview_gate.watched(time.monotonic()):
                        # Nobody watches: frames in flight need no full-size pixels.
                        frames = [
                            DecodedFrame(f.index, f.time, _NO_IMAGE, f.position) for f in frames
                        ]
                    in_flight.append((frames, request))
                    waiting += len(frames)
                    while waiting >= self._max_in_flight:
                        done, response = in_flight.popleft()
                        await self._apply(done, response)
                        waiting -= len(done)
                        if await self._barriers_due():
                            return
                if items and isinstance(items[-1], EndOfSource):
                    while in_flight:
                        await self._apply(*in_flight.popleft())
                    await self._finish(items[-1])
                    return
        except Exception as exc:
            log.exception("camera %s failed", self.camera.id)
            reason = f"camera loop error: {exc!r}"
            self._final = (SourceState.FAILED, reason)
            letter = DeadLetter(self.camera.id, "camera", reason, time.time(), "camera", 0)
            self._dead_letters.append(letter)
            # The shard must not wait for this camera's watermark any more.
            await self._send([letter], [EndOfStream(f"failed: {reason}")])
            raise
        finally:
            # Barriers asked for while the loop ended are cut at its end.
            await self._barriers_due()

    async def _gated(
        self,
        frames: list[DecodedFrame],
        in_flight: deque[tuple[list[DecodedFrame], _Request]],
        waiting: int,
    ) -> tuple[list[DecodedFrame], int]:
        """The frames that still go to the detector. A still frame is
        decided once every frame before it is applied (what the tracker holds
        then is what the gate needs), and counted at once if it skips. With
        the detector interval on, every frame is decided so (each decision
        reads the tracks of the frame before): the camera sends one frame at
        a time, and the detector's batches fill across cameras."""
        motions = await self._in_thread(lambda: [self._gate.measure(f.image) for f in frames])
        processor = self._processor
        assert processor is not None
        every = self._gate.interval is not None
        detect: list[DecodedFrame] = []
        for frame, motion in zip(frames, motions, strict=True):
            if (every or not motion.moving) and (detect or in_flight):
                if detect:
                    in_flight.append((detect, await self._request(detect)))
                    detect = []
                while in_flight:
                    await self._apply(*in_flight.popleft())
                waiting = 0
            reason = self._gate.choose(
                motion, frame.time, processor.tracker.track_count, len(detect), processor
            )
            self._m.gate.inc(1, {**self._tags, "reason": reason})
            if reason == "skipped":
                await self._apply_one(frame, Detections.empty())
            elif reason == "carried":  # tracks carried by their motion model
                await self._apply_one(frame, None)
            else:
                detect.append(frame)
        return detect, waiting

    async def _request(self, frames: list[DecodedFrame]) -> _Request:
        """One request for the frames, resized in the camera's thread (the
        other cameras of the process count meanwhile)."""
        method, args = await self._in_thread(self._request_args, frames)
        return _Request(method, args, getattr(self._detector, method).remote(*args))

    def _request_args(self, frames: list[DecodedFrame]) -> tuple[str, tuple[Any, ...]]:
        """The detector method and its arguments for the frames; a sliced
        camera sends each frame as its regions, which the deployment merges
        back into one result per frame (camcount.detectors.slicing)."""
        assert self._spec is not None  # fetched before the first frame
        spec = self._spec
        metas = [FrameMeta(self.camera.source, f.index, self._frame_size(f)) for f in frames]
        args: tuple[Any, ...]
        if self.camera.slicing is None:
            images = [prepare_frame(f.image, spec.input_size, spec.color_order) for f in frames]
            method, args = "detect_many", (images, metas)
        else:
            settings = self.camera.slicing.settings()
            sliced = [
                frame_regions(f.image, m, settings, spec.input_size, spec.color_order)
                for f, m in zip(frames, metas, strict=True)
            ]
            regions = [inputs for inputs, _ in sliced]
            region_meta = [input_metas for _, input_metas in sliced]
            method, args = "detect_sliced", (regions, region_meta, settings)
        return method, args

    def _frame_size(self, frame: DecodedFrame) -> tuple[int, int]:
        return (frame.image.shape[1], frame.image.shape[0])

    def _build_processor(self, first: DecodedFrame) -> CameraProcessor:
        fps = self.camera.fps or self._capture.native_fps or 10.0
        assert self._spec is not None  # fetched before the first frame
        processor = CameraProcessor(
            self.camera, self.tracker, self._spec.class_names, self._frame_size(first), fps
        )
        if self._restore is not None and self._restore.processor is not None:
            processor.restore(self._restore.processor)
        return processor

    async def _detect_again(self, request: _Request) -> list[Detections] | None:
        """After back-pressure: a file source waits and resends (nothing is
        lost); a live one gives the frames up (None). After a lost replica,
        every source resends until one answers or ``DETECTOR_RETRY_S``."""
        delay = 0.05
        deadline = time.monotonic() + DETECTOR_RETRY_S
        while True:
            try:
                results: list[Detections] = await getattr(self._detector, request.method).remote(
                    *request.args
                )
                return results
            except _backpressure():
                if self._capture.live:
                    return None
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                self._detector_errors += 1
                log.warning("camera %s: detector request lost (%r); resending", self.camera.id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _apply(self, frames: list[DecodedFrame], request: _Request) -> None:
        try:
            results: list[Detections] | None = await request.response
        except _backpressure():
            self._rejected += 1
            results = await self._detect_again(request)
        except Exception as exc:  # the replica died with the request: Serve replaces it
            self._detector_errors += 1
            log.warning("camera %s: detector request lost (%r); resending", self.camera.id, exc)
            results = await self._detect_again(request)
        if results is None:  # live frames refused by a saturated detector
            self._skipped += len(frames)
            self._m.dropped.inc(len(frames), self._tags)
            return
        for frame, dets in zip(frames, results, strict=True):
            await self._apply_one(frame, dets)

    async def _apply_one(self, frame: DecodedFrame, dets: Detections | None) -> None:
        assert self._processor is not None  # built before the first request
        if self._gap_pending:
            self._gap_pending = False
            gap = self._restore_gap(frame)
            self._gaps.append(gap)
            self._outbox.append(gap)
        events = self._processor.process(dets, frame.index, frame.time)
        if self._outbox_created is None and (events or self._outbox):
            self._outbox_created = time.time()
        self._last_position = frame.position
        if frame.image.size and self._preview_gate.keep_frame(time.monotonic()):
            self._keep_preview(frame, self._processor)
        self._processed += 1
        self._m.processed.inc(1, self._tags)
        self._last_frame_time = frame.time
        # A carried frame (dets None: the detector interval) has no
        # detections of its own; its carried tracks still count as seen.
        if (dets is not None and len(dets)) or self._processor.tracker.track_count:
            self._last_detection_time = frame.time
        self._fps_window.append(time.monotonic())
        self._outbox.extend(events)
        self._outbox_frames += 1
        if self._outbox_frames >= self._frames_per_batch or self._outbox:
            await self._flush_outbox(frame.time)
            if self._capture.live:
                self._m.latency.observe(max(0.0, time.time() - frame.time), self._tags)

    async def _flush_outbox(self, progress_time: float) -> None:
        events, self._outbox, self._outbox_frames = self._outbox, [], 0
        created, self._outbox_created = self._outbox_created, None
        self._events += len(events)
        if events:
            self._m.events.inc(len(events), self._tags)
        controls: list[Any] = [Progress(progress_time)]
        if self._processed > self._counted_upto:  # the shard's frame ledger
            controls.append(Counted(self._counted_upto, self._processed - 1))
            self._counted_upto = self._processed
        await self._send(events, controls, created)

    async def _send(
        self,
        events: Sequence[CameraEvent | DeadLetter | Gap],
        controls: list[Any],
        created: float | None = None,
    ) -> None:
        """``created``: when the events were made (now, if not given); it
        rides on the envelope for live latency only (``Envelope``)."""
        envelope = self._sender.envelope(
            events, controls, time.time() if created is None else created
        )
        self._pending_pushes.append(self._aggregator.push.remote(envelope))
        while len(self._pending_pushes) > 4:
            await self._pending_pushes.popleft()

    def _restore_gap(self, first: DecodedFrame) -> Gap:
        """What a live source missed between its snapshot and its first
        frame since (a file resumes at the very next frame: no gap)."""
        assert self._restore is not None
        since = self._restore.last_frame_time or self._restore.cut_time or first.time
        return Gap(self.camera.id, since, first.time, "restart", -1)

    # ------------------------------------------------------------ checkpoints

    async def barrier(self, checkpoint_id: int, final: bool = False) -> dict[str, Any]:
        """Cut checkpoint ``checkpoint_id`` between two frames and send its
        barrier; with ``final`` (a stop), stop reading right after it.
        Returns once the barrier is on its way to the shard."""
        if self._task is None or self._task.done():
            await self._cut(checkpoint_id)
            if final:
                await self._stop_at_barrier(checkpoint_id)
            return {"camera_id": self.camera.id, "checkpoint": checkpoint_id}
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._barriers.append((checkpoint_id, final, future))
        return await future

    async def _barriers_due(self) -> bool:
        """Between two frames: cut the checkpoints asked for; True when one
        of them was final and the loop must stop."""
        stop = False
        while self._barriers:
            checkpoint_id, final, future = self._barriers.popleft()
            try:
                await self._cut(checkpoint_id)
            except Exception as exc:
                future.set_exception(exc)
                continue
            future.set_result({"camera_id": self.camera.id, "checkpoint": checkpoint_id})
            if final:
                await self._stop_at_barrier(checkpoint_id)
                stop = True
        return stop

    async def _cut(self, checkpoint_id: int) -> None:
        # Step 2: every counted frame's events go first, then the snapshot.
        if self._outbox or self._outbox_frames:
            await self._flush_outbox(self._last_frame_time or 0.0)
        await self._send([], [Barrier(checkpoint_id, self._snapshot())])
        self._cut_at = checkpoint_id

    def _snapshot(self) -> CameraState:
        processor = self._processor.snapshot() if self._processor is not None else None
        if processor is None and self._restore is not None:
            processor = self._restore.processor  # restored, no frame counted since
        ended = self._final if self._final and self._final[0] is not SourceState.STOPPED else None
        return CameraState(
            CAMERA_STATE_VERSION,
            self.camera.id,
            processor,
            None if self._capture.live else self._last_position,
            self._processed,
            self._events,
            self._last_frame_time,
            ended[1] if ended else None,
            ended[0].value if ended else None,
            tuple(self._totals()),
            time.time(),
        )

    async def _stop_at_barrier(self, checkpoint_id: int) -> None:
        if self._final is None:
            self._final = (SourceState.STOPPED, f"stopped at checkpoint {checkpoint_id}")
        # Off the loop: joining a decoder stuck in a read would stall the
        # process's other cameras.
        await asyncio.to_thread(self._capture.stop)

    def _totals(self) -> list[Any]:
        if self._processor is not None:
            return list(self._processor.totals())
        return list(self._restore.totals) if self._restore is not None else []

    async def _finish(self, end: EndOfSource) -> None:
        closing = self._processor.finish() if self._processor is not None else []
        self._outbox.extend(closing)
        if self._last_frame_time is not None:
            await self._flush_outbox(self._last_frame_time)
        letters = []
        if end.state is SourceState.FAILED:
            letters.append(
                DeadLetter(self.camera.id, "source", end.reason, time.time(), "camera", 0)
            )
            self._dead_letters.extend(letters)
        await self._send(letters, [EndOfStream(end.reason)])
        while self._pending_pushes:
            await self._pending_pushes.popleft()
        self._final = (end.state, end.reason)

    def _refresh_state(self) -> None:
        self._services.keep_off_model()
        self._m.queue.set(self._capture.stats().queued, self._tags)

    def status(self) -> dict[str, Any]:
        stats = self._capture.stats()
        window = list(self._fps_window)
        fps = (
            (len(window) - 1) / (window[-1] - window[0])
            if len(window) > 1 and window[-1] > window[0]
            else 0.0
        )
        return {
            "camera_id": self.camera.id,
            "source": self.camera.source,
            "state": self._state(stats).value,
            "detail": self._final[1] if self._final else stats.detail,
            "fps": round(fps, 2),
            "frames_decoded": stats.decoded,
            "frames_sampled": stats.sampled,
            "frames_processed": self._processed,
            # Why frames went to the detector, or skipped it (motion gate,
            # detector interval).
            "gate": dict(self._gate.decisions) if self._gate.enabled else None,
            "frames_dropped": stats.dropped + self._skipped,
            "detector_rejections": self._rejected,
            "detector_errors": self._detector_errors,
            "checkpoint": self._cut_at,
            "restored": self._restore is not None,
            # Time a live source was not watched (docs/checkpoints.md).
            "gaps": [{"from": g.gap_from, "to": g.gap_to, "reason": g.reason} for g in self._gaps],
            "reconnects": stats.reconnects,
            "events": self._events,
            "last_frame_time": self._last_frame_time,
            "last_detection_time": self._last_detection_time,
            "totals": self._totals(),
            **self._services.process_status(),
        }

    def _state(self, stats: CaptureStats) -> SourceState:
        """The camera's state: ended only once its loop has counted every
        frame it was given. The decoder reaches the end of a file while
        frames still wait in its queue, and a caller that read its state
        alone would close the windows before those frames were counted."""
        if self._final is not None:
            return self._final[0]
        if stats.state in _SOURCE_ENDED and self._task is not None and not self._task.done():
            return SourceState.STREAMING
        return stats.state

    def update(self, new: CameraConfig) -> dict[str, Any]:
        """New lines, zones, classes or region while running.

        The tracker state moves into the new processor and counters that
        keep their id keep their memory, so nothing is counted twice.
        """
        if new.source != self.camera.source or new.fps != self.camera.fps:
            raise ValueError("a new source or fps needs the camera removed and added again")
        if self._processor is not None:
            old = self._processor
            # Built first: geometry the frame refuses leaves the camera as it was.
            processor = CameraProcessor(
                new, self.tracker, old.class_names, old.frame_size, old.tracker.settings.fps
            )
            processor.restore(old.snapshot())
            self._processor = processor
        self.camera = new
        return self.status()

    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead_letters)

    def config(self) -> CameraConfig:
        return self.camera

    def _keep_preview(self, frame: DecodedFrame, processor: CameraProcessor) -> None:
        tracks = confirmed_tracks(processor.tracker.snapshot())
        totals = tuple(processor.totals())
        self._preview_frame = PreviewFrame(
            frame.index, frame.time, frame.image, tracks, totals, processor.occupancy()
        )

    async def preview(self, max_fps: float = 2.0) -> bytes | None:
        """The latest annotated frame as JPEG (None before the first).

        Asking is what turns previews on: frames are kept only while asked
        for within the last few seconds, at most ``max_fps`` a second, and
        each is drawn once, here, off the event loop, so a camera nobody
        watches pays nothing for previews.
        """
        self._preview_gate.requested(time.monotonic(), max_fps)
        shot = self._preview_frame
        if shot is None or self._processor is None:
            return None
        if self._preview_jpeg is None or self._preview_jpeg[0] is not shot:
            jpeg = await asyncio.to_thread(render, shot, self.camera, self._processor.class_names)
            self._preview_jpeg = (shot, jpeg)
        return self._preview_jpeg[1]

    async def wait(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Until the loop ends (a file finished or the camera failed)."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout_s)
        return self.status()

    async def stop(self) -> dict[str, Any]:
        if self._final is None:
            self._final = (SourceState.STOPPED, "stopped")
        if self._task is not None and not self._task.done():
            self._task.cancel()
        await asyncio.to_thread(self._capture.stop)
        return self.status()

    async def close(self) -> dict[str, Any]:
        """Stop, and leave the process: its thread ends once what it runs
        returns (a source blocked in its open keeps only that thread)."""
        status = await self.stop()
        self._thread.shutdown(wait=False, cancel_futures=True)
        self.gone.set()
        return status
