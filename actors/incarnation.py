"""What every output actor (the warehouse sink, the generic output) keeps
for the shards and the controller: its incarnation.

Ray restarts an output that dies, and what it held in memory is gone with
it. So each incarnation has its own ``epoch``: a shard compares the epoch
an output answers at a checkpoint barrier with the one it wrote to, and
fails the checkpoint if they differ (the controller then rolls back). The
controller keeps one ``alive`` call pending on each output to learn at
once when it dies.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable
from typing import Any

import ray

from actors.placement import ModelCoreAvoider


class Incarnation:
    """A base for output actors declared with the concurrency groups
    ``read`` and ``watch``."""

    def __init__(self) -> None:
        self._epoch = uuid.uuid4().hex
        #: Held while a sink changes (writes, flushes, metrics).
        self._lock = threading.Lock()
        #: Set by ``close``: ends ``alive`` and background threads.
        self._stop = threading.Event()
        self._keep_off_model = ModelCoreAvoider()

    def _description(self, name: str, guarantee: object, kinds: Iterable[str]) -> dict[str, Any]:
        """What a shard asks every output (``describe``)."""
        return {
            "name": name,
            "guarantee": str(guarantee),
            "kinds": sorted(kinds),
            "epoch": self._epoch,
        }

    @ray.method(concurrency_group="read")
    def epoch(self) -> str:
        """This incarnation (a restart makes a new one)."""
        return self._epoch

    @ray.method(concurrency_group="watch")
    def alive(self) -> None:
        """Never returns while the actor lives."""
        self._stop.wait()
