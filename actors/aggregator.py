"""An aggregator shard: the core ``Aggregator`` behind a Ray actor.

It receives numbered event batches from its cameras (``push``), and
forwards what they produce (raw events, closed window rows, late events as
dead letters) to its outputs: the warehouse sink and every ``outputs:``
entry's actor (actors/output.py), all behind the port of
camcount/outputs/port.py, and the live hub for apps. Every output may be
left out, so the shard can run alone in tests.

The live hub gets every push's output at once (apps want it now), encoded
by the core (camcount/outputs/live.py), with the push's ``created`` stamp
and the time of the call, for clients to measure delay by (docs/api.md);
the outputs get it gathered into
fewer, larger batches by the core's ``Outbox`` (camcount/outputs/batching.py),
the very same batches for each, sent when enough rows wait or the oldest
has waited long enough (checked on every push and tick), and always on
``flush`` and ``drain``.

At a checkpoint (docs/checkpoints.md, step 3)
the core aligns the cameras' barriers and hands out the shard's snapshot
with its cameras'; the shard then

1. writes each snapshot to the checkpoint store, once, under the
   checkpoint's id,
2. sends every row waiting for the outputs and has each flush them
   (``flush_epoch`` returns when they are durable),
3. and only then tells the controller (``checkpoint_done``) which objects
   it wrote.

An output that was lost in between fails step 2 (its incarnation changed),
so a checkpoint never completes over rows that were not made durable.
Output and hub calls that fail while those actors restart are dropped
here: the controller rolls the shard back to the last checkpoint (and
each output's stream with it, ``restore``), and the rows are made again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.util import metrics

from actors.lifetime import end_with
from actors.placement import ModelCoreAvoider
from camcount.alerts.rules import AlertRule
from camcount.events import CountRow, DeadLetter, WindowRow
from camcount.forecast.book import ForecastSettings
from camcount.outputs.batching import Outbox
from camcount.outputs.live import live_updates
from camcount.outputs.tables import batches_of
from camcount.stream.aggregation import (
    Aggregator,
    AggregatorState,
    GroupSpec,
    Output,
    ShardCheckpoint,
)
from camcount.stream.channels import Envelope

log = logging.getLogger("camcount.aggregator")

MAX_KEPT_ROWS = 1_000_000
#: Checkpoints whose outcome is kept for the controller to collect.
KEPT_OUTCOMES = 16


@dataclass
class _Output:
    """An output actor as the shard sees it: the kinds it takes, and the
    incarnation this shard's rows went to since its last checkpoint (a
    different one at a barrier means rows were lost)."""

    handle: Any
    name: str
    kinds: frozenset[str]
    epoch: str | None = None


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
        storage_root: str | None = None,
        keep_checkpoints: int = 3,
        restore: AggregatorState | None = None,
        owner: Any = None,
        outputs: Sequence[Any] = (),
        alert_rules: Sequence[AlertRule] = (),
        forecast: ForecastSettings | None = None,
    ) -> None:
        """With ``owner`` (its controller) the shard ends once the owner is
        gone for good (actors/lifetime.py). ``outputs``: output actors
        beside the warehouse ``sink`` (actors/output.py). Alert rules and
        forecasts are watched by the core shard, on what it closes."""
        self.shard_id = shard_id
        self._keep_off_model = ModelCoreAvoider()
        self._settings = (sizes_s, allowed_lateness_s, idle_timeout_s, groups)
        self._watching = (tuple(alert_rules), forecast)
        self._agg = self._new_aggregator()
        if restore is not None:
            self._agg.restore(restore)
        self._sink = sink
        self._handles = [*([sink] if sink is not None else []), *outputs]
        self._outputs: list[_Output] = []
        self._stream = f"s{shard_id}"
        self._hub = hub
        self._store = None
        if storage_root is not None:
            # Here, not at the top: camera processes load this module to call
            # the shard and keep pyarrow (the store's) out.
            from camcount.checkpoints import CheckpointStore

            self._store = CheckpointStore(storage_root, keep_checkpoints)
        # Bumped by every restore: output and checkpoints computed before
        # it, still on their way out when it came, are dropped, never sent
        # after the restored state's own.
        self._generation = 0
        self._drain_lock = asyncio.Lock()
        self._outcomes: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}
        self._holds: dict[str, asyncio.Event] = {}
        self._last_commit: asyncio.Task[None] | None = None
        self._waiting: set[str] = set()
        self._rows: list[WindowRow] = []
        self._dead: list[DeadLetter] = []
        self._finished: set[str] = set()
        self._outbox = Outbox()
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
        self._m_fenced = metrics.Counter(
            "camcount_fenced_batches", "batches from replaced camera incarnations", ("shard",)
        )
        for m in (
            self._m_rows,
            self._m_late,
            self._m_events,
            self._m_watermark_lag,
            self._m_fenced,
        ):
            m.set_default_tags(tags)
        end_with(owner)

    def _new_aggregator(self) -> Aggregator:
        sizes_s, allowed_lateness_s, idle_timeout_s, groups = self._settings
        rules, forecast = self._watching
        return Aggregator(
            sizes_s,
            allowed_lateness_s,
            idle_timeout_s,
            groups=[GroupSpec(g, frozenset((c, k) for c, k in members)) for g, members in groups],
            alert_rules=rules,
            forecast=forecast,
        )

    async def ready(self) -> int:
        """For the controller's start: the shard exists (its id), and knows
        its outputs."""
        if len(self._outputs) != len(self._handles):
            await self._learn_outputs()
        return self.shard_id

    async def _learn_outputs(self) -> None:
        described = await asyncio.gather(*(h.describe.remote() for h in self._handles))
        self._outputs = [
            _Output(h, d["name"], frozenset(d["kinds"]), d["epoch"])
            for h, d in zip(self._handles, described, strict=True)
        ]

    async def alive(self) -> None:
        """Never returns: the controller keeps one call pending to learn at
        once when this actor dies."""
        await asyncio.Event().wait()

    async def restore(
        self, state: AggregatorState | None, checkpoint_id: int | None = None
    ) -> None:
        """Back to checkpoint ``checkpoint_id``'s state (None: the empty
        start); the cameras register again as new incarnations, and every
        output's stream from this shard goes back to the same checkpoint."""
        agg = self._new_aggregator()
        if state is not None:
            agg.restore(state)
        self._agg = agg
        self._generation += 1
        self._outbox.clear()
        self._rows = []
        self._finished = set()
        for future in self._outcomes.values():
            if not future.done():
                future.set_exception(RuntimeError("shard restored"))
        self._outcomes = {}
        # A commit held at a crash point is of the state before: it goes on
        # to find the restore and is dropped, and the commits after it run.
        for point in list(self._holds):
            self.let_go(point)
        await asyncio.gather(*(h.rewind.remote(self._stream, checkpoint_id) for h in self._handles))
        await self._learn_outputs()

    def senders(self) -> dict[str, str]:
        """Each camera's registered incarnation: a restarted controller
        numbers the next ones after these, so none is used twice."""
        return {camera: sender for sender, camera in self._agg.senders().items()}

    def register(
        self, camera_id: str, sender: str, site: str = "", tags: dict[str, str] | None = None
    ) -> None:
        self._agg.register(camera_id, sender, site)
        self._meta[camera_id] = {"site": site, "tags": dict(tags or {})}
        self._finished.discard(camera_id)

    async def remove(self, camera_id: str) -> None:
        generation = self._generation
        out = self._agg.remove(camera_id)
        await self._emit(out, generation)

    async def push(self, envelope: Envelope) -> None:
        self._keep_off_model()
        generation = self._generation
        out = self._agg.accept(envelope)
        if out.fenced:
            self._m_fenced.inc(out.fenced)
        await self._emit(out, generation)

    async def _emit(self, out: Output, generation: int) -> None:
        """What the core produced goes out, and the checkpoints it aligned
        are committed, unless a restore came in between (``generation``)."""
        await self._forward(out, generation)
        if generation == self._generation:
            await self._commit_all(out.checkpoints, generation)

    async def _commit_all(self, checkpoints: list[ShardCheckpoint], generation: int) -> None:
        """Commit in the background, one checkpoint after the other: a slow
        or unreachable store must not hold up the cameras' pushes (counting
        goes on; the checkpoint fails and the next one tries again)."""
        loop = asyncio.get_running_loop()
        for cp in checkpoints:
            future = self._outcome(cp.checkpoint_id)
            self._last_commit = loop.create_task(
                self._commit_after(self._last_commit, cp, future, generation)
            )

    async def _commit_after(
        self,
        previous: asyncio.Task[None] | None,
        cp: ShardCheckpoint,
        future: asyncio.Future[list[dict[str, Any]]],
        generation: int,
    ) -> None:
        if previous is not None:
            await asyncio.wait({previous})
        try:
            parts = await self._commit(cp, generation)
        except Exception as exc:
            log.warning("shard %s: checkpoint %s failed: %r", self.shard_id, cp.checkpoint_id, exc)
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(parts)

    async def _commit(self, cp: ShardCheckpoint, generation: int) -> list[dict[str, Any]]:
        if self._store is None:
            return []
        self._check_generation(generation)
        store, n = self._store, cp.checkpoint_id

        # Step 1: the snapshots, written once under the checkpoint's id.
        def write() -> list[dict[str, Any]]:
            parts = [
                store.write_part(n, "cameras", cam, state) for cam, state in cp.cameras.items()
            ]
            parts.append(store.write_part(n, "shards", str(self.shard_id), cp.state))
            return [
                {"kind": p.kind, "part_id": p.part_id, "path": p.path, "bytes": p.bytes}
                for p in parts
            ]

        parts = await asyncio.to_thread(write)
        await self._hold("state_written")
        # Step 2: every row made before the barrier is durable, at every output.
        self._check_generation(generation)
        await self._flush_outputs(n)
        await self._hold("rows_flushed")
        self._check_generation(generation)
        # Step 3: the outcome waits in _outcomes for checkpoint_done.
        return parts

    def _check_generation(self, generation: int) -> None:
        if generation != self._generation:
            raise RuntimeError("the shard was restored during this checkpoint")

    # Crash points (docs/checkpoints.md): each has its own test. A
    # test holds the protocol at one, kills a part, and lets it go on.

    async def hold_at(self, point: str) -> None:
        """Stop the next checkpoint at ``point`` (``state_written``: the
        shard's and its cameras' state is stored, the sink has not flushed
        yet; ``rows_flushed``: the sink has acknowledged, the controller has
        not written the manifest)."""
        if point not in ("state_written", "rows_flushed"):
            raise ValueError(f"no crash point {point!r}")
        self._holds[point] = asyncio.Event()

    def held_at(self) -> list[str]:
        return sorted(p for p, e in self._holds.items() if p in self._waiting)

    def let_go(self, point: str) -> None:
        event = self._holds.pop(point, None)
        if event is not None:
            event.set()

    async def _hold(self, point: str) -> None:
        event = self._holds.get(point)
        if event is None:
            return
        self._waiting.add(point)
        try:
            await event.wait()
        finally:
            self._waiting.discard(point)

    def _outcome(self, checkpoint_id: int) -> asyncio.Future[list[dict[str, Any]]]:
        future = self._outcomes.get(checkpoint_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._outcomes[checkpoint_id] = future
            for old in sorted(self._outcomes)[:-KEPT_OUTCOMES]:
                stale = self._outcomes.pop(old)
                if not stale.done():
                    stale.cancel()
        return future

    async def checkpoint_done(self, checkpoint_id: int) -> list[dict[str, Any]]:
        """Waits until this shard has aligned, written and flushed
        ``checkpoint_id``; returns the objects it wrote (its cameras' and
        its own)."""
        return await asyncio.shield(self._outcome(checkpoint_id))

    async def cut_alone(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` of a shard that has no cameras."""
        generation = self._generation
        out = self._agg.cut_alone(checkpoint_id)
        await self._emit(out, generation)

    async def abort(self, checkpoint_id: int) -> None:
        """The controller gave ``checkpoint_id`` up: release what it held."""
        future = self._outcomes.pop(checkpoint_id, None)
        if future is not None and not future.done():
            future.cancel()
        await self._forward(self._agg.abort(checkpoint_id), self._generation)

    async def camera_states(self, states: dict[str, tuple[str, float | None]]) -> dict[str, float]:
        """The controller's view of cameras of this shard, each as (state,
        when it began if known; camcount/alerts/camera_states.py); returns
        when each state began on this shard's time line, for the controller
        to report it the same after a restore. The alerts they raise leave
        as every event does: to the outputs, flushed at the next barrier."""
        generation = self._generation
        began = {
            camera: self._agg.camera_state(camera, state, since)
            for camera, (state, since) in states.items()
        }
        await self._forward(Output(events=self._agg.take_watched()), generation)
        return began

    async def set_alert_rules(self, rules: Sequence[AlertRule]) -> None:
        """Rules changed while running; the alerts of rules gone or changed
        resolve. A restore after this runs these rules, not the start's."""
        self._watching = (tuple(rules), self._watching[1])
        generation = self._generation
        self._agg.set_alert_rules(rules)
        await self._forward(Output(events=self._agg.take_watched()), generation)

    def alert_rules(self) -> list[AlertRule]:
        return list(self._agg.alerts.rules)

    def frame_ledgers(self) -> dict[str, dict[str, Any]]:
        """Per camera, the runs of its frame numbers this shard applied and
        how many it applied twice (``FrameLedger``)."""
        return {
            camera: {"runs": [list(r) for r in ledger.runs], "repeats": ledger.repeats}
            for camera, ledger in sorted(self._agg.ledgers.items())
        }

    def stats(self) -> dict[str, Any]:
        return {
            "shard": self.shard_id,
            "fenced_batches": self._agg.fenced,
            "aligning": self._agg.aligning,
            "watermark": self._agg.watermark,
        }

    async def tick(self) -> None:
        """Let idle inputs time out and close what that allows."""
        out = Output(rows=self._agg._close())
        await self._forward(out, self._generation)

    async def flush(self) -> list[WindowRow]:
        """Close every open window (all inputs are done for good) and hand
        everything to the outputs (a flush at the end of the input)."""
        rows = self._agg.flush()
        watched = self._agg.take_watched()
        await self._forward(Output(events=watched, rows=rows), self._generation)
        await self._flush_outputs(None)
        return rows

    async def _flush_outputs(self, checkpoint_id: int | None) -> None:
        """Send what waits, then have every output flush this shard's stream
        (at ``checkpoint_id``; None: the end of the input); an output whose
        incarnation changed since the last checkpoint lost rows."""
        async with self._drain_lock:
            await self._drain_unlocked()
            epochs = await asyncio.gather(
                *(o.handle.flush_epoch.remote(self._stream, checkpoint_id) for o in self._outputs)
            )
        for output, epoch in zip(self._outputs, epochs, strict=True):
            if epoch != output.epoch:
                raise RuntimeError(f"output {output.name} restarted since the last checkpoint")

    async def drain(self) -> int:
        """Send what waits for the outputs now (before a flush or a stop);
        returns the rows sent."""
        async with self._drain_lock:
            return await self._drain_unlocked()

    async def _drain_unlocked(self) -> int:
        # One drain at a time: a flush after it then covers every row that
        # left the outbox before it, whichever push took them out.
        if not self._outputs or not self._outbox:
            return 0
        sent = self._outbox.rows
        tables = self._outbox.take()
        generation = self._generation
        for output in self._outputs:
            for kind, table in tables:
                if generation != self._generation:
                    return 0  # restored meanwhile: these rows are made again
                if kind not in output.kinds:
                    continue
                try:
                    await output.handle.write.remote(kind, table, self._stream)
                except ray.exceptions.RayActorError as exc:
                    # The output is restarting; the controller rolls back to
                    # the last checkpoint and these rows are made again.
                    log.warning(
                        "shard %s: output %s lost (%r); rows dropped",
                        self.shard_id,
                        output.name,
                        exc,
                    )
                    break
        return sent

    async def _forward(self, out: Output, generation: int) -> None:
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
        batches = batches_of(out.events, out.rows, out.dead_letters)
        if self._handles:
            self._outbox.add(batches)
            if self._outbox.due():
                await self.drain()
        if self._hub is not None and batches and generation == self._generation:
            updates = live_updates(batches, self._meta)
            try:
                await self._hub.publish.remote(updates, out.created, time.time())
            except ray.exceptions.RayActorError as exc:
                # The hub is restarting: live updates are at-least-once by
                # event id and its clients are told of the gap.
                log.warning("shard %s: live hub unreachable (%r)", self.shard_id, exc)

    def totals(self) -> list[CountRow]:
        return self._agg.count_rows()

    def rows(self) -> list[WindowRow]:
        return list(self._rows)

    def dead_letters(self) -> list[DeadLetter]:
        return list(self._dead)

    def finished(self) -> list[str]:
        return sorted(self._finished)

    def watermark(self) -> float:
        return self._agg.watermark
