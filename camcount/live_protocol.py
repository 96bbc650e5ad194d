"""The live API's logic: filters, messages, per-client outboxes, fan-out.

Everything a live replica does between the hub and a socket, without the
socket: the deployment (``serve_app/live.py``) only moves text in and out.
Message formats are documented in docs/api.md; ``PROTOCOL_VERSION`` moves
when one changes incompatibly.

Invariants kept here:

- Every update a client receives has a larger sequence number than the one
  before it, on every transport, backlog included, so "the last sequence
  number I saw" is always a correct resume point.
- An update is encoded to JSON once per replica, however many clients get it.
- A client's queue is bounded; a client that falls behind is told and
  dropped, never waited for.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from itertools import islice
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from camcount.errors import RequestError
from camcount.livefeed import Update

PROTOCOL_VERSION = 1

#: Update kinds the pipeline publishes (actors/aggregator.py); a filter
#: naming another is refused so a typo is an error, not silence.
KINDS = frozenset(
    {"crossing", "zone_transition", "zone_visit", "zone_sample", "window_row", "dead_letter"}
)
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
MAX_FILTER_VALUES = 256
MAX_SUBSCRIPTIONS = 32
MAX_MESSAGE_CHARS = 16_384
MAX_POLL_TIMEOUT_S = 60.0
DEFAULT_POLL_TIMEOUT_S = 25.0
MAX_POLL_LIMIT = 1000


class CloseCode(IntEnum):
    """WebSocket close codes; 4xxx mirror the HTTP status they stand for."""

    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    PROTOCOL_ERROR = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN_ORIGIN = 4403
    SLOW_CONSUMER = 4408
    RATE_LIMITED = 4429


# ----------------------------------------------------------------- filters


def counter_of(update: Update) -> str:
    """The line or zone an update is about ('' for none, e.g. a dead letter)."""
    data = update.data
    value = data.get("counter_id") or data.get("zone_id") or ""
    return str(value)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which updates a subscription wants; an empty set means any."""

    cameras: frozenset[str] = frozenset()
    counters: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()

    def matches(self, update: Update) -> bool:
        if self.kinds and update.kind not in self.kinds:
            return False
        if self.cameras and update.camera_id not in self.cameras:
            return False
        return not self.counters or counter_of(update) in self.counters

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "cameras": sorted(self.cameras),
            "counters": sorted(self.counters),
            "kinds": sorted(self.kinds),
        }


_Ids = Annotated[
    list[Annotated[str, Field(pattern=ID_PATTERN)]], Field(max_length=MAX_FILTER_VALUES)
]


def make_filter(
    cameras: Iterable[str] = (), counters: Iterable[str] = (), kinds: Iterable[str] = ()
) -> Filter:
    """A filter from already type-checked values; refuses unknown kinds."""
    unknown = sorted(set(kinds) - KINDS)
    if unknown:
        raise RequestError("bad_filter", f"unknown kind(s) {unknown}; known: {sorted(KINDS)}", 422)
    return Filter(frozenset(cameras), frozenset(counters), frozenset(kinds))


def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


class _FilterQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cameras: _Ids = []
    counters: _Ids = []
    kinds: _Ids = []


