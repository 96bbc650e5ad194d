"""DDL by server version, and versioned migrations on the embedded engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from camcount.warehouse import ChdbBackend, Features, Migration, SchemaOptions, parse_url
from camcount.warehouse.errors import WarehouseSchemaError
from camcount.warehouse.schema import (
    CROSSINGS,
    GAPS,
    MIGRATIONS,
    TABLES,
    WINDOW_COUNTS,
    Column,
    MigrationContext,
    applied_versions,
    migrate,
    parse_version,
)

OLD = Features.of("18.16.1")
NEW = Features.of("26.9.2.1")


@pytest.mark.parametrize(
    ("text", "version"),
    [("18.16.1", (18, 16, 1)), ("26.9.2.1", (26, 9, 2, 1)), ("24.3.1.2-lts", (24, 3, 1, 2))],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert parse_version(text) == version


def test_parse_version_refuses_garbage() -> None:
    with pytest.raises(WarehouseSchemaError):
        parse_version("unknown")


@pytest.mark.parametrize(
    ("version", "low_cardinality", "codecs", "ttl", "token"),
    [
        ("18.16.1", False, False, False, False),  # Debian's server
        ("19.3.4", True, False, False, False),
        ("19.6.1", True, False, True, False),
        ("20.1.2", True, True, True, False),
        ("22.2.1", True, True, True, True),
        ("26.9.2.1", True, True, True, True),  # chDB's engine
    ],
)
def test_features_by_version(
    version: str, low_cardinality: bool, codecs: bool, ttl: bool, token: bool
) -> None:
    f = Features.of(version)
    assert (f.low_cardinality, f.codecs, f.ttl, f.insert_dedup_token) == (
        low_cardinality,
        codecs,
        ttl,
        token,
    )


def test_old_server_ddl_is_the_portable_core() -> None:
    ddl = CROSSINGS.create_sql(OLD, SchemaOptions(raw_ttl_days=30))
    for newer in ("LowCardinality", "CODEC", "TTL", "deduplication_window"):
        assert newer not in ddl
    assert "ENGINE = ReplacingMergeTree(ingested_at)" in ddl
    assert "PARTITION BY toYYYYMM(event_time)" in ddl
    assert "ORDER BY (camera_id, counter_id, event_time, event_id)" in ddl


def test_current_server_ddl_switches_features_on() -> None:
    ddl = CROSSINGS.create_sql(NEW, SchemaOptions(raw_ttl_days=30))
    assert "`camera_id` LowCardinality(String)" in ddl
    assert "CODEC(Delta, ZSTD(1))" in ddl
    assert "TTL event_time + INTERVAL 30 DAY" in ddl
    assert "non_replicated_deduplication_window = 1000" in ddl
    # Aggregates are never expired, even with a retention set.
    assert "TTL" not in WINDOW_COUNTS.create_sql(NEW, SchemaOptions(raw_ttl_days=30))
    # No retention configured: no TTL at all.
    assert "TTL" not in CROSSINGS.create_sql(NEW, SchemaOptions())


def test_sorting_keys_hold_each_rows_identity() -> None:
    keys = {t.name: t.order_by for t in TABLES}
    for name in (
        "crossings",
        "zone_transitions",
        "zone_samples",
        "zone_visits",
        "dead_letters",
        "gaps",
    ):
        assert "event_id" in keys[name] and keys[name][0] in ("camera_id", "source")
    assert keys["window_counts"] == (
        "camera_id",
        "counter_id",
        "window_size_s",
        "window_start",
        "class_name",
        "direction",
    )
    assert keys["cameras"] == ("camera_id",)
    assert keys["camera_counters"] == ("camera_id", "counter_id")


def test_gaps_are_keyed_by_identity_ordered_by_camera_and_time_and_never_expired() -> None:
    old = GAPS.create_sql(OLD, SchemaOptions(raw_ttl_days=30))
    assert "ENGINE = ReplacingMergeTree(ingested_at)" in old
    assert "PARTITION BY toYYYYMM(gap_from)" in old
    assert "ORDER BY (camera_id, gap_from, event_id)" in old
    assert "`frames_lost` Int64" in old  # -1: unknown
    for newer in ("LowCardinality", "CODEC", "TTL"):
        assert newer not in old
    new = GAPS.create_sql(NEW, SchemaOptions(raw_ttl_days=30))
    assert "`reason` LowCardinality(String)" in new
    # A gap explains missing window counts, which are kept: so is the gap.
    assert "TTL" not in new
    assert [c.name for c in GAPS.columns] == [
        "event_id",
        "camera_id",
        "gap_from",
        "gap_from_ms",
        "gap_to",
        "gap_to_ms",
        "duration_s",
        "reason",
        "frames_lost",
        "ingested_at",
    ]


def test_retention_must_be_positive() -> None:
    with pytest.raises(WarehouseSchemaError):
        SchemaOptions(raw_ttl_days=0)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[ChdbBackend]:
    backend = ChdbBackend(parse_url(f"chdb://{tmp_path}/db"))
    yield backend
    backend.close()


def test_migrations_apply_once_in_order(engine: ChdbBackend) -> None:
    assert migrate(engine, engine.features) == [m.version for m in MIGRATIONS]
    assert migrate(engine, engine.features) == []
    tables = set(engine.query("SHOW TABLES").column(0).to_pylist())
    assert {t.name for t in TABLES} | {"schema_migrations"} <= tables


def test_a_database_from_before_gaps_gets_the_gaps_table(engine: ChdbBackend) -> None:
    # Migration 1 is what a database made before gaps existed has: its
    # tables, no more. Migration 2 then adds gaps and nothing else.
    assert migrate(engine, engine.features, migrations=MIGRATIONS[:1]) == [1]
    tables = set(engine.query("SHOW TABLES").column(0).to_pylist())
    assert "gaps" not in tables and "crossings" in tables
    assert migrate(engine, engine.features, migrations=MIGRATIONS[:2]) == [2]
    assert "gaps" in set(engine.query("SHOW TABLES").column(0).to_pylist())
    assert applied_versions(engine) == {1, 2}


def test_a_database_from_before_alerts_gets_their_tables(engine: ChdbBackend) -> None:
    assert migrate(engine, engine.features, migrations=MIGRATIONS[:2]) == [1, 2]
    assert "alerts" not in set(engine.query("SHOW TABLES").column(0).to_pylist())
    assert migrate(engine, engine.features) == [3]
    tables = set(engine.query("SHOW TABLES").column(0).to_pylist())
    assert {"alerts", "forecasts"} <= tables


def test_a_later_migration_adds_a_column_idempotently(engine: ChdbBackend) -> None:
    extra = Column("site", "String", "site of the camera", low_cardinality=True)

    def add_site(ctx: MigrationContext) -> None:
        ctx.add_column("crossings", extra, after="camera_id")

    current = [m.version for m in MIGRATIONS]
    later = current[-1] + 1
    steps = (*MIGRATIONS, Migration(later, "site on crossings", add_site))
    assert migrate(engine, engine.features) == current
    assert migrate(engine, engine.features, migrations=steps) == [later]
    # A crash after the ALTER but before its record: the step runs again.
    engine.execute("TRUNCATE TABLE schema_migrations")
    assert migrate(engine, engine.features, migrations=steps) == [*current, later]
    columns = engine.query(
        "SELECT name, type FROM system.columns "
        "WHERE database = currentDatabase() AND table = 'crossings'"
    ).to_pylist()
    assert [c for c in columns if c["name"] == "site"] == [
        {"name": "site", "type": "LowCardinality(String)"}
    ]
    assert applied_versions(engine) == {*current, later}


def test_migration_versions_must_increase(engine: ChdbBackend) -> None:
    steps = (Migration(2, "b", lambda ctx: None), Migration(1, "a", lambda ctx: None))
    with pytest.raises(WarehouseSchemaError, match="unique and increasing"):
        migrate(engine, engine.features, migrations=steps)
