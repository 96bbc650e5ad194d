"""The warehouse on a ClickHouse cluster: one shard, two replicas of
Debian's 18.16 server and a ZooKeeper (the ``clickhouse_cluster`` fixture).

What only a cluster has: the tables on every replica, replication from one
replica to the other, a column migration through ON CLUSTER, clear errors
for a cluster the servers do not know and for a database made for one
server. The shared answers and idempotence tests run here too, from
tests/integration/test_warehouse_server.py (its ``target`` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from camcount.config import WarehouseConfig
from camcount.stream.spill import SpillStore
from camcount.warehouse import (
    TABLES,
    Warehouse,
    WarehouseSchemaError,
    WarehouseWriter,
    WriterSettings,
    connect,
)
from camcount.warehouse.localcluster import CLUSTER_NAME, LocalCluster
from camcount.warehouse.rows import convert, kind_of
from camcount.warehouse.schema import (
    MIGRATIONS,
    SCHEMA_MIGRATIONS,
    ClusterOptions,
    Column,
    Migration,
    MigrationContext,
    SchemaOptions,
    migrate,
)
from tests.core.test_warehouse_chdb import answers, make_events
from tests.integration.test_warehouse_server import everything

pytestmark = pytest.mark.integration


def open_replica(cluster: LocalCluster, database: str, replica: int) -> Warehouse:
    return connect(WarehouseConfig(url=cluster.url(database, replica), cluster=cluster.name))


@pytest.fixture
def replicas(
    clickhouse_cluster: LocalCluster, request: pytest.FixtureRequest
) -> Iterator[tuple[Warehouse, Warehouse]]:
    """One fresh database, opened on each replica."""
    database = "c_" + request.node.name.removeprefix("test_")[:40]
    first = open_replica(clickhouse_cluster, database, 0)
    second = open_replica(clickhouse_cluster, database, 1)
    yield first, second
    second.close()
    first.backend.execute(
        f"DROP DATABASE IF EXISTS {database} ON CLUSTER {clickhouse_cluster.name}"
    )
    first.close()


def sync(wh: Warehouse) -> None:
    """Wait until this replica has every part the others were sent."""
    for table in TABLES:
        wh.backend.execute(f"SYSTEM SYNC REPLICA {table.local_name}")


def columns(wh: Warehouse, table: str) -> dict[str, str]:
    """Name -> comment, in the table's order."""
    rows = wh.sql(
        "SELECT name, comment FROM system.columns "
        "WHERE database = currentDatabase() AND table = {table:String}",
        {"table": table},
    ).to_pylist()
    return {r["name"]: r["comment"] for r in rows}


def local_count(wh: Warehouse, table: str, final: bool = False) -> int:
    sql = f"SELECT count() AS n FROM {table}_local{' FINAL' if final else ''}"
    return int(wh.sql(sql).column(0)[0].as_py())


def test_every_table_is_replicated_under_a_distributed_one_on_both_replicas(
    replicas: tuple[Warehouse, Warehouse],
) -> None:
    first, second = replicas
    assert first.migrated == [m.version for m in MIGRATIONS]
    assert second.migrated == []  # ON CLUSTER made them there too
    database = first.backend.url.database
    for wh in replicas:
        engines = {
            r["name"]: r["engine"]
            for r in wh.sql(
                "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
            ).to_pylist()
        }
        for table in (*TABLES, SCHEMA_MIGRATIONS):
            assert engines[table.name] == "Distributed", table.name
            assert engines[table.local_name] == "ReplicatedReplacingMergeTree", table.name
        paths = wh.sql(
            "SELECT table, zookeeper_path FROM system.replicas WHERE database = currentDatabase()"
        ).to_pylist()
        assert {
            "table": "crossings_local",
            "zookeeper_path": f"/clickhouse/tables/01/{database}/crossings_local",
        } in paths
    # The comments analysts read are on the tables they query.
    assert columns(first, "crossings")["direction"] == "'in' (side A to B) or 'out'"
    assert not any(columns(first, "crossings_local").values())  # 18.16 cannot keep them there


