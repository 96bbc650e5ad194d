"""What an operator sees of the checkpoints: plain dicts for the CLI's
tables and ``--json``, read from the store without a running pipeline."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from camcount.checkpoints.states import CameraState
from camcount.checkpoints.store import CheckpointStore
from camcount.errors import CheckpointStoreError
from camcount.stream.aggregation import AggregatorState


def _when(t: float | None) -> str | None:
    if t is None or not math.isfinite(t):
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def list_rows(store: CheckpointStore) -> list[dict[str, Any]]:
    """Every checkpoint present, newest first."""
    rows = []
    for info in reversed(store.list()):
        rows.append(
            {
                "checkpoint_id": info.checkpoint_id,
                "complete": info.complete,
                "final": info.final,
                "created_at": _when(info.created_at),
                "parts": info.parts,
                "bytes": info.bytes,
            }
        )
    return rows


def camera_summary(state: CameraState) -> dict[str, Any]:
    position = state.position
    return {
        "camera_id": state.camera_id,
        "resumes_at_frame": position.next_index if position is not None else None,
        "frames_processed": state.frames_processed,
        "events": state.events,
        "last_frame_time": _when(state.last_frame_time),
        "ended": state.ended,
    }


def shard_summary(part_id: str, state: AggregatorState) -> dict[str, Any]:
    watermark = state.windows.watermark
    return {
        "shard": part_id,
        "inputs": [i for i, _, _ in state.clock.inputs],
        "open_windows": len(state.windows.counts),
        "watermark": _when(watermark) if math.isfinite(watermark) else str(watermark),
        "events_counted": sum(n for _, n in state.totals),
    }


def show(store: CheckpointStore, checkpoint_id: int | None = None) -> dict[str, Any]:
    """One complete checkpoint (the newest when no id is given): its
    manifest and what each part holds."""
    manifest = store.latest() if checkpoint_id is None else store.manifest(checkpoint_id)
    if manifest is None:
        raise CheckpointStoreError(store.uri, "no complete checkpoint")
    n = manifest.checkpoint_id
    cameras = []
    for part in store.part_ids(n, "cameras"):
        state = store.read_part(n, "cameras", part)
        if isinstance(state, CameraState):
            cameras.append(camera_summary(state))
    shards = []
    for part in store.part_ids(n, "shards"):
        state = store.read_part(n, "shards", part)
        if isinstance(state, AggregatorState):
            shards.append(shard_summary(part, state))
    return {
        "checkpoint_id": n,
        "created_at": _when(manifest.created_at),
        "final": manifest.final,
        "bytes": sum(p.bytes for p in manifest.parts),
        "topology": manifest.topology,
        "cameras": cameras,
        "shards": shards,
    }


def restore_to(store: CheckpointStore, checkpoint_id: int) -> list[int]:
    """Make ``checkpoint_id`` the one the next run resumes from, by deleting
    every checkpoint after it; returns the ids deleted. Run it with the
    pipeline stopped: a running one would write over what it resumes."""
    store.manifest(checkpoint_id)  # refuses an id that is not complete
    newer = [i.checkpoint_id for i in store.list() if i.checkpoint_id > checkpoint_id]
    for n in newer:
        store.delete(n)
    return newer
