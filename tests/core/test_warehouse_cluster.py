"""The cluster's DDL and its settings: replicated tables keyed as on one
server, a Distributed table over each that shards by the row's identity,
and clear refusals of settings that cannot work.
(tests/integration/test_warehouse_cluster.py runs them on two replicas.)"""

from __future__ import annotations

import re

import pytest

from camcount.config import WarehouseConfig, parse_config
from camcount.errors import ConfigError
from camcount.warehouse import Features, SchemaOptions
from camcount.warehouse.errors import WarehouseSchemaError
from camcount.warehouse.schema import SCHEMA_MIGRATIONS, TABLES, ClusterOptions

OLD = Features.of("18.16.1")
NEW = Features.of("26.9.2.1")
PATH = WarehouseConfig().zookeeper_path
CLUSTER = SchemaOptions(cluster=ClusterOptions("events", PATH))
ALL_TABLES = (*TABLES, SCHEMA_MIGRATIONS)


def _keys(ddl: str) -> list[str]:
    """The lines after the engine: partition, order, TTL, settings."""
    lines = ddl.split("\n")
    engine = next(i for i, line in enumerate(lines) if line.startswith("ENGINE"))
    return lines[engine + 1 :]


@pytest.mark.parametrize("table", ALL_TABLES, ids=lambda t: t.name)
def test_a_cluster_table_is_replicated_and_keyed_as_on_one_server(table) -> None:
    one = table.create_sql(OLD, SchemaOptions())
    ddl = table.create_sql(OLD, CLUSTER, "site1")
    assert f"CREATE TABLE IF NOT EXISTS `site1`.`{table.name}_local` ON CLUSTER `events`" in ddl
    version = f", {table.version_column}" if table.version_column else ""
    path = f"/clickhouse/tables/{{shard}}/site1/{table.name}_local"
    assert f"ENGINE = ReplicatedReplacingMergeTree('{path}', '{{replica}}'{version})" in ddl
    assert _keys(ddl) == _keys(one)  # same partition, identity order and settings
    # 18.16 refuses column comments on a second replica; later servers keep them.
    assert "COMMENT" in one and "COMMENT" not in ddl
    assert "COMMENT" in table.create_sql(NEW, CLUSTER, "site1")


def test_replicated_tables_deduplicate_by_their_own_window() -> None:
    table = TABLES[0]
    assert "non_replicated_deduplication_window" in table.create_sql(NEW, SchemaOptions())
    assert "non_replicated_deduplication_window" not in table.create_sql(NEW, CLUSTER, "db")


@pytest.mark.parametrize("table", ALL_TABLES, ids=lambda t: t.name)
def test_the_distributed_table_shards_by_the_rows_identity(table) -> None:
    # Every copy of a row must meet the others on one shard, where FINAL
    # and argMax collapse them: the key reads only identity columns.
    used = set(re.findall(r"[A-Za-z_0-9]+", table.shard_key)) - {"cityHash64"}
    assert used and used <= set(table.order_by) | {"event_id"}, table.shard_key
    assert used <= {c.name for c in table.columns}
    ddl = table.create_distributed_sql(NEW, CLUSTER.cluster, "site1")
    assert ddl.startswith(
        f"CREATE TABLE IF NOT EXISTS `site1`.`{table.name}` ON CLUSTER `events` ("
    )
    assert ddl.endswith(
        f"ENGINE = Distributed('events', 'site1', '{table.name}_local', {table.shard_key})"
    )
    assert "COMMENT" in ddl  # what analysts read, on the table they query
    assert "CODEC" not in ddl  # compression belongs to the tables that store


def test_event_tables_shard_by_event_id_and_camera_tables_by_camera() -> None:
    keys = {t.name: t.shard_key for t in ALL_TABLES}
    assert keys["crossings"] == keys["window_counts"] == keys["gaps"] == "event_id"
    assert keys["cameras"] == keys["camera_counters"] == "cityHash64(camera_id)"


def test_a_cluster_table_needs_its_database() -> None:
    with pytest.raises(WarehouseSchemaError, match="needs the database"):
        TABLES[0].create_sql(OLD, CLUSTER)


@pytest.mark.parametrize(
    ("name", "path", "problem"),
    [
        ("events;DROP", PATH, "cluster name must match"),  # goes into DDL
        ("", PATH, "cluster name must match"),
        ("events", "/clickhouse/tables/{shard}/{database}", "contain {table}"),  # tables collide
        ("events", "clickhouse/{table}", "start with /"),  # ZooKeeper paths are absolute
    ],
)
def test_cluster_options_refuse_what_cannot_work(name: str, path: str, problem: str) -> None:
    with pytest.raises(WarehouseSchemaError, match=re.escape(problem)):
        ClusterOptions(name, path)


def test_the_zookeeper_path_fills_in_database_and_table_but_keeps_server_macros() -> None:
    options = ClusterOptions("events", PATH)
    assert options.replica_path("db", "crossings_local") == (
        "/clickhouse/tables/{shard}/db/crossings_local"
    )


WAREHOUSE = "warehouse:\n  url: {url}\n  cluster: {cluster}\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        # chDB is one process: there is nothing to replicate to.
        (WAREHOUSE.format(url="chdb:///var/x", cluster="events"), "needs a clickhouse://"),
        (WAREHOUSE.format(url="clickhouse://u@h:9000/db", cluster="'a b'"), "warehouse.cluster"),
        (
            WAREHOUSE.format(url="clickhouse://u@h:9000/db", cluster="events")
            + "  zookeeper_path: /clickhouse/tables/{shard}\n",
            "warehouse.zookeeper_path",
        ),
    ],
)
def test_the_config_refuses_a_cluster_it_cannot_use(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cfg.yaml")
    assert problem in str(exc.value)


def test_the_config_takes_a_cluster_for_a_server() -> None:
    config = parse_config(WAREHOUSE.format(url="clickhouse://u@h:9000/db", cluster="events"))
    assert config.warehouse.cluster == "events"
    assert config.warehouse.zookeeper_path == PATH
    assert parse_config("warehouse:\n  url: clickhouse://u@h/db\n").warehouse.cluster is None
