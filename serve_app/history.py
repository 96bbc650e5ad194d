"""Which camera ids ``/counts`` answers for, and which it answers 404.

A camera is known when the pipeline runs it now, or when it has history:
a camera removed through the API keeps its rows in the warehouse, and those
stay readable. History is the warehouse's (``camera_seen``: a row in the
cameras table, current or removed, or a window count; groups, ``group:ID``,
have only the latter) when the pipeline has a sink, else the aggregator
shards' closed window rows in memory. Asked only when a query found no
rows, so a busy camera never pays for it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from camcount.errors import RequestError

if TYPE_CHECKING:
    from serve_app.api import Pipeline


async def camera_known(pipeline: Pipeline, camera_id: str) -> bool:
    try:
        await pipeline.camera(camera_id)
        return True
    except RequestError as exc:
        if exc.status != 404:
            raise
    sink = await pipeline.sink()
    if sink is not None:
        seen = await pipeline.sink_query(sink, "camera_seen", {"camera_id": camera_id})
        return bool(seen.num_rows)
    shards = await pipeline.call("shard_handles")
    for rows in await asyncio.gather(*(s.rows.remote() for s in shards)):
        if any(w.camera_id == camera_id for w in rows):
            return True
    return False


async def require_known(pipeline: Pipeline, camera_id: str) -> None:
    """A 404 for a camera id the pipeline neither runs nor has history of."""
    if not await camera_known(pipeline, camera_id):
        raise RequestError("not_found", f"no camera {camera_id!r}: not running and no history", 404)
