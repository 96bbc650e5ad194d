"""The live hub: one actor holding the numbered update buffer.

API replicas long-poll ``updates_since``; the wait is an asyncio condition,
so thousands of waiting replicas cost no thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import ray

from actors.cores import ModelCoreAvoider
from camcount.livefeed import Since, UpdateBuffer


@ray.remote(num_cpus=0, max_restarts=-1)
class LiveHub:
    def __init__(self, capacity: int = 10_000) -> None:
        self._buffer = UpdateBuffer(capacity)
        self._changed = asyncio.Condition()
        self._keep_off_model = ModelCoreAvoider()

    async def publish(self, updates: list[tuple[str, str, dict[str, Any]]]) -> int:
        """(kind, camera_id, data) triples; returns the last sequence number."""
        self._keep_off_model()
        for kind, camera_id, data in updates:
            self._buffer.publish(kind, camera_id, data)
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

    async def last_seq(self) -> int:
        return self._buffer.last_seq
