"""The outputs port in the core: batching, the typed batches every output
gets, the live encoding, the ``outputs:`` config section and its registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camcount.config import parse_config
from camcount.errors import ConfigError
from camcount.events import Crossing, DeadLetter, Direction, Gap, WindowRow, arrow_schema
from camcount.outputs.archive import ArchiveSink
from camcount.outputs.batching import Outbox
from camcount.outputs.live import LiveSink, live_updates, table_updates
from camcount.outputs.port import Guarantee, Sink
from camcount.outputs.registry import OUTPUT_TYPES, SinkContext, build_sink
from camcount.outputs.settings import ArchiveOutputConfig
from camcount.outputs.tables import batches_of

T0 = 1_796_515_200.0  # 2026-12-06T00:00:00Z


def crossing(i: int, camera: str = "cam1") -> Crossing:
    return Crossing(
        camera, "door", i, 10 * i, T0 + i, "person", Direction.IN, 0.9, 320.0 + i, 200.0
    )


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("rows", "waited_s", "due"),
    [
        (0, 5.0, False),  # nothing waits: never due, however long
        (3, 0.0, False),  # a few rows, just arrived: they wait for more
        (3, 0.99, False),  # not quite the delay yet
        (3, 1.0, True),  # the oldest waited the delay: they go
        (10, 0.0, True),  # a full batch goes at once
        (12, 0.0, True),  # more than a batch too
    ],
)
def test_outbox_sends_when_full_or_after_the_delay(rows: int, waited_s: float, due: bool) -> None:
    clock = Clock()
    box = Outbox(batch_rows=10, max_delay_s=1.0, clock=clock)
    box.add([(Crossing, [crossing(i) for i in range(rows)])])
    clock.now += waited_s
    assert box.due() is due


def test_the_delay_runs_from_the_oldest_row() -> None:
    clock = Clock()
    box = Outbox(batch_rows=100, max_delay_s=1.0, clock=clock)
    box.add([(Crossing, [crossing(0)])])
    clock.now += 0.6
    box.add([(Crossing, [crossing(1)])])  # a later row does not restart the wait
    clock.now += 0.5
    assert box.due()


def test_outbox_gives_one_table_per_kind_and_empties() -> None:
    box = Outbox(batch_rows=100)
    rows = [WindowRow("cam1", "door", "person", "in", 60, T0, 2)]
    box.add(batches_of([crossing(0), crossing(1)], rows))
    box.add(batches_of([crossing(2)]))
    tables = box.take()
    assert [k for k, _ in tables] == ["crossing", "window_row"]
    crossings = dict(tables)["crossing"]
    assert crossings.schema.equals(arrow_schema(Crossing))
    assert crossings.column("track_id").to_pylist() == [0, 1, 2]
    assert not box and box.rows == 0 and box.take() == []


@pytest.mark.parametrize(("batch_rows", "delay_s"), [(0, 1.0), (10, -1.0)])
def test_outbox_refuses_settings_that_could_never_send(batch_rows: int, delay_s: float) -> None:
    with pytest.raises(ValueError, match="must"):
        Outbox(batch_rows=batch_rows, max_delay_s=delay_s)


def test_batches_carry_events_then_rows_then_dead_letters() -> None:
    gap = Gap("cam1", T0, T0 + 5, "camera restart", -1)
    row = WindowRow("cam1", "door", "person", "in", 60, T0, 1)
    late = DeadLetter("aggregator-0", "late", "after its window closed", T0, "crossing", 7)
    batches = batches_of([crossing(0), gap, crossing(1)], [row], [late])
    assert [(cls, len(items)) for cls, items in batches] == [
        (Crossing, 2),
        (Gap, 1),
        (WindowRow, 1),
        (DeadLetter, 1),
    ]


META = {"cam1": {"site": "north", "tags": {"floor": "1"}}}


def test_live_updates_carry_identity_plain_values_and_the_camera_s_site() -> None:
    event = crossing(3)
    [(kind, camera, data)] = live_updates(batches_of([event]), META)
    assert (kind, camera) == ("crossing", "cam1")
    assert data["event_id"] == event.event_id
    assert data["direction"] == "in" and type(data["direction"]) is str
    assert data["site"] == "north" and data["tags"] == {"floor": "1"}
    data["tags"]["floor"] = "2"  # each update has its own copy
    assert META["cam1"]["tags"] == {"floor": "1"}


def test_live_encoding_of_a_table_equals_that_of_its_events() -> None:
    events = [crossing(i) for i in range(3)]
    gap = Gap("cam2", T0, T0 + 1, "stream reconnect", 4)
    from_events = live_updates(batches_of([*events, gap]), META)
    box = Outbox()
    box.add(batches_of([*events, gap]))
    from_tables = [u for kind, t in box.take() for u in table_updates(kind, t, META)]
    assert json.dumps(from_tables, sort_keys=True) == json.dumps(from_events, sort_keys=True)


def test_live_sink_publishes_every_batch_at_once() -> None:
    published: list[list[tuple[str, str, dict[str, object]]]] = []
    sink = LiveSink(published.append, META)
    box = Outbox()
    box.add(batches_of([crossing(0), crossing(1)]))
    for kind, table in box.take():
        sink.write(kind, table)
    assert [len(p) for p in published] == [2]
    assert sink.flush(4).delivered == 2
    assert sink.flush(5).delivered == 0
    assert sink.guarantee is Guarantee.AT_LEAST_ONCE


def test_every_output_keeps_the_port(tmp_path: Path) -> None:
    archive = ArchiveSink(f"file://{tmp_path}", "s0", "run1")
    live = LiveSink(lambda updates: None)
    for sink in (archive, live):
        assert isinstance(sink, Sink)
        assert sink.kinds and isinstance(sink.guarantee, Guarantee)
    assert archive.guarantee is Guarantee.EXACTLY_ONCE


# ------------------------------------------------------------ config


def test_outputs_parse_by_type_and_build_their_sink(tmp_path: Path) -> None:
    config = parse_config(
        "storage:\n"
        f"  root: file://{tmp_path}/store\n"
        "outputs:\n"
        "  - type: archive\n"
        "  - type: archive\n"
        "    name: crossings_only\n"
        f"    uri: file://{tmp_path}/elsewhere\n"
        "    kinds: [crossing]\n"
    )
    default, narrow = config.outputs
    assert isinstance(default, ArchiveOutputConfig) and default.label == "archive"
    ctx = SinkContext(config.storage.root, "s0", "run1")
    sink = build_sink(default, ctx)
    assert isinstance(sink, ArchiveSink) and sink.uri == f"file://{tmp_path}/store/archive"
    narrow_sink = build_sink(narrow, ctx)
    assert narrow_sink.name == "crossings_only" and narrow_sink.kinds == {"crossing"}
    assert set(OUTPUT_TYPES) >= {"archive"}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        # a type no output registers: the known ones are named
        ("  - type: kafka\n", "does not match any of the expected tags: 'archive'"),
        # two entries of one type need names to tell them apart
        ("  - type: archive\n  - type: archive\n", "output names must be unique"),
        # a kind the pipeline never makes
        ("  - type: archive\n    kinds: [crossings]\n", "unknown kinds ['crossings']"),
        # a misspelt setting is refused, not ignored
        ("  - type: archive\n    url: s3://bucket\n", "url"),
        # a name that could not name a file or a metric
        ("  - type: archive\n    name: my archive\n", "name"),
    ],
)
def test_bad_output_entries_are_one_clear_error(entries: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"outputs") as caught:
        parse_config("outputs:\n" + entries)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value).strip()
