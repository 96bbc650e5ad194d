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

On a cluster (`ClusterOptions`), each table is two: ``NAME_local``, a
``ReplicatedReplacingMergeTree`` with the same keys on every node, and
``NAME``, a ``Distributed`` table over them that every read and write
uses, so queries and the writer name the same tables as on one server.
The Distributed table sends each row to the shard its sharding key picks,
and that key is a function of the row's identity: every copy of a row
lands on one shard, where ``FINAL`` and ``argMax`` collapse them as on one
server. Replicas of a shard hold the same rows, so a read from any of
them gives one row per identity.
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
LOCAL_SUFFIX = "_local"
#: Each node's replica name: the server's ``{replica}`` macro.
REPLICA_NAME = "{replica}"
_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


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
    def replicated_comments(self) -> bool:
        """18.16 records a replicated table's column comments in ZooKeeper
        in a form its second replica then refuses ("Table structure in
        ZooKeeper is too different"); later servers take them (20.1 here,
        conservative, as for codecs)."""
        return self.version >= (20, 1)

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


@dataclass(frozen=True)
class ClusterOptions:
    """A ClickHouse cluster (a ``remote_servers`` entry of every node) that
    the tables span.

    ``zookeeper_path`` is where each replicated table keeps its metadata:
    ``{shard}`` is the server's macro; ``{database}`` and ``{table}`` are
    filled in here, since 18.16 does not expand them. It must name
    ``{table}``, so that two tables never share replication metadata, and
    should name ``{database}``, so that two databases on one cluster do
    not either (warehouse.zookeeper_path in the config has the default).
    """

    name: str
    zookeeper_path: str

    def __post_init__(self) -> None:
        if not _CLUSTER_NAME.match(self.name):
            raise WarehouseSchemaError(
                f"cluster name must match {_CLUSTER_NAME.pattern}, got {self.name!r}"
            )
        if "{table}" not in self.zookeeper_path or not self.zookeeper_path.startswith("/"):
            raise WarehouseSchemaError(
                "zookeeper_path must start with / and contain {table}, "
                f"got {self.zookeeper_path!r}"
            )

    def replica_path(self, database: str, table: str) -> str:
        return self.zookeeper_path.replace("{database}", database).replace("{table}", table)


@dataclass(frozen=True)
class SchemaOptions:
    """Operator choices that shape the DDL.

    ``raw_ttl_days``: drop raw events (crossings, zone transitions, samples,
    visits, dead letters) this many days after their event time, on servers
    with TTL. ``None`` keeps them forever; window counts, gaps and cameras
    are never expired.

    ``cluster``: create every table on a cluster (replicated tables and a
    Distributed table over them); ``None`` for one server or chDB.
    """

    raw_ttl_days: int | None = None
    cluster: ClusterOptions | None = None

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

    def ddl(self, features: Features, comment: bool = True, codec: bool = True) -> str:
        type_ = self.type
        if self.low_cardinality and features.low_cardinality:
            type_ = f"LowCardinality({type_})"
        parts = [f"`{self.name}`", type_]
        if self.default is not None:
            parts.append(f"DEFAULT {self.default}")
        if comment:
            parts.append(f"COMMENT {quote_string(self.comment)}")
        if codec and self.codec is not None and features.codecs:
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
    #: How a Distributed table picks a row's shard: a function of the
    #: row's identity, so every copy of a row meets the others on one shard.
    shard_key: str = "event_id"

    @property
    def local_name(self) -> str:
        """The replicated table under the Distributed one, on a cluster."""
        return self.name + LOCAL_SUFFIX

    def create_sql(
        self, features: Features, options: SchemaOptions, database: str | None = None
    ) -> str:
        """One server: the table itself. A cluster (``options.cluster``,
        which needs ``database``): the replicated table on every node; see
        `create_distributed_sql` for the table over it."""
        cluster = options.cluster
        comments = cluster is None or features.replicated_comments
        cols = ",\n    ".join(c.ddl(features, comment=comments) for c in self.columns)
        version = self.version_column or ""
        if cluster is None:
            lines = [
                f"CREATE TABLE IF NOT EXISTS `{self.name}` (\n    {cols}\n)",
                f"ENGINE = ReplacingMergeTree({version})",
            ]
        else:
            if not database:
                raise WarehouseSchemaError(f"{self.name}: a cluster's DDL needs the database")
            path = quote_string(cluster.replica_path(database, self.local_name))
            engine_args = ", ".join(a for a in (path, quote_string(REPLICA_NAME), version) if a)
            lines = [
                f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.local_name}` "
                f"ON CLUSTER `{cluster.name}` (\n    {cols}\n)",
                f"ENGINE = ReplicatedReplacingMergeTree({engine_args})",
            ]
        if self.partition_by:
            lines.append(f"PARTITION BY {self.partition_by}")
        lines.append(f"ORDER BY ({', '.join(self.order_by)})")
        if self.raw_time_column and options.raw_ttl_days and features.ttl:
            lines.append(f"TTL {self.raw_time_column} + INTERVAL {int(options.raw_ttl_days)} DAY")
        settings = ["index_granularity = 8192"]
        if features.insert_dedup_token and cluster is None:
            # Replicated tables deduplicate by token with their own window.
            settings.append(f"non_replicated_deduplication_window = {DEDUP_WINDOW_BLOCKS}")
        lines.append("SETTINGS " + ", ".join(settings))
        return "\n".join(lines)

    def create_distributed_sql(
        self,
        features: Features,
        cluster: ClusterOptions,
        database: str,
        column_ddl: Sequence[str] | None = None,
    ) -> str:
        """The Distributed table, named as the table is on one server, over
        the replicated ones: reads and writes go through it. It carries the
        column comments (what analysts read), which the replicated tables
        on 18.16 cannot. ``column_ddl`` replaces the declared columns (a
        migration that added one)."""
        if column_ddl is None:
            column_ddl = [c.ddl(features, codec=False) for c in self.columns]
        cols = ",\n    ".join(column_ddl)
        return (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.name}` ON CLUSTER `{cluster.name}` "
            f"(\n    {cols}\n)\n"
            f"ENGINE = Distributed({quote_string(cluster.name)}, {quote_string(database)}, "
            f"{quote_string(self.local_name)}, {self.shard_key})"
        )

    def drop_distributed_sql(self, cluster: ClusterOptions, database: str) -> str:
        return f"DROP TABLE IF EXISTS `{database}`.`{self.name}` ON CLUSTER `{cluster.name}`"

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

