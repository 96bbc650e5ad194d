"""The one interface every output of the aggregators implements.

A shard hands each output the same batches (one Arrow table per event
kind) and, at every checkpoint barrier, asks each to ``flush``: the
checkpoint completes only once every output has made durable, or refused
into its own dead letters, everything it took before the barrier. That is
what lets a restore from the checkpoint replay the rest without losing
any of it; whether a replay can also *double* something depends on the
output, which is why each one states its guarantee:

- exactly-once: the output writes by the event's identity, so the same
  event written twice is one (the warehouse's ReplacingMergeTree, the
  archive's files named by checkpoint and shard);
- at-least-once: a replay may deliver an event again, always with the same
  stable ``event_id`` (events.py), so receivers dedupe by it (live updates,
  MQTT, webhooks).

The port is synchronous and Ray-free: an actor shell moves batches between
it and the network, and a test drives it directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from camcount.events import DeadLetter

#: The checkpoint id of a flush at the end of the input, where no barrier
#: came (every window closed, the files ended).
END_OF_INPUT = -1

if TYPE_CHECKING:
    import pyarrow as pa


class Guarantee(StrEnum):
    EXACTLY_ONCE = "exactly-once"
    AT_LEAST_ONCE = "at-least-once"


@dataclass(frozen=True)
class Ack:
    """What a flush made durable since the previous one."""

    checkpoint_id: int
    delivered: int
    dead_lettered: int = 0


@runtime_checkable
class Sink(Protocol):
    """One output. ``kinds`` names the event kinds it takes (``Crossing.kind``,
    ``WindowRow.kind``, ...): a shard sends it nothing else."""

    name: str
    guarantee: Guarantee
    kinds: frozenset[str]

    def write(self, kind: str, batch: pa.Table) -> None:
        """Takes a batch; may deliver it now or at the next flush."""
        ...

    def flush(self, checkpoint_id: int) -> Ack:
        """Returns once everything written before it is durable at the
        receiver or in this output's dead letters. ``checkpoint_id`` is
        the barrier's, or ``END_OF_INPUT``."""
        ...

    def dead_letters(self) -> Sequence[DeadLetter]:
        """What this output gave up on, with the reason, for
        ``camcount dead-letters --replay``."""
        ...

    def metrics(self) -> Mapping[str, float]:
        """Counters and gauges by name (delivered, retried, dead_lettered,
        pending, ...), published by the actor that holds it."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Rewinds(Protocol):
    """An output that can take back what it made durable after a
    checkpoint (the archive deletes those files): the pipeline calls it
    when it rolls the sink's stream back, so the replay doubles nothing.
    Outputs whose guarantee is by idempotent keys or receiver-side dedupe
    need not have it."""

    def rewind(self, checkpoint_id: int | None) -> int: ...
