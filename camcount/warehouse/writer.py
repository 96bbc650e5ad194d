"""The warehouse sink's logic, without Ray: batching, buffering, spilling,
replaying, dead-lettering.

Invariants:

- Every accepted row ends in exactly one of: the warehouse, the
  in-memory retry buffer, the pending store (spilled), or the dead-letter
  store. Nothing is dropped. Rows are idempotent in the warehouse
  (ReplacingMergeTree by identity, read with FINAL), so a row may be sent
  twice (a replay after a crash, a retry after a timeout) but is never
  counted twice.
- ``flush()`` returns only when every row accepted before it is in the
  warehouse, spilled, or dead-lettered: what a checkpoint barrier needs
  (docs/checkpoints.md, step 3). If the store cannot
  take a spill, ``flush`` raises, so the checkpoint does not complete.
- The memory buffer is bounded: past ``buffer_max_rows`` the oldest
  batches are spilled.

Protocol of a batch:

1. ``write`` converts the source batch to warehouse rows; rows that fail
   conversion are isolated by halving and dead-lettered (reason
   ``invalid``).
2. Rows wait per kind until ``batch_rows`` of them or ``flush_interval_s``
   after the oldest; then they are shipped in inserts of at most
   ``batch_rows``.
3. An insert the warehouse refuses is halved until the refused rows are
   found; those are dead-lettered (reason ``rejected``, detail = the
   server's message), the rest inserted.
4. An insert that fails because the warehouse is unavailable goes to the
   retry buffer; the warehouse is tried again after a backoff
   (``RetryPolicy``), and new batches queue behind without trying.
5. When the warehouse answers again, the buffer and then the spilled
   batches are replayed, and each spilled file is deleted after its rows
   are acknowledged.

Time comes from an injected clock (monotonic seconds), so tests move it
instead of sleeping.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from camcount.config import WarehouseConfig
from camcount.events import DeadLetter, to_arrow
from camcount.stream.spill import SpillFile, SpillStore
from camcount.warehouse.backends import Backend
from camcount.warehouse.errors import WarehouseRejected, WarehouseUnavailable
from camcount.warehouse.rows import Kind, RowsInvalid, batch_digest, check_source, convert, kind_of

log = logging.getLogger(__name__)

DETAIL_MAX_CHARS = 2000
DEAD_LETTER_SOURCE = "warehouse"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts while the warehouse is down."""

    base_s: float = 0.5
    max_s: float = 10.0
    multiplier: float = 2.0

    def delay_s(self, attempt: int) -> float:
        return float(min(self.max_s, self.base_s * self.multiplier ** max(0, attempt)))


