"""The live hub's ring buffer: updates numbered with one global sequence.

A client that reconnects with the last sequence number it saw gets exactly
what it missed while that is still buffered, or is told there is a gap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Update:
    """One numbered update. ``created`` (when the camera made the events it
    comes from) and ``published`` (when its shard handed it to the hub) are
    wall-clock seconds for measuring delivery delay; ``data`` never holds
    them, so it stays the event's own fields."""

    seq: int
    kind: str  # "crossing", "zone_transition", "window_row", "status", ...
    camera_id: str
    data: dict[str, Any]
    created: float | None = None
    published: float | None = None


@dataclass(frozen=True, slots=True)
class Since:
    updates: tuple[Update, ...]
    last_seq: int
    gap: bool  # some updates after the asked sequence are no longer buffered


class UpdateBuffer:
    """Bounded: the oldest updates fall out as new ones come in."""

    def __init__(self, capacity: int = 10_000, last_seq: int = 0) -> None:
        """``last_seq``: the last number a previous buffer may have used, so
        a restarted hub never numbers an update twice."""
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._items: deque[Update] = deque(maxlen=capacity)
        self._last_seq = last_seq

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def publish(
        self,
        kind: str,
        camera_id: str,
        data: dict[str, Any],
        created: float | None = None,
        published: float | None = None,
    ) -> Update:
        self._last_seq += 1
        update = Update(self._last_seq, kind, camera_id, data, created, published)
        self._items.append(update)
        return update

    def since(self, seq: int, limit: int = 1000) -> Since:
        """Updates after ``seq``, oldest first, at most ``limit``."""
        oldest = self._items[0].seq if self._items else self._last_seq + 1
        gap = seq + 1 < oldest and seq < self._last_seq
        start = max(seq + 1, oldest)
        skip = start - oldest
        picked = tuple(self._items[i] for i in range(skip, min(len(self._items), skip + limit)))
        return Since(picked, self._last_seq, gap)
