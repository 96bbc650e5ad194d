"""Webhooks: chosen events posted as signed JSON to a receiver's URL.

Guarantee: at-least-once. Every event carries its stable ``event_id``
(events.py); a retry, a replay of dead letters or a restore from a
checkpoint may post an event again, and receivers dedupe by that id.

Invariants:

- Every event written is, at any moment, in exactly one of: the open
  batch, the queue of posts, the post being sent, the receiver (a 2xx
  answered), or the dead-letter store. Nothing is dropped.
- ``flush(checkpoint_id)`` returns only when every event written before it
  was answered with a 2xx or is in the dead-letter store; if the store
  cannot take a post, ``flush`` raises, so the checkpoint does not
  complete.
- Memory is bounded: ``write`` waits while ``max_pending_events`` are
  queued (backpressure on the aggregator, never a silent drop).

Protocol of a post:

1. ``write`` keeps the chosen kinds of the chosen cameras in an open batch;
   a batch is closed into a post at ``batch_size`` events, ``linger_s``
   after its first event, or at a flush.
2. One sender thread posts in order. A post is JSON signed with
   HMAC-SHA256 (signing.py), and tried up to ``1 + retries`` times.
3. A connection error, a timeout, a 5xx or a 429 is tried again after a
   backoff with jitter (backoff.py), or after what ``Retry-After`` asks.
4. Any other answer that is not 2xx (a 4xx: the receiver refuses this
   post, so trying again would not help) sends the post straight to the
   dead letters (reason ``rejected``, detail = the status and answer).
5. A post still failing after its last try goes to the dead letters
   (reason ``unavailable``); the receiver is then taken to be down, and
   until a post gets through each post is tried once, so a long outage
   fills the durable store rather than memory.
6. ``camcount dead-letters --replay`` posts the dead letters again, and
   deletes each stored batch once all its events were delivered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from camcount import __version__
from camcount.events import DeadLetter
from camcount.outputs.backoff import Backoff, parse_retry_after
from camcount.outputs.port import Ack, Guarantee
from camcount.outputs.settings import WebhookOutputConfig
from camcount.outputs.signing import SIGNATURE_HEADER, sign
from camcount.stream.spill import SpillStore

log = logging.getLogger(__name__)

DELIVERY_HEADER = "X-Camcount-Delivery"
ATTEMPT_HEADER = "X-Camcount-Attempt"
REJECTED = "rejected"
UNAVAILABLE = "unavailable"
DETAIL_MAX_CHARS = 500
SPILL_SHAPE = "webhook"


@dataclass(frozen=True)
class Outcome:
    """How a post ended: delivered, or the dead-letter reason and detail."""

    delivered: bool
    reason: str = ""
    detail: str = ""


@dataclass
class _Post:
    parts: list[tuple[str, pa.Table]]
    seq: int

    @property
    def n(self) -> int:
        return sum(t.num_rows for _, t in self.parts)


@dataclass(frozen=True)
class ReplayReport:
    """What a replay of dead letters did."""

    delivered_events: int
    delivered_batches: int
    left_batches: int
    receiver_down: bool
    last_error: str = ""


@dataclass
class _Counters:
    delivered: int = 0
    dead_lettered: int = 0
    retried: int = 0
    posts: int = 0
    failed_posts: int = 0
    acked_delivered: int = 0
    acked_dead: int = 0
    last_error: str = ""
    by_reason: dict[str, int] = field(default_factory=dict)


def event_payload(kind: str, rows: pa.Table) -> list[dict[str, Any]]:
    """Rows as the JSON objects a receiver gets: ``kind``, ``event_id`` as
    a decimal string (63 bits: JavaScript numbers hold only 53), then the
    event's fields as events.py names them."""
    out = []
    for row in rows.to_pylist():
        row["event_id"] = str(row["event_id"])
        out.append({"kind": kind, **row})
    return out


def delivery_id(parts: Sequence[tuple[str, pa.Table]]) -> str:
    """The same post gives the same id on every try: logs on both sides
    can follow one post through its retries."""
    h = hashlib.blake2b(digest_size=12)
    for kind, rows in parts:
        h.update(kind.encode())
        for i in rows.column("event_id").to_pylist():
            h.update(int(i).to_bytes(8, "big"))
    return h.hexdigest()


def dead_letter_store(storage_root: str, name: str) -> SpillStore:
    """Where webhook ``name`` keeps what it gave up on: listing it needs
    no secret and no receiver."""
    return SpillStore(storage_root, namespace=f"webhooks/{name}")


def _event_times(kind: str, rows: pa.Table) -> list[float]:
    for column in ("event_time", "exited_at", "window_start", "gap_from"):
        if column in rows.column_names:
            return [float(t) for t in rows.column(column).to_pylist()]
    return [0.0] * rows.num_rows


