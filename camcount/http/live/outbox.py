"""Per-client state: what waits to be written to one client, and what it
subscribed to.

Invariants kept here:

- Every update a client receives has a larger sequence number than the one
  before it, on every transport, backlog included, so "the last sequence
  number I saw" is always a correct resume point: an outbox queues an update
  at most once and never one older than the last it queued.
- A client's queue is bounded; a client that falls behind is marked
  ``overflowed`` (for its transport to tell it and close), never waited for.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from camcount.errors import RequestError
from camcount.http.live.encoding import Item
from camcount.http.live.query import Filter
from camcount.stream.livefeed import Update

MAX_SUBSCRIPTIONS = 32


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
