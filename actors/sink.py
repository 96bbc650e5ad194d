"""The warehouse sink: a Ray actor around `camcount.warehouse.WarehouseWriter`.

It owns the warehouse connection (with chDB, the database itself: it
answers the API's queries too), moves batches into the writer, runs the
writer's clock on a background thread, and publishes the writer's state
as metrics. All batching, buffering, spilling and replay logic is the
writer's.

Calls from one caller run in order (the default concurrency group has
one thread), so ``flush()`` covers every ``write`` sent before it: a
checkpoint barrier calls it (docs/checkpoints.md, step 3). Queries and
stats run in their own group so a reader never waits behind a long queue
of writes.

Ray restarts a sink that dies (``max_restarts``): the new one reconnects
and replays what the old one had spilled. Rows the old one held only in
memory are gone, so each incarnation has its own ``epoch``: a shard that
finds another epoch at a checkpoint barrier fails that checkpoint, and the
controller rolls the pipeline back to the last one that completed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import ray
from ray.util import metrics

from actors.incarnation import Incarnation
from camcount.config import CameraConfig, WarehouseConfig
from camcount.outputs.warehouse import WarehouseOutput
from camcount.stream.spill import SpillStore
from camcount.warehouse import (
    RetryPolicy,
    Warehouse,
    WarehouseError,
    WarehouseWriter,
    WriterSettings,
    camera_tables,
    connect,
    run_query,
)
from camcount.warehouse.schema import SchemaOptions

log = logging.getLogger("camcount.sink")

TICK_INTERVAL_S = 0.25
INSERTS_IN_FLIGHT = 2


@ray.remote(  # type: ignore[call-overload]
    num_cpus=0, max_restarts=-1, concurrency_groups={"read": 2, "watch": 1}
)
class WarehouseSink(Incarnation):
    def __init__(
        self,
        warehouse: WarehouseConfig,
        storage_root: str,
        sink_id: str | None = None,
        buffer_max_rows: int | None = None,
        retry: RetryPolicy | None = None,
        schema: SchemaOptions | None = None,
        tick_interval_s: float = TICK_INTERVAL_S,
        inserts_in_flight: int | None = None,
    ) -> None:
        """Arguments left out come from the warehouse config, checked
        where it entered (the config file)."""
        super().__init__()
        cfg = warehouse
        sink_id = sink_id or cfg.sink_id
        self.sink_id = sink_id
        self._error: WarehouseError | None = None
        self._warehouse: Warehouse | None = None
        self._writer: WarehouseWriter | None = None
        try:
            self._warehouse = connect(cfg, role=f"warehouse sink {sink_id}", schema=schema)
        except WarehouseError as exc:
            # Kept for ready(): it reaches the caller as the same type.
            self._error = exc
            log.error("warehouse sink %s cannot start: %s", sink_id, exc)
            return
        settings = WriterSettings.from_config(
            cfg,
            buffer_max_rows=buffer_max_rows or cfg.buffer_max_rows,
            retry=retry or RetryPolicy(),
            # A server writes one insert while the next is encoded; the
            # embedded engine serialises inserts anyway.
            max_inflight=inserts_in_flight
            or cfg.inserts_in_flight
            or (1 if self._warehouse.backend.url.is_embedded else INSERTS_IN_FLIGHT),
        )
        spill = SpillStore(storage_root, namespace=f"warehouse/{sink_id}")
        self._writer = WarehouseWriter(self._warehouse.backend, spill, settings)
        self._init_metrics()
        self._published: dict[str, float] = {}
        self._ticker = threading.Thread(
            target=self._tick_loop, args=(tick_interval_s,), name=f"sink-{sink_id}", daemon=True
        )
        self._ticker.start()

    # ------------------------------------------------------------ API

    def ready(self) -> dict[str, Any]:
        """Raises the startup error, if any; else describes the warehouse."""
        wh = self._open()
        return {
            "warehouse": wh.url,
            "server_version": wh.backend.server_version,
            "migrated": wh.migrated,
            "sink_id": self.sink_id,
        }

    @ray.method(concurrency_group="read")
    def describe(self) -> dict[str, Any]:
        """Name, guarantee, kinds taken and this incarnation's epoch: what a
        shard asks every output (actors/output.py)."""
        out = WarehouseOutput
        return self._description(out.name, out.guarantee, out.kinds)

    def write(self, kind: str, table: pa.Table, stream: str = "") -> int:
        """Accept a batch of one kind (the Arrow schema of camcount.events);
        every stream goes to the same tables."""
        self._keep_off_model()
        writer = self._require_writer()
        with self._lock:  # metrics are published by the clock thread
            return writer.write(kind, table)

    def write_cameras(
        self,
        cameras: Sequence[CameraConfig],
        version: int | None = None,
        removed: Sequence[str] = (),
    ) -> int:
        """Record camera metadata (lines and zones included) at a version
        (default: now in milliseconds)."""
        tables = camera_tables(cameras, version or int(time.time() * 1000), removed)
        writer = self._require_writer()
        with self._lock:
            return sum(writer.write(kind, t) for kind, t in tables.items())

    def flush_epoch(self, stream: str = "", checkpoint_id: int | None = None) -> str:
        """``flush``, then this incarnation: a checkpoint barrier's step 4
        (for every stream at once: rows are idempotent by their keys)."""
        self.flush()
        return self._epoch

    def flush(self) -> int:
        """Block until every row written before is in the warehouse,
        spilled, or dead-lettered; returns the rows made durable now."""
        writer = self._require_writer()
        with self._lock:
            n = writer.flush()
            self._publish(writer)
        return n

    def rewind(self, stream: str, checkpoint_id: int | None) -> None:
        """Nothing to take back: a replay's rows replace their copies."""

    def replay_dead_letters(self, reason: str | None = None) -> int:
        """Insert dead-lettered batches again once their cause is fixed;
        returns the rows that went in (refused ones stay dead letters)."""
        writer = self._require_writer()
        with self._lock:
            return writer.replay_dead_letters(reason)

    @ray.method(concurrency_group="read")
    def query(self, name: str, params: Mapping[str, object] | None = None) -> pa.Table:
        """A documented query (camcount.warehouse.QUERIES) by name."""
        return run_query(self._open().backend, name, dict(params or {}))

    @ray.method(concurrency_group="read")
    def sql(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table:
        """Any SELECT with ``{name:Type}`` placeholders (for operators and
        notebooks while the sink owns an embedded database)."""
        return self._open().sql(sql, params)

    @ray.method(concurrency_group="read")
    def stats(self) -> dict[str, Any]:
        writer = self._require_writer()
        with self._lock:
            return writer.stats()

    def close(self) -> int:
        """Flush, stop the clock and release the warehouse (with chDB, the
        database lock) so another process may open it."""
        self._stop.set()
        n = 0
        if self._writer is not None:
            with self._lock:
                n = self._writer.close()
                self._publish(self._writer)
        if self._warehouse is not None:
            self._warehouse.close()
        self._writer = None
        self._warehouse = None
        return n

    # ------------------------------------------------------------ internals

    def _open(self) -> Warehouse:
        if self._error is not None:
            raise self._error
        if self._warehouse is None:
            raise RuntimeError("warehouse sink closed")
        return self._warehouse

    def _require_writer(self) -> WarehouseWriter:
        self._open()
        if self._writer is None:
            raise RuntimeError("warehouse sink closed")
        return self._writer

    def _tick_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                with self._lock:
                    if self._stop.is_set() or self._writer is None:
                        return
                    self._writer.tick()
                    self._publish(self._writer)
            except Exception:  # keep the clock running; the next tick retries
                log.exception("warehouse sink %s: tick failed", self.sink_id)

    def _init_metrics(self) -> None:
        tags = ("sink",)
        self._g_buffer = metrics.Gauge(
            "camcount_sink_buffer_rows", "rows held in memory while the warehouse is down", tags
        )
        self._g_pending = metrics.Gauge(
            "camcount_sink_pending_rows", "rows waiting to fill a batch", tags
        )
        self._g_spilled = metrics.Gauge(
            "camcount_sink_spilled_rows", "rows in the pending store awaiting replay", tags
        )
        self._g_lag = metrics.Gauge(
            "camcount_sink_lag_seconds", "age of the oldest row not yet in the warehouse", tags
        )
        self._g_up = metrics.Gauge(
            "camcount_sink_warehouse_up", "1 when the last insert worked", tags
        )
        self._c_written = metrics.Counter(
            "camcount_sink_rows_written", "rows inserted into the warehouse", ("sink", "kind")
        )
        self._c_spilled = metrics.Counter(
            "camcount_sink_rows_spilled", "rows spilled to the pending store", tags
        )
        self._c_replayed = metrics.Counter(
            "camcount_sink_rows_replayed", "spilled rows replayed into the warehouse", tags
        )
        self._c_dead = metrics.Counter(
            "camcount_sink_dead_letters", "rows set aside as dead letters", tags
        )
        for m in (
            self._g_buffer,
            self._g_pending,
            self._g_spilled,
            self._g_lag,
            self._g_up,
            self._c_written,
            self._c_spilled,
            self._c_replayed,
            self._c_dead,
        ):
            m.set_default_tags({"sink": self.sink_id})

    def _publish(self, writer: WarehouseWriter) -> None:
        s = writer.stats()
        self._g_buffer.set(s["buffer_rows"])
        self._g_pending.set(s["pending_rows"])
        self._g_spilled.set(s["spilled_rows"])
        self._g_lag.set(s["lag_s"])
        self._g_up.set(1.0 if s["warehouse_up"] else 0.0)
        for kind, n in s["rows_written"].items():
            self._inc(self._c_written, f"written:{kind}", n, {"kind": kind})
        self._inc(self._c_spilled, "spilled", s["spilled_rows_total"])
        self._inc(self._c_replayed, "replayed", s["replayed_rows_total"])
        self._inc(self._c_dead, "dead", s["dead_letter_rows_total"])

    def _inc(
        self, counter: metrics.Counter, key: str, total: float, tags: dict[str, str] | None = None
    ) -> None:
        delta = total - self._published.get(key, 0.0)
        if delta > 0:
            counter.inc(delta, tags=tags or {})
            self._published[key] = total


def start_sink(
    warehouse: WarehouseConfig,
    storage_root: str,
    sink_id: str | None = None,
    name: str | None = None,
    namespace: str | None = None,
    **options: Any,
) -> Any:
    """Create the sink actor and wait until it is connected and migrated.

    With ``name`` the actor is named, so API replicas deployed on their own
    (``serve deploy``) find it. A bad URL, password or port raises here, as
    the warehouse error type (`WarehouseAuthError`, `WarehouseUnavailable`...),
    with the URL masked; the actor is then gone.
    """
    actor: Any = WarehouseSink.options(name=name, namespace=namespace) if name else WarehouseSink
    handle = actor.remote(warehouse, storage_root, sink_id, **options)
    try:
        ray.get(handle.ready.remote())
    except ray.exceptions.RayTaskError as exc:
        ray.kill(handle)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, WarehouseError):
            raise cause from None
        raise
    return handle