def filter_from_query(params: Mapping[str, Sequence[str]]) -> Filter:
    """``cameras``, ``counters`` and ``kinds`` from a query string, each
    repeated or comma separated (``?kinds=crossing,window_row``)."""
    raw = {k: _split(params.get(k, ())) for k in ("cameras", "counters", "kinds")}
    try:
        q = _FilterQuery.model_validate(raw)
    except ValidationError as exc:
        raise RequestError("bad_filter", "invalid filter", 422, validation_detail(exc)) from None
    return make_filter(q.cameras, q.counters, q.kinds)


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as plain JSON: where, what, and the error type."""
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


# ----------------------------------------------------------------- query strings


def int_param(
    params: Mapping[str, Sequence[str]], name: str, lo: int, hi: int, default: int | None = None
) -> int | None:
    values = params.get(name) or ()
    if not values or values[-1] == "":
        return default
    text = values[-1].strip()
    if not text.isdigit() or len(text) > 19:
        raise RequestError("bad_parameter", f"{name} must be an integer in [{lo}, {hi}]", 422)
    value = int(text)
    if not lo <= value <= hi:
        raise RequestError("bad_parameter", f"{name} must be in [{lo}, {hi}], got {value}", 422)
    return value


def float_param(
    params: Mapping[str, Sequence[str]], name: str, lo: float, hi: float, default: float
) -> float:
    values = params.get(name) or ()
    if not values or values[-1] == "":
        return default
    try:
        value = float(values[-1])
    except ValueError:
        raise RequestError("bad_parameter", f"{name} must be a number", 422) from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise RequestError("bad_parameter", f"{name} must be in [{lo}, {hi}]", 422)
    return value


MAX_SEQ = 2**63 - 1


@dataclass(frozen=True, slots=True)
class PollQuery:
    after: int | None
    timeout_s: float
    limit: int
    filter: Filter


def poll_query(params: Mapping[str, Sequence[str]]) -> PollQuery:
    return PollQuery(
        after=int_param(params, "after", 0, MAX_SEQ),
        timeout_s=float_param(params, "timeout", 0.0, MAX_POLL_TIMEOUT_S, DEFAULT_POLL_TIMEOUT_S),
        limit=int_param(params, "limit", 1, MAX_POLL_LIMIT, MAX_POLL_LIMIT) or MAX_POLL_LIMIT,
        filter=filter_from_query(params),
    )


def resume_point(last_event_id: str | None, params: Mapping[str, Sequence[str]]) -> int | None:
    """Where an SSE stream starts: ``Last-Event-ID`` (the browser's resume)
    over ``?after=`` (the first connection)."""
    if last_event_id is not None and last_event_id.strip():
        return int_param({"Last-Event-ID": [last_event_id]}, "Last-Event-ID", 0, MAX_SEQ)
    return int_param(params, "after", 0, MAX_SEQ)


# ----------------------------------------------------------------- messages

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(obj: Any) -> str:
    """Compact JSON; a NaN or infinity (which JSON has not) becomes null."""
    try:
        return _dumps(obj)
    except ValueError:
        return _dumps(_finite(obj))


def update_object(update: Update) -> dict[str, Any]:
    return {
        "type": "update",
        "seq": update.seq,
        "kind": update.kind,
        "camera_id": update.camera_id,
        "data": update.data,
    }


def encode_update(update: Update) -> str:
    return dumps(update_object(update))


def message(type_: str, **fields: Any) -> str:
    return dumps({"type": type_, **fields})


def error_message(error: RequestError, ref: str | None = None) -> str:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.detail is not None:
        body["detail"] = error.detail
    if ref is not None:
        body["ref"] = ref
    return message("error", **body)


def gap_message(after: int, resume_after: int, reason: str = "expired") -> str:
    """Updates in (after, resume_after] are gone: delivery goes on after them."""
    return message("gap", after=after, resume_after=resume_after, reason=reason)


def frames(items: Sequence[Item], batch: bool) -> list[str]:
    """The WebSocket frames for items taken from an outbox, in order.

    Unbatched, one frame per item. Batched (a client's choice), consecutive
    updates share one ``updates`` frame: a write through Serve's proxy costs
    about as much as the text it carries, so a busy client gets fewer,
    fuller frames. Notices and controls stay frames of their own, in place.
    """
    if not batch:
        return [text for _, _, text in items]
    out: list[str] = []
    run: list[str] = []
    for seq, _, text in items:
        if seq >= 0:
            run.append(text)
            continue
        if run:
            out.append(_updates_frame(run))
            run = []
        out.append(text)
    if run:
        out.append(_updates_frame(run))
    return out


def _updates_frame(texts: list[str]) -> str:
    return texts[0] if len(texts) == 1 else '{"type":"updates","updates":[' + ",".join(texts) + "]}"


def sse_frame(event: str, data: str, seq: int | None = None) -> str:
    """One Server-Sent Event; ``id`` only on updates, so ``Last-Event-ID``
    is always an update's sequence number."""
    head = f"id: {seq}\n" if seq is not None and seq >= 0 else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


# ----------------------------------------------------------------- client messages


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthMsg(_Msg):
    type: Literal["auth"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]

    def __repr__(self) -> str:  # a token never reaches a log through a repr
        return "AuthMsg(token=***)"


class SubscribeMsg(_Msg):
    type: Literal["subscribe"]
    id: Annotated[str, Field(pattern=ID_PATTERN)] = "default"
    cameras: _Ids = []
    counters: _Ids = []
    kinds: _Ids = []
    after: Annotated[int, Field(ge=0, le=MAX_SEQ)] | None = None

    def filter(self) -> Filter:
        return make_filter(self.cameras, self.counters, self.kinds)


class UnsubscribeMsg(_Msg):
    type: Literal["unsubscribe"]
    id: Annotated[str, Field(pattern=ID_PATTERN)] = "default"


class AckMsg(_Msg):
    type: Literal["ack"]
    seq: Annotated[int, Field(ge=0, le=MAX_SEQ)]


class PingMsg(_Msg):
    type: Literal["ping"]
    data: Annotated[str, Field(max_length=256)] | None = None


ClientMessage = AuthMsg | SubscribeMsg | UnsubscribeMsg | AckMsg | PingMsg
_client_message: TypeAdapter[ClientMessage] = TypeAdapter(
    Annotated[ClientMessage, Field(discriminator="type")]
)
CLIENT_TYPES = ("auth", "subscribe", "unsubscribe", "ack", "ping")


def parse_client_message(text: str) -> ClientMessage:
    """One client text frame; every way it can be wrong is a ``RequestError``."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise RequestError("too_large", f"messages are limited to {MAX_MESSAGE_CHARS} characters")
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise RequestError("bad_json", "the message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise RequestError("bad_message", "a message is a JSON object with a 'type'")
    if raw.get("type") not in CLIENT_TYPES:
        raise RequestError("unknown_type", f"'type' must be one of {list(CLIENT_TYPES)}")
    try:
        return _client_message.validate_python(raw)
    except ValidationError as exc:
        raise RequestError(
            "bad_message", "invalid message", detail=validation_detail(exc)
        ) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


# ----------------------------------------------------------------- per-client state

Item = tuple[int, str, str]  # (seq, or -1 for a notice; event name; JSON text)


class Outbox:
    """What waits to be written to one client, bounded.

    Updates go out in sequence order, each at most once; notices (gap) keep
    their place among them. Controls (hello, heartbeat, replies) go first.
    With an ack ``window``, at most that many updates are out unacknowledged:
    Serve's proxy buffers whatever a replica writes without back-pressure,
    so acknowledgements are the only end-to-end signal that a client keeps
    up. More than ``capacity`` held back (beyond what the window lets out
    now) marks the client ``overflowed``: it can absorb a burst of
    ``window + capacity`` updates.
    """

    def __init__(self, capacity: int, window: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 or None, got {window}")
        self.capacity = capacity
        self.window = window
        self._updates: deque[Item] = deque()
        self._controls: deque[Item] = deque()
        self._unacked: deque[int] = deque()
        self.last_queued_seq = -1
        self.last_sent_seq = -1
        self.overflowed = False
        self.changed = asyncio.Event()

    def push(self, items: Iterable[Item]) -> bool:
        """Queue updates and notices; False once the client has overflowed."""
        if self.overflowed:
            return False
        added = False
        for item in items:
            seq = item[0]
            if seq >= 0:
                if seq <= self.last_queued_seq:
                    continue
                self.last_queued_seq = seq
            self._updates.append(item)
            added = True
        if len(self._updates) > self.capacity + self._room():
            self.overflowed = True
            self._updates.clear()
        if added or self.overflowed:
            self.changed.set()
        return not self.overflowed

    def push_control(self, event: str, text: str) -> None:
        self._controls.append((-1, event, text))
        self.changed.set()

    def ack(self, seq: int) -> None:
        while self._unacked and self._unacked[0] <= seq:
            self._unacked.popleft()
        if self._updates:
            self.changed.set()

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    @property
    def queued(self) -> int:
        return len(self._updates)

    def take(self, limit: int = 1000) -> list[Item]:
        """What may be written now, oldest first."""
        out: list[Item] = []
        while self._controls and len(out) < limit:
            out.append(self._controls.popleft())
        while self._updates and len(out) < limit:
            seq = self._updates[0][0]
            if seq >= 0 and self.window is not None and len(self._unacked) >= self.window:
                break
            item = self._updates.popleft()
            if seq >= 0:
                self.last_sent_seq = seq
                if self.window is not None:
                    self._unacked.append(seq)
            out.append(item)
        if not self._controls and not self._sendable():
            self.changed.clear()
        return out

    def _room(self) -> int:
        """Updates that may go out now: they are not held for the client."""
        if self.window is None:
            return 0
        return max(0, self.window - len(self._unacked))

    def _sendable(self) -> bool:
        if not self._updates:
            return False
        head = self._updates[0][0]
        return head < 0 or self.window is None or len(self._unacked) < self.window


class Subscriptions:
    """A connection's named filters; it gets an update matching any of them."""

    def __init__(self, limit: int = MAX_SUBSCRIPTIONS) -> None:
        self._limit = limit
        self._by_id: dict[str, Filter] = {}
        self.key: frozenset[Filter] = frozenset()

    def add(self, sub_id: str, flt: Filter) -> None:
        if sub_id not in self._by_id and len(self._by_id) >= self._limit:
            raise RequestError(
                "too_many_subscriptions", f"at most {self._limit} subscriptions per connection"
            )
        self._by_id[sub_id] = flt
        self.key = frozenset(self._by_id.values())

    def remove(self, sub_id: str) -> bool:
        found = self._by_id.pop(sub_id, None) is not None
        self.key = frozenset(self._by_id.values())
        return found

    def __len__(self) -> int:
        return len(self._by_id)


@dataclass(eq=False)
class Subscriber:
    """One client as the fan-out sees it: what it wants and where it goes.

    ``filters`` is the set of filters it matches (any of them); a connection
    updates it in place as subscriptions change.
    """

    outbox: Outbox
    filters: frozenset[Filter] = frozenset()
    transport: str = "ws"
    label: str = ""
    last_write: float = field(default_factory=time.monotonic)


def matches_any(filters: frozenset[Filter], update: Update) -> bool:
    return any(f.matches(update) for f in filters)


# ----------------------------------------------------------------- replica buffer

Encoded = tuple[Update, str]


class Mirror:
    """A replica's copy of the hub's recent updates, each encoded once.

    Sequence numbers held are contiguous; when the hub reports a gap (the
    replica fell further behind than the hub's buffer) the mirror starts
    again after it, and ``since`` reports the gap to whoever asks for
    anything older.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._items: deque[Encoded] = deque(maxlen=capacity)
        self._last_seq = 0
        self._floor = 0  # every seq <= floor is lost to this replica

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def first_seq(self) -> int:
        return self._items[0][0].seq if self._items else self._last_seq + 1

    def extend(self, items: Sequence[Encoded], gap: bool = False) -> None:
        if not items:
            return
        if gap or items[0][0].seq != self._last_seq + 1:
            self._items.clear()
            self._floor = items[0][0].seq - 1
        for upd, _ in items:
            if upd.seq <= self._last_seq:
                raise ValueError(f"sequence went backwards: {self._last_seq} -> {upd.seq}")
            self._last_seq = upd.seq
        self._items.extend(items)

    def reset(self) -> None:
        """The hub started again (its numbering restarted)."""
        self._items.clear()
        self._last_seq = 0
        self._floor = 0

    def since(self, after: int, limit: int | None = None) -> tuple[list[Encoded], bool]:
        """Updates after ``after`` (oldest first) and whether some are lost."""
        first = self.first_seq
        lost_floor = max(self._floor, first - 1)
        gap = after < lost_floor and after < self._last_seq
        start = max(after + 1, first)
        skip = start - first
        stop = len(self._items) if limit is None else min(len(self._items), skip + limit)
        return list(islice(self._items, skip, stop)), gap

    @property
    def oldest_available_after(self) -> int:
        return max(self._floor, self.first_seq - 1)


class Fanout:
    """Hands every update to every subscriber that wants it, without waiting.

    ``publish`` is synchronous: it encodes, filters once per distinct set of
    filters, and appends to bounded outboxes; a full outbox marks its
    client overflowed for the transport to close. Nothing here ever awaits
    a client, so one slow client costs the others nothing.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.mirror = Mirror(capacity)
        self._subscribers: set[Subscriber] = set()
        self._connections: set[Subscriber] = set()
        self.changed = asyncio.Event()
        self.published = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def connections(self) -> list[Subscriber]:
        return list(self._connections)

    def connect(self, sub: Subscriber) -> None:
        """Known for heartbeats and counts; gets no update before ``attach``."""
        self._connections.add(sub)

    def attach(self, sub: Subscriber, after: int | None) -> None:
        """Start delivering to ``sub``: first what it missed after ``after``
        (with a gap notice if part of that is gone), then every new update.
        Runs without awaiting, so nothing published meanwhile slips between
        the backlog and the live stream."""
        self._connections.add(sub)
        last = self.mirror.last_seq
        if after is not None:
            if after > last:
                sub.outbox.push([(-1, "gap", gap_message(after, 0, "reset"))])
                after = 0
            items, gap = self.mirror.since(after)
            notices: list[Item] = []
            if gap:
                resume = self.mirror.oldest_available_after
                notices.append((-1, "gap", gap_message(after, resume)))
            sub.outbox.push(
                notices + [(u.seq, "update", t) for u, t in items if matches_any(sub.filters, u)]
            )
        sub.outbox.last_queued_seq = max(sub.outbox.last_queued_seq, last)
        self._subscribers.add(sub)

    def detach(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        self._connections.discard(sub)

    def publish(self, updates: Sequence[Update], gap: bool = False) -> list[Subscriber]:
        """Deliver a batch from the hub; returns the subscribers that overflowed."""
        if not updates:
            return []
        previous = self.mirror.last_seq
        encoded = [(u, encode_update(u)) for u in updates]
        self.mirror.extend(encoded, gap=gap)
        notice: list[Item] = (
            [(-1, "gap", gap_message(previous, updates[0].seq - 1, "replica_behind"))]
            if gap
            else []
        )
        by_key: dict[frozenset[Filter], list[Item]] = {}
        overflowed: list[Subscriber] = []
        for sub in self._subscribers:
            key = sub.filters
            batch = by_key.get(key)
            if batch is None:
                batch = notice + [(u.seq, "update", t) for u, t in encoded if matches_any(key, u)]
                by_key[key] = batch
            if batch and not sub.outbox.push(batch):
                overflowed.append(sub)
        for sub in overflowed:
            self._subscribers.discard(sub)
        self.published += len(updates)
        self.changed.set()
        self.changed = asyncio.Event()
        return overflowed

    def reset(self) -> None:
        """The hub restarted: every subscriber is told, numbering starts again."""
        previous = self.mirror.last_seq
        self.mirror.reset()
        for sub in self._subscribers:
            sub.outbox.push([(-1, "gap", gap_message(previous, 0, "reset"))])
            sub.outbox.last_queued_seq = 0
        self.changed.set()
        self.changed = asyncio.Event()

    def poll(self, after: int | None, flt: Filter, limit: int) -> tuple[list[Encoded], int, bool]:
        """Matching updates after ``after``, the sequence number scanned up to
        (the next ``after``), and whether some were lost."""
        last = self.mirror.last_seq
        if after is None:
            return [], last, False
        reset = after > last
        start = 0 if reset else after
        items, gap = self.mirror.since(start)
        picked: list[Encoded] = []
        scanned = last
        for upd, text in items:
            if flt.matches(upd):
                if len(picked) == limit:
                    scanned = picked[-1][0].seq
                    break
                picked.append((upd, text))
        return picked, scanned, gap or reset


def poll_body(items: Sequence[Encoded], last_seq: int, gap: bool) -> str:
    """The long-poll answer, built from the texts already encoded."""
    return (
        '{"updates":['
        + ",".join(text for _, text in items)
        + f'],"last_seq":{last_seq},"gap":{"true" if gap else "false"}}}'
    )
