"""The warehouse on the embedded engine (chDB): documented queries on a real
count, idempotence, camera versions, and the one-process lock.

`make_events` and `answers` are shared with the server tests, which
check that the same rows give the same answers there.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from camcount.config import CameraConfig, load_config
from camcount.detectors import build_detector
from camcount.events import (
    Crossing,
    Direction,
    Gap,
    WindowRow,
    ZoneSample,
    ZoneTransition,
    ZoneVisit,
)
from camcount.reference import CountResult, count_video
from camcount.scenes.synthetic import generate_scene, write_scene
from camcount.warehouse import (
    Backend,
    Warehouse,
    WarehouseLocked,
    camera_tables,
    connect,
    tables_by_kind,
)
from camcount.warehouse import queries as q
from camcount.warehouse.rows import convert, kind_of

T0 = 1767225600.0  # 2026-01-01T00:00:00Z
CAMERAS = ("cam-a", "cam-b")
DOC = Path(__file__).resolve().parents[2] / "docs" / "warehouse.md"
DOC_PARAMS: dict[str, object] = {
    "start": int(T0),
    "end": int(T0) + 86400,
    "camera_id": "cam-a",
    "counter_id": "line-1",
    "tag": "entrance",
}


def make_events(seed: int = 1, hours: int = 3, per_hour: int = 120) -> dict[str, pa.Table]:
    """Deterministic events of every kind over ``hours`` for two cameras,
    with window rows computed from the crossings (60 s, 900 s and 3600 s),
    and a gap per camera and hour."""
    rng = np.random.default_rng(seed)
    crossings: list[Crossing] = []
    transitions: list[ZoneTransition] = []
    samples: list[ZoneSample] = []
    visits: list[ZoneVisit] = []
    for cam in CAMERAS:
        n = hours * per_hour
        times = np.sort(T0 + rng.uniform(0, hours * 3600, n))
        for i, t in enumerate(times):
            crossings.append(
                Crossing(
                    cam,
                    "line-1" if i % 4 else "line-2",
                    track_id=i,
                    frame_index=int((t - T0) * 10),
                    event_time=float(round(t, 3)),
                    class_name=("person", "car", "bicycle")[i % 3],
                    direction=Direction.IN if rng.random() < 0.6 else Direction.OUT,
                    confidence=float(rng.uniform(0.3, 1.0)),
                    anchor_x=float(rng.uniform(0, 640)),
                    anchor_y=float(rng.uniform(0, 360)),
                )
            )
        for s in range(0, hours * 3600, 30):
            occ = int(rng.integers(0, 6))
            samples.append(
                ZoneSample(cam, "zone-1", s * 10, T0 + s, occ, ("person", "car"), (occ, 0))
            )
        for v in range(hours * 20):
            start = T0 + float(rng.uniform(0, hours * 3600 - 600))
            dwell = float(rng.exponential(60.0))
            visits.append(
                ZoneVisit(
                    cam,
                    "zone-1",
                    10_000 + v,
                    round(start, 3),
                    round(start + dwell, 3),
                    "person",
                    int((start - T0) * 10),
                    int((start + dwell - T0) * 10),
                )
            )
            transitions.append(
                ZoneTransition(
                    cam,
                    "zone-1",
                    10_000 + v,
                    int((start - T0) * 10),
                    round(start, 3),
                    "person",
                    Direction.ENTER,
                )
            )
    windows: list[WindowRow] = []
    for size in (60, 900, 3600):
        counts = Counter(
            (
                c.camera_id,
                c.counter_id,
                c.class_name,
                c.direction.value,
                T0 + ((c.event_time - T0) // size) * size,
            )
            for c in crossings
        )
        windows += [
            WindowRow(cam, counter, cls, d, size, start, n)
            for (cam, counter, cls, d, start), n in sorted(counts.items())
        ]
    gap_rng = np.random.default_rng(seed + 1000)  # the other kinds stay as they were
    reasons = ("camera restart", "stream reconnect", "restore from checkpoint")
    gaps = [
        Gap(
            cam,
            (start := round(T0 + h * 3600 + float(gap_rng.uniform(60, 3000)), 3)),
            round(start + float(gap_rng.uniform(0.5, 300)), 3),
            reasons[(h + i) % 3],
            -1 if (h + i) % 2 else int(gap_rng.integers(1, 3000)),
        )
        for i, cam in enumerate(CAMERAS)
        for h in range(hours)
    ]
    return tables_by_kind([*crossings, *transitions, *samples, *visits, *windows, *gaps])


def answers(backend: Backend, start: float = T0, end: float = T0 + 86400) -> dict[str, object]:
    """Every documented query, for every camera: what analysts would see."""
    out: dict[str, object] = {}
    for cam in CAMERAS:
        out[f"{cam}/window_counts/60"] = q.window_counts(backend, cam, start, end, 60).to_pylist()
        out[f"{cam}/window_counts/3600"] = q.window_counts(
            backend, cam, start, end, 3600
        ).to_pylist()
        out[f"{cam}/hourly"] = q.hourly_counts(backend, cam, start, end).to_pylist()
        out[f"{cam}/daily"] = q.daily_counts(backend, cam, start, end, window_size_s=60).to_pylist()
        out[f"{cam}/peak"] = q.peak_hours(backend, cam, start, end).to_pylist()
        out[f"{cam}/occupancy"] = q.occupancy(backend, cam, start, end, bucket_s=900).to_pylist()
        out[f"{cam}/dwell"] = _rounded(q.dwell_stats(backend, cam, start, end).to_pylist())
        out[f"{cam}/dwell_hist"] = q.dwell_histogram(
            backend, cam, start, end, bucket_s=30
        ).to_pylist()
        out[f"{cam}/crossings"] = q.crossings(backend, cam, start, end).to_pylist()
    out["cameras"] = q.cameras(backend).to_pylist()
    out["camera_counters"] = q.camera_counters(backend).to_pylist()
    out["seen"] = [q.camera_seen(backend, cam) for cam in ("cam-a", "cam-b", "nope")]
    out["dead_letters"] = q.dead_letters(backend, 0, end).to_pylist()
    out["gaps"] = q.gaps(backend, start, end).to_pylist()
    out["cam-a/gaps"] = q.gaps(backend, start, end, camera_id="cam-a").to_pylist()
    return out


def _rounded(rows: list[dict]) -> list[dict]:
    """Float sums may differ in the last bits between engines."""
    return [{k: round(v, 9) if isinstance(v, float) else v for k, v in r.items()} for r in rows]


def doc_examples() -> list[str]:
    """The SQL examples of docs/warehouse.md, as written there."""
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(), re.S)


def run_doc_examples(wh: Warehouse) -> list[list[dict]]:
    from camcount.warehouse.binding import placeholders

    out = []
    for sql in doc_examples():
        params = {name: DOC_PARAMS[name] for name in placeholders(sql)}
        out.append(_rounded(wh.sql(sql, params).to_pylist()))
    return out


def with_dead_letter(tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    from camcount.events import DeadLetter

    letter = DeadLetter("aggregator-0", "late", "after its window closed", T0 + 5, "crossing", 7)
    return {**tables, "dead_letter": tables_by_kind([letter])["dead_letter"]}


def load(wh: Warehouse, tables: dict[str, pa.Table]) -> None:
    for kind, t in tables.items():
        wh.insert(kind, t)


def camera_config(cam: str, lines: int = 2) -> CameraConfig:
    return CameraConfig(
        id=cam,
        source=f"rtsp://viewer:cam-secret@10.0.0.{len(cam)}/stream",
        site="north",
        tags={"entrance": "main" if cam == "cam-a" else "side", "floor": "0"},
        lines=[
            {"id": f"line-{i + 1}", "points": [[0, 100 * i], [640, 100 * i]]} for i in range(lines)
        ],
        zones=[{"id": "zone-1", "polygon": [[0, 0], [100, 0], [100, 100]]}],
    )


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    warehouse = connect(f"chdb://{tmp_path}/chdb")
    yield warehouse
    warehouse.close()


@pytest.fixture(scope="module")
def counted(tmp_path_factory: pytest.TempPathFactory) -> tuple[CountResult, CameraConfig]:
    """A real count: a synthetic scene rendered to video, counted with the
    oracle detector, as ``camcount count --model oracle`` does."""
    _, _, cfg_path = write_scene(generate_scene(7), tmp_path_factory.mktemp("scene") / "cam7.mp4")
    config = load_config(cfg_path)
    camera = config.cameras[0]
    return count_video(config, camera, build_detector("oracle")), camera


def test_documented_queries_answer_a_real_count(
    wh: Warehouse, counted: tuple[CountResult, CameraConfig]
) -> None:
    result, camera = counted
    load(wh, tables_by_kind([*result.events, *result.windows]))
    load(wh, camera_tables([camera], version=1))
    start, end = T0, T0 + 3600

    # Window rows come back exactly, for every configured size.
    for size in (10, 60):
        got = q.window_counts(wh.backend, camera.id, start, end, size).to_pylist()
        want = sorted(
            (w.window_start, w.counter_id, w.class_name, w.direction, w.count)
            for w in result.windows
            if w.window_size_s == size
        )
        assert [
            (
                r["window_start"].timestamp(),
                r["counter_id"],
                r["class_name"],
                r["direction"],
                r["count"],
            )
            for r in got
        ] == want

    # A day's totals equal the reference count's totals.
    daily = q.daily_counts(wh.backend, camera.id, start, end, window_size_s=60).to_pylist()
    assert sorted(
        (r["counter_id"], r["class_name"], r["direction"], r["total"]) for r in daily
    ) == sorted(
        (t["counter_id"], t["class_name"], t["direction"], t["count"]) for t in result.totals
    )

    # Crossings: the same events, millisecond times.
    rows = q.crossings(wh.backend, camera.id, start, end).to_pylist()
    assert [r["event_id"] for r in rows] == [
        c.event_id for c in sorted(result.crossings, key=lambda c: (c.event_time, c.event_id))
    ]
    for r, c in zip(
        rows, sorted(result.crossings, key=lambda c: (c.event_time, c.event_id)), strict=True
    ):
        assert r["event_time"].timestamp() + r["event_ms"] / 1000 == pytest.approx(
            c.event_time, abs=5e-4
        )

    # Occupancy and dwell come from the samples and visits.
    occ = q.occupancy(wh.backend, camera.id, start, end, bucket_s=3600).to_pylist()
    assert [r["samples"] for r in occ] == [len(result.samples)]
    assert occ[0]["max_occupancy"] == max(s.occupancy for s in result.samples)
    dwell = q.dwell_stats(wh.backend, camera.id, start, end).to_pylist()
    assert sum(r["visits"] for r in dwell) == len(result.visits)
    assert max(r["max_dwell_s"] for r in dwell) == pytest.approx(
        max(v.dwell_s for v in result.visits)
    )

    # Camera metadata, source password masked.
    cams = q.cameras(wh.backend).to_pylist()
    assert [c["camera_id"] for c in cams] == [camera.id]
    assert {r["counter_id"] for r in q.camera_counters(wh.backend).to_pylist()} == {
        "line-main",
        "zone-a",
    }


def test_the_same_batch_twice_changes_no_answer(wh: Warehouse) -> None:
    tables = make_events()
    tables.update(camera_tables([camera_config(c) for c in CAMERAS], version=5))
    # Without tokens (as a 18.16 server sees it), so the copies exist.
    for kind, t in tables.items():
        from camcount.warehouse.rows import convert, kind_of

        k = kind_of(kind)
        wh.backend.insert(k.table.name, convert(k, t))
    once = answers(wh.backend)
    for kind, t in tables.items():
        from camcount.warehouse.rows import convert, kind_of

        k = kind_of(kind)
        wh.backend.insert(k.table.name, convert(k, t))
    raw = wh.sql("SELECT count() AS n FROM crossings").column(0)[0].as_py()
    assert raw == 2 * tables["crossing"].num_rows  # the copies are really there
    assert answers(wh.backend) == once
    for table in ("crossings", "window_counts", "zone_samples", "zone_visits", "gaps", "cameras"):
        wh.backend.execute(f"OPTIMIZE TABLE {table} FINAL")
    assert answers(wh.backend) == once
    assert (
        wh.sql("SELECT count() AS n FROM crossings").column(0)[0].as_py()
        == tables["crossing"].num_rows
    )


def test_a_batch_replayed_after_a_partial_failure_changes_no_answer(
    wh: Warehouse, tmp_path: Path
) -> None:
    tables = make_events(seed=2)
    for kind, t in tables.items():
        wh.insert(kind, t)
    reference = answers(wh.backend)
    wh.close()

    other = connect(f"chdb://{tmp_path}/other")
    try:
        for kind, t in tables.items():
            # The first 40% landed before the failure, then the whole
            # batch is replayed (with a different token: a new batch).
            other.insert(kind, t.slice(0, int(t.num_rows * 0.4)))
            other.insert(kind, t)
        assert answers(other.backend) == reference
    finally:
        other.close()


def test_insert_tokens_drop_a_retried_insert_on_current_engines(wh: Warehouse) -> None:
    assert wh.features.insert_dedup_token
    t = make_events(seed=3)["crossing"]
    wh.insert("crossing", t)
    wh.insert("crossing", t)  # same rows, same token: the server drops it
    assert wh.sql("SELECT count() AS n FROM crossings").column(0)[0].as_py() == t.num_rows


def test_camera_versions_lines_and_removal(wh: Warehouse) -> None:
    for kind, t in camera_tables([camera_config("cam-a", 2), camera_config("cam-b")], 1).items():
        wh.insert(kind, t)
    for kind, t in camera_tables([camera_config("cam-a", 1)], 2, removed=["cam-b"]).items():
        wh.insert(kind, t)
    cams = q.cameras(wh.backend).to_pylist()
    assert [(c["camera_id"], c["current_version"]) for c in cams] == [("cam-a", 2)]
    assert cams[0]["source"] == "rtsp://viewer:***@10.0.0.5/stream"
    counters = q.camera_counters(wh.backend).to_pylist()
    assert [(c["camera_id"], c["counter_id"], c["kind"]) for c in counters] == [
        ("cam-a", "line-1", "line"),
        ("cam-a", "zone-1", "zone"),
    ]
    assert counters[0]["points_x"] == [0.0, 640.0]
    # cam-b is removed, not forgotten: its history stays readable
    assert [q.camera_seen(wh.backend, c) for c in ("cam-a", "cam-b", "cam-c")] == [
        True,
        True,
        False,
    ]


def test_a_second_process_is_told_who_holds_the_database(wh: Warehouse, tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        from camcount.warehouse import connect, WarehouseLocked
        try:
            connect("chdb://{tmp_path}/chdb", role="notebook")
        except WarehouseLocked as exc:
            print("LOCKED", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.startswith("LOCKED")
    assert "in use by camcount (pid" in out and "query through the API" in out


def test_one_process_opens_one_path(wh: Warehouse, tmp_path: Path) -> None:
    with pytest.raises(WarehouseLocked, match="one database path per process"):
        connect(f"chdb://{tmp_path}/another")


def watched(window_rows: pa.Table) -> dict[str, pa.Table]:
    """Alerts and forecasts made from the window rows as a shard makes them:
    rows in the order their windows close, the watermark after each."""
    from camcount.alerts.engine import AlertEngine
    from camcount.alerts.rules import FlowRule
    from camcount.events import Alert, Forecast, from_arrow, to_arrow
    from camcount.forecast.book import ForecastBook, ForecastSettings

    rows = from_arrow(WindowRow, window_rows)
    book = ForecastBook(ForecastSettings(window_sizes_s=(900,)))
    rule = FlowRule(id="busy-door", camera=CAMERAS[0], counter="line-1", above=5, window_s=900)
    engine = AlertEngine([rule])
    alerts: list[Alert] = []
    forecasts: list[Forecast] = []
    for end in sorted({r.window_end for r in rows}):
        closed = [r for r in rows if r.window_end == end]
        issued = book.observe(closed)
        engine.on_forecasts(issued)
        forecasts += issued
        engine.on_rows(closed)
        alerts += engine.advance(end)
    assert alerts and forecasts
    return {"alert": to_arrow(Alert, alerts), "forecast": to_arrow(Forecast, forecasts)}


def test_the_documented_examples_run_and_answer(wh: Warehouse) -> None:
    tables = with_dead_letter(make_events())
    tables.update(camera_tables([camera_config(c) for c in CAMERAS], version=1))
    tables.update(watched(tables["window_row"]))
    load(wh, tables)
    results = run_doc_examples(wh)
    assert len(results) >= 10
    assert all(results), [sql for sql, r in zip(doc_examples(), results, strict=True) if not r]


def test_every_table_and_column_is_documented(wh: Warehouse) -> None:
    rows = wh.sql(
        "SELECT table, name, comment FROM system.columns WHERE database = currentDatabase()"
    ).to_pylist()
    tables = {r["table"] for r in rows}
    assert {
        "crossings",
        "zone_samples",
        "zone_visits",
        "window_counts",
        "dead_letters",
        "cameras",
        "camera_counters",
        "zone_transitions",
        "gaps",
        "alerts",
        "forecasts",
        "schema_migrations",
    } <= tables
    assert [r for r in rows if not r["comment"]] == []
    doc = (Path(__file__).resolve().parents[2] / "docs" / "warehouse.md").read_text()
    for r in rows:
        if r["table"] != "schema_migrations":
            assert f"`{r['name'].split('.')[0]}`" in doc, f"{r['table']}.{r['name']} not in docs"


def test_a_gap_written_through_the_writer_reads_back_once(wh: Warehouse, tmp_path: Path) -> None:
    from camcount.stream.spill import SpillStore
    from camcount.warehouse import WarehouseWriter, WriterSettings

    gap = Gap("cam-a", T0 + 100.25, T0 + 161.5, "stream reconnect", -1)
    writer = WarehouseWriter(wh.backend, SpillStore(f"file://{tmp_path}/spill"), WriterSettings())
    for _ in range(2):  # a replay after a crash sends the same gap again
        assert writer.write("gap", tables_by_kind([gap])["gap"]) == 1
        writer.flush()
    # Without tokens, as the 18.16 server sees a retried insert: the copy lands.
    k = kind_of("gap")
    wh.backend.insert("gaps", convert(k, tables_by_kind([gap])["gap"]))
    assert wh.sql("SELECT count() AS n FROM gaps").column(0)[0].as_py() >= 2
    assert wh.sql("SELECT count() AS n FROM gaps FINAL").column(0)[0].as_py() == 1
    rows = q.gaps(wh.backend, T0, T0 + 3600).to_pylist()
    assert len(rows) == 1
    row = rows[0]
    assert row["event_id"] == gap.event_id and row["camera_id"] == "cam-a"
    assert row["gap_from"].timestamp() + row["gap_from_ms"] / 1000 == gap.gap_from
    assert row["gap_to"].timestamp() + row["gap_to_ms"] / 1000 == gap.gap_to
    assert (row["duration_s"], row["reason"], row["frames_lost"]) == (61.25, "stream reconnect", -1)
    assert q.gaps(wh.backend, T0, T0 + 3600, camera_id="cam-b").num_rows == 0
    writer.close()


@pytest.mark.parametrize(
    ("first_to", "again_to", "found"),
    [
        # A gap reported again (a second crash before the next checkpoint)
        # ends later: only the latest report counts, for the range test too.
        (T0 + 50.0, T0 + 150.0, True),  # first report ends before the range, latest in it
        (T0 + 150.0, T0 + 50.0, False),  # first report reaches the range, latest does not
    ],
)
def test_a_gap_reported_again_is_judged_by_its_latest_end(
    wh: Warehouse, first_to: float, again_to: float, found: bool
) -> None:
    k = kind_of("gap")
    for gap_to in (first_to, again_to):
        gap = Gap("cam-a", T0 + 10.0, gap_to, "camera restart", -1)
        wh.backend.insert("gaps", convert(k, tables_by_kind([gap])["gap"]))
    rows = q.gaps(wh.backend, T0 + 100, T0 + 200).to_pylist()
    assert [r["gap_to"].timestamp() for r in rows] == ([again_to] if found else [])
    # Overlap, not containment: a gap that started before the range counts.
    assert q.gaps(wh.backend, T0 + 20, T0 + 30).num_rows == 1


def test_query_helpers_check_their_arguments(wh: Warehouse) -> None:
    from datetime import datetime

    from camcount.warehouse import QueryError

    with pytest.raises(QueryError, match="must divide 3600"):
        q.hourly_counts(wh.backend, "cam-a", T0, T0 + 10, window_size_s=7)
    with pytest.raises(QueryError, match="before start"):
        q.window_counts(wh.backend, "cam-a", T0 + 10, T0, 60)
    with pytest.raises(QueryError, match="bucket_s"):
        q.occupancy(wh.backend, "cam-a", T0, T0 + 10, bucket_s=0)
    with pytest.raises(QueryError, match="unknown query"):
        wh.query("drop_everything")
    assert q.epoch_s(datetime(2026, 1, 1)) == int(T0)  # naive is UTC
    assert q.epoch_s(T0 + 0.9) == int(T0)
    # Empty answers keep their declared schema.
    empty = q.window_counts(wh.backend, "nobody", T0, T0 + 60, 60)
    assert empty.num_rows == 0 and empty.schema == q.QUERIES["window_counts"].schema
