from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from camcount.events import (
    Crossing,
    DeadLetter,
    Direction,
    Gap,
    WindowRow,
    ZoneSample,
    ZoneTransition,
    ZoneVisit,
    arrow_schema,
    from_arrow,
    stable_id,
    to_arrow,
)

EXAMPLES = [
    Crossing("cam1", "l1", 7, 120, 1767225600.5, "car", Direction.IN, 0.8, 10.0, 20.0),
    ZoneTransition("cam1", "z1", 7, 121, 1767225600.6, "person", Direction.EXIT),
    ZoneVisit("cam1", "z1", 7, 1767225600.0, 1767225630.0, "person", 100, 400),
    ZoneSample("cam1", "z1", 130, 1767225601.0, 3, ("car", "person"), (1, 2)),
    WindowRow("cam1", "l1", "car", "in", 60, 1767225600.0, 4),
    DeadLetter("cam1", "late", "window closed", 1767225600.0, "crossing", 42),
    Gap("cam1", 1767225600.0, 1767225612.5, "camera restart", -1),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=lambda e: type(e).__name__)
def test_arrow_round_trip(event):
    cls = type(event)
    table = to_arrow(cls, [event, event])
    assert table.schema.equals(arrow_schema(cls), check_metadata=True)
    assert table.column("event_id").to_pylist() == [event.event_id] * 2
    assert from_arrow(cls, table) == [event, event]


def test_ids_are_built_from_identity_only():
    a = EXAMPLES[0]
    same_identity = Crossing("cam1", "l1", 7, 120, 0.0, "person", Direction.OUT, 0.1, 0.0, 0.0)
    assert a.event_id == same_identity.event_id
    other_frame = Crossing("cam1", "l1", 7, 121, 1767225600.5, "car", Direction.IN, 0.8, 10.0, 20.0)
    assert a.event_id != other_frame.event_id
    assert 0 <= a.event_id < 2**63


def test_ids_are_the_same_in_another_process():
    code = "from camcount.events import stable_id; print(stable_id('a', 1, 2.5))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == stable_id("a", 1, 2.5)


def test_events_are_frozen():
    with pytest.raises(AttributeError):
        EXAMPLES[0].track_id = 3  # type: ignore[misc]


def test_empty_table_has_the_schema():
    table = to_arrow(WindowRow, [])
    assert table.num_rows == 0 and isinstance(table.schema, pa.Schema)
