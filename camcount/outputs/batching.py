"""Gathering a shard's output into fewer, larger batches for its outputs.

Each call into an output costs a few milliseconds of its CPU whatever the
batch's size, so a shard does not send every push's few events at once:
an ``Outbox`` holds them until ``batch_rows`` wait or the oldest has
waited ``max_delay_s``, and always gives everything up at a barrier or a
stop. What it gives is one Arrow table per event kind, in the order the
kinds first arrived, so every output gets the very same batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from camcount.events import to_arrow

#: Rows that make a batch worth sending at once.
BATCH_ROWS = 5_000
#: The longest a row waits in the outbox before it is sent anyway.
MAX_DELAY_S = 1.0

if TYPE_CHECKING:
    import pyarrow as pa


class Outbox:
    """Events waiting for the outputs, by type; ``rows`` counts them all.

    The clock is passed in (monotonic seconds) so tests move time instead
    of sleeping.
    """

    def __init__(
        self,
        batch_rows: int = BATCH_ROWS,
        max_delay_s: float = MAX_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must not be negative, not {max_delay_s}")
        self.batch_rows = batch_rows
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._items: dict[Any, list[Any]] = {}
        self._since = 0.0
        self.rows = 0

    def __bool__(self) -> bool:
        return self.rows > 0

    def add(self, batches: Iterable[tuple[Any, Sequence[Any]]]) -> None:
        """(event type, events) pairs, as ``tables.batches_of`` gives them."""
        for cls, items in batches:
            if not items:
                continue
            if not self.rows:
                self._since = self._clock()
            self._items.setdefault(cls, []).extend(items)
            self.rows += len(items)

    def due(self) -> bool:
        """Whether what waits should go now (full, or waited long enough)."""
        return bool(self.rows) and (
            self.rows >= self.batch_rows or self._clock() - self._since >= self.max_delay_s
        )

    def take(self) -> list[tuple[str, pa.Table]]:
        """Everything waiting, as (kind, table) pairs; the outbox is empty after."""
        items, self._items, self.rows = self._items, {}, 0
        return [(cls.kind, to_arrow(cls, batch)) for cls, batch in items.items()]

    def clear(self) -> None:
        """Forget what waits (the shard was rolled back: it is made again)."""
        self._items, self.rows = {}, 0
