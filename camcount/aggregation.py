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
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from camcount.channels import Barrier, EndOfStream, Envelope, Progress, Receiver, ReceiverState
from camcount.events import Crossing, DeadLetter, WindowKey, WindowRow, ZoneTransition
from camcount.windows import ClockState, LateEvent, WatermarkClock, WindowCounts, WindowState

STATE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class GroupSpec:
    group_id: str
    members: frozenset[tuple[str, str]]  # (camera_id, counter_id)


@dataclass(frozen=True, slots=True)
class _Derived:
    """An event counted again under a derived key."""

    event_time: float
    key: WindowKey

    def window_key(self) -> WindowKey:
        return self.key


@dataclass
class Output:
    """What one accepted envelope produced, for the sink and the live hub."""

    events: list[object] = field(default_factory=list)
    rows: list[WindowRow] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    barriers: list[Barrier] = field(default_factory=list)


@dataclass(frozen=True)
class AggregatorState:
    format_version: int
    receiver: ReceiverState
    clock: ClockState
    windows: WindowState
    totals: tuple[tuple[WindowKey, int], ...]
    senders: tuple[tuple[str, str], ...]


def shard_key(camera_id: str, site: str, groups: Sequence[GroupSpec]) -> str:
    """Cameras that share a derived key must share a shard."""
    for g in groups:
        if any(cam == camera_id for cam, _ in g.members):
            return f"group:{g.group_id}"
    return f"site:{site}" if site else f"camera:{camera_id}"


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
    ) -> None:
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

    def register(self, camera_id: str, sender: str, site: str = "") -> None:
        """A camera (or a restarted incarnation of it) will send as ``sender``."""
        self._sender_camera[sender] = camera_id
        if site:
            self.sites[camera_id] = site
        self.clock.register(camera_id)

    def remove(self, camera_id: str) -> None:
        for sender in [s for s, c in self._sender_camera.items() if c == camera_id]:
            del self._sender_camera[sender]
            self.receiver.forget(sender)
        self.clock.remove(camera_id)

    def accept(self, envelope: Envelope) -> Output:
        out = Output()
        camera = self._sender_camera.get(envelope.sender)
        if camera is None:
            raise KeyError(f"unregistered sender {envelope.sender!r}")
        for env in self.receiver.accept(envelope):
            self._apply(camera, env, out)
        out.rows.extend(self._close())
        return out

    def _apply(self, camera: str, env: Envelope, out: Output) -> None:
        countable = [e for e in env.events if isinstance(e, Crossing | ZoneTransition)]
        for e in countable:
            key = e.window_key()
            self.totals[key] = self.totals.get(key, 0) + 1
        late = self.windows.add([*countable, *self._derived(camera, countable)])
        out.dead_letters.extend(_late_letter(x) for x in late)
        # A camera's own dead letters (a source it could not read) travel in
        # its stream and leave with the shard's.
        out.dead_letters.extend(e for e in env.events if isinstance(e, DeadLetter))
        out.events.extend(e for e in env.events if not isinstance(e, DeadLetter))
        for e in countable:
            self.clock.observe(camera, e.event_time)
        for control in env.controls:
            if isinstance(control, Progress):
                self.clock.observe(camera, control.event_time)
            elif isinstance(control, EndOfStream):
                self.clock.finish(camera)
                out.finished.append(camera)
            elif isinstance(control, Barrier):
                out.barriers.append(control)

    def _derived(self, camera: str, events: Iterable[Crossing | ZoneTransition]) -> list[_Derived]:
        site = self.sites.get(camera, "")
        derived = []
        for e in events:
            _, counter, cls, direction = e.window_key()
            if site:
                derived.append(_Derived(e.event_time, (f"site:{site}", counter, cls, direction)))
            for gid in self._group_of.get((camera, counter), ()):
                derived.append(_Derived(e.event_time, (f"group:{gid}", gid, cls, direction)))
        return derived

    def _close(self) -> list[WindowRow]:
        watermark = self.clock.watermark
        if watermark <= self.windows.watermark:
            return []
        return _with_net_rows(self.windows.advance(watermark))

    def flush(self) -> list[WindowRow]:
        """Close every window: all inputs have ended for good."""
        return _with_net_rows(self.windows.flush())

    @property
    def watermark(self) -> float:
        return self.windows.watermark

    def snapshot(self) -> AggregatorState:
        return AggregatorState(
            STATE_FORMAT_VERSION,
            self.receiver.snapshot(),
            self.clock.snapshot(),
            self.windows.snapshot(),
            tuple(sorted(self.totals.items())),
            tuple(sorted(self._sender_camera.items())),
        )

    def restore(self, state: AggregatorState) -> None:
        self.receiver.restore(state.receiver)
        self.clock.restore(state.clock)
        self.windows.restore(state.windows)
        self.totals = dict(state.totals)
        self._sender_camera = dict(state.senders)


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
