"""Event batches to warehouse rows: exact values, refused values, identity."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pytest

from camcount.config import CameraConfig
from camcount.events import (
    Crossing,
    DeadLetter,
    Direction,
    Gap,
    WindowRow,
    ZoneSample,
    ZoneVisit,
    to_arrow,
)
from camcount.stream.spill import SpillStore, open_root
from camcount.warehouse.rows import (
    KINDS,
    RowsInvalid,
    batch_digest,
    camera_tables,
    convert,
    kind_of,
)

T0 = 1767225600.0


def crossing(**over: object) -> Crossing:
    values: dict[str, object] = {
        "camera_id": "cam",
        "counter_id": "line",
        "track_id": 3,
        "frame_index": 42,
        "event_time": T0 + 1.2346,
        "class_name": "person",
        "direction": Direction.IN,
        "confidence": 0.75,
        "anchor_x": 10.5,
        "anchor_y": 20.25,
    }
    values.update(over)
    return Crossing(**values)  # type: ignore[arg-type]


def test_crossing_row_values() -> None:
    c = crossing()
    row = convert(kind_of("crossing"), to_arrow(Crossing, [c])).to_pylist()[0]
    assert row == {
        "event_id": c.event_id,
        "camera_id": "cam",
        "counter_id": "line",
        "track_id": 3,
        "frame_index": 42,
        "event_time": int(T0) + 1,
        "event_ms": 235,  # 1.2346 s -> 1 s + 235 ms (rounded to the nearest ms)
        "class_name": "person",
        "direction": "in",
        "confidence": pytest.approx(0.75),
        "anchor_x": 10.5,
        "anchor_y": 20.25,
    }


@pytest.mark.parametrize(
    ("t", "seconds", "ms"),
    [
        (T0, int(T0), 0),
        (T0 + 0.9996, int(T0) + 1, 0),  # rounds up into the next second
        (T0 + 59.001, int(T0) + 59, 1),
    ],
)
def test_time_split_into_seconds_and_milliseconds(t: float, seconds: int, ms: int) -> None:
    row = convert(kind_of("crossing"), to_arrow(Crossing, [crossing(event_time=t)])).to_pylist()[0]
    assert (row["event_time"], row["event_ms"]) == (seconds, ms)


def test_visit_keeps_exact_dwell() -> None:
    v = ZoneVisit("cam", "z", 1, T0 + 0.1, T0 + 12.35, "person", 1, 124)
    row = convert(kind_of("zone_visit"), to_arrow(ZoneVisit, [v])).to_pylist()[0]
    assert row["dwell_s"] == pytest.approx(12.25)
    assert (row["entered_at"], row["entered_ms"], row["exited_at"], row["exited_ms"]) == (
        int(T0),
        100,
        int(T0) + 12,
        350,
    )


def test_window_row_has_its_end() -> None:
    w = WindowRow("cam", "line", "car", "out", 900, T0 + 900, 7)
    row = convert(kind_of("window_row"), to_arrow(WindowRow, [w])).to_pylist()[0]
    assert (row["window_start"], row["window_end"], row["count"]) == (
        int(T0) + 900,
        int(T0) + 1800,
        7,
    )


def test_zone_sample_classes_are_nested_columns() -> None:
    s = ZoneSample("cam", "z", 5, T0, 3, ("person", "car"), (2, 1))
    row = convert(kind_of("zone_sample"), to_arrow(ZoneSample, [s])).to_pylist()[0]
    assert (row["classes.name"], row["classes.count"]) == (["person", "car"], [2, 1])


def test_gap_row_values() -> None:
    g = Gap("cam", T0 + 10.25, T0 + 72.5, "stream reconnect", -1)
    row = convert(kind_of("gap"), to_arrow(Gap, [g])).to_pylist()[0]
    assert row == {
        "event_id": g.event_id,
        "camera_id": "cam",
        "gap_from": int(T0) + 10,
        "gap_from_ms": 250,
        "gap_to": int(T0) + 72,
        "gap_to_ms": 500,
        "duration_s": 62.25,
        "reason": "stream reconnect",
        "frames_lost": -1,  # unknown
    }
    # Identity is (camera, gap_from): the same gap reported again with a
    # later end or a count of lost frames is the same row.
    again = Gap("cam", T0 + 10.25, T0 + 80.0, "camera restart", 120)
    assert again.event_id == g.event_id
    assert Gap("cam", T0 + 10.5, T0 + 72.5, "stream reconnect", -1).event_id != g.event_id
    k = kind_of("gap")
    assert k.times(to_arrow(Gap, [g])) == [T0 + 10.25]
    assert k.times(convert(k, to_arrow(Gap, [g]))) == [pytest.approx(T0 + 10.25)]


@pytest.mark.parametrize(
    ("kind", "table"),
    [
        # a gap that ends before it starts
        ("gap", to_arrow(Gap, [Gap("c", T0 + 5, T0 + 4, "camera restart", -1)])),
        # frames lost is a count, or -1 for unknown
        ("gap", to_arrow(Gap, [Gap("c", T0, T0 + 4, "camera restart", -2)])),
        # a gap before 1970 does not fit DateTime
        ("gap", to_arrow(Gap, [Gap("c", -5.0, T0, "camera restart", -1)])),
        # a negative track id does not fit UInt64: refused, never wrapped
        ("crossing", to_arrow(Crossing, [crossing(track_id=-1)])),
        # no time, no row
        ("crossing", to_arrow(Crossing, [crossing(event_time=math.nan)])),
        # before 1970 does not fit DateTime
        ("crossing", to_arrow(Crossing, [crossing(event_time=-5.0)])),
        # after 2106 does not fit DateTime either
        ("crossing", to_arrow(Crossing, [crossing(event_time=2.0**33)])),
        # a window must start on a whole second
        ("window_row", to_arrow(WindowRow, [WindowRow("c", "l", "p", "in", 10, T0 + 0.5, 1)])),
        # a negative count
        ("window_row", to_arrow(WindowRow, [WindowRow("c", "l", "p", "in", 10, T0, -1)])),
    ],
)
def test_values_that_do_not_fit_are_refused(kind: str, table: pa.Table) -> None:
    with pytest.raises(RowsInvalid, match=kind):
        convert(kind_of(kind), table)


def test_every_kind_converts_to_its_tables_columns() -> None:
    samples = {
        "crossing": to_arrow(Crossing, [crossing()]),
        "zone_sample": to_arrow(ZoneSample, [ZoneSample("c", "z", 1, T0, 0, (), ())]),
        "window_row": to_arrow(WindowRow, [WindowRow("c", "l", "p", "in", 10, T0, 1)]),
        "dead_letter": to_arrow(DeadLetter, [DeadLetter("s", "late", "d", T0, "crossing", 5)]),
        "gap": to_arrow(Gap, [Gap("c", T0, T0 + 3, "camera restart", 30)]),
        **camera_tables([CameraConfig(id="c", source="x.mp4")], 1),
    }
    for name, table in samples.items():
        kind = kind_of(name)
        rows = convert(kind, table)
        written = {c.name for c in kind.table.columns if c.default is None}
        flattened = {n.split(".")[0] for n in rows.column_names}
        assert flattened == written, name
    assert set(KINDS) >= set(samples) | {"zone_transition", "zone_visit"}


def test_identity_digest_is_deterministic_and_content_based() -> None:
    k = kind_of("crossing")
    a = convert(k, to_arrow(Crossing, [crossing(track_id=i) for i in range(5)]))
    b = convert(k, to_arrow(Crossing, [crossing(track_id=i) for i in range(5)]))
    assert batch_digest(k, a) == batch_digest(k, b)
    assert batch_digest(k, a) != batch_digest(k, a.slice(1))
    assert batch_digest(k, a) != batch_digest(kind_of("zone_transition"), a)


def test_ids_and_times_in_both_shapes() -> None:
    k = kind_of("crossing")
    source = to_arrow(Crossing, [crossing()])
    rows = convert(k, source)
    assert k.ids(source) == k.ids(rows) == [crossing().event_id]
    assert k.times(source) == [T0 + 1.2346]
    assert k.times(rows) == [pytest.approx(T0 + 1.235)]


def test_camera_rows_mask_source_passwords_and_carry_lines() -> None:
    cam = CameraConfig(
        id="gate",
        source="rtsp://admin:hunter2@10.1.1.1/live",
        tags={"floor": "1"},
        lines=[{"id": "door", "points": [[0, 0], [10, 0]]}],
    )
    tables = camera_tables([cam], version=7, removed=["old"])
    rows = tables["camera"].to_pylist()
    assert rows[0]["source"] == "rtsp://admin:***@10.1.1.1/live"
    assert (rows[0]["tags.key"], rows[0]["tags.value"]) == (["floor"], ["1"])
    assert [(r["camera_id"], r["removed"]) for r in rows] == [("gate", 0), ("old", 1)]
    assert tables["camera_counter"].to_pylist()[0]["points_x"] == [0.0, 10.0]


def test_spill_store_writes_once_and_lists(tmp_path: Path) -> None:
    store = SpillStore(f"file://{tmp_path}/s", namespace="warehouse/t")
    k = kind_of("crossing")
    rows = convert(k, to_arrow(Crossing, [crossing()]))
    f1 = store.put_pending("crossing", rows, batch_digest(k, rows))
    f2 = store.put_pending("crossing", rows, batch_digest(k, rows))
    assert f1 == f2 and store.pending() == [f1]
    got = store.read(f1)
    assert got is not None and got.rows.equals(rows) and got.shape == "warehouse"
    store.remove(f1)
    store.remove(f1)  # gone already: fine
    assert store.pending() == []
    # A write cut short by a crash is skipped, left in place, never fatal.
    (tmp_path / "s/warehouse/t/pending/crossing").mkdir(parents=True, exist_ok=True)
    (tmp_path / "s/warehouse/t/pending/crossing/broken.arrow").write_bytes(b"ARROW1\x00")
    broken = store.pending()
    assert [f.digest for f in broken] == ["broken"]
    assert store.read(broken[0]) is None and store.pending() == []


def test_relative_file_roots_resolve_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _fs, base = open_root("file://./var/store")
    assert base == str(tmp_path / "var/store")
