"""The sink's logic (`WarehouseWriter`) on the embedded engine, with time
moved by hand.

Outages are injected in front of the real engine by `Outage`, which
refuses inserts the way an unreachable server does (or, for a lost
acknowledgement, commits and then reports failure). Every row still
lands in a real chDB database and every check reads it back. The real
server outage is in tests/integration/test_sink.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pytest

from camcount.events import Direction, ZoneSample, to_arrow
from camcount.stream.spill import SpillStore
from camcount.warehouse import (
    Features,
    RetryPolicy,
    Warehouse,
    WarehouseUnavailable,
    WarehouseWriter,
    WriterSettings,
    connect,
)
from camcount.warehouse.urls import WarehouseUrl
from tests.core.test_warehouse_chdb import T0, answers, make_events


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Outage:
    """A real backend behind a switch: ``down`` refuses every insert;
    ``lose_acks`` commits the insert, then reports the connection lost."""

    def __init__(self, backend: object) -> None:
        self.inner = backend
        self.down = False
        self.lose_acks = 0
        self.attempts = 0

    @property
    def url(self) -> WarehouseUrl:
        return self.inner.url  # type: ignore[attr-defined,no-any-return]

    @property
    def server_version(self) -> str:
        return self.inner.server_version  # type: ignore[attr-defined,no-any-return]

    @property
    def features(self) -> Features:
        return self.inner.features  # type: ignore[attr-defined,no-any-return]

    def execute(self, sql: str) -> None:
        self.inner.execute(sql)  # type: ignore[attr-defined]

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table:
        return self.inner.query(sql, params)  # type: ignore[attr-defined,no-any-return]

    def insert(self, table: str, rows: pa.Table, dedup_token: str | None = None) -> None:
        self.attempts += 1
        if self.down:
            raise WarehouseUnavailable(str(self.url), "connection refused (injected)")
        self.inner.insert(table, rows, None)  # no token: duplicates must be read away
        if self.lose_acks:
            self.lose_acks -= 1
            raise WarehouseUnavailable(str(self.url), "connection reset after insert (injected)")

    def close(self) -> None:
        pass


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    warehouse = connect(f"chdb://{tmp_path}/chdb")
    yield warehouse
    warehouse.close()


_OPEN: list[WarehouseWriter] = []


@pytest.fixture(autouse=True)
def _close_writers() -> Iterator[None]:
    yield
    while _OPEN:
        w = _OPEN.pop()
        if w._pool is not None:
            w._pool.shutdown(wait=True)


def writer_for(
    wh: Warehouse, store: Path, clock: Clock, **settings: object
) -> tuple[WarehouseWriter, Outage]:
    backend = Outage(wh.backend)
    values: dict[str, object] = {
        "batch_rows": 100,
        "flush_interval_s": 2.0,
        "buffer_max_rows": 1000,
        "retry": RetryPolicy(base_s=1.0, max_s=8.0),
    }
    values.update(settings)
    w = WarehouseWriter(backend, SpillStore(f"file://{store}"), WriterSettings(**values), clock)  # type: ignore[arg-type]
    _OPEN.append(w)
    return w, backend


def count(wh: Warehouse, table: str, final: bool = True) -> int:
    sql = f"SELECT count() AS n FROM {table}{' FINAL' if final else ''}"
    return int(wh.sql(sql).column(0)[0].as_py())


def reference_answers(tmp_path: Path, tables: dict[str, pa.Table], wh: Warehouse) -> dict:
    """Answers of a clean load of ``tables``, computed in a second database
    after ``wh`` is closed (a process opens one chDB path at a time)."""
    wh.close()
    clean = connect(f"chdb://{tmp_path}/clean")
    try:
        for kind, t in tables.items():
            clean.insert(kind, t)
        return answers(clean.backend)
    finally:
        clean.close()


def test_batches_by_size_then_by_time(wh: Warehouse, tmp_path: Path) -> None:
    clock = Clock()
    w, backend = writer_for(wh, tmp_path / "store", clock)
    t = make_events()["crossing"].slice(0, 250)
    w.write("crossing", t)
    assert count(wh, "crossings") == 200  # two full batches of 100
    assert w.stats()["pending_rows"] == 50
    clock.now += 1.9
    w.tick()
    assert count(wh, "crossings") == 200  # not yet: younger than flush_interval_s
    assert w.stats()["lag_s"] == pytest.approx(1.9)
    clock.now += 0.2
    w.tick()
    assert count(wh, "crossings") == 250
    assert w.stats()["rows_written"] == {"crossing": 250}
    assert backend.attempts == 3


@pytest.mark.parametrize("inflight", [1, 2])
def test_flush_makes_everything_durable_and_says_how_much(
    wh: Warehouse, tmp_path: Path, inflight: int
) -> None:
    w, _ = writer_for(wh, tmp_path / "store", Clock(), max_inflight=inflight)
    tables = make_events()
    for kind, t in tables.items():
        w.write(kind, t.slice(0, 30))
    assert w.flush() == sum(min(30, t.num_rows) for t in tables.values())
    assert w.flush() == 0
    assert count(wh, "crossings") == 30 and count(wh, "window_counts") == 30


@pytest.mark.parametrize("inflight", [1, 2])
def test_outage_buffers_spills_and_replays_every_row_once(
    wh: Warehouse, tmp_path: Path, inflight: int
) -> None:
    clock = Clock()
    w, backend = writer_for(
        wh, tmp_path / "store", clock, buffer_max_rows=300, max_inflight=inflight
    )
    tables = make_events(seed=5)
    crossings = tables["crossing"]
    w.write("crossing", crossings.slice(0, 100))
    w.flush()
    backend.down = True
    for start in range(100, 700, 100):
        clock.now += 0.1
        w.write("crossing", crossings.slice(start, 100))
    while w.stats()["inflight_rows"]:  # an insert thread may still be failing
        w.tick()
    s = w.stats()
    assert not s["warehouse_up"]
    assert s["buffer_rows"] <= 300 and s["spilled_rows"] >= 300
    assert s["buffer_rows"] + s["spilled_rows"] == 600
    assert len(w.spill.pending()) >= 3

    # Backoff: no attempt before the retry is due.
    attempts = backend.attempts
    w.tick()
    assert backend.attempts == attempts

    backend.down = False
    clock.now += 10
    for _ in range(20):
        w.tick()
        clock.now += 0.5
    s = w.stats()
    assert s["warehouse_up"] and s["buffer_rows"] == 0 and s["spilled_rows"] == 0
    assert s["replayed_rows_total"] >= 300
    assert w.spill.pending() == []
    assert count(wh, "crossings") == 700
    assert count(wh, "crossings", final=False) == 700  # nothing was sent twice here


def test_flush_during_an_outage_spills_and_a_new_writer_replays(
    wh: Warehouse, tmp_path: Path
) -> None:
    clock = Clock()
    tables = make_events(seed=6)
    w, backend = writer_for(wh, tmp_path / "store", clock)
    backend.down = True
    for kind, t in tables.items():
        w.write(kind, t)
    n = sum(t.num_rows for t in tables.values())
    spilled_before = w.stats()["spilled_rows"]  # the buffer overflowed already
    assert 0 < spilled_before < n
    assert w.flush() == n - spilled_before  # the rest is made durable now
    assert w.stats()["buffer_rows"] == 0 and w.stats()["spilled_rows"] == n
    assert count(wh, "crossings") == 0

    # The process dies; a new one starts on the same store with the
    # warehouse back, and replays what was spilled.
    w2, _ = writer_for(wh, tmp_path / "store", clock)
    assert w2.stats()["spilled_rows"] == n
    assert w2.replay_spilled() == n
    assert w2.spill.pending() == []
    assert answers(wh.backend) == reference_answers(tmp_path, tables, wh)


@pytest.mark.parametrize("inflight", [1, 2])
def test_a_lost_acknowledgement_never_doubles_a_count(
    wh: Warehouse, tmp_path: Path, inflight: int
) -> None:
    clock = Clock()
    tables = make_events(seed=7)
    w, backend = writer_for(wh, tmp_path / "store", clock, batch_rows=500, max_inflight=inflight)
    backend.lose_acks = 3  # three inserts commit, then "fail"
    for kind, t in tables.items():
        w.write(kind, t)
    clock.now += 60
    w.tick()
    w.flush()
    while w.stats()["spilled_rows"]:
        clock.now += 60
        w.replay_spilled()
    assert count(wh, "crossings", final=False) > count(wh, "crossings")  # re-sent rows exist
    assert answers(wh.backend) == reference_answers(tmp_path, tables, wh)


@pytest.mark.parametrize("inflight", [1, 2])
def test_a_row_the_engine_refuses_becomes_a_dead_letter(
    wh: Warehouse, tmp_path: Path, inflight: int
) -> None:
    w, _ = writer_for(wh, tmp_path / "store", Clock(), max_inflight=inflight)
    good = [ZoneSample("cam-a", "zone-1", i, T0 + i, 1, ("person",), (1,)) for i in range(40)]
    # Nested arrays of different lengths: refused by the engine itself.
    bad = ZoneSample("cam-a", "zone-1", 999, T0 + 999, 2, ("person", "car"), (2,))
    w.write("zone_sample", to_arrow(ZoneSample, [*good[:20], bad, *good[20:]]))
    w.flush()
    assert count(wh, "zone_samples") == 40
    letters = wh.query(
        "dead_letters", source="", start=0, end=int(T0) + 86400, limit=10
    ).to_pylist()
    assert len(letters) == 1
    d = letters[0]
    assert (d["reason"], d["payload_kind"], d["payload_id"]) == (
        "rejected",
        "zone_sample",
        bad.event_id,
    )
    assert "different array sizes" in d["detail"]  # the engine's own message
    assert d["event_time"].timestamp() == T0 + 999
    stored = [w.spill.read(f) for f in w.spill.dead()]
    assert [s.rows.column("event_id").to_pylist() for s in stored if s] == [[bad.event_id]]
    assert w.stats()["dead_letter_rows_total"] == 1


def test_a_row_that_cannot_be_converted_becomes_a_dead_letter(
    wh: Warehouse, tmp_path: Path
) -> None:
    from camcount.events import Crossing

    w, _ = writer_for(wh, tmp_path / "store", Clock())
    ok = [Crossing("cam-a", "l", i, i, T0 + i, "person", Direction.IN, 0.9, 1, 1) for i in range(9)]
    bad = Crossing("cam-a", "l", -5, 3, T0 + 3, "person", Direction.IN, 0.9, 1, 1)
    w.write("crossing", to_arrow(Crossing, [*ok, bad]))
    w.flush()
    assert count(wh, "crossings") == 9
    letters = wh.query("dead_letters", source="warehouse", start=0, end=int(T0) + 10, limit=10)
    assert letters.column("reason").to_pylist() == ["invalid"]
    assert (
        "track_id" in letters.column("detail")[0].as_py()
        or "-5" in letters.column("detail")[0].as_py()
    )
    assert [s.shape for s in map(w.spill.read, w.spill.dead()) if s] == ["event"]


def test_unknown_kinds_and_wrong_columns_are_caller_errors(wh: Warehouse, tmp_path: Path) -> None:
    from camcount.warehouse.rows import RowsInvalid

    w, _ = writer_for(wh, tmp_path / "store", Clock())
    with pytest.raises(RowsInvalid, match="unknown kind"):
        w.write("crossings", make_events()["crossing"])
    with pytest.raises(RowsInvalid, match="lacks columns"):
        w.write("crossing", pa.table({"event_id": [1]}))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        WriterSettings(batch_rows=0)
    assert RetryPolicy(base_s=0.5, max_s=4).delay_s(10) == 4
    assert [RetryPolicy(base_s=0.5).delay_s(i) for i in range(3)] == [0.5, 1.0, 2.0]


def test_dead_letters_replay_once_the_cause_is_fixed(wh: Warehouse, tmp_path: Path) -> None:
    w, _ = writer_for(wh, tmp_path / "store", Clock())
    samples = [ZoneSample("cam-a", "zone-1", i, T0 + i, 1, ("person",), (1,)) for i in range(10)]
    bad = ZoneSample("cam-a", "zone-1", 99, T0 + 99, 2, ("person", "car"), (2,))
    w.write("zone_sample", to_arrow(ZoneSample, [*samples, bad]))
    w.flush()
    assert count(wh, "zone_samples") == 10 and len(w.spill.dead()) == 1
    # Still refused: the file stays, nothing is lost.
    assert w.replay_dead_letters() == 0 and len(w.spill.dead()) == 1
    # The cause is fixed: here an operator corrects the payload in place.
    dead = w.spill.read(w.spill.dead()[0])
    assert dead is not None
    fixed = dead.rows.drop_columns(["classes.count"]).append_column(
        "classes.count", pa.array([[2, 0]], pa.list_(pa.uint32()))
    )
    w.spill.remove(dead.file)
    w.spill.put_dead("zone_sample", fixed, dead.file.digest, "warehouse", "rejected", "fixed")
    assert w.replay_dead_letters(reason="rejected") == 1
    assert w.spill.dead() == [] and count(wh, "zone_samples") == 11
