"""A replica's share of the live stream: its mirror of the hub's recent
updates, and the fan-out that hands each to every subscriber wanting it.

Invariants kept here:

- An update is encoded to JSON once per replica, however many clients get
  it: the mirror holds the text, and subscribers with the same filters share
  one list of items.
- Every update a client receives has a larger sequence number than the one
  before it, backlog included: ``attach`` queues the backlog and moves the
  outbox's floor to the mirror's last sequence number without awaiting, so
  nothing published meanwhile slips between the backlog and the live stream.
- A client that falls behind is dropped from delivery and returned to the
  caller to be told and closed; nothing here ever awaits a client, so one
  slow client costs the others nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from itertools import islice

from camcount.http.live.encoding import Encoded, Item, encode_update, gap_message
from camcount.http.live.outbox import Subscriber, matches_any
from camcount.http.live.query import Filter
from camcount.stream.livefeed import Update


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
