"""What an aggregator shard does with the event batches of its cameras.

It applies each camera's numbered batches in order (``channels.Receiver``),
moves the camera's watermark input with the events' and progress marks'
event times, counts events in tumbling windows, and emits rows as windows
close. Beside each camera's own keys it counts derived keys:

- ``site:<site>``: every counter of the cameras of one site together;
- ``group:<id>``: the configured (camera, counter) members of a group, for
  example a site's entrances, with a ``net`` row (in minus out) per window,
  which is the change in occupancy over that window.

Cameras of one site or group are routed to the same shard, so a derived key
sees all its inputs under one watermark: that is the stream join.

Checkpoints align on barriers (docs/checkpoints.md):

1. A camera's ``Barrier(n)`` arrives in its ordered stream, carrying the
   camera's own snapshot.
2. Later batches of that camera are held until ``Barrier(n)`` has come
   from every registered input, so nothing after the barrier leaks into
   the shard's state of checkpoint ``n``.
3. Then the shard closes what the watermark allows, snapshots its state
   and hands it out with the cameras' snapshots (``Output.checkpoints``),
   and only then applies the held batches.

Batches from a sender that is not registered (an earlier incarnation of a
camera that was restarted) are dropped: they are fenced off, and counted.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from camcount.alerts.engine import AlertEngine, AlertEngineState, split_state
from camcount.alerts.rules import AlertRule
from camcount.errors import StateError
from camcount.events import (
    CountRow,
    Crossing,
    DeadLetter,
    WindowKey,
    WindowRow,
    ZoneSample,
    ZoneTransition,
    count_row,
)
from camcount.external.events import ExternalCount
from camcount.forecast.book import ForecastBook, ForecastBookState, ForecastSettings, split_book
from camcount.stream.channels import (
    Barrier,
    Counted,
    EndOfStream,
    Envelope,
    Progress,
    Receiver,
    ReceiverState,
)
from camcount.stream.windows import ClockState, LateEvent, WatermarkClock, WindowCounts, WindowState

STATE_FORMAT_VERSION = 2


@dataclass(frozen=True, slots=True)
class GroupSpec:
    group_id: str
    members: frozenset[tuple[str, str]]  # (camera_id, counter_id)


@dataclass(frozen=True, slots=True)
class _Derived:
    """An event counted again under a derived key."""

    event_time: float
    key: WindowKey
    weight: int = 1

    def window_key(self) -> WindowKey:
        return self.key


#: What a shard counts: a camera's crossings and zone transitions, and
#: external counts (each weighs its ``count``).
_Countable = Crossing | ZoneTransition | ExternalCount
_COUNTED = (Crossing, ZoneTransition, ExternalCount)


def _weight(event: object) -> int:
    return int(getattr(event, "weight", 1))


@dataclass(frozen=True)
class ShardCheckpoint:
    """A shard's part of checkpoint ``checkpoint_id``: its own state and the
    snapshots its cameras sent with their barriers, by camera id."""

    checkpoint_id: int
    state: AggregatorState
    cameras: dict[str, object]


@dataclass
class Output:
    """What one accepted envelope produced, for the sink and the live hub.

    Rows produced before a checkpoint's snapshot precede it in ``rows``;
    a caller that makes every row of an ``Output`` durable before it
    acknowledges the checkpoint covers what the checkpoint needs.

    ``created`` is the earliest ``Envelope.created`` among the batches
    applied to make it (None when none carried one, or none was applied:
    an idle timeout, a flush): the live updates' latency stamp, never part
    of a row or of the state.
    """

    events: list[object] = field(default_factory=list)
    rows: list[WindowRow] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    checkpoints: list[ShardCheckpoint] = field(default_factory=list)
    fenced: int = 0
    created: float | None = None

    def extend(self, other: Output) -> None:
        self.events.extend(other.events)
        self.rows.extend(other.rows)
        self.dead_letters.extend(other.dead_letters)
        self.finished.extend(other.finished)
        self.checkpoints.extend(other.checkpoints)
        self.fenced += other.fenced
        self.stamp(other.created)

    def stamp(self, created: float | None) -> None:
        """Keep the earliest creation time: an update made from batches of
        several moments is as late as its oldest."""
        if created is not None and (self.created is None or created < self.created):
            self.created = created


@dataclass(frozen=True)
class AggregatorState:
    format_version: int
    receiver: ReceiverState
    clock: ClockState
    windows: WindowState
    totals: tuple[tuple[WindowKey, int], ...]
    senders: tuple[tuple[str, str], ...]
    #: Per camera, the runs of frame numbers it counted (``FrameLedger``).
    ledger: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    #: Open alerts and forecasts: snapshotted with the windows whose rows
    #: they were decided on, so a restore neither repeats nor loses one.
    alerts: AlertEngineState | None = None
    forecasts: ForecastBookState | None = None
    #: Per camera, the state last reported (``Aggregator.camera_state``)
    #: and the event time it began.
    camera_states: tuple[tuple[str, str, float], ...] = ()


def shard_key(camera_id: str, site: str, groups: Sequence[GroupSpec]) -> str:
    """Cameras that share a derived key must share a shard."""
    for g in groups:
        if any(cam == camera_id for cam, _ in g.members):
            return f"group:{g.group_id}"
    return f"site:{site}" if site else f"camera:{camera_id}"


def shard_index(key: str, shards: int) -> int:
    """The shard of a shard key: stable across processes and runs."""
    return zlib.crc32(key.encode()) % shards


def shard_router(
    shards: int, sites: Mapping[str, str], groups: Sequence[GroupSpec]
) -> Callable[[str], int]:
    """The shard of a camera id or of a derived key (``site:``, ``group:``;
    camera ids never hold a colon), for routing and for ``resplit``."""

    def route(camera_or_key: str) -> int:
        if ":" in camera_or_key:
            return shard_index(camera_or_key, shards)
        key = shard_key(camera_or_key, sites.get(camera_or_key, ""), groups)
        return shard_index(key, shards)

    return route


class FrameLedger:
    """Which of a camera's frames the shard has applied, as runs of the
    camera's own frame numbers: an exactly-once check in the style of Flink's
    and Kafka Streams' verifiers. A restore rolls it back with the rest of
    the state, so after any failure it must read ``[(0, n - 1)]`` for a
    camera that counted n frames: a second run is a gap, ``repeats`` a frame
    applied twice."""

    def __init__(self, runs: Iterable[tuple[int, int]] = ()) -> None:
        self.runs: list[tuple[int, int]] = [tuple(r) for r in runs]  # type: ignore[misc]
        self.repeats = 0

    def add(self, first: int, last: int) -> None:
        if last < first:
            return
        if self.runs and first <= self.runs[-1][1]:
            self.repeats += self.runs[-1][1] - first + 1
            first = self.runs[-1][1] + 1
            if last < first:
                return
        if self.runs and first == self.runs[-1][1] + 1:
            self.runs[-1] = (self.runs[-1][0], last)
        else:
            self.runs.append((first, last))


class Aggregator:
    """One shard's windows over the cameras routed to it."""

    def __init__(
        self,
        sizes_s: Sequence[int],
        allowed_lateness_s: float,
        idle_timeout_s: float = math.inf,
        sites: Mapping[str, str] | None = None,
        groups: Sequence[GroupSpec] = (),
        now: Callable[[], float] = time.monotonic,
        alert_rules: Sequence[AlertRule] = (),
        forecast: ForecastSettings | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Alerts and forecasts are watched here, on the rows as they
        close and the zone samples as they come, in event time.
        ``wall_clock`` dates the state of a camera that never sent an event
        time (``camera_state``)."""
        self.alerts = AlertEngine(alert_rules)
        self._wall_clock = wall_clock
        self._camera_states: dict[str, tuple[str, float]] = {}
        self.forecasts = (
            ForecastBook(forecast) if forecast is not None and forecast.window_sizes_s else None
        )
        # Alerts and forecasts made since the caller last took an Output.
        self._watched: list[object] = []
        self.receiver = Receiver()
        self.clock = WatermarkClock(allowed_lateness_s, idle_timeout_s, now)
        self.windows = WindowCounts(sizes_s)
        self.sites = dict(sites or {})
        self.groups = tuple(groups)
        self._group_of: dict[tuple[str, str], list[str]] = {}
        for g in self.groups:
            for member in g.members:
                self._group_of.setdefault(member, []).append(g.group_id)
        self._sender_camera: dict[str, str] = {}
        self.totals: dict[WindowKey, int] = {}
        self.ledgers: dict[str, FrameLedger] = {}
        # Step 2: the checkpoint being aligned, the cameras' snapshots come
        # so far, and the batches held behind each sender's barrier.
        self._aligning: int | None = None
        self._arrived: dict[str, object] = {}
        self._held: dict[str, deque[Envelope]] = {}
        self.fenced = 0

    def senders(self) -> dict[str, str]:
        """Sender id to camera, for the senders not fenced off."""
        return dict(self._sender_camera)

    def register(self, camera_id: str, sender: str, site: str = "") -> None:
        """A camera (or a restarted incarnation of it) will send as ``sender``;
        earlier incarnations of it are fenced off from now on."""
        for old in [s for s, c in self._sender_camera.items() if c == camera_id and s != sender]:
            del self._sender_camera[old]
            self.receiver.forget(old)
            self._held.pop(old, None)
        self._sender_camera[sender] = camera_id
        if site:
            self.sites[camera_id] = site
        self.clock.register(camera_id)

    def remove(self, camera_id: str) -> Output:
        """A camera leaves; a checkpoint aligning no longer waits for it."""
        out = Output()
        for sender in [s for s, c in self._sender_camera.items() if c == camera_id]:
            del self._sender_camera[sender]
            self.receiver.forget(sender)
            for env in self._held.pop(sender, ()):
                self._apply(camera_id, env, out)
        self._arrived.pop(camera_id, None)
        self.clock.remove(camera_id)
        self._camera_states.pop(camera_id, None)
        self._check_aligned(out)
        out.rows.extend(self._close())
        self._hand_over(out)
        return out

    def accept(self, envelope: Envelope) -> Output:
        out = Output()
        camera = self._sender_camera.get(envelope.sender)
        if camera is None:
            # An earlier incarnation of a restarted camera: fenced off.
            self.fenced += 1
            out.fenced += 1
            return out
        for env in self.receiver.accept(envelope):
            self._route(env, out)
        out.rows.extend(self._close())
        self._hand_over(out)
        return out

    def _hand_over(self, out: Output) -> None:
        out.events.extend(self._watched)
        self._watched = []

    def _route(self, env: Envelope, out: Output) -> None:
        held = self._held.get(env.sender)
        if held is not None:  # Step 2: behind this sender's barrier
            held.append(env)
            return
        camera = self._sender_camera[env.sender]
        self._apply(camera, env, out)
        for control in env.controls:
            if isinstance(control, Barrier):
                self._arrive(env.sender, camera, control, out)

    def _arrive(self, sender: str, camera: str, barrier: Barrier, out: Output) -> None:
        """Step 1: one input's barrier is in."""
        n = barrier.checkpoint_id
        if self._aligning is not None and n != self._aligning:
            if n < self._aligning:
                return  # a barrier of an abandoned checkpoint
            # A newer checkpoint started: the one aligning was abandoned.
            self._release(out)
        self._aligning = n
        self._arrived[camera] = barrier.state
        self._held[sender] = deque()
        self._check_aligned(out)

    def _check_aligned(self, out: Output) -> None:
        """Step 3, once every registered input has sent the barrier."""
        if self._aligning is None or not set(self._sender_camera).issubset(self._held):
            return
        out.rows.extend(self._close())
        self._hand_over(out)
        out.checkpoints.append(
            ShardCheckpoint(self._aligning, self.snapshot(), dict(self._arrived))
        )
        self._release(out)

    def _release(self, out: Output) -> None:
        """Apply the batches held behind the barriers, in order; one of them
        may carry the next checkpoint's barrier, which aligns anew."""
        held, self._held = self._held, {}
        self._aligning, self._arrived = None, {}
        for envs in held.values():
            while envs:
                self._route(envs.popleft(), out)

    def abort(self, checkpoint_id: int) -> Output:
        """Give up aligning ``checkpoint_id`` (an input will never send it)."""
        out = Output()
        if self._aligning is not None and self._aligning <= checkpoint_id:
            self._release(out)
            out.rows.extend(self._close())
        self._hand_over(out)
        return out

    def cut_alone(self, checkpoint_id: int) -> Output:
        """A shard with no inputs has no barrier to wait for: its part of
        ``checkpoint_id`` is its state as it stands."""
        out = Output()
        if not self._sender_camera:
            out.rows.extend(self._close())
            self._hand_over(out)
            out.checkpoints.append(ShardCheckpoint(checkpoint_id, self.snapshot(), {}))
        return out

    @property
    def aligning(self) -> int | None:
        return self._aligning

    def _apply(self, camera: str, env: Envelope, out: Output) -> None:
        out.stamp(env.created)
        countable = [e for e in env.events if isinstance(e, _COUNTED)]
        for e in countable:
            key = e.window_key()
            self.totals[key] = self.totals.get(key, 0) + _weight(e)
        late = self.windows.add([*countable, *self._derived(camera, countable)])
        out.dead_letters.extend(_late_letter(x) for x in late)
        # A camera's own dead letters (a source it could not read) travel in
        # its stream and leave with the shard's.
        out.dead_letters.extend(e for e in env.events if isinstance(e, DeadLetter))
        # External counts leave as the window rows and totals they are
        # part of; the warehouse keeps no table of them.
        out.events.extend(e for e in env.events if not isinstance(e, DeadLetter | ExternalCount))
        samples = [e for e in env.events if isinstance(e, ZoneSample)]
        if samples:
            self._watched.extend(self.alerts.on_samples(samples))
        for e in countable:
            self.clock.observe(camera, e.event_time)
        for control in env.controls:
            if isinstance(control, Progress):
                self.clock.observe(camera, control.event_time)
            elif isinstance(control, Counted):
                self.ledgers.setdefault(camera, FrameLedger()).add(control.first, control.last)
            elif isinstance(control, EndOfStream):
                self.clock.finish(camera)
                out.finished.append(camera)

    def _derived(self, camera: str, events: Iterable[_Countable]) -> list[_Derived]:
        site = self.sites.get(camera, "")
        derived = []
        for e in events:
            _, counter, cls, direction = e.window_key()
            n = _weight(e)
            if site:
                derived.append(_Derived(e.event_time, (f"site:{site}", counter, cls, direction), n))
            for gid in self._group_of.get((camera, counter), ()):
                derived.append(_Derived(e.event_time, (f"group:{gid}", gid, cls, direction), n))
        return derived

    def _close(self) -> list[WindowRow]:
        watermark = self.clock.watermark
        if watermark <= self.windows.watermark:
            return []
        rows = _with_net_rows(self.windows.advance(watermark))
        if not math.isfinite(watermark):
            # Every input ended: the rows' windows are the last there are.
            watermark = max((r.window_end for r in rows), default=self.windows.watermark)
        if math.isfinite(watermark):
            self._watch(rows, watermark)
        return rows

    def _watch(self, rows: list[WindowRow], watermark: float) -> None:
        """Closed rows to the forecasts and the alert rules, the watermark
        after them: each window is decided once, when it closes."""
        if self.forecasts is not None:
            issued = self.forecasts.observe(rows) + self.forecasts.advance(watermark)
            self.alerts.on_forecasts(issued)
            self._watched.extend(issued)
        self.alerts.on_rows(rows)
        self._watched.extend(self.alerts.advance(watermark))

    def flush(self) -> list[WindowRow]:
        """Close every window: all inputs have ended for good. The alerts
        and forecasts they made wait in ``take_watched``."""
        rows = _with_net_rows(self.windows.flush())
        # The end of the last window closed, not the infinite watermark of
        # inputs that ended: no window after it exists to be called empty.
        end = max((r.window_end for r in rows), default=None)
        if end is not None:
            self._watch(
                rows, max(end, self.clock.watermark if math.isfinite(self.clock.watermark) else end)
            )
        return rows

    def take_watched(self) -> list[object]:
        """Alerts and forecasts not yet handed over in an ``Output``."""
        out, self._watched = self._watched, []
        return out

    def camera_state(self, camera_id: str, state: str, since: float | None = None) -> float:
        """The camera's state as the controller sees it (``stalled``,
        ``failed``, ``no_detections``, or ``ok``); returns the event time
        the state began, which the caller passes as ``since`` when it
        reports the state again to a shard restored from before it.

        Time is the camera's own event time (``WatermarkClock.input_time``):
        its last event time, carried on by the time it has been silent, so
        camera alerts sit on the same time line as the others; a camera
        that never sent one is dated by the wall clock, a live source's
        capture clock. The same state reported again is no change: it lets
        the time pass that ``hold_s`` waits for. What the rules raise waits
        for the next ``Output`` (``take_watched``), so it leaves with the
        shard's other events and is covered by the next checkpoint, as the
        state it came from is."""
        now = self.clock.input_time(camera_id)
        if now is None:
            now = self._wall_clock()
        current = self._camera_states.get(camera_id)
        if current is not None and current[0] == state:
            began = current[1]
        else:
            began = now if since is None else since
            self._camera_states[camera_id] = (state, began)
            self._watched.extend(self.alerts.on_camera_state(camera_id, state, began))
        if now > began:
            self._watched.extend(self.alerts.on_camera_state(camera_id, state, now))
        return began

    def set_alert_rules(self, rules: Sequence[AlertRule]) -> None:
        """Rules changed while running: the alerts of rules gone or changed
        resolve at the shard's watermark (where its event time stands), and
        wait for the next ``Output`` as every alert does."""
        mark = self.watermark if math.isfinite(self.watermark) else None
        self._watched.extend(self.alerts.set_rules(rules, mark))

    @property
    def watermark(self) -> float:
        return self.windows.watermark

    def count_rows(self) -> list[CountRow]:
        """Counts per camera key since start, as ``camcount count --json``
        prints a camera's: what ``replay`` and ``/status`` compare to it."""
        return [count_row(*key, n) for key, n in sorted(self.totals.items())]

    def snapshot(self) -> AggregatorState:
        return AggregatorState(
            STATE_FORMAT_VERSION,
            self.receiver.snapshot(),
            self.clock.snapshot(),
            self.windows.snapshot(),
            tuple(sorted(self.totals.items())),
            tuple(sorted(self._sender_camera.items())),
            tuple((c, tuple(led.runs)) for c, led in sorted(self.ledgers.items())),
            self.alerts.snapshot(),
            self.forecasts.snapshot() if self.forecasts is not None else None,
            tuple((c, st, t) for c, (st, t) in sorted(self._camera_states.items())),
        )

    def restore(self, state: AggregatorState) -> None:
        """Back to ``state``; senders are not restored: every camera comes
        back as a new incarnation and registers again, so batches of the
        ones that sent before the restore are fenced off."""
        if state.format_version != STATE_FORMAT_VERSION:
            raise StateError(
                f"aggregator state v{state.format_version}, expected v{STATE_FORMAT_VERSION}"
            )
        self.receiver = Receiver()
        self.clock.restore(state.clock)
        self.windows.restore(state.windows)
        self.totals = dict(state.totals)
        self.ledgers = {c: FrameLedger(runs) for c, runs in state.ledger}
        if state.alerts is not None:
            self.alerts.restore(state.alerts)
        if state.forecasts is not None and self.forecasts is not None:
            self.forecasts.restore(state.forecasts)
        self._camera_states = {c: (st, t) for c, st, t in state.camera_states}
        self._watched = []
        self._sender_camera = {}
        self._aligning, self._arrived, self._held = None, {}, {}


def resplit(
    states: Sequence[AggregatorState], shards: int, route: Callable[[str], int]
) -> list[AggregatorState]:
    """Shard states re-cut for ``shards`` shards: every keyed entry (a
    camera's watermark input, a window count, a total) goes to the shard
    ``route`` names for its camera id (``site:`` and ``group:`` keys
    included), so a restore may use another number of shards than the run
    that wrote the checkpoint.

    A new shard's window watermark is the lowest of the old shards' it takes
    entries from: no window still open in any of them is closed early.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    inputs: list[list[tuple[str, float, bool]]] = [[] for _ in range(shards)]
    counts: list[list[tuple[int, float, WindowKey, int]]] = [[] for _ in range(shards)]
    totals: list[dict[WindowKey, int]] = [{} for _ in range(shards)]
    ledgers: list[list[tuple[str, tuple[tuple[int, int], ...]]]] = [[] for _ in range(shards)]
    camera_states: list[list[tuple[str, str, float]]] = [[] for _ in range(shards)]
    marks: list[list[tuple[float, float]]] = [[] for _ in range(shards)]
    sizes: tuple[int, ...] | None = None
    for state in states:
        if sizes is not None and state.windows.sizes_s != sizes:
            raise StateError(
                f"window sizes differ between shards: {sizes} and {state.windows.sizes_s}"
            )
        sizes = state.windows.sizes_s
        used: set[int] = set()
        for entry in state.clock.inputs:
            i = route(entry[0])
            inputs[i].append(entry)
            used.add(i)
        for size, start, key, n in state.windows.counts:
            i = route(key[0])
            counts[i].append((size, start, key, n))
            used.add(i)
        for key, n in state.totals:
            i = route(key[0])
            totals[i][key] = totals[i].get(key, 0) + n
            used.add(i)
        for camera, runs in state.ledger:
            ledgers[route(camera)].append((camera, runs))
        for camera, reported, began in state.camera_states:
            camera_states[route(camera)].append((camera, reported, began))
        for i in used:
            marks[i].append((state.clock.watermark, state.windows.watermark))
    if sizes is None:
        return []
    alerts = split_state([st.alerts for st in states if st.alerts is not None], shards, route)
    books = [st.forecasts for st in states if st.forecasts is not None]
    forecasts = split_book(books, shards, route) if books else [None] * shards
    out = []
    for i in range(shards):
        clock_mark = min((m[0] for m in marks[i]), default=-math.inf)
        window_mark = min((m[1] for m in marks[i]), default=-math.inf)
        out.append(
            AggregatorState(
                STATE_FORMAT_VERSION,
                ReceiverState(1, ()),
                ClockState(1, tuple(sorted(inputs[i])), clock_mark),
                WindowState(1, sizes, window_mark, tuple(sorted(counts[i]))),
                tuple(sorted(totals[i].items())),
                (),
                tuple(sorted(ledgers[i])),
                alerts[i],
                forecasts[i],
                tuple(sorted(camera_states[i])),
            )
        )
    return out


def _with_net_rows(rows: list[WindowRow]) -> list[WindowRow]:
    """Add in-minus-out rows for group keys: the occupancy change."""
    net: dict[tuple[str, str, str, int, float], int] = {}
    for r in rows:
        if r.camera_id.startswith("group:") and r.direction in ("in", "out"):
            k = (r.camera_id, r.counter_id, r.class_name, r.window_size_s, r.window_start)
            net[k] = net.get(k, 0) + (r.count if r.direction == "in" else -r.count)
    extra = [
        WindowRow(c, counter, cls, "net", size, start, n)
        for (c, counter, cls, size, start), n in net.items()
    ]
    return rows + extra


def _late_letter(late: LateEvent) -> DeadLetter:
    e = late.event
    camera, counter, cls, direction = e.window_key()
    return DeadLetter(
        source=camera,
        reason="late",
        detail=(
            f"{counter}/{cls}/{direction} at {e.event_time:.3f} for the "
            f"{late.window_size_s} s window starting {late.window_start:.0f}, "
            f"closed at watermark {late.watermark:.3f}"
        ),
        event_time=e.event_time,
        payload_kind=getattr(e, "kind", "derived"),
        payload_id=getattr(e, "event_id", 0),
    )
