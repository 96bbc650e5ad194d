"""An external source (camcount/external/) behind a Ray actor: one input of
its shard, as a camera is, fed by MQTT messages and ``POST /events``.

Everything it takes goes through one lock, in order: the core source
drops duplicates by device sequence and makes a numbered envelope, which
is pushed to the shard before the next one is made. A barrier takes the
same lock, so it falls between two batches.

Nothing taken is lost when a part of its region fails:

1. an MQTT message is acknowledged to the broker only once a checkpoint
   covering it has completed (``committed``); the session is persistent,
   so after a rewind or in a new process the broker delivers again what
   was not acknowledged, and the restored device sequences drop what the
   checkpoint already holds;
2. a ``POST /events`` batch is kept until a checkpoint covers it, and a
   rewind applies the kept batches again (the same dedupe drops what the
   checkpoint holds). A batch is lost only if this actor's own process
   dies before the next checkpoint (docs/mqtt.md says so).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import ray

from actors.lifetime import end_with
from camcount.config import ExternalSourceConfig
from camcount.events import DeadLetter, stable_id
from camcount.external import ExternalCount, ExternalEventError, ExternalSource, parse_events
from camcount.external.source import ExternalSourceState

log = logging.getLogger("camcount.external")

#: Idempotency keys of ``POST /events`` remembered, with their answer.
KEPT_IDEMPOTENCY_KEYS = 4096


@ray.remote(num_cpus=0, max_restarts=0)
class ExternalSourceActor:
    def __init__(
        self,
        cfg: ExternalSourceConfig,
        shard: Any,
        sender_id: str,
        restore: ExternalSourceState | None = None,
        owner: Any = None,
    ) -> None:
        self.cfg = cfg
        self._shard = shard
        self._source = self._new_source(sender_id, restore)
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        # Step 1: MQTT messages taken since the last barrier, then by the
        # barrier that covers them, until its checkpoint completes.
        self._unacked: list[tuple[int, int]] = []
        self._covered_acks: dict[int, list[tuple[int, int]]] = {}
        # Step 2: API batches the same way.
        self._kept: list[list[ExternalCount]] = []
        self._covered_batches: dict[int, list[list[ExternalCount]]] = {}
        self._pending_replay: list[list[ExternalCount]] = []
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._stats = {"received": 0, "accepted": 0, "duplicates": 0, "invalid": 0}
        end_with(owner)

    def _new_source(self, sender_id: str, state: ExternalSourceState | None) -> ExternalSource:
        source = ExternalSource(self.cfg.id, sender_id)
        if state is not None:
            source.restore(state)
        return source

    async def alive(self) -> None:
        await asyncio.Event().wait()

    def identity(self) -> tuple[str, str]:
        return self.cfg.id, self._source.sender_id

    async def start(self) -> dict[str, Any]:
        """Subscribe to the source's MQTT topics (when it has any)."""
        self._loop = asyncio.get_running_loop()
        if self.cfg.mqtt is not None and self._client is None:
            await asyncio.to_thread(self._connect)
        return self.status()

    def _connect(self) -> None:
        import paho.mqtt.client as mqtt

        m = self.cfg.mqtt
        if m is None:
            raise RuntimeError(f"external source {self.cfg.id!r} has no mqtt section")
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=m.client_id or f"camcount-{self.cfg.id}",
            clean_session=False,  # Step 1: the broker keeps what we did not ack
            manual_ack=True,
        )
        if m.username is not None:
            password = os.environ.get(m.password_env) if m.password_env else None
            client.username_pw_set(m.username, password)
        client.reconnect_delay_set(1, max(1, round(m.reconnect_max_delay_s)))
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        # Known before the first message can arrive: messages of any other
        # client are dropped (``_take_message``).
        self._client = client
        client.connect_async(m.host, m.port, m.keepalive_s)
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        m = self.cfg.mqtt
        if m is None or getattr(reason, "is_failure", False):
            log.warning("external %s: MQTT connection refused: %s", self.cfg.id, reason)
            return
        client.subscribe([(t, m.qos) for t in m.topics])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        """paho's thread: hand the message to the actor's loop, in order."""
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(
            self._take_message(client, msg.topic, bytes(msg.payload), msg.mid, msg.qos),
            self._loop,
        )

    async def _take_message(
        self, client: Any, topic: str, payload: bytes, mid: int, qos: int
    ) -> None:
        async with self._lock:
            if client is not self._client:
                return  # a connection closed by a rewind: the broker sends it again
            self._stats["received"] += 1
            try:
                events = parse_events(payload, self.cfg.id, self.cfg.counters, where=topic)
            except ExternalEventError as exc:
                # Never valid, however often resent: a dead letter, acked.
                self._stats["invalid"] += 1
                log.warning("external %s: message refused: %s", self.cfg.id, exc)
                letter = DeadLetter(
                    self.cfg.id,
                    "invalid",
                    str(exc)[:2000],
                    0.0,
                    "external_count",
                    stable_id("mqtt", topic, payload),
                )
                await self._push_letter(letter)
                self._ack([(mid, qos)])
                return
            await self._apply(events)
            self._unacked.append((mid, qos))

    async def submit(
        self, events: Sequence[ExternalCount], key: str | None = None
    ) -> dict[str, Any]:
        """Events posted to the API, already checked; the answer of a key
        seen before is given again without applying anything."""
        if key is not None and key in self._answers:
            return {**self._answers[key], "replayed": True}
        async with self._lock:
            self._stats["received"] += 1
            batch = list(events)
            answer = await self._apply(batch)
            self._kept.append(batch)
        if key is not None:
            self._answers[key] = answer
            while len(self._answers) > KEPT_IDEMPOTENCY_KEYS:
                self._answers.popitem(last=False)
        return {**answer, "replayed": False}

    async def _apply(self, events: Sequence[ExternalCount]) -> dict[str, Any]:
        taken = self._source.accept(events)
        if taken.envelope is not None:
            await self._shard.push.remote(taken.envelope)
        self._stats["accepted"] += len(taken.accepted)
        self._stats["duplicates"] += len(taken.duplicates)
        return {
            "source": self.cfg.id,
            "accepted": len(taken.accepted),
            "duplicates": len(taken.duplicates),
        }

    async def _push_letter(self, letter: DeadLetter) -> None:
        envelope = self._source.letter(letter)
        await self._shard.push.remote(envelope)

    async def barrier(self, checkpoint_id: int, final: bool = False) -> dict[str, Any]:
        async with self._lock:
            await self._shard.push.remote(self._source.barrier(checkpoint_id))
            self._covered_acks[checkpoint_id], self._unacked = self._unacked, []
            self._covered_batches[checkpoint_id], self._kept = self._kept, []
        return {"camera_id": self.cfg.id, "checkpoint": checkpoint_id}

    def committed(self, checkpoint_id: int) -> None:
        """Checkpoint ``checkpoint_id`` is complete: what it covers is safe."""
        for n in [n for n in self._covered_acks if n <= checkpoint_id]:
            self._ack(self._covered_acks.pop(n))
        for n in [n for n in self._covered_batches if n <= checkpoint_id]:
            del self._covered_batches[n]

    def _ack(self, acks: list[tuple[int, int]]) -> None:
        if self._client is None:
            return
        for mid, qos in acks:
            if qos > 0:
                self._client.ack(mid, qos)

    async def rewind(self, shard: Any, sender_id: str, state: ExternalSourceState | None) -> None:
        """Back to a checkpoint as a new incarnation; what was taken since
        is taken again (module docstring, steps 1 and 2)."""
        async with self._lock:
            self._shard = shard
            self._source = self._new_source(sender_id, state)
            batches = [b for n in sorted(self._covered_batches) for b in self._covered_batches[n]]
            self._pending_replay = [*batches, *self._kept]
            self._covered_batches, self._kept = {}, []
            self._covered_acks, self._unacked = {}, []
            client, self._client = self._client, None
        if client is not None:
            # A new connection: the broker sends the unacknowledged again.
            await asyncio.to_thread(_close, client)

    async def resume(self) -> dict[str, Any]:
        """After a rewind, once the new incarnation is registered."""
        async with self._lock:
            replay, self._pending_replay = self._pending_replay, []
            for batch in replay:
                await self._apply(batch)
                self._kept.append(batch)
        return await self.start()

    def status(self) -> dict[str, Any]:
        return {
            "source_id": self.cfg.id,
            "sender": self._source.sender_id,
            "mqtt": self._client is not None,
            "gaps": self._source.gaps,
            **self._stats,
        }

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(_close, client)


def _close(client: Any) -> None:
    client.disconnect()
    client.loop_stop()