ALERTS = Table(
    "alerts",
    "Alert history: one row per change of an alert (firing, resolved); docs/alerts.md.",
    (
        _id("(alert, state)"),
        Column("alert_id", "UInt64", "the alert across its changes: (rule, target, opened_at)"),
        Column("rule_id", "String", "the rule's id from the config", low_cardinality=True),
        Column("target", "String", "what the rule watched: camera/zone, group:id, ..."),
        Column("camera_id", "String", "the target's camera or group:id", low_cardinality=True),
        Column("state", "String", "'firing' or 'resolved'", low_cardinality=True),
        Column("severity", "String", "info, warning or critical", low_cardinality=True),
        Column("value", "Float64", "the value that decided the change"),
        Column("threshold", "Float64", "the edge it crossed"),
        *_time("opened_at", "event time the alert opened"),
        *_time("event_time", "event time of this change"),
        Column("message", "String", "a sentence for people"),
        Column("labels", "Array(String)", "the rule's labels as key=value"),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=("rule_id", "target", "event_time", "event_id"),
    partition_by="toYYYYMM(event_time)",
    raw_time_column="event_time",
)

FORECASTS = Table(
    "forecasts",
    "Forecast counts of future windows per key, as issued when a window closed; "
    "the newest issue for a window is the nearest forecast.",
    (
        _id("(camera, counter, class, direction, size, start, issued_for)"),
        _camera(),
        Column("counter_id", "String", "line or zone id", low_cardinality=True),
        _class(),
        Column("direction", "String", "'in'/'out', 'enter'/'exit'", low_cardinality=True),
        Column("window_size_s", "UInt32", "window length, seconds"),
        Column("window_start", _TIME, "start of the forecast window (UTC)", codec=_TIME_CODEC),
        Column(
            "issued_for",
            _TIME,
            "start of the first window of the issue: the forecast was made when the "
            "window before it closed",
            codec=_TIME_CODEC,
        ),
        Column("steps_ahead", "UInt16", "windows ahead of the issue (1: the next one)"),
        Column("value", "Float64", "expected count"),
        Column("lower", "Float64", "lower edge of the band"),
        Column("upper", "Float64", "upper edge of the band"),
        _INGESTED,
    ),
    version_column="ingested_at",
    order_by=("camera_id", "counter_id", "window_size_s", "window_start", "issued_for", "event_id"),
    partition_by="toYYYYMM(window_start)",
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
    shard_key="cityHash64(camera_id)",
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
    shard_key="cityHash64(camera_id)",
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
    shard_key="version",
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
TABLES: tuple[Table, ...] = (*_TABLES_V1, GAPS, ALERTS, FORECASTS)
TABLES_BY_NAME = {t.name: t for t in (*TABLES, SCHEMA_MIGRATIONS)}


class SqlRunner(Protocol):
    """What migrations need from a backend."""

    def execute(self, sql: str) -> None: ...

    def query(self, sql: str, params: dict[str, object] | None = None) -> pa.Table: ...

    def insert(self, table: str, rows: pa.Table, dedup_token: str | None = None) -> None: ...


@dataclass
class MigrationContext:
    """Handed to each migration: the server, its features, the options.

    Migrations say what to create or change in one-server terms
    (`create`, `add_column`); on a cluster the context turns that into
    ``ON CLUSTER`` DDL on the replicated tables and their Distributed one.
    """

    runner: SqlRunner
    features: Features
    options: SchemaOptions
    database: str = ""

    def execute(self, sql: str) -> None:
        self.runner.execute(sql)

    def create(self, table: Table) -> None:
        cluster = self.options.cluster
        self.execute(table.create_sql(self.features, self.options, self.database))
        if cluster is not None:
            self.execute(table.create_distributed_sql(self.features, cluster, self.database))

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
        cluster = self.options.cluster
        where = f" AFTER `{after}`" if after else ""
        if cluster is None:
            if column.name not in self.columns(table):
                self.execute(f"ALTER TABLE `{table}` ADD COLUMN {column.ddl(self.features)}{where}")
            return
        local = table + LOCAL_SUFFIX
        if column.name not in self.columns(local):
            # A replicated ALTER reaches every replica of a shard through
            # ZooKeeper; ON CLUSTER reaches every shard.
            ddl = column.ddl(self.features, comment=self.features.replicated_comments)
            self.execute(
                f"ALTER TABLE `{self.database}`.`{local}` ON CLUSTER `{cluster.name}` "
                f"ADD COLUMN {ddl}{where}"
            )
        if column.name not in self.columns(table):
            # 18.16 refuses ALTER ON CLUSTER of a Distributed table over
            # replicated shards. It holds no rows (inserts through it are
            # synchronous), so it is made again with its columns and the
            # new one.
            spec = TABLES_BY_NAME[table]
            columns = self._column_ddl(table)
            new = column.ddl(self.features, codec=False)
            at = next((i + 1 for i, (n, _) in enumerate(columns) if n == after), len(columns))
            columns.insert(at, (column.name, new))
            self.execute(spec.drop_distributed_sql(cluster, self.database))
            self.execute(
                spec.create_distributed_sql(
                    self.features, cluster, self.database, [d for _, d in columns]
                )
            )

    def _column_ddl(self, table: str) -> list[tuple[str, str]]:
        """(name, DDL) of each column of ``table`` as the server has it."""
        rows = self.runner.query(
            "SELECT name, type, default_kind, default_expression, comment FROM system.columns "
            "WHERE database = currentDatabase() AND table = {table:String}",
            {"table": table},
        ).to_pylist()
        out = []
        for r in rows:
            parts = [f"`{r['name']}`", r["type"]]
            if r["default_kind"]:
                parts.append(f"{r['default_kind']} {r['default_expression']}")
            if r["comment"]:
                parts.append(f"COMMENT {quote_string(r['comment'])}")
            out.append((r["name"], " ".join(parts)))
        return out


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
            ctx.create(table)

    return apply


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "events, window counts, dead letters, cameras", _create(*_TABLES_V1)),
    Migration(2, "gaps", _create(GAPS)),
    Migration(3, "alerts and forecasts", _create(ALERTS, FORECASTS)),
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
    options = options or SchemaOptions()
    database = ""
    if options.cluster is not None:
        database = str(runner.query("SELECT currentDatabase() AS db").column(0)[0].as_py())
        _check_engines(runner, options.cluster)
    ctx = MigrationContext(runner, features, options, database)
    # The bookkeeping table is created without version-dependent features
    # so it reads the same on every server.
    MigrationContext(
        runner, Features((18, 16)), SchemaOptions(cluster=options.cluster), database
    ).create(SCHEMA_MIGRATIONS)
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


def _check_engines(runner: SqlRunner, cluster: ClusterOptions) -> None:
    """Refuse a database made for one server when a cluster is asked for:
    its tables would take every write, unreplicated, and hide the
    Distributed ones the cluster needs."""
    rows = runner.query(
        "SELECT name, engine FROM system.tables WHERE database = currentDatabase()"
    ).to_pylist()
    wrong = sorted(
        r["name"] for r in rows if r["name"] in TABLES_BY_NAME and r["engine"] != "Distributed"
    )
    if wrong:
        raise WarehouseSchemaError(
            f"warehouse.cluster is {cluster.name!r}, but this database's tables {wrong} "
            "were made for one server (not Distributed); use a new database for the cluster"
        )
