"""The generic output actor: any ``outputs:`` entry's core ``Sink`` behind
a Ray actor.

It holds one sink per stream of batches (one per shard, plus the
controller's camera metadata), built from the entry by the registry
(camcount/outputs/registry.py), and only moves batches into them; every
rule of delivery is the sink's. It answers the same calls as the
warehouse sink (``write``, ``flush_epoch``, ``epoch``, ``alive``...), so a
shard treats every output alike.

Calls from one caller run in order (the default concurrency group has one
thread), so a shard's ``flush_epoch`` covers every ``write`` it sent
before. Ray restarts an output that dies (``max_restarts``); what its
sinks held in memory is gone, so each incarnation has its own ``epoch``,
and a shard that finds another one at a barrier fails the checkpoint,
exactly as with the warehouse sink: the controller then rolls every shard
back, and ``rewind`` tells each stream's sink where to.
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import ray
from ray.util import metrics

from actors.incarnation import Incarnation
from actors.lifetime import end_with
from camcount.events import DeadLetter
from camcount.outputs.port import END_OF_INPUT, Rewinds, Sink
from camcount.outputs.registry import SinkContext, build_sink
from camcount.outputs.settings import OutputSettings

log = logging.getLogger("camcount.output")


@ray.remote(  # type: ignore[call-overload]
    num_cpus=0, max_restarts=-1, concurrency_groups={"read": 2, "watch": 1}
)
class OutputActor(Incarnation):
    def __init__(
        self, config: OutputSettings, storage_root: str, run: str, owner: Any = None
    ) -> None:
        """With ``owner`` (its controller) the output ends once the owner is
        gone for good (actors/lifetime.py)."""
        super().__init__()
        self._config = config
        self._storage_root = storage_root
        self._run = run
        self._sinks: dict[str, Sink] = {}
        # Built once here so a bad entry (an unreachable bucket) fails
        # ready(), not the first checkpoint.
        self._probe = self._sink("controller")
        self.name = self._probe.name
        self._gauge = metrics.Gauge(
            "camcount_output", "an output's counters and gauges", ("output", "stream", "metric")
        )
        end_with(owner)

    def _sink(self, stream: str) -> Sink:
        sink = self._sinks.get(stream)
        if sink is None:
            ctx = SinkContext(self._storage_root, stream, self._run)
            sink = self._sinks[stream] = build_sink(self._config, ctx)
        return sink

    @ray.method(concurrency_group="read")
    def describe(self) -> dict[str, Any]:
        """Name, guarantee, kinds taken and this incarnation's epoch."""
        return self._describe()

    def _describe(self) -> dict[str, Any]:
        return self._description(self.name, self._probe.guarantee, self._probe.kinds)

    def ready(self) -> dict[str, Any]:
        """Raises if the entry could not build its sink; else ``describe``."""
        return self._describe()

    def write(self, kind: str, table: pa.Table, stream: str = "controller") -> None:
        self._keep_off_model()
        sink = self._sink(stream)
        if kind in sink.kinds:
            with self._lock:
                sink.write(kind, table)

    def flush_epoch(self, stream: str = "controller", checkpoint_id: int | None = None) -> str:
        """Flush ``stream``'s sink at ``checkpoint_id`` (None: the end of the
        input, no barrier), then this incarnation: a barrier's step 4."""
        sink = self._sink(stream)
        with self._lock:
            sink.flush(END_OF_INPUT if checkpoint_id is None else checkpoint_id)
            self._publish(stream, sink)
        return self._epoch

    def flush(self) -> int:
        """Flush every stream at the end of the input; returns what they
        delivered."""
        delivered = 0
        with self._lock:
            for stream, sink in self._sinks.items():
                delivered += sink.flush(END_OF_INPUT).delivered
                self._publish(stream, sink)
        return delivered

    def rewind(self, stream: str, checkpoint_id: int | None) -> None:
        """``stream`` was rolled back to ``checkpoint_id`` (None: the run's
        start): its sink forgets what came after, if it can."""
        sink = self._sink(stream)
        if isinstance(sink, Rewinds):
            with self._lock:
                sink.rewind(checkpoint_id)

    @ray.method(concurrency_group="read")
    def stats(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {stream: dict(s.metrics()) for stream, s in self._sinks.items()}

    @ray.method(concurrency_group="read")
    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            return [d for s in self._sinks.values() for d in s.dead_letters()]

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for sink in self._sinks.values():
                try:
                    sink.close()
                except Exception:  # the others still close
                    log.exception("output %s: closing a sink failed", self.name)

    def _publish(self, stream: str, sink: Sink) -> None:
        for metric, value in sink.metrics().items():
            self._gauge.set(value, tags={"output": self.name, "stream": stream, "metric": metric})