def test_writes_on_one_replica_are_read_on_the_other_once_per_identity(
    replicas: tuple[Warehouse, Warehouse], tmp_path: Path
) -> None:
    first, second = replicas
    tables = everything()
    for kind, t in tables.items():
        first.insert(kind, t)
    once = answers(first.backend)
    sync(second)
    n = tables["crossing"].num_rows
    assert local_count(second, "crossings") == n  # replicated, not written there
    assert answers(second.backend) == once
    # A sink restored from a checkpoint on the other replica's side writes
    # its batches again: a partial batch that failed, then every batch.
    writer = WarehouseWriter(
        second.backend, SpillStore(f"file://{tmp_path}/store"), WriterSettings(batch_rows=500)
    )
    for kind, t in tables.items():
        writer.write(kind, t.slice(0, int(t.num_rows * 0.4)))
    writer.flush()
    for kind, t in tables.items():
        writer.write(kind, t)
    writer.flush()
    assert not writer.spill.dead()
    crossings_sent = int(0.4 * n) + n
    assert writer.stats()["rows_written"]["crossing"] == crossings_sent
    sync(first)
    sync(second)
    for wh in replicas:
        # The copies reached both replicas (unless merged away already)...
        assert n <= local_count(wh, "crossings") <= n + crossings_sent
        assert local_count(wh, "crossings", final=True) == n  # ...one row each
        assert answers(wh.backend) == once


def test_a_later_migration_adds_a_column_on_the_cluster(
    replicas: tuple[Warehouse, Warehouse],
) -> None:
    first, second = replicas

    def add_site(ctx: MigrationContext) -> None:
        ctx.add_column("crossings", Column("site", "String", "site of the camera"), "camera_id")

    later = MIGRATIONS[-1].version + 1
    steps = (*MIGRATIONS, Migration(later, "site", add_site))
    # The options connect made from the config.
    cluster = ClusterOptions(CLUSTER_NAME, WarehouseConfig().zookeeper_path)
    schema = SchemaOptions(cluster=cluster)
    assert migrate(first.backend, first.features, schema, steps) == [later]
    assert migrate(second.backend, second.features, schema, steps) == []
    for wh in replicas:
        local, dist = (columns(wh, t) for t in ("crossings_local", "crossings"))
        assert list(local) == list(dist)
        assert list(dist)[1:3] == ["camera_id", "site"]
        assert dist["site"] == "site of the camera"
        assert dist["direction"] == "'in' (side A to B) or 'out'"  # kept through the remake
    rows = convert(kind_of("crossing"), make_events()["crossing"].slice(0, 3))
    second.backend.insert("crossings", rows)
    sync(first)
    got = first.sql("SELECT DISTINCT site FROM crossings FINAL").to_pylist()
    assert got == [{"site": ""}]


def test_a_cluster_the_servers_do_not_know_is_named_clearly(
    clickhouse_cluster: LocalCluster,
) -> None:
    config = WarehouseConfig(url=clickhouse_cluster.url("c_unknown"), cluster="elsewhere")
    with pytest.raises(
        WarehouseSchemaError, match="'elsewhere' is not in the remote_servers"
    ) as info:
        connect(config)
    assert clickhouse_cluster.name in str(info.value)
    assert clickhouse_cluster.replicas[0].password not in str(info.value)


def test_a_database_made_for_one_server_is_refused_on_the_cluster(
    clickhouse_cluster: LocalCluster,
) -> None:
    url = clickhouse_cluster.url("c_single")
    with connect(url) as single:  # no cluster: plain tables on this replica
        assert single.migrated
    try:
        with pytest.raises(WarehouseSchemaError, match="made for one server"):
            connect(WarehouseConfig(url=url, cluster=clickhouse_cluster.name))
    finally:
        with connect(url) as single:
            single.backend.execute(
                f"DROP DATABASE IF EXISTS c_single ON CLUSTER {clickhouse_cluster.name}"
            )
