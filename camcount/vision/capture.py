"""Decoding a camera's source in a background thread into a bounded queue.

File sources never lose a frame: when the queue is full the decoder waits.
Live sources (RTSP, HTTP, webcams) cannot wait: the oldest queued frame is
dropped and counted, and a lost connection is retried with exponential
backoff while the state moves connecting -> streaming -> stalled -> ... .
Event time is the container's timestamp for files and the capture clock
for live sources. A file that is damaged or truncated (decoding stops, or
skips, before the container's last frame) ends FAILED, never FINISHED, so
the loss is reported instead of half a file counted quietly.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import cast
from urllib.parse import urlsplit

import cv2
import numpy as np
import numpy.typing as npt

from camcount.errors import SourceError
from camcount.vision.video import DecodedFrame, SourcePosition, VideoFile

#: The reason of a file source that was read to its end.
END_OF_FILE = "end of file"


class SourceState(StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class EndOfSource:
    """The queue's last item: why the source ended."""

    state: SourceState
    reason: str


@dataclass(frozen=True, slots=True)
class CaptureStats:
    state: SourceState
    decoded: int
    sampled: int
    dropped: int
    reconnects: int
    queued: int
    detail: str


def is_live(source: str) -> bool:
    return source.isdigit() or source.split("://", 1)[0].lower() in (
        "rtsp",
        "rtsps",
        "http",
        "https",
        "udp",
        "tcp",
    )


def host_not_found(source: str) -> str | None:
    """Why a stream's host cannot be reached by name, or None.

    OpenCV reports any failed open as a plain failure, so without this an
    unresolvable host read as "connection refused" forever. Resolving first
    names the problem and skips FFmpeg's open timeout."""
    if source.isdigit() or "://" not in source:
        return None
    try:
        host = urlsplit(source).hostname
    except ValueError:
        return None
    if not host:
        return None
    try:
        ipaddress.ip_address(host)
        return None  # an address needs no lookup
    except ValueError:
        pass
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        if exc.errno in _NO_SUCH_NAME:
            return f"host not found: {host}"
        return f"host name lookup failed for {host}: {exc.strerror}"
    except (OSError, UnicodeError):
        return f"host not found: {host}"
    return None


_NO_SUCH_NAME = {
    getattr(socket, name) for name in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, name)
}


