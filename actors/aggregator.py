"""An aggregator shard: the core ``Aggregator`` behind a Ray actor.

It receives numbered event batches from its cameras (``push``), and
forwards what they produce: raw events and closed window rows to the
warehouse sink, the same to the live hub for apps, late events to the dead
letters. Sink and hub are optional so the shard can run alone in tests.

The live hub gets every push's output at once (apps want it now); the sink
gets it gathered into fewer, larger batches (each sink call costs a few
milliseconds of its CPU whatever its size), sent when ``SINK_BATCH_ROWS``
rows wait, when the oldest has waited ``SINK_MAX_DELAY_S`` (checked on
every push and tick), and always on ``flush`` and ``drain``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import ray
from ray.util import metrics

from actors.cores import ModelCoreAvoider
from camcount.aggregation import Aggregator, GroupSpec, Output
from camcount.channels import Envelope
from camcount.events import DeadLetter, WindowRow, group_by_type, to_arrow
from camcount.processor import CountRow

MAX_KEPT_ROWS = 1_000_000
SINK_BATCH_ROWS = 5_000
SINK_MAX_DELAY_S = 1.0


@ray.remote(num_cpus=0.25, max_restarts=0)
class AggregatorActor:
    def __init__(
        self,
        shard_id: int,
        sizes_s: Sequence[int],
        allowed_lateness_s: float,
        idle_timeout_s: float,
        groups: Sequence[tuple[str, Sequence[tuple[str, str]]]] = (),
        sink: Any = None,
        hub: Any = None,
    ) -> None:
        self.shard_id = shard_id
        self._keep_off_model = ModelCoreAvoider()
        self._agg = Aggregator(
            sizes_s,
            allowed_lateness_s,
            idle_timeout_s,
            groups=[GroupSpec(g, frozenset((c, k) for c, k in members)) for g, members in groups],
        )
        self._sink = sink
        self._hub = hub
        self._rows: list[WindowRow] = []
        self._dead: list[DeadLetter] = []
        self._finished: set[str] = set()
        self._outbox: dict[Any, list[Any]] = {}
        self._outbox_rows = 0
        self._outbox_since = 0.0
        # The camera's site and tags ride on its live updates, so apps can
        # group and filter by them (the warehouse joins its cameras table).
        self._meta: dict[str, dict[str, Any]] = {}
        tags = {"shard": str(shard_id)}
        self._m_rows = metrics.Counter("camcount_window_rows", "closed window rows", ("shard",))
        self._m_late = metrics.Counter(
            "camcount_late_events", "events after their window closed", ("shard",)
        )
        self._m_events = metrics.Counter(
            "camcount_aggregated_events", "events received", ("shard",)
        )
        self._m_watermark_lag = metrics.Gauge(
            "camcount_watermark_lag_s", "wall clock minus the shard's watermark", ("shard",)
        )
        for m in (self._m_rows, self._m_late, self._m_events, self._m_watermark_lag):
            m.set_default_tags(tags)

    def register(
        self, camera_id: str, sender: str, site: str = "", tags: dict[str, str] | None = None
    ) -> None:
        self._agg.register(camera_id, sender, site)
        self._meta[camera_id] = {"site": site, "tags": dict(tags or {})}
        self._finished.discard(camera_id)

    def remove(self, camera_id: str) -> None:
        self._agg.remove(camera_id)

    async def push(self, envelope: Envelope) -> None:
        self._keep_off_model()
        await self._forward(self._agg.accept(envelope))

    async def tick(self) -> None:
        """Let idle inputs time out and close what that allows."""
        out = Output(rows=self._agg._close())
        await self._forward(out)

    async def flush(self) -> list[WindowRow]:
        """Close every open window (all inputs are done for good) and hand
        everything to the sink."""
        rows = self._agg.flush()
        await self._forward(Output(rows=rows))
        await self.drain()
        return rows

    async def drain(self) -> int:
        """Send what waits for the sink now (before a sink flush or a stop);
        returns the rows sent."""
        if self._sink is None or not self._outbox:
            return 0
        outbox, sent = self._outbox, self._outbox_rows
        self._outbox, self._outbox_rows = {}, 0
        for cls, items in outbox.items():
            await self._sink.write.remote(cls.kind, to_arrow(cls, items))
        return sent

    async def _forward(self, out: Output) -> None:
        self._m_events.inc(len(out.events)) if out.events else None
        self._finished.update(out.finished)
        if out.rows:
            self._m_rows.inc(len(out.rows))
            if len(self._rows) < MAX_KEPT_ROWS:
                self._rows.extend(out.rows)
        if out.dead_letters:
            self._m_late.inc(len(out.dead_letters))
            self._dead.extend(out.dead_letters)
        wm = self._agg.watermark
        if wm != float("inf") and wm != float("-inf"):
            self._m_watermark_lag.set(time.time() - wm)
        batches: list[tuple[Any, list[Any]]] = [*group_by_type(out.events).items()]
        if out.rows:
            batches.append((WindowRow, list(out.rows)))
        if out.dead_letters:
            batches.append((DeadLetter, list(out.dead_letters)))
        if self._sink is not None:
            if batches and not self._outbox:
                self._outbox_since = time.monotonic()
            for cls, items in batches:
                self._outbox.setdefault(cls, []).extend(items)
                self._outbox_rows += len(items)
            if self._outbox and (
                self._outbox_rows >= SINK_BATCH_ROWS
                or time.monotonic() - self._outbox_since >= SINK_MAX_DELAY_S
            ):
                await self.drain()
        if self._hub is not None and batches:
            updates = [
                (cls.kind, getattr(e, "camera_id", ""), self._enriched(_as_dict(e)))
                for cls, items in batches
                for e in items
            ]
            await self._hub.publish.remote(updates)

    def _enriched(self, data: dict[str, Any]) -> dict[str, Any]:
        meta = self._meta.get(data.get("camera_id", ""))
        if meta is not None:
            data.update(meta)
        return data

    def totals(self) -> list[CountRow]:
        """Counts per camera key since start, in the form of ``camcount count --json``."""
        rows: list[CountRow] = []
        for (camera, counter, cls, direction), n in sorted(self._agg.totals.items()):
            rows.append(
                {
                    "camera_id": camera,
                    "counter_id": counter,
                    "class": cls,
                    "direction": direction,
                    "count": n,
                }
            )
        return rows

    def rows(self) -> list[WindowRow]:
        return list(self._rows)

    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    def finished(self) -> list[str]:
        return sorted(self._finished)

    def watermark(self) -> float:
        return self._agg.watermark


def _as_dict(event: Any) -> dict[str, Any]:
    import dataclasses

    data = dataclasses.asdict(event)
    data["event_id"] = event.event_id
    for k, v in data.items():
        if hasattr(v, "value"):
            data[k] = v.value
    return data