@dataclass(frozen=True)
class WriterSettings:
    batch_rows: int = 10_000
    flush_interval_s: float = 2.0
    buffer_max_rows: int = 100_000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    replay_batches_per_tick: int = 4
    max_inflight: int = 1

    def __post_init__(self) -> None:
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows must be 1 or more, got {self.batch_rows}")
        if not self.flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be above 0, got {self.flush_interval_s}")
        if self.buffer_max_rows < 0:
            raise ValueError(f"buffer_max_rows must be 0 or more, got {self.buffer_max_rows}")
        if self.max_inflight < 1:
            raise ValueError(f"max_inflight must be 1 or more, got {self.max_inflight}")

    @classmethod
    def from_config(cls, config: WarehouseConfig, **overrides: Any) -> WriterSettings:
        values: dict[str, Any] = {
            "batch_rows": config.batch_rows,
            "flush_interval_s": config.flush_interval_s,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class _Batch:
    kind: Kind
    rows: pa.Table
    received_at: float
    origin: SpillFile | None = None  # set when the rows live in the pending store

    @property
    def n(self) -> int:
        return int(self.rows.num_rows)

    def halves(self) -> tuple[_Batch, _Batch]:
        mid = self.n // 2
        return (
            _Batch(self.kind, self.rows.slice(0, mid), self.received_at, self.origin),
            _Batch(self.kind, self.rows.slice(mid), self.received_at, self.origin),
        )


@dataclass
class _Pending:
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    since: float = 0.0


@dataclass
class _Counters:
    written: dict[str, int] = field(default_factory=dict)
    inserts: int = 0
    failed_inserts: int = 0
    spilled_total: int = 0
    replayed_total: int = 0
    dead_letters_total: int = 0
    durable_total: int = 0


class WarehouseWriter:
    """Batches rows into a `Backend`, with a bounded buffer and a spill store."""

    def __init__(
        self,
        backend: Backend,
        spill: SpillStore,
        settings: WriterSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.spill = spill
        self.settings = settings or WriterSettings()
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._buffer: deque[_Batch] = deque()
        self._buffer_rows = 0
        self._spilled: dict[str, tuple[int, float]] = {}  # path -> (rows, received_at)
        self._down_since: float | None = None
        self._attempt = 0
        self._next_try = 0.0
        self._last_error = ""
        self.counters = _Counters()
        self._inflight: deque[tuple[Future[None], _Batch]] = deque()
        self._pool = (
            ThreadPoolExecutor(self.settings.max_inflight, thread_name_prefix="warehouse-insert")
            if self.settings.max_inflight > 1
            else None
        )
        now = clock()
        for f in spill.pending():
            stored = spill.read(f)
            if stored is not None:
                self._spilled[f.path] = (stored.rows.num_rows, now)

    # ------------------------------------------------------------ public

    def write(self, kind_name: str, batch: pa.Table) -> int:
        """Accept a batch of one kind (its `camcount.events` Arrow schema,
        or a `rows.camera_tables` table); returns the rows accepted."""
        kind = kind_of(kind_name)
        check_source(kind, batch)
        if batch.num_rows == 0:
            return 0
        rows = self._convert(kind, batch)  # Step 1
        if rows is not None:
            self._enqueue(kind, rows)
        self.tick()
        return int(batch.num_rows)

    def tick(self) -> None:
        """Ship batches that waited long enough; retry or replay when due."""
        self._reap(wait=False)
        now = self._clock()
        for name, p in list(self._pending.items()):  # Step 2
            if p.rows and now - p.since >= self.settings.flush_interval_s:
                self._ship(name)
        if self._down_since is not None:
            if now >= self._next_try:
                self._replay(limit=1)  # a probe: one batch
        elif self._buffer or self._spilled:
            self._replay(limit=self.settings.replay_batches_per_tick)  # Step 5

    def flush(self) -> int:
        """Make every accepted row durable; returns how many rows became
        durable (inserted, spilled or dead-lettered) during this call."""
        before = self.counters.durable_total
        if self._down_since is not None and self._clock() >= self._next_try:
            self._replay(limit=1, spilled=False)  # a probe before deciding
        while self._pending or self._inflight:  # dead letters found on the way join
            while self._pending:
                self._ship(next(iter(self._pending)))
            while self._inflight:
                self._reap(wait=True)
        if self._down_since is None and self._buffer:
            self._replay(limit=None, spilled=False)
        while self._buffer:  # still down: spill, raising if the store fails
            oldest = self._buffer[0]
            self._spill(oldest)
            self._buffer.popleft()
            self._buffer_rows -= oldest.n
        return self.counters.durable_total - before

    def replay_spilled(self) -> int:
        """Replay every pending batch now, if the warehouse answers;
        returns the rows replayed."""
        before = self.counters.replayed_total
        self._replay(limit=None)
        return self.counters.replayed_total - before

    def replay_dead_letters(self, reason: str | None = None) -> int:
        """Insert the dead-lettered batches again (after the cause is
        fixed: a schema change, a corrected value); returns the rows that
        went in. A file is deleted only if none of its rows is refused
        again; refused rows stay dead letters. The ``dead_letters`` rows
        stay as the record of what happened."""
        replayed = 0
        for f in self.spill.dead():
            stored = self.spill.read(f)
            if stored is None or (reason is not None and stored.reason != reason):
                continue
            kind = kind_of(f.kind)
            dead_before = self.counters.dead_letters_total
            rows = stored.rows if stored.shape == "warehouse" else self._convert(kind, stored.rows)
            left = self._deliver(_Batch(kind, rows, self._clock())) if rows is not None else []
            if left:  # the warehouse is down: try again later
                break
            if self.counters.dead_letters_total == dead_before:
                self.spill.remove(f)
                replayed += stored.rows.num_rows
        self.flush()
        return replayed

    def close(self) -> int:
        """Flush, then stop the insert threads; returns what flush made durable."""
        try:
            return self.flush()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)

    @property
    def warehouse_up(self) -> bool:
        return self._down_since is None

    def stats(self) -> dict[str, Any]:
        now = self._clock()
        oldest = [p.since for p in self._pending.values() if p.rows]
        oldest += [b.received_at for b in self._buffer]
        oldest += [b.received_at for _, b in self._inflight]
        oldest += [t for _, t in self._spilled.values()]
        c = self.counters
        return {
            "warehouse": self.backend.url.masked(),
            "warehouse_up": self.warehouse_up,
            "down_for_s": 0.0 if self._down_since is None else now - self._down_since,
            "last_error": self._last_error,
            "rows_written": dict(c.written),
            "rows_written_total": sum(c.written.values()),
            "pending_rows": sum(p.rows for p in self._pending.values()),
            "inflight_rows": sum(b.n for _, b in self._inflight),
            "buffer_rows": self._buffer_rows,
            "spilled_rows": sum(n for n, _ in self._spilled.values()),
            "spilled_rows_total": c.spilled_total,
            "replayed_rows_total": c.replayed_total,
            "dead_letter_rows_total": c.dead_letters_total,
            "inserts": c.inserts,
            "failed_inserts": c.failed_inserts,
            "lag_s": max(0.0, now - min(oldest)) if oldest else 0.0,
        }

    # ------------------------------------------------------------ steps

    def _convert(self, kind: Kind, batch: pa.Table) -> pa.Table | None:
        try:
            return convert(kind, batch)
        except RowsInvalid as exc:
            if batch.num_rows == 1:
                self._dead_letter(kind, batch, "event", "invalid", str(exc))
                return None
            mid = batch.num_rows // 2
            parts = [
                self._convert(kind, batch.slice(0, mid)),
                self._convert(kind, batch.slice(mid)),
            ]
            kept = [p for p in parts if p is not None and p.num_rows]
            return pa.concat_tables(kept) if kept else None

    def _enqueue(self, kind: Kind, rows: pa.Table) -> None:
        p = self._pending.setdefault(kind.name, _Pending())
        if not p.rows:
            p.since = self._clock()
        p.tables.append(rows)
        p.rows += rows.num_rows
        if p.rows >= self.settings.batch_rows:
            self._ship(kind.name, whole=False)

    def _ship(self, name: str, whole: bool = True) -> None:
        """Insert a kind's waiting rows in batches of at most batch_rows;
        unless ``whole``, a remainder smaller than a batch keeps waiting."""
        p = self._pending.pop(name, None)
        if p is None or not p.rows:
            return
        kind = kind_of(name)
        rows = pa.concat_tables(p.tables) if len(p.tables) > 1 else p.tables[0]
        size = self.settings.batch_rows
        end = rows.num_rows if whole else rows.num_rows - rows.num_rows % size
        if end < rows.num_rows:
            self._pending[name] = _Pending([rows.slice(end)], rows.num_rows - end, p.since)
        for start in range(0, end, size):
            batch = _Batch(kind, rows.slice(start, min(size, end - start)), p.since)
            if self._down_since is not None and self._clock() < self._next_try:
                self._to_buffer(batch)  # Step 4: queue behind, do not hammer a down server
            elif self._pool is not None and self._down_since is None:
                self._submit(batch)
            else:
                for left in self._deliver(batch):
                    self._to_buffer(left)

    def _submit(self, batch: _Batch) -> None:
        """Start an insert on an insert thread, so the next batch is
        converted and encoded while the server writes this one; at most
        ``max_inflight`` at once. Outcomes are settled here, in order."""
        assert self._pool is not None
        while len(self._inflight) >= self.settings.max_inflight:
            self._reap(wait=True)
        token = f"{batch.kind.name}-{batch_digest(batch.kind, batch.rows)}"
        future = self._pool.submit(self.backend.insert, batch.kind.table.name, batch.rows, token)
        self._inflight.append((future, batch))

    def _reap(self, wait: bool) -> None:
        """Settle finished inserts, oldest first; with ``wait``, wait for
        the oldest one first."""
        while self._inflight:
            future, batch = self._inflight[0]
            if not (wait or future.done()):
                return
            wait = False
            self._inflight.popleft()
            exc = future.exception()
            if exc is not None and not isinstance(exc, WarehouseUnavailable | WarehouseRejected):
                self._to_buffer(batch)  # kept; the caller sees the bug
                raise exc
            for left in self._settle(batch, exc):
                self._to_buffer(left)

    def _deliver(self, batch: _Batch) -> list[_Batch]:
        """Insert; returns the parts not yet durable (warehouse down)."""
        token = f"{batch.kind.name}-{batch_digest(batch.kind, batch.rows)}"
        try:
            self.backend.insert(batch.kind.table.name, batch.rows, token)
        except (WarehouseUnavailable, WarehouseRejected) as exc:
            return self._settle(batch, exc)
        return self._settle(batch, None)

    def _settle(self, batch: _Batch, exc: BaseException | None) -> list[_Batch]:
        """Account for an insert's outcome; returns the parts not yet durable."""
        if isinstance(exc, WarehouseUnavailable):
            self.counters.failed_inserts += 1
            self._mark_down(str(exc))
            return [batch]
        if isinstance(exc, WarehouseRejected):  # Step 3
            self.counters.failed_inserts += 1
            if batch.n == 1:
                self._dead_letter(batch.kind, batch.rows, "warehouse", "rejected", exc.message)
                return []
            left: list[_Batch] = []
            for half in batch.halves():
                if left:  # down meanwhile: keep the rest for later
                    left.append(half)
                else:
                    left.extend(self._deliver(half))
            return left
        self.counters.inserts += 1
        self.counters.written[batch.kind.name] = (
            self.counters.written.get(batch.kind.name, 0) + batch.n
        )
        if batch.origin is None:
            self.counters.durable_total += batch.n
        self._mark_up()
        return []

    def _to_buffer(self, batch: _Batch) -> None:
        if batch.origin is not None:
            return  # its rows are already durable in the store
        self._buffer.append(batch)
        self._buffer_rows += batch.n
        while self._buffer_rows > self.settings.buffer_max_rows and self._buffer:
            oldest = self._buffer[0]
            try:
                self._spill(oldest)
            except OSError as exc:
                log.error(
                    "cannot spill to %s: %s; keeping %d rows in memory", self.spill, exc, oldest.n
                )
                break
            self._buffer.popleft()
            self._buffer_rows -= oldest.n

    def _spill(self, batch: _Batch) -> None:
        f = self.spill.put_pending(
            batch.kind.name, batch.rows, batch_digest(batch.kind, batch.rows)
        )
        if f.path not in self._spilled:
            self._spilled[f.path] = (batch.n, batch.received_at)
            self.counters.spilled_total += batch.n
            self.counters.durable_total += batch.n

    def _replay(self, limit: int | None, spilled: bool = True) -> None:
        """Buffer first (oldest first), then spilled files; stop at the
        first sign the warehouse is down. ``limit`` counts batches."""
        done = 0
        while self._buffer and (limit is None or done < limit):
            batch = self._buffer.popleft()
            self._buffer_rows -= batch.n
            left = self._deliver(batch)
            done += 1
            if left:
                for b in reversed(left):
                    self._buffer.appendleft(b)
                    self._buffer_rows += b.n
                return
        if not spilled:
            return
        for f in self.spill.pending():
            if limit is not None and done >= limit:
                return
            stored = self.spill.read(f)
            done += 1
            if stored is None:
                self._spilled.pop(f.path, None)
                continue
            kind = kind_of(f.kind)
            received = self._spilled.get(f.path, (0, self._clock()))[1]
            if self._deliver(_Batch(kind, stored.rows, received, origin=f)):
                return
            self.spill.remove(f)
            self._spilled.pop(f.path, None)
            self.counters.replayed_total += stored.rows.num_rows

    def _dead_letter(
        self, kind: Kind, rows: pa.Table, shape: str, reason: str, detail: str
    ) -> None:
        detail = detail[:DETAIL_MAX_CHARS]
        digest = batch_digest(kind, rows) if shape == "warehouse" else _source_digest(kind, rows)
        self.spill.put_dead(kind.name, rows, digest, shape, reason, detail)
        self.counters.dead_letters_total += rows.num_rows
        self.counters.durable_total += rows.num_rows
        log.warning("dead-lettered %d %s row(s): %s: %s", rows.num_rows, kind.name, reason, detail)
        if kind.name == "dead_letter":
            return  # a refused dead letter stays in the store only: no loop
        letters = [
            DeadLetter(DEAD_LETTER_SOURCE, reason, detail, t, kind.name, i)
            for i, t in zip(kind.ids(rows), kind.times(rows), strict=True)
        ]
        self._enqueue(
            kind_of("dead_letter"), convert(kind_of("dead_letter"), to_arrow(DeadLetter, letters))
        )

    def _mark_down(self, error: str) -> None:
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
            self._attempt = 0
            log.warning("warehouse down: %s; buffering", error)
        else:
            self._attempt += 1
        self._last_error = error
        self._next_try = now + self.settings.retry.delay_s(self._attempt)

    def _mark_up(self) -> None:
        if self._down_since is not None:
            log.warning("warehouse back after %.1f s", self._clock() - self._down_since)
            self._down_since = None
            self._attempt = 0


def _source_digest(kind: Kind, rows: pa.Table) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(kind.name.encode())
    for i in kind.ids(rows):
        h.update(i.to_bytes(8, "big"))
    return h.hexdigest()


def tables_by_kind(events: Iterable[object]) -> dict[str, pa.Table]:
    """Events of any types -> one Arrow table per kind, ready for ``write``."""
    from camcount.events import group_by_type

    out: dict[str, pa.Table] = {}
    for cls, items in group_by_type(list(events)).items():
        out[cls.kind] = to_arrow(cls, items)  # type: ignore[attr-defined,type-var]
    return out