class WebhookSink:
    """The webhook output behind the port (port.py): one receiver URL."""

    guarantee = Guarantee.AT_LEAST_ONCE

    def __init__(
        self,
        config: WebhookOutputConfig,
        storage_root: str,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.name = config.label
        self.kinds = frozenset(config.webhook_kinds)
        self.store = dead_letter_store(storage_root, config.label)
        self._secret = config.resolve_secret()
        self._backoff = Backoff(config.backoff_base_s, config.backoff_max_s)
        self._client = httpx.Client(
            timeout=config.timeout_s,
            headers={"User-Agent": f"camcount/{__version__}"},
            transport=transport,
        )
        self._cameras = pa.array(config.cameras, pa.string()) if config.cameras else None
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._open: list[tuple[str, pa.Table]] = []
        self._open_n = 0
        self._open_since = 0.0
        self._queue: deque[_Post] = deque()
        self._queued_n = 0
        self._sending: _Post | None = None
        self._seq = 0
        self._done_seq = 0
        self._down = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.counters = _Counters()

    # ------------------------------------------------------------ the port

    def write(self, kind: str, batch: pa.Table) -> None:
        """Takes the batch's events of the chosen kinds and cameras (Step 1)."""
        if kind not in self.kinds or batch.num_rows == 0:
            return
        if self._cameras is not None:
            batch = batch.filter(pc.is_in(batch.column("camera_id"), value_set=self._cameras))
            if batch.num_rows == 0:
                return
        with self._cond:
            self._start()
            while self._pending_n() >= self.config.max_pending_events and self._error is None:
                self._cond.wait(0.1)
            if not self._open:
                self._open_since = self._clock()
            self._open.append((kind, batch))
            self._open_n += batch.num_rows
            while self._open_n >= self.config.batch_size:
                self._close_batch(self.config.batch_size)
            self._cond.notify_all()

    def flush(self, checkpoint_id: int) -> Ack:
        """Waits until every event written before it was delivered or
        dead-lettered; raises what kept a post from the dead-letter store."""
        with self._cond:
            if self._open_n:
                self._close_batch(self._open_n)
            target = self._seq
            self._cond.notify_all()
            while self._done_seq < target:
                if self._error is not None:
                    raise self._error
                self._cond.wait(0.1)
            c = self.counters
            ack = Ack(
                checkpoint_id, c.delivered - c.acked_delivered, c.dead_lettered - c.acked_dead
            )
            c.acked_delivered, c.acked_dead = c.delivered, c.dead_lettered
            return ack

    def dead_letters(self) -> Sequence[DeadLetter]:
        """Every event in this webhook's dead-letter store, stored by this
        run or an earlier one."""
        out = []
        for f in self.store.dead():
            stored = self.store.read(f)
            if stored is None:
                continue
            ids = stored.rows.column("event_id").to_pylist()
            times = _event_times(f.kind, stored.rows)
            out += [
                DeadLetter(f"webhook:{self.name}", stored.reason, stored.detail, t, f.kind, i)
                for i, t in zip(ids, times, strict=True)
            ]
        return out

    def metrics(self) -> Mapping[str, float]:
        with self._cond:
            c = self.counters
            return {
                "delivered": c.delivered,
                "dead_lettered": c.dead_lettered,
                "retried": c.retried,
                "posts": c.posts,
                "failed_posts": c.failed_posts,
                "pending": self._pending_n(),
                "receiver_down": float(self._down),
            }

    def close(self) -> None:
        """Delivers or dead-letters what is left, then stops the sender."""
        try:
            if self._thread is not None:
                self.flush(-1)
        finally:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            if self._thread is not None:
                self._thread.join()
            self._client.close()

    # ------------------------------------------------------------ replay

    def replay_dead_letters(self, reason: str | None = None) -> ReplayReport:
        """Posts the stored dead letters again, oldest first, each with the
        whole retry budget (Step 6). A stored batch is deleted once every
        one of its events is delivered; one refused again stays as it was;
        the replay stops at the first sign the receiver is still down."""
        events = batches = left = 0
        last_error = ""
        files = self.store.dead()
        for index, f in enumerate(files):
            stored = self.store.read(f)
            if stored is None or (reason is not None and stored.reason != reason):
                continue
            outcome = Outcome(True)
            for start in range(0, stored.rows.num_rows, self.config.batch_size):
                chunk = stored.rows.slice(start, self.config.batch_size)
                outcome = self._post([(f.kind, chunk)], tries=1 + self.config.retries)
                if not outcome.delivered:
                    break
            if outcome.delivered:
                self.store.remove(f)
                events += stored.rows.num_rows
                batches += 1
                continue
            last_error = f"{outcome.reason}: {outcome.detail}"
            if outcome.reason == UNAVAILABLE:
                left += len(files) - index
                return ReplayReport(events, batches, left, True, last_error)
            left += 1
        return ReplayReport(events, batches, left, False, last_error)

    # ------------------------------------------------------------ steps

    def _pending_n(self) -> int:
        return self._open_n + self._queued_n + (self._sending.n if self._sending else 0)

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"webhook-{self.name}", daemon=True
            )
            self._thread.start()

    def _close_batch(self, n: int) -> None:
        """Moves the first ``n`` open events into a post (caller holds the lock)."""
        parts: list[tuple[str, pa.Table]] = []
        taken = 0
        while taken < n:
            kind, rows = self._open[0]
            need = n - taken
            if rows.num_rows <= need:
                parts.append((kind, rows))
                self._open.pop(0)
                taken += rows.num_rows
            else:
                parts.append((kind, rows.slice(0, need)))
                self._open[0] = (kind, rows.slice(need))
                taken += need
        self._open_n -= n
        self._open_since = self._clock()
        self._seq += 1
        self._queue.append(_Post(parts, self._seq))
        self._queued_n += n

    def _next_post(self) -> _Post | None:
        """Waits for a post to send (caller holds the lock); None at close."""
        while not self._stop.is_set():
            if self._queue and self._error is None:
                post = self._queue.popleft()
                self._queued_n -= post.n
                self._sending = post
                return post
            if self._open_n and self._clock() - self._open_since >= self.config.linger_s:
                self._close_batch(self._open_n)
                continue
            wait_s = 0.1 if self._error is not None else self.config.linger_s or 0.05
            self._cond.wait(wait_s)
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                post = self._next_post()
            if post is None:
                return
            tries = 1 if self._down else 1 + self.config.retries  # Step 5
            try:
                outcome = self._post(post.parts, tries)  # Steps 2-4
                if not outcome.delivered:
                    self._dead_letter(post, outcome)
            except Exception as exc:  # the store failed (or a bug): keep the post, fail flushes
                log.error("webhook %s: post kept, not delivered nor stored: %s", self.name, exc)
                with self._cond:
                    self._queue.appendleft(post)
                    self._queued_n += post.n
                    self._sending = None
                    self._error = exc
                    self._cond.notify_all()
                self._stop.wait(self.config.backoff_max_s)
                with self._cond:
                    self._error = None
                continue
            with self._cond:
                if outcome.delivered:
                    self.counters.delivered += post.n
                    self._down = False
                else:
                    self._down = self._down or outcome.reason == UNAVAILABLE
                self._sending = None
                self._done_seq = post.seq
                self._cond.notify_all()

    def _post(self, parts: list[tuple[str, pa.Table]], tries: int) -> Outcome:
        events = [e for kind, rows in parts for e in event_payload(kind, rows)]
        ident = delivery_id(parts)
        body = json.dumps(
            {"webhook": self.name, "delivery_id": ident, "events": events},
            separators=(",", ":"),
        ).encode()
        failure = Outcome(False, UNAVAILABLE, "not tried")
        for attempt in range(tries):
            now_unix = self._wall()
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign([self._secret], int(now_unix), body),
                DELIVERY_HEADER: ident,
                ATTEMPT_HEADER: str(attempt + 1),
            }
            retry_after: float | None = None
            self.counters.posts += 1
            try:
                response = self._client.post(self.config.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # Step 3: connection refused, timeouts...
                failure = Outcome(False, UNAVAILABLE, f"{type(exc).__name__}: {exc}")
            else:
                if response.is_success:
                    return Outcome(True)
                detail = f"HTTP {response.status_code}: {response.text[:DETAIL_MAX_CHARS]}"
                if response.status_code != 429 and response.status_code < 500:
                    self.counters.failed_posts += 1
                    return Outcome(False, REJECTED, detail)  # Step 4
                failure = Outcome(False, UNAVAILABLE, detail)
                retry_after = parse_retry_after(response.headers.get("Retry-After"), now_unix)
            self.counters.failed_posts += 1
            self.counters.last_error = failure.detail
            if attempt + 1 < tries:
                self.counters.retried += 1
                delay = self._backoff.delay_s(attempt, self._rng, retry_after)
                if self._stop.wait(delay):
                    break
        return failure

    def _dead_letter(self, post: _Post, outcome: Outcome) -> None:
        detail = outcome.detail[:DETAIL_MAX_CHARS]
        for kind, rows in post.parts:
            self.store.put_dead(
                kind, rows, _digest(kind, rows), SPILL_SHAPE, outcome.reason, detail
            )
        with self._cond:
            self.counters.dead_lettered += post.n
            self.counters.by_reason[outcome.reason] = (
                self.counters.by_reason.get(outcome.reason, 0) + post.n
            )
        log.warning(
            "webhook %s: %d event(s) to dead letters: %s: %s",
            self.name,
            post.n,
            outcome.reason,
            detail,
        )


def _digest(kind: str, rows: pa.Table) -> str:
    """Names a stored batch by its events, so storing it twice is one file."""
    return delivery_id([(kind, rows)])
