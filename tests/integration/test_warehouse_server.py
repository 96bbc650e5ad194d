"""The warehouse on Debian's ClickHouse server (18.16), started by the
``clickhouse_server`` fixture: same rows in as chDB, same answers out;
idempotence; clear errors for bad settings; failover; refused rows.

The tests of answers and idempotence run twice: on the one server, and on
a two-replica cluster (``clickhouse_cluster``: replicated tables under
Distributed ones), where the same rules must hold
(tests/integration/test_warehouse_cluster.py has what only a cluster has).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from camcount.config import WarehouseConfig
from camcount.events import Gap, ZoneSample, to_arrow
from camcount.stream.spill import SpillStore
from camcount.warehouse import (
    Warehouse,
    WarehouseAuthError,
    WarehouseUnavailable,
    WarehouseWriter,
    WriterSettings,
    camera_tables,
    connect,
    gaps,
    tables_by_kind,
)
from camcount.warehouse.binding import bind
from camcount.warehouse.localcluster import LocalCluster
from camcount.warehouse.localserver import LocalServer, free_port
from camcount.warehouse.rows import convert, kind_of
from camcount.warehouse.schema import MIGRATIONS, Column, Migration, MigrationContext, migrate
from tests.core.test_warehouse_binding import HOSTILE
from tests.core.test_warehouse_chdb import (
    CAMERAS,
    T0,
    answers,
    camera_config,
    make_events,
    run_doc_examples,
    with_dead_letter,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def server_wh(
    clickhouse_server: LocalServer, request: pytest.FixtureRequest
) -> Iterator[Warehouse]:
    database = "t_" + request.node.name.removeprefix("test_")[:40]
    wh = connect(clickhouse_server.url(database))
    yield wh
    wh.backend.execute(f"DROP DATABASE IF EXISTS {database}")
    wh.close()


class Target:
    """Where the shared tests write: the one server, or the cluster (its
    first replica, through the Distributed tables)."""

    def __init__(self, server: LocalServer | None, cluster: LocalCluster | None) -> None:
        self.server = server
        self.cluster = cluster

    def open(self, database: str, replica: int = 0) -> Warehouse:
        if self.cluster is not None:
            url = self.cluster.url(database, replica)
            return connect(WarehouseConfig(url=url, cluster=self.cluster.name))
        assert self.server is not None
        return connect(self.server.url(database))

    def drop(self, wh: Warehouse) -> None:
        database = wh.backend.url.database
        on_cluster = f" ON CLUSTER {self.cluster.name}" if self.cluster is not None else ""
        wh.backend.execute(f"DROP DATABASE IF EXISTS {database}{on_cluster}")
        wh.close()

    def optimize(self, wh: Warehouse, table: str) -> None:
        """Force the merge that collapses copies (on a cluster, of the
        replicated table, on the replica it runs on)."""
        if self.cluster is None:
            wh.backend.execute(f"OPTIMIZE TABLE {table} FINAL")
            return
        wh.backend.execute(f"OPTIMIZE TABLE {table}_local FINAL")
        wh.backend.execute(f"SYSTEM SYNC REPLICA {table}_local")

    def settle(self, wh: Warehouse, table: str) -> None:
        """On a cluster, every replica holds every part inserted so far: a
        read goes to any one of them, and replication is asynchronous."""
        if self.cluster is None:
            return
        for server in self.cluster.replicas:
            client = server.client(wh.backend.url.database)
            try:
                client.execute(f"SYSTEM SYNC REPLICA {table}_local")
            finally:
                client.disconnect()


@pytest.fixture(params=["server", "cluster"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "cluster":
        return Target(None, request.getfixturevalue("clickhouse_cluster"))
    return Target(request.getfixturevalue("clickhouse_server"), None)


@pytest.fixture
def any_wh(target: Target, request: pytest.FixtureRequest) -> Iterator[Warehouse]:
    """A fresh database on the one server or on the cluster."""
    database = "t_" + request.node.originalname.removeprefix("test_")[:40]
    wh = target.open(database)
    yield wh
    target.drop(wh)


def everything() -> dict:
    tables = with_dead_letter(make_events(seed=11))
    tables.update(camera_tables([camera_config(c) for c in CAMERAS], version=3))
    return tables


def test_schema_is_the_portable_core_on_18_16(server_wh: Warehouse) -> None:
    assert server_wh.backend.server_version.startswith("18.16")
    f = server_wh.features
    assert not (f.low_cardinality or f.codecs or f.ttl or f.insert_dedup_token)
    columns = server_wh.sql(
        "SELECT table, name, type, comment FROM system.columns WHERE database = currentDatabase()"
    ).to_pylist()
    assert {c["table"] for c in columns} >= {"crossings", "window_counts", "cameras"}
    assert not [c for c in columns if "LowCardinality" in c["type"]]
    # 18.16 keeps comments, except on the arrays of a Nested column.
    assert not [c for c in columns if not c["comment"] and "." not in c["name"]]
    assert migrate(server_wh.backend, f) == []  # applied at connect, idempotent


def test_same_rows_give_the_same_answers_as_chdb(any_wh: Warehouse, tmp_path: Path) -> None:
    server_wh = any_wh
    tables = everything()
    for kind, t in tables.items():
        server_wh.insert(kind, t)
    embedded = connect(f"chdb://{tmp_path}/chdb")
    try:
        for kind, t in tables.items():
            embedded.insert(kind, t)
        expected = answers(embedded.backend)
        expected_examples = run_doc_examples(embedded)
    finally:
        embedded.close()
    got = answers(server_wh.backend)
    assert run_doc_examples(server_wh) == expected_examples  # docs/warehouse.md, as written
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key
    assert sum(len(v) for v in got.values() if isinstance(v, list)) > 1000


def test_the_same_batch_twice_changes_no_answer(any_wh: Warehouse, target: Target) -> None:
    server_wh = any_wh
    tables = everything()
    for kind, t in tables.items():
        server_wh.insert(kind, t)
    once = answers(server_wh.backend)
    for kind, t in tables.items():
        server_wh.insert(kind, t)  # 18.16 has no insert dedup: the copies land
    raw = server_wh.sql("SELECT count() AS n FROM crossings").column(0)[0].as_py()
    n = tables["crossing"].num_rows
    if target.cluster is None:
        assert raw == 2 * n
    else:
        # A replicated table drops a block equal to one it has (same rows,
        # same ingested_at second); otherwise the copies land, as above.
        assert raw in (n, 2 * n)
    assert answers(server_wh.backend) == once
    for table in ("crossings", "window_counts", "zone_samples", "zone_visits", "gaps", "cameras"):
        target.optimize(server_wh, table)
    assert server_wh.sql("SELECT count() AS n FROM crossings").column(0)[0].as_py() == n
    assert answers(server_wh.backend) == once


def test_a_batch_replayed_after_a_partial_failure_changes_no_answer(
    any_wh: Warehouse, target: Target
) -> None:
    server_wh = any_wh
    tables = everything()
    clean = target.open("t_replay_reference")
    try:
        for kind, t in tables.items():
            clean.insert(kind, t)
        reference = answers(clean.backend)
    finally:
        target.drop(clean)
    for kind, t in tables.items():
        server_wh.insert(kind, t.slice(0, int(t.num_rows * 0.4)))
        server_wh.insert(kind, t)
    assert answers(server_wh.backend) == reference


def test_wrong_password_fails_at_start_clearly_and_masked(clickhouse_server: LocalServer) -> None:
    url = f"clickhouse://{clickhouse_server.user}:not-the-password@127.0.0.1:{clickhouse_server.tcp_port}/camcount"
    with pytest.raises(WarehouseAuthError) as info:
        connect(url)
    text = str(info.value)
    assert "not-the-password" not in text
    assert f"{clickhouse_server.user}:***@127.0.0.1" in text
    assert "Wrong password" in text


def test_wrong_port_fails_at_start_quickly(clickhouse_server: LocalServer) -> None:
    url = f"clickhouse://u:pw-secret@127.0.0.1:{free_port()}/camcount?connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(WarehouseUnavailable, match="Connection refused") as info:
        connect(url)
    assert time.monotonic() - started < 5
    assert "pw-secret" not in str(info.value)


def test_password_from_env_or_file(clickhouse_server: LocalServer, tmp_path: Path) -> None:
    bare = clickhouse_server.url(with_password=False)
    env = {"CAMCOUNT_WAREHOUSE_PASSWORD": clickhouse_server.password}
    with connect(bare, password_env="CAMCOUNT_WAREHOUSE_PASSWORD", environ=env) as wh:
        assert wh.sql("SELECT 1 AS one").to_pylist() == [{"one": 1}]
    secret = tmp_path / "pw"
    secret.write_text(clickhouse_server.password + "\n")
    with connect(bare, password_file=str(secret)) as wh:
        assert wh.sql("SELECT 1 AS one").to_pylist() == [{"one": 1}]


def test_failover_to_the_next_host(clickhouse_server: LocalServer) -> None:
    s = clickhouse_server
    url = (
        f"clickhouse://{s.user}:{s.password}@127.0.0.1:{free_port()},127.0.0.1:{s.tcp_port}"
        "/t_failover?connect_timeout=1"
    )
    with connect(url) as wh:
        wh.insert("crossing", make_events()["crossing"].slice(0, 10))
        assert wh.sql("SELECT count() AS n FROM crossings FINAL").to_pylist() == [{"n": 10}]
        wh.backend.execute("DROP DATABASE t_failover")


def test_a_row_the_server_refuses_goes_to_the_dead_letters(
    server_wh: Warehouse, tmp_path: Path
) -> None:
    writer = WarehouseWriter(
        server_wh.backend, SpillStore(f"file://{tmp_path}/store"), WriterSettings(batch_rows=50)
    )
    good = [ZoneSample("cam-a", "zone-1", i, T0 + i, 1, ("person",), (1,)) for i in range(60)]
    bad = ZoneSample("cam-a", "zone-1", 500, T0 + 500, 2, ("person", "car"), (2,))
    writer.write("zone_sample", to_arrow(ZoneSample, [*good[:30], bad, *good[30:]]))
    writer.flush()
    assert server_wh.sql("SELECT count() AS n FROM zone_samples FINAL").to_pylist() == [{"n": 60}]
    letters = server_wh.query(
        "dead_letters", source="warehouse", start=0, end=int(T0) + 3600, limit=10
    ).to_pylist()
    assert [(d["reason"], d["payload_id"]) for d in letters] == [("rejected", bad.event_id)]
    assert "Nested data structure 'classes'" in letters[0]["detail"]  # the server's words
    assert "Stack trace" not in letters[0]["detail"]
    assert len(writer.spill.dead()) == 1


def test_a_gap_reported_again_is_one_row_with_its_latest_end_on_18_16(
    any_wh: Warehouse, target: Target
) -> None:
    server_wh = any_wh
    # 18.16 has no insert deduplication: both reports land, FINAL keeps the
    # latest, and the range is tested on that one's end.
    kind = kind_of("gap")
    for gap_to in (T0 + 50.0, T0 + 150.0):
        gap = Gap("cam-a", T0 + 10.0, gap_to, "camera restart", -1)
        server_wh.backend.insert("gaps", convert(kind, tables_by_kind([gap])["gap"]))
    target.settle(server_wh, "gaps")
    if target.cluster is None:
        assert server_wh.sql("SELECT count() AS n FROM gaps").column(0)[0].as_py() == 2
    # (A replicated table schedules the merge of two small parts at once,
    # so the raw copies may already be one row there.)
    assert server_wh.sql("SELECT count() AS n FROM gaps FINAL").column(0)[0].as_py() == 1
    rows = gaps(server_wh.backend, T0 + 100, T0 + 200).to_pylist()
    assert [(r["gap_to"].timestamp(), r["frames_lost"]) for r in rows] == [(T0 + 150.0, -1)]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_parameters_round_trip_on_the_server(server_wh: Warehouse, value: str) -> None:
    got = server_wh.sql("SELECT {v:String} AS v, length({v:String}) AS n", {"v": value}).to_pylist()
    assert got == [{"v": value, "n": len(value.encode())}]
    assert "'" in bind("SELECT {v:String}", {"v": value})


def test_a_later_migration_adds_a_column_on_18_16(server_wh: Warehouse) -> None:
    def add_site(ctx: MigrationContext) -> None:
        ctx.add_column("crossings", Column("site", "String", "site", low_cardinality=True))

    later = MIGRATIONS[-1].version + 1  # connect applied every current one
    steps = (*MIGRATIONS, Migration(later, "site", add_site))
    assert migrate(server_wh.backend, server_wh.features, migrations=steps) == [later]
    assert migrate(server_wh.backend, server_wh.features, migrations=steps) == []
    types = server_wh.sql(
        "SELECT type FROM system.columns WHERE database = currentDatabase() "
        "AND table = 'crossings' AND name = 'site'"
    ).to_pylist()
    assert types == [{"type": "String"}]  # no LowCardinality on 18.16
    kind = kind_of("crossing")
    server_wh.backend.insert("crossings", convert(kind, make_events()["crossing"].slice(0, 3)))
