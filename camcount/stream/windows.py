"""Event-time tumbling windows: the clock, the windower and the counts.

Three separate pieces, as in Bytewax and Flink:

- ``WatermarkClock`` decides how far event time has certainly progressed:
  each input's watermark is its highest event time minus the allowed
  lateness; the clock's watermark is the minimum over live inputs. An input
  idle for ``idle_timeout_s`` of processing time (from an injected clock, so
  tests move time instead of sleeping) stops holding it back; a finished
  input never does.
- ``window_start`` places an event time in a tumbling window of a size.
- ``WindowCounts`` counts events per (key, size, window) and emits a window's
  row once, when the watermark passes its end. Later events for a closed
  window are returned as late and never change the row.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from camcount.errors import StateError, WatermarkRegression
from camcount.events import Countable, WindowKey, WindowRow

STATE_FORMAT_VERSION = 1
NEG_INF = -math.inf


def window_start(event_time: float, size_s: int) -> float:
    return math.floor(event_time / size_s) * size_s


@dataclass(frozen=True)
class ClockState:
    format_version: int
    inputs: tuple[tuple[str, float, bool], ...]  # (input id, max event time, finished)
    watermark: float


class WatermarkClock:
    """Bounded out-of-orderness with an idleness timeout, over several inputs.

    A shard's clock has an input per camera and is read on every batch, so
    reading it costs O(log n) amortised, not a pass over every input (a
    pass made a shard's work grow with the square of its cameras,
    bench/RESULTS.md, Scale). The live inputs' highest event times sit in a
    min-heap with lazy deletion:

    1. an input that sends a higher event time, or comes back from idle or
       finished, pushes a new entry; ``_entry`` names the one entry of each
       input that counts, the older ones are stale;
    2. reading the watermark pops stale entries off the top, and entries of
       inputs idle for longer than ``idle_timeout_s`` (an idle input comes
       back only by sending, which is step 1);
    3. the top entry is then the minimum over live inputs;
    4. the heap is rebuilt from ``_entry`` once stale entries outnumber the
       inputs, so it stays within a constant factor of them.
    """

    def __init__(
        self,
        allowed_lateness_s: float,
        idle_timeout_s: float = math.inf,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if allowed_lateness_s < 0:
            raise ValueError(f"allowed_lateness_s must be >= 0, got {allowed_lateness_s}")
        self.allowed_lateness_s = allowed_lateness_s
        self.idle_timeout_s = idle_timeout_s
        self._now = now
        self._max_seen: dict[str, float] = {}
        self._last_active: dict[str, float] = {}
        self._finished: set[str] = set()
        self._watermark = NEG_INF
        self._heap: list[tuple[float, str]] = []
        self._entry: dict[str, float] = {}

    def _push(self, input_id: str) -> None:
        """Step 1 (and step 4 when the heap has grown stale)."""
        seen = self._max_seen[input_id]
        if self._entry.get(input_id) == seen:
            return
        self._entry[input_id] = seen
        heapq.heappush(self._heap, (seen, input_id))
        if len(self._heap) > 2 * len(self._entry) + 64:
            self._heap = [(v, i) for i, v in self._entry.items()]
            heapq.heapify(self._heap)

    def register(self, input_id: str) -> None:
        """An input that exists but has sent nothing yet holds the watermark back."""
        if input_id in self._max_seen:
            return
        self._max_seen[input_id] = NEG_INF
        self._last_active[input_id] = self._now()
        self._push(input_id)

    def observe(self, input_id: str, event_time: float) -> None:
        """The input has produced everything up to ``event_time``."""
        self.register(input_id)
        self._finished.discard(input_id)
        if event_time > self._max_seen[input_id]:
            self._max_seen[input_id] = event_time
        self._last_active[input_id] = self._now()
        self._push(input_id)

    def finish(self, input_id: str) -> None:
        self.register(input_id)
        self._finished.add(input_id)
        self._entry.pop(input_id, None)

    def remove(self, input_id: str) -> None:
        self._max_seen.pop(input_id, None)
        self._last_active.pop(input_id, None)
        self._finished.discard(input_id)
        self._entry.pop(input_id, None)

    def _live_minimum(self, now: float) -> float | None:
        """Steps 2 and 3: the lowest highest-event-time of a live input."""
        heap = self._heap
        while heap:
            seen, input_id = heap[0]
            if self._entry.get(input_id) != seen:
                heapq.heappop(heap)  # stale
            elif now - self._last_active[input_id] > self.idle_timeout_s:
                heapq.heappop(heap)
                del self._entry[input_id]
            else:
                return seen
        return None

    @property
    def watermark(self) -> float:
        lowest = self._live_minimum(self._now())
        if lowest is not None:
            candidate = lowest - self.allowed_lateness_s
        elif self._max_seen and len(self._finished) == len(self._max_seen):
            candidate = math.inf
        else:
            candidate = self._watermark
        # An idle input that wakes up, or a new input, must not pull the
        # watermark back: windows already closed stay closed.
        self._watermark = max(self._watermark, candidate)
        return self._watermark

    def input_time(self, input_id: str) -> float | None:
        """Where the input's own event time stands now: its highest event
        time, carried on by the time it has been silent since (as a live
        source's capture clock goes on while it sends nothing). None for an
        input that has sent no event time yet."""
        seen = self._max_seen.get(input_id)
        if seen is None or not math.isfinite(seen):
            return None
        return seen + max(0.0, self._now() - self._last_active[input_id])

    def snapshot(self) -> ClockState:
        return ClockState(
            STATE_FORMAT_VERSION,
            tuple((i, s, i in self._finished) for i, s in sorted(self._max_seen.items())),
            self._watermark,
        )

    def restore(self, state: ClockState) -> None:
        if state.format_version != STATE_FORMAT_VERSION:
            raise StateError(
                f"clock state v{state.format_version}, expected v{STATE_FORMAT_VERSION}"
            )
        now = self._now()
        self._max_seen = {i: s for i, s, _ in state.inputs}
        self._finished = {i for i, _, done in state.inputs if done}
        self._last_active = {i: now for i, _, _ in state.inputs}
        self._watermark = state.watermark
        self._entry = {i: s for i, s, done in state.inputs if not done}
        self._heap = [(s, i) for i, s in self._entry.items()]
        heapq.heapify(self._heap)


@dataclass(frozen=True, slots=True)
class LateEvent:
    """An event whose window of one size had already closed when it arrived."""

    event: Countable
    window_size_s: int
    window_start: float
    watermark: float


WindowSlot = tuple[int, float, WindowKey]  # (size, start, key)


def _key(parts: Sequence[str]) -> WindowKey:
    """A key read back from storage may come as a list."""
    camera, counter, cls, direction = parts
    return (camera, counter, cls, direction)


@dataclass(frozen=True)
class WindowState:
    format_version: int
    sizes_s: tuple[int, ...]
    watermark: float
    counts: tuple[tuple[int, float, WindowKey, int], ...]


class WindowCounts:
    """Open window counts for several sizes; rows leave it exactly once."""

    def __init__(self, sizes_s: Sequence[int]) -> None:
        sizes = tuple(sorted(set(int(s) for s in sizes_s)))
        if not sizes or sizes[0] <= 0:
            raise ValueError(f"window sizes must be positive integers of seconds, got {sizes_s}")
        self.sizes_s = sizes
        self._watermark = NEG_INF
        self._counts: dict[WindowSlot, int] = {}

    @property
    def watermark(self) -> float:
        return self._watermark

    @property
    def open_windows(self) -> int:
        return len(self._counts)

    def add(self, events: Iterable[Countable]) -> list[LateEvent]:
        late: list[LateEvent] = []
        for e in events:
            key = e.window_key()
            for size in self.sizes_s:
                start = window_start(e.event_time, size)
                if start + size <= self._watermark:
                    late.append(LateEvent(e, size, start, self._watermark))
                    continue
                slot = (size, start, key)
                # An external count weighs its own count; a crossing one.
                self._counts[slot] = self._counts.get(slot, 0) + getattr(e, "weight", 1)
        return late

    def advance(self, watermark: float) -> list[WindowRow]:
        """Close every window whose end is at or before ``watermark``."""
        if watermark < self._watermark:
            raise WatermarkRegression(self._watermark, watermark)
        self._watermark = watermark
        closed = [slot for slot in self._counts if slot[1] + slot[0] <= watermark]
        closed.sort(key=lambda s: (s[1], s[0], s[2]))
        rows = []
        for slot in closed:
            size, start, (camera, counter, cls, direction) = slot
            rows.append(
                WindowRow(camera, counter, cls, direction, size, start, self._counts.pop(slot))
            )
        return rows

    def flush(self) -> list[WindowRow]:
        """Close everything: all inputs have ended."""
        return self.advance(math.inf)

    def snapshot(self) -> WindowState:
        return WindowState(
            STATE_FORMAT_VERSION,
            self.sizes_s,
            self._watermark,
            tuple((s, st, k, n) for (s, st, k), n in sorted(self._counts.items())),
        )

    def restore(self, state: WindowState) -> None:
        if state.format_version != STATE_FORMAT_VERSION:
            raise StateError(
                f"window state v{state.format_version}, expected v{STATE_FORMAT_VERSION}"
            )
        if state.sizes_s != self.sizes_s:
            raise StateError(f"window sizes {state.sizes_s} do not match {self.sizes_s}")
        self._watermark = state.watermark
        self._counts = {(s, st, _key(k)): n for s, st, k, n in state.counts}
