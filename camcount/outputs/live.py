"""The live encoding: events as the updates apps receive, and the live hub
as an output of the port.

An update is ``(kind, camera_id, data)``: ``data`` holds the event's
fields, its stable ``event_id`` (receivers dedupe a replay by it: live
updates are at-least-once) and the camera's ``site`` and ``tags``, so
apps can group and filter without asking the warehouse for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from camcount.events import DeadLetter
from camcount.outputs.port import Ack, Guarantee
from camcount.outputs.tables import EVENT_KINDS

Update = tuple[str, str, dict[str, Any]]
#: Per camera id, what rides on its updates: ``{"site": ..., "tags": {...}}``.
CameraMeta = Mapping[str, Mapping[str, Any]]

if TYPE_CHECKING:
    import pyarrow as pa


def as_dict(event: Any) -> dict[str, Any]:
    """An event's fields and its ``event_id``, enums as their values."""
    data = dataclasses.asdict(event)
    data["event_id"] = event.event_id
    for k, v in data.items():
        if isinstance(v, Enum):
            data[k] = v.value
    return data


def enriched(data: dict[str, Any], meta: CameraMeta) -> dict[str, Any]:
    """``data`` with its camera's site and tags (a copy of them), if known."""
    camera = meta.get(data.get("camera_id", ""))
    if camera is not None:
        data.update({k: dict(v) if isinstance(v, Mapping) else v for k, v in camera.items()})
    return data


def live_updates(batches: Iterable[tuple[Any, Sequence[Any]]], meta: CameraMeta) -> list[Update]:
    """Typed batches (``tables.batches_of``) as the hub's updates."""
    return [
        (cls.kind, getattr(e, "camera_id", ""), enriched(as_dict(e), meta))
        for cls, items in batches
        for e in items
    ]


def table_updates(kind: str, table: pa.Table, meta: CameraMeta) -> list[Update]:
    """An Arrow batch of one kind as the hub's updates: the same data as
    ``live_updates`` gives for the events the table was made from."""
    return [(kind, row.get("camera_id", ""), enriched(row, meta)) for row in table.to_pylist()]


class LiveSink:
    """The live hub behind the port: each batch becomes updates at once
    (apps want them now) and goes to ``publish``. At-least-once: a replay
    after a restore publishes the same events again, with the same
    ``event_id``; a flush has nothing left to make durable."""

    guarantee = Guarantee.AT_LEAST_ONCE

    def __init__(
        self,
        publish: Callable[[list[Update]], object],
        meta: CameraMeta | None = None,
        name: str = "live",
        kinds: frozenset[str] = EVENT_KINDS,
    ) -> None:
        self.name = name
        self.kinds = kinds
        self._publish = publish
        self._meta: CameraMeta = meta if meta is not None else {}
        self._delivered = 0
        self._since_flush = 0

    def write(self, kind: str, batch: pa.Table) -> None:
        updates = table_updates(kind, batch, self._meta)
        if updates:
            self._publish(updates)
        self._delivered += len(updates)
        self._since_flush += len(updates)

    def flush(self, checkpoint_id: int) -> Ack:
        ack = Ack(checkpoint_id, self._since_flush)
        self._since_flush = 0
        return ack

    def dead_letters(self) -> Sequence[DeadLetter]:
        return ()

    def metrics(self) -> Mapping[str, float]:
        return {"delivered": float(self._delivered)}

    def close(self) -> None:
        pass
