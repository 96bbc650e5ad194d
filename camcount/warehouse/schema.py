"""Tables, their DDL, versioned migrations, and server feature detection.

Every table is a ``ReplacingMergeTree`` whose sorting key holds the row's
identity (docs/architecture.md, "Events and identity"), so a row written twice is one
row after a merge, and every documented query reads with ``FINAL`` so it
is one row before the merge too. Event times are deterministic functions
of identity (the frame's timestamp), so the copies of a row always share
their month partition and their sorting key.

The DDL is portable to ClickHouse 18.16 (Debian's server): MergeTree
family, DateTime, String, UInt/Float, Array and Nested. Newer features
switch on only when ``SELECT version()`` reports a server that has them,
and only for tables created on that server:

- ``LowCardinality(String)`` for ids and names (19.3 and later);
- column codecs (``Delta`` on times, ``ZSTD``) (20.1 and later, conservative);
- a TTL on raw event tables, when a retention is configured (19.6 and later);
- insert deduplication tokens with ``non_replicated_deduplication_window``
  (22.2 and later): a retried insert is then dropped by the server, on top
  of the ReplacingMergeTree guarantee.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from camcount.warehouse.binding import quote_string
from camcount.warehouse.errors import WarehouseSchemaError

MIGRATIONS_TABLE = "schema_migrations"
DEDUP_WINDOW_BLOCKS = 1000


def parse_version(text: str) -> tuple[int, ...]:
    """``'18.16.1'`` -> ``(18, 16, 1)``; anything after the digits is ignored."""
    parts = re.findall(r"\d+", text.split("-")[0])
    if not parts:
        raise WarehouseSchemaError(f"cannot read a server version from {text!r}")
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class Features:
    """What the connected server supports, decided from its version once."""

    version: tuple[int, ...]

    @classmethod
    def of(cls, version_text: str) -> Features:
        return cls(parse_version(version_text))

    @property
    def low_cardinality(self) -> bool:
        return self.version >= (19, 3)

    @property
    def codecs(self) -> bool:
        return self.version >= (20, 1)

    @property
    def ttl(self) -> bool:
        return self.version >= (19, 6)

    @property
    def insert_dedup_token(self) -> bool:
        return self.version >= (22, 2)

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


@dataclass(frozen=True)
class SchemaOptions:
    """Operator choices that shape the DDL.

    ``raw_ttl_days``: drop raw events (crossings, zone transitions, samples,
    visits, dead letters) this many days after their event time, on servers
    with TTL. ``None`` keeps them forever; window counts, gaps and cameras
    are never expired.
    """

    raw_ttl_days: int | None = None

    def __post_init__(self) -> None:
        if self.raw_ttl_days is not None and self.raw_ttl_days < 1:
            raise WarehouseSchemaError(f"raw_ttl_days must be 1 or more, got {self.raw_ttl_days}")


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str
    low_cardinality: bool = False
    codec: str | None = None
    default: str | None = None

    def ddl(self, features: Features) -> str:
        type_ = self.type
        if self.low_cardinality and features.low_cardinality:
            type_ = f"LowCardinality({type_})"
        parts = [f"`{self.name}`", type_]
        if self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        parts.append(f"COMMENT {quote_string(self.comment)}")
        if self.codec is not None and features.codecs:
            parts.append(f"CODEC({self.codec})")
        return " ".join(parts)


@dataclass(frozen=True)
class Table:
    """One warehouse table: columns, engine keys, and what it is for."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    version_column: str | None
    order_by: tuple[str, ...]
    partition_by: str | None = None
    raw_time_column: str | None = None

    def create_sql(self, features: Features, options: SchemaOptions) -> str:
        cols = ",\n    ".join(c.ddl(features) for c in self.columns)
        version = self.version_column or ""
        lines = [
            f"CREATE TABLE IF NOT EXISTS `{self.name}` (\n    {cols}\n)",
            f"ENGINE = ReplacingMergeTree({version})",
        ]
        if self.partition_by:
            lines.append(f"PARTITION BY {self.partition_by}")
        lines.append(f"ORDER BY ({', '.join(self.order_by)})")
        if self.raw_time_column and options.raw_ttl_days and features.ttl:
            lines.append(f"TTL {self.raw_time_column} + INTERVAL {int(options.raw_ttl_days)} DAY")
        settings = ["index_granularity = 8192"]
        if features.insert_dedup_token:
            settings.append(f"non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}")
        lines.append("SETTINGS " + ", ".join(settings))
        return "\n".join(lines)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


