"""The live hub: one actor holding the numbered update buffer.

API replicas long-poll ``updates_since``; the wait is an asyncio condition,
so thousands of waiting replicas cost no thread each.

Ray restarts a hub that dies. Its sequence numbers are reserved in blocks
in storage before use (``SequenceBlocks``), so the new hub numbers on
after every number the old one may have sent: a client that resumes is
told of a ``gap``, never given a reused number. The controller records the
hub's last number in each checkpoint's manifest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import ray

from actors.lifetime import end_with
from actors.placement import ModelCoreAvoider
from camcount.checkpoints.sequence import SequenceBlocks
from camcount.errors import CheckpointStoreError
from camcount.stream.livefeed import Since, UpdateBuffer

log = logging.getLogger("camcount.hub")


def _load(info: dict[str, Any]) -> tuple[int, str]:
    return int(info.get("connections", 0)), str(info.get("ws", ""))


@ray.remote(num_cpus=0, max_restarts=-1)
class LiveHub:
    def __init__(
        self, capacity: int = 10_000, storage_root: str | None = None, owner: Any = None
    ) -> None:
        """With ``owner`` (its controller) the hub ends once the owner is
        gone for good (actors/lifetime.py)."""
        self._blocks = SequenceBlocks(storage_root) if storage_root is not None else None
        last = self._blocks.start() if self._blocks is not None else 0
        self._buffer = UpdateBuffer(capacity, last_seq=last)
        self._changed = asyncio.Condition()
        #: Live replicas' own ports (docs/api.md, GET /live/endpoints): kept
        #: here because every replica already follows this actor.
        self._endpoints: dict[str, tuple[float, dict[str, Any]]] = {}
        self._keep_off_model = ModelCoreAvoider()
        end_with(owner)

    async def publish(
        self,
        updates: list[tuple[str, str, dict[str, Any]]],
        created: float | None = None,
        published: float | None = None,
    ) -> int:
        """(kind, camera_id, data) triples; returns the last sequence number.

        ``created``: when the camera made the events these come from;
        ``published``: when the caller made this call (the hub's own clock
        when not given). Both ride on every update, for clients to measure
        delivery delay (docs/api.md)."""
        self._keep_off_model()
        if self._blocks is not None and updates:
            try:
                self._blocks.reserve(self._buffer.last_seq + len(updates))
            except CheckpointStoreError as exc:
                # The store is unreachable: keep publishing (a restart of the
                # hub before it answers again could reuse numbers past the
                # reserved block), and reserve again with the next batch.
                log.warning("live sequence numbers not reserved: %s", exc)
        if published is None:
            published = time.time()
        for kind, camera_id, data in updates:
            self._buffer.publish(kind, camera_id, data, created, published)
        async with self._changed:
            self._changed.notify_all()
        return self._buffer.last_seq

    async def updates_since(self, seq: int, timeout_s: float = 0.0, limit: int = 1000) -> Since:
        if self._buffer.last_seq <= seq and timeout_s > 0:
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self._buffer.last_seq > seq), timeout_s
                    )
        return self._buffer.since(seq, limit)

    async def register_endpoint(
        self, key: str, urls: dict[str, str], connections: int, ttl_s: float
    ) -> None:
        """A live replica's own stream URLs and its load; forgotten after
        ``ttl_s`` without news (the replica is gone)."""
        self._endpoints[key] = (time.monotonic() + ttl_s, {**urls, "connections": connections})

    async def forget_endpoint(self, key: str) -> None:
        self._endpoints.pop(key, None)

    async def endpoints(self) -> list[dict[str, Any]]:
        """The live replicas' own URLs, fewest connections first."""
        now = time.monotonic()
        for key in [k for k, (until, _) in self._endpoints.items() if until < now]:
            del self._endpoints[key]
        return sorted((info for _, info in self._endpoints.values()), key=_load)

    async def alive(self) -> None:
        """Never returns: lets the controller learn at once of a death."""
        await asyncio.Event().wait()

    async def last_seq(self) -> int:
        return self._buffer.last_seq
