"""The warehouse as an output of the port: the writer's batching, retries,
spill and dead letters behind ``write`` / ``flush``.

Exactly-once by idempotent keys: every table is a ReplacingMergeTree keyed
by the row's identity, so a batch a replay writes again is one row to
every query (docs/warehouse.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from camcount.events import DeadLetter
from camcount.outputs.port import Ack, Guarantee
from camcount.outputs.tables import CAMERA_KINDS, EVENT_KINDS
from camcount.warehouse.writer import WarehouseWriter


class WarehouseOutput:
    """A ``WarehouseWriter`` as a ``Sink``."""

    name = "warehouse"
    guarantee = Guarantee.EXACTLY_ONCE
    kinds = EVENT_KINDS | CAMERA_KINDS

    def __init__(self, writer: WarehouseWriter) -> None:
        self.writer = writer
        self._dead_before = 0

    def write(self, kind: str, batch: pa.Table) -> None:
        self.writer.write(kind, batch)

    def flush(self, checkpoint_id: int) -> Ack:
        delivered = self.writer.flush()
        dead = int(self.writer.stats()["dead_letter_rows_total"])
        ack = Ack(checkpoint_id, delivered, dead - self._dead_before)
        self._dead_before = dead
        return ack

    def dead_letters(self) -> Sequence[DeadLetter]:
        """None in memory: the writer keeps refused rows as whole batches in
        its spill store, where ``camcount warehouse dead-letters`` lists and
        replays them."""
        return ()

    def metrics(self) -> Mapping[str, float]:
        s = self.writer.stats()
        out = {
            "pending": float(s["pending_rows"]),
            "buffered": float(s["buffer_rows"]),
            "spilled": float(s["spilled_rows"]),
            "dead_lettered": float(s["dead_letter_rows_total"]),
        }
        out["delivered"] = float(sum(s["rows_written"].values()))
        return out

    def close(self) -> None:
        self.writer.close()
