"""What a shard's step produced, as the typed batches every output takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from camcount.events import DeadLetter, WindowRow, group_by_type

#: The event kinds a shard produces, in the order its batches carry them.
EVENT_KINDS = frozenset(
    {
        "crossing",
        "zone_transition",
        "zone_sample",
        "zone_visit",
        "gap",
        "window_row",
        "dead_letter",
        "alert",
        "forecast",
    }
)
#: Camera metadata, which the controller (not a shard) sends when the
#: topology changes.
CAMERA_KINDS = frozenset({"camera", "camera_counter"})


def batches_of(
    events: Sequence[object],
    rows: Sequence[WindowRow] = (),
    dead_letters: Sequence[DeadLetter] = (),
) -> list[tuple[type, list[Any]]]:
    """Raw events by type, then closed window rows, then dead letters: one
    (type, items) pair per type present."""
    batches: list[tuple[type, list[Any]]] = [*group_by_type(events).items()]
    if rows:
        batches.append((WindowRow, list(rows)))
    if dead_letters:
        batches.append((DeadLetter, list(dead_letters)))
    return batches
