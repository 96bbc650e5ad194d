"""The archive: its layout, reading it back (pyarrow and chDB), its
exactly-once rules, and the warehouse rebuilt from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from camcount.cli import main
from camcount.outputs.archive import (
    ArchiveSink,
    dataset,
    kinds_in,
    list_files,
    open_archive,
    read_kind,
)
from camcount.outputs.errors import ArchiveError
from camcount.outputs.port import END_OF_INPUT
from camcount.outputs.rebuild import rebuild_from_archive
from camcount.warehouse import camera_tables, connect
from tests.core.test_warehouse_chdb import (
    CAMERAS,
    T0,
    answers,
    camera_config,
    make_events,
    with_dead_letter,
)


def by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("event_id")


def halves(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    n = table.num_rows // 2
    return table.slice(0, n), table.slice(n)


def relative_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_files_lie_by_kind_date_and_camera_named_by_checkpoint_and_stream(
    tmp_path: Path,
) -> None:
    tables = make_events(seed=5, hours=1, per_hour=20)
    sink = ArchiveSink(f"file://{tmp_path}", "s0", "run1")
    sink.write("crossing", tables["crossing"])
    ack = sink.flush(3)
    assert ack.delivered == tables["crossing"].num_rows
    day = "2026-01-01"  # T0
    assert relative_files(tmp_path) == [
        f"kind=crossing/date={day}/camera_id={cam}/part-00000003-s0-run1.parquet" for cam in CAMERAS
    ]


def test_every_kind_reads_back_equal_with_pyarrow(tmp_path: Path) -> None:
    tables = with_dead_letter(make_events(seed=6, hours=2, per_hour=30))
    tables.update(camera_tables([camera_config(c) for c in CAMERAS], version=int(T0 * 1000)))
    uri = f"file://{tmp_path}/archive"
    sink = ArchiveSink(uri, "s1", "run1")
    for n, half in enumerate((0, 1), start=1):
        for kind, table in tables.items():
            sink.write(kind, halves(table)[half])
        sink.flush(n)
    assert kinds_in(uri) == sorted(tables)
    for kind, table in tables.items():
        back = read_kind(uri, kind).select(table.schema.names).cast(table.schema)
        key = "event_id" if "event_id" in table.column_names else table.schema.names[0]
        assert back.sort_by(key).equals(table.sort_by(key)), kind
    # The day is a column too, for pruning by date.
    days = dataset(uri, "crossing").to_table(columns=["date"]).column("date")
    assert set(days.to_pylist()) == {"2026-01-01"}


def test_a_day_boundary_splits_files_by_the_event_s_utc_day(tmp_path: Path) -> None:
    table = make_events(seed=7, hours=1, per_hour=10)["crossing"]
    late_evening = table.set_column(
        table.schema.get_field_index("event_time"),
        "event_time",
        pc.subtract(table.column("event_time"), pa.scalar(1800.0)),
    )
    sink = ArchiveSink(f"file://{tmp_path}", "s0", "run1")
    sink.write("crossing", late_evening)
    sink.flush(1)
    days = {p.split("/")[1] for p in relative_files(tmp_path)}
    assert days == {"date=2025-12-31", "date=2026-01-01"}
    back = read_kind(f"file://{tmp_path}", "crossing")
    assert back.num_rows == table.num_rows


def test_chdb_reads_the_archive_as_written(tmp_path: Path) -> None:
    table = make_events(seed=8, hours=1, per_hour=40)["crossing"]
    uri = f"file://{tmp_path}/archive"
    sink = ArchiveSink(uri, "s0", "run1")
    sink.write("crossing", table)
    sink.flush(1)
    with connect(f"chdb://{tmp_path}/chdb") as wh:
        got = wh.sql(
            "SELECT event_id, camera_id, track_id, event_time, direction "
            f"FROM file('{tmp_path}/archive/kind=crossing/*/*/*.parquet', Parquet) "
            "ORDER BY event_id"
        )
    want = by_id(table).select(["event_id", "camera_id", "track_id", "event_time", "direction"])
    assert got.to_pylist() == want.to_pylist()


def test_a_flush_written_again_replaces_its_files(tmp_path: Path) -> None:
    table = make_events(seed=9, hours=1, per_hour=10)["crossing"]
    for _ in range(2):  # a replay after a restore rewrites the same names
        sink = ArchiveSink(f"file://{tmp_path}", "s0", "run1")
        sink.write("crossing", table)
        sink.flush(4)
    assert read_kind(f"file://{tmp_path}", "crossing").num_rows == table.num_rows
    assert not [p for p in relative_files(tmp_path) if Path(p).name.startswith(".")]


def test_rewind_takes_back_this_stream_s_files_after_the_checkpoint(tmp_path: Path) -> None:
    uri = f"file://{tmp_path}"
    crossings = make_events(seed=10, hours=1, per_hour=12)["crossing"]
    parts = [crossings.slice(i * 4, 4) for i in range(6)]
    mine = ArchiveSink(uri, "s0", "run1")
    other_shard = ArchiveSink(uri, "s1", "run1")
    other_run = ArchiveSink(uri, "s0", "run0")
    for n, part in enumerate(parts[:3], start=1):
        mine.write("crossing", part)
        mine.flush(n)
    other_shard.write("crossing", parts[3])
    other_shard.flush(3)
    other_run.write("crossing", parts[4])
    other_run.flush(3)
    mine.write("crossing", parts[5])  # not flushed yet
    # Rolled back to checkpoint 1: files 2 and 3 of this stream and run go,
    # with the rows not yet flushed; everyone else's stay.
    after = [f for f in mine.files() if (f.stream, f.run) == ("s0", "run1") and f.checkpoint_id > 1]
    assert after and mine.rewind(1) == len(after)
    mine.flush(5)
    kept = {(f.stream, f.run, f.checkpoint_id) for f in mine.files()}
    assert kept == {("s0", "run1", 1), ("s1", "run1", 3), ("s0", "run0", 3)}
    back = read_kind(uri, "crossing")
    expected = pa.concat_tables([parts[0], parts[3], parts[4]])
    assert by_id(back.select(expected.schema.names)).equals(by_id(expected))


def test_the_end_of_input_flush_follows_the_last_checkpoint(tmp_path: Path) -> None:
    table = make_events(seed=11, hours=1, per_hour=4)["crossing"]
    sink = ArchiveSink(f"file://{tmp_path}", "s2", "run1")
    sink.write("crossing", table.slice(0, 2))
    sink.flush(7)
    sink.write("crossing", table.slice(2, 1))
    sink.flush(END_OF_INPUT)
    sink.write("crossing", table.slice(3))
    sink.flush(END_OF_INPUT)  # closing again after an interruption: its own file
    with pytest.raises(ArchiveError, match="flushed once, in order"):
        sink.flush(7)
    files = list_files(*open_archive(f"file://{tmp_path}"), f"file://{tmp_path}")
    assert {(f.checkpoint_id, f.end) for f in files} == {(7, 0), (8, 1), (8, 2)}
    assert read_kind(f"file://{tmp_path}", "crossing").num_rows == table.num_rows
    assert sink.rewind(7) == len([f for f in files if f.end])


def test_a_failed_flush_keeps_its_rows_for_the_next(tmp_path: Path) -> None:
    blocker = tmp_path / "kind=crossing"
    blocker.write_text("a file where a folder must go")
    table = make_events(seed=12, hours=1, per_hour=4)["crossing"]
    sink = ArchiveSink(f"file://{tmp_path}", "s0", "run1")
    sink.write("crossing", table)
    with pytest.raises(ArchiveError, match="archive file://"):
        sink.flush(1)
    assert sink.metrics()["pending"] == table.num_rows
    os.remove(blocker)
    assert sink.flush(1).delivered == table.num_rows


@pytest.mark.parametrize(
    ("stream", "run"),
    [
        ("s-0", "run1"),  # a dash would make the file name ambiguous
        ("s0", ""),  # every file names its run
    ],
)
def test_names_that_would_break_the_layout_are_refused(
    tmp_path: Path, stream: str, run: str
) -> None:
    with pytest.raises(ArchiveError, match="letters and digits"):
        ArchiveSink(f"file://{tmp_path}", stream, run)


# ------------------------------------------------------------ rebuild


def test_rebuild_gives_every_documented_query_the_original_answer(tmp_path: Path) -> None:
    tables = with_dead_letter(make_events(seed=13, hours=2, per_hour=60))
    tables.update(camera_tables([camera_config(c) for c in CAMERAS], version=int(T0 * 1000)))
    uri = f"file://{tmp_path}/archive"
    shards = [ArchiveSink(uri, f"s{i}", "run1") for i in range(2)]
    with connect(f"chdb://{tmp_path}/original") as original:
        for kind, table in tables.items():
            for sink, part in zip(shards, halves(table), strict=True):
                original.insert(kind, part)
                sink.write(kind, part)
        for n, sink in enumerate(shards, start=1):
            sink.flush(n)
        want = answers(original.backend)
    seen: list[tuple[int, int]] = []
    with connect(f"chdb://{tmp_path}/rebuilt") as rebuilt:
        report = rebuild_from_archive(uri, rebuilt, lambda done, total: seen.append((done, total)))
        got = answers(rebuilt.backend)
        again = rebuild_from_archive(uri, rebuilt)  # twice doubles nothing
        assert answers(rebuilt.backend) == got
    assert got == want
    assert report.total == again.total == sum(t.num_rows for t in tables.values())
    assert seen[0] == (0, report.total) and seen[-1] == (report.total, report.total)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "no archive URI given"),  # nothing given
        ("file:///nonexistent/archive", "holds no archive files"),  # a wrong path
        ("nosuchscheme://bucket/archive", "cannot open"),  # a scheme pyarrow has not
    ],
)
def test_a_bad_archive_uri_is_one_clear_error(tmp_path: Path, uri: str, message: str) -> None:
    with connect(f"chdb://{tmp_path}/chdb") as wh, pytest.raises(ArchiveError, match=message):
        rebuild_from_archive(uri, wh)


def test_the_rebuild_command_loads_the_archive_and_reports_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = make_events(seed=14, hours=1, per_hour=10)["crossing"]
    sink = ArchiveSink(f"file://{tmp_path}/archive", "s0", "run1")
    sink.write("crossing", table)
    sink.flush(1)
    config = tmp_path / "camcount.yaml"
    config.write_text(f"warehouse:\n  url: chdb://{tmp_path}/chdb\n")
    archive = f"file://{tmp_path}/archive"
    code = main(["warehouse", "rebuild", str(config), "--from-archive", archive, "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["rows"] == {"crossing": table.num_rows}
    with connect(f"chdb://{tmp_path}/chdb") as wh:
        n = wh.sql("SELECT count() AS n FROM crossings FINAL").column("n")[0].as_py()
    assert n == table.num_rows


def test_the_rebuild_command_ends_a_bad_uri_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "camcount.yaml"
    config.write_text(f"warehouse:\n  url: chdb://{tmp_path}/chdb\n")
    code = main(["warehouse", "rebuild", str(config), "--from-archive", f"{tmp_path}/nothing"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: archive") and "holds no archive files" in err
    assert "\n" not in err and "Traceback" not in err