_TIME = "DateTime('UTC')"
_TIME_CODEC = "Delta, ZSTD(1)"
_INGESTED = Column(
    "ingested_at",
    _TIME,
    "when the row reached the warehouse (UTC); the ReplacingMergeTree version",
    default="now()",
)


def _id(what: str) -> Column:
    return Column(
        "event_id",
        "UInt64",
        f"deterministic 63-bit id of {what}; rows with equal ids are the same fact",
        codec="ZSTD(1)",
    )


def _camera() -> Column:
    return Column("camera_id", "String", "camera id from the config", low_cardinality=True)


def _time(name: str, what: str) -> tuple[Column, Column]:
    return (
        Column(name, _TIME, f"{what}, whole seconds (UTC)", codec=_TIME_CODEC),
        Column(ms_column(name), "UInt16", f"milliseconds (0-999) to add to {name}"),
    )


def ms_column(time_column: str) -> str:
    """The millisecond column beside a DateTime column: event_time ->
    event_ms, entered_at -> entered_ms."""
    return time_column.removesuffix("_at").removesuffix("_time") + "_ms"


def _class() -> Column:
    return Column("class_name", "String", "object class (person, car, ...)", low_cardinality=True)


CROSSINGS = Table(
    "crossings",
    "One row per confirmed track crossing a counting line, in one direction.",
    (
        _id("(camera, line, track, frame)"),
        _camera(),
        Column("counter_id", "String", "the line's id", low_cardinality=True),
        Column("track_id", "UInt64", "tracker id, unique within a camera run"),
        Column("frame_index", "UInt64", "index of the frame where the crossing counted"),
        *_time("event_time", "event time of the crossing"),
        _class(),
        Column("direction", "String", "'in' (side A to B) or 'out'", low_cardinality=True),
        Column("confidence", "Float32", "detector confidence of the counted box"),
        Column("anchor_x", "Float32", "x of the tested box point, pixels"),
        Column("anchor_y", "Float32", "y of the tested box point, pixels"),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=("camera_id", "counter_id", "event_time", "event_id"),
    partition_by="toYYYYMM(event_time)",
    raw_time_column="event_time",
)

ZONE_TRANSITIONS = Table(
    "zone_transitions",
    "One row per confirmed track entering or leaving a zone.",
    (
        _id("(camera, zone, track, frame)"),
        _camera(),
        Column("zone_id", "String", "the zone's id", low_cardinality=True),
        Column("track_id", "UInt64", "tracker id, unique within a camera run"),
        Column("frame_index", "UInt64", "index of the frame of the transition"),
        *_time("event_time", "event time of the transition"),
        _class(),
        Column("direction", "String", "'enter' or 'exit'", low_cardinality=True),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=("camera_id", "zone_id", "event_time", "event_id"),
    partition_by="toYYYYMM(event_time)",
    raw_time_column="event_time",
)

ZONE_SAMPLES = Table(
    "zone_samples",
    "Occupancy of a zone at sampled frames (every zone.sample_every_s), total and per class.",
    (
        _id("(camera, zone, frame)"),
        _camera(),
        Column("zone_id", "String", "the zone's id", low_cardinality=True),
        Column("frame_index", "UInt64", "index of the sampled frame"),
        *_time("event_time", "event time of the sampled frame"),
        Column("occupancy", "UInt32", "confirmed tracks inside the zone"),
        Column(
            "classes",
            "Nested(name String, count UInt32)",
            "occupancy per class; classes.name and classes.count are parallel arrays",
        ),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=("camera_id", "zone_id", "event_time", "event_id"),
    partition_by="toYYYYMM(event_time)",
    raw_time_column="event_time",
)

ZONE_VISITS = Table(
    "zone_visits",
    "One row per track's stay in a zone, written when the stay ends.",
    (
        _id("(camera, zone, track, entered_at)"),
        _camera(),
        Column("zone_id", "String", "the zone's id", low_cardinality=True),
        Column("track_id", "UInt64", "tracker id, unique within a camera run"),
        *_time("entered_at", "event time of the entry"),
        *_time("exited_at", "last event time the track was seen inside"),
        Column("dwell_s", "Float64", "exited_at - entered_at, seconds (exact)"),
        _class(),
        Column("entry_frame", "UInt64", "frame index of the entry"),
        Column("exit_frame", "UInt64", "frame index of the last frame inside"),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=("camera_id", "zone_id", "entered_at", "event_id"),
    partition_by="toYYYYMM(entered_at)",
    raw_time_column="entered_at",
)

WINDOW_COUNTS = Table(
    "window_counts",
    "Closed, final tumbling-window counts per (camera, counter, class, direction, size).",
    (
        _id("(camera, counter, class, direction, size, start)"),
        _camera(),
        Column("counter_id", "String", "line or zone id", low_cardinality=True),
        _class(),
        Column(
            "direction",
            "String",
            "'in'/'out' for lines, 'enter'/'exit' for zones",
            low_cardinality=True,
        ),
        Column("window_size_s", "UInt32", "window length, seconds"),
        Column("window_start", _TIME, "window start (UTC), inclusive", codec=_TIME_CODEC),
        Column("window_end", _TIME, "window end (UTC), exclusive", codec=_TIME_CODEC),
        Column("count", "UInt64", "events in the window"),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=(
        "camera_id",
        "counter_id",
        "window_size_s",
        "window_start",
        "class_name",
        "direction",
    ),
    partition_by="toYYYYMM(window_start)",
)

DEAD_LETTERS = Table(
    "dead_letters",
    "What could not be processed or stored, with the reason; the payload is kept in "
    "object storage for replay.",
    (
        _id("(source, reason, payload kind, payload id)"),
        Column("source", "String", "the part that gave up (e.g. warehouse)", low_cardinality=True),
        Column("reason", "String", "late, rejected, invalid, undecodable...", low_cardinality=True),
        Column("detail", "String", "human-readable detail, e.g. the server's error message"),
        *_time("event_time", "event time of the payload"),
        Column(
            "payload_kind", "String", "kind of the payload (crossing, ...)", low_cardinality=True
        ),
        Column("payload_id", "UInt64", "event_id of the payload"),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=("source", "reason", "event_time", "event_id"),
    partition_by="toYYYYMM(event_time)",
    raw_time_column="event_time",
)

GAPS = Table(
    "gaps",
    "Event time a camera never captured (a live source restarted or reconnected, a "
    "restore that could not resume where it stopped), one row per gap.",
    (
        _id("(camera, gap_from)"),
        _camera(),
        *_time("gap_from", "event time of the last frame before the gap"),
        *_time("gap_to", "event time of the first frame after the gap, or when the source resumed"),
        Column("duration_s", "Float64", "gap_to - gap_from, seconds (exact)"),
        Column(
            "reason",
            "String",
            "why nothing was captured: camera restart, stream reconnect, "
            "restore from checkpoint...",
            low_cardinality=True,
        ),
        Column("frames_lost", "Int64", "frames never captured; -1 when unknown"),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=("camera_id", "gap_from", "event_id"),
    partition_by="toYYYYMM(gap_from)",
    # Never expired: a gap explains missing window counts, which are kept.
)

CAMERAS = Table(
    "cameras",
    "Camera metadata; one row per camera and config version, the highest version current.",
    (
        _camera(),
        Column("version", "UInt64", "config version (milliseconds since epoch when written)"),
        Column("site", "String", "site or group name", low_cardinality=True),
        Column("source", "String", "source URL or path, password masked"),
        Column("fps", "Float64", "sampling rate; 0 means every frame"),
        Column("coordinates", "String", "'pixel' or 'normalized' line/zone coordinates"),
        Column("start_time", _TIME, "event time of a file source's first frame"),
        Column("classes", "Array(String)", "classes counted (empty: all)"),
        Column("min_confidence", "Float32", "confidence filter"),
        Column("tags", "Nested(key String, value String)", "free-form tags"),
        Column("removed", "UInt8", "1 when the camera was removed at this version"),
        Column("updated_at", _TIME, "when the row was written (UTC)", default="now()"),
    ),
    version_column="version",
    order_by=("camera_id",),
)

CAMERA_COUNTERS = Table(
    "camera_counters",
    "Lines and zones of each camera; current ones carry the camera's current version.",
    (
        _camera(),
        Column("counter_id", "String", "line or zone id", low_cardinality=True),
        Column("version", "UInt64", "the camera config version this row belongs to"),
        Column("kind", "String", "'line' or 'zone'", low_cardinality=True),
        Column("points_x", "Array(Float64)", "x of the line's 2 points or the polygon's vertices"),
        Column("points_y", "Array(Float64)", "y of the same points"),
        Column("anchor", "String", "tested box point (bottom_center, ...)"),
        Column("band_px", "Float64", "hysteresis band, pixels"),
        Column("classes", "Array(String)", "classes counted (empty: the camera's)"),
        Column("sample_every_s", "Float64", "zones: occupancy sampling period; lines: 0"),
        Column("updated_at", _TIME, "when the row was written (UTC)", default="now()"),
    ),
    version_column="version",
    order_by=("camera_id", "counter_id"),
)

SCHEMA_MIGRATIONS = Table(
    MIGRATIONS_TABLE,
    "Applied schema migrations, one row per version.",
    (
        Column("version", "UInt32", "migration number"),
        Column("name", "String", "what it did"),
        Column("server_version", "String", "server version that applied it"),
        Column("applied_at", _TIME, "when (UTC)", default="now()"),
    ),
    version_column=None,
    order_by=("version",),
)

# The tables of migration 1, fixed forever: a database that has it keeps
# them, and later tables come with their own migration.
_TABLES_V1: tuple[Table, ...] = (
    CROSSINGS,
    ZONE_TRANSITIONS,
    ZONE_SAMPLES,
    ZONE_VISITS,
    WINDOW_COUNTS,
    DEAD_LETTERS,
    CAMERAS,
    CAMERA_COUNTERS,
)
TABLES: tuple[Table, ...] = (*_TABLES_V1, GAPS)
TABLES_BY_NAME = {t.name: t for t in (*TABLES, SCHEMA_MIGRATIONS)}


class SqlRunner(Protocol):
    """What migrations need from a backend."""

    def execute(self, sql: str) -> None: ...

    def query(self, sql: str, params: dict[str, object] | None = None) -> pa.Table: ...

    def insert(self, table: str, rows: pa.Table, dedup_token: str | None = None) -> None: ...


@dataclass
class MigrationContext:
    """Handed to each migration: the server, its features, the options."""

    runner: SqlRunner
    features: Features
    options: SchemaOptions

    def execute(self, sql: str) -> None:
        self.runner.execute(sql)

    def columns(self, table: str) -> dict[str, str]:
        """Existing columns of ``table`` (name -> type); 18.16 has no
        ``ADD COLUMN IF NOT EXISTS``, so migrations check here first."""
        rows = self.runner.query(
            "SELECT name, type FROM system.columns "
            "WHERE database = currentDatabase() AND table = {table:String}",
            {"table": table},
        ).to_pylist()
        return {r["name"]: r["type"] for r in rows}

    def add_column(self, table: str, column: Column, after: str | None = None) -> None:
        if column.name in self.columns(table):
            return
        where = f" AFTER `{after}`" if after else ""
        self.execute(f"ALTER TABLE `{table}` ADD COLUMN {column.ddl(self.features)}{where}")


@dataclass(frozen=True)
class Migration:
    """One schema step. ``apply`` must be idempotent: two processes may
    start at once, and a crash may come between the step and its record."""

    version: int
    name: str
    apply: Callable[[MigrationContext], None] = field(repr=False)


def _create(*tables: Table) -> Callable[[MigrationContext], None]:
    def apply(ctx: MigrationContext) -> None:
        for table in tables:
            ctx.execute(table.create_sql(ctx.features, ctx.options))

    return apply


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, window counts, dead letters, cameras", _create(*_TABLES_V1)),
    Migration(2, "gaps", _create(GAPS)),
)


def applied_versions(runner: SqlRunner) -> set[int]:
    rows = runner.query(f"SELECT DISTINCT version FROM `{MIGRATIONS_TABLE}`").column(0)
    return {int(v) for v in rows.to_pylist()}


def migrate(
    runner: SqlRunner,
    features: Features,
    options: SchemaOptions | None = None,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> list[int]:
    """Apply, in order, every migration the database has not recorded.

    Returns the versions applied now (empty when up to date). Each is
    recorded right after it runs, so a crash re-runs at most one step,
    and steps are idempotent.
    """
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise WarehouseSchemaError(f"migration versions must be unique and increasing: {versions}")
    ctx = MigrationContext(runner, features, options or SchemaOptions())
    # The bookkeeping table is created without version-dependent features
    # so it reads the same on every server.
    runner.execute(SCHEMA_MIGRATIONS.create_sql(Features((18, 16)), SchemaOptions()))
    done = applied_versions(runner)
    applied: list[int] = []
    for m in migrations:
        if m.version in done:
            continue
        m.apply(ctx)
        record = pa.table(
            {
                "version": pa.array([m.version], pa.uint32()),
                "name": [m.name],
                "server_version": [features.version_text],
            }
        )
        runner.insert(MIGRATIONS_TABLE, record)
        applied.append(m.version)
    return applied