class Capture:
    """One source, one decoding thread, one bounded queue."""

    def __init__(
        self,
        source: str,
        fps: float | None = None,
        start_time: float = 0.0,
        queue_size: int = 8,
        reconnect_initial_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        read_timeout_s: float = 5.0,
        max_reconnects: int | None = None,
        clock: Callable[[], float] = time.time,
        loop: bool = False,
        realtime: bool = False,
        decode_threads: int = 0,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.source = source
        self.live = is_live(source)
        self.fps = fps
        self.start_time = start_time
        self.queue_size = queue_size
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self.read_timeout_s = read_timeout_s
        self.max_reconnects = max_reconnects
        self._clock = clock
        self.loop = loop
        self.realtime = realtime
        self.decode_threads = decode_threads
        self._queue: deque[DecodedFrame | EndOfSource] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = SourceState.CONNECTING
        self._detail = ""
        self._decoded = 0
        self._sampled = 0
        self._dropped = 0
        self._reconnects = 0
        self._file: VideoFile | None = None
        self.frame_size: tuple[int, int] | None = None
        self.native_fps: float | None = None
        self.frame_count: int | None = None

    # ------------------------------------------------------------- consumer side

    def open(self, position: SourcePosition | None = None) -> None:
        """Open a file now (so a bad file fails here, clearly); live sources
        connect in the thread and report their state instead."""
        if not self.live:
            start = self.start_time
            if position is not None and position.pass_start_time is not None:
                start = position.pass_start_time  # a later pass of a looping file
            self._file = VideoFile(self.source, self.fps, start, self.decode_threads)
            if position is not None:
                self._file.seek(position)
            self.frame_size = self._file.frame_size
            self.native_fps = self._file.native_fps
            self.frame_count = self._file.frame_count
        self._thread = threading.Thread(
            target=self._run, name=f"capture:{self.source}", daemon=True
        )
        self._thread.start()

    def get(self, timeout_s: float) -> DecodedFrame | EndOfSource | None:
        """The next frame, the end marker, or None when nothing came in time."""
        items = self.get_many(1, timeout_s)
        return items[0] if items else None

    def get_many(self, n: int, timeout_s: float) -> list[DecodedFrame | EndOfSource]:
        """Up to ``n`` items: waits for the first as ``get`` does, then takes
        what is already there without waiting; the end marker is always the
        last item returned. Empty when nothing came in time."""
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout_s)
            items: list[DecodedFrame | EndOfSource] = []
            while self._queue and len(items) < n:
                item = self._queue.popleft()
                items.append(item)
                if isinstance(item, EndOfSource):
                    break
            if items:
                self._cond.notify_all()
            return items

    def wait_frame_size(self, timeout_s: float) -> tuple[int, int] | None:
        deadline = time.monotonic() + timeout_s
        while self.frame_size is None and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.05)
        return self.frame_size

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._file is not None:
            self._file.close()

    @property
    def position(self) -> SourcePosition | None:
        return self._file.position if self._file is not None else None

    def stats(self) -> CaptureStats:
        with self._cond:
            queued = len(self._queue)
        return CaptureStats(
            self._state,
            self._decoded,
            self._sampled,
            self._dropped,
            self._reconnects,
            queued,
            self._detail,
        )

    # ------------------------------------------------------------- decoder side

    def _set(self, state: SourceState, detail: str = "") -> None:
        self._state = state
        self._detail = detail

    def _put(self, item: DecodedFrame | EndOfSource) -> None:
        with self._cond:
            if isinstance(item, DecodedFrame):
                if self.live:
                    while len(self._queue) >= self.queue_size:
                        self._queue.popleft()
                        self._dropped += 1
                else:
                    while len(self._queue) >= self.queue_size and not self._stop.is_set():
                        self._cond.wait(0.5)
                self._sampled += 1
            self._queue.append(item)
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            end = self._run_file() if not self.live else self._run_live()
        except SourceError as exc:
            end = EndOfSource(SourceState.FAILED, exc.reason)
        except Exception as exc:  # a decoder crash must become a status, not a dead thread
            end = EndOfSource(SourceState.FAILED, f"decoder error: {exc!r}")
        if self._stop.is_set():
            end = EndOfSource(SourceState.STOPPED, "stopped")
        self._set(end.state, end.reason)
        self._put(end)

    def _run_file(self) -> EndOfSource:
        """Read the file once, or over and over with ``loop``; event time keeps
        growing across loops, and ``realtime`` paces frames at their own speed.

        A pass that ends short of the file's end (`VideoFile.damage`) ends
        the source FAILED with that reason, which starts with
        `camcount.vision.video.DAMAGED`; a whole file ends FINISHED, `END_OF_FILE`."""
        video = cast(VideoFile, self._file)
        self._set(SourceState.STREAMING)
        paced_from: tuple[float, float] | None = None  # (first event time, wall clock)
        decoded_before = 0
        while True:
            last_time = video.start_time
            for frame in video:
                if self._stop.is_set():
                    break
                if self.realtime:
                    if paced_from is None:
                        paced_from = (frame.time, time.monotonic())
                    ahead = (frame.time - paced_from[0]) - (time.monotonic() - paced_from[1])
                    if ahead > 0 and self._stop.wait(ahead):
                        break
                self._decoded = decoded_before + video.decoded
                last_time = frame.time
                self._put(frame)
            self._decoded = decoded_before + video.decoded
            if self._stop.is_set():
                break
            damage = video.damage()
            if damage is not None:  # never a quiet end: the rest was not counted
                return EndOfSource(SourceState.FAILED, damage)
            if not self.loop or video.decoded == 0:
                break
            decoded_before += video.decoded
            video.close()
            video = VideoFile(
                self.source,
                self.fps,
                last_time + 1.0 / (video.native_fps or 25.0),
                self.decode_threads,
            )
            self._file = video
        return EndOfSource(SourceState.FINISHED, END_OF_FILE)

    def _connect(self) -> cv2.VideoCapture | None:
        timeout_ms = int(self.read_timeout_s * 1000)
        if self.source.isdigit():
            cap = cv2.VideoCapture(int(self.source))
        else:
            cap = cv2.VideoCapture(
                self.source,
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    timeout_ms,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    timeout_ms,
                    *((cv2.CAP_PROP_N_THREADS, self.decode_threads) if self.decode_threads else ()),
                ],
            )
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _run_live(self) -> EndOfSource:
        backoff = self.reconnect_initial_s
        attempts = 0
        last_slot: int | None = None
        index = 0
        while not self._stop.is_set():
            self._set(
                SourceState.CONNECTING if self._decoded == 0 else SourceState.STALLED,
                f"connecting to {self.source}",
            )
            unresolved = host_not_found(self.source)
            cap = self._connect() if unresolved is None else None
            if cap is None:
                attempts += 1
                why = unresolved or "connection refused or timed out"
                if self.max_reconnects is not None and attempts > self.max_reconnects:
                    raise SourceError(
                        self.source, f"no connection after {attempts} attempts ({why})"
                    )
                self._set(
                    SourceState.CONNECTING if self._decoded == 0 else SourceState.STALLED,
                    f"{why}; retrying in {backoff:.1f} s",
                )
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.reconnect_max_s)
                self._reconnects += 1
                continue
            backoff, attempts = self.reconnect_initial_s, 0
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self.native_fps = float(cap.get(cv2.CAP_PROP_FPS)) or None
            while not self._stop.is_set():
                ok, image = cap.read()
                if not ok or image is None:
                    self._set(SourceState.STALLED, "the stream stopped sending frames")
                    break
                now = self._clock()
                self._decoded += 1
                if self.frame_size is None:
                    self.frame_size = (image.shape[1], image.shape[0]) if w <= 0 else (w, h)
                self._set(SourceState.STREAMING)
                if self.fps is not None:
                    slot = math.floor(now * self.fps)
                    if last_slot is not None and slot <= last_slot:
                        continue
                    last_slot = slot
                self._put(DecodedFrame(index, now, cast(npt.NDArray[np.uint8], image)))
                index += 1
            cap.release()
            self._reconnects += 1
        return EndOfSource(SourceState.STOPPED, "stopped")
