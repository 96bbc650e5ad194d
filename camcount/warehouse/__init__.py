"""The ClickHouse warehouse: schema, backends, documented queries, writer.

Public surface:

- `connect(config_or_url)` -> `Warehouse`: open, check, migrate; run
  documented queries (`Warehouse.query(name, ...)`) or any parameterised
  SELECT (`Warehouse.sql`).
- `WarehouseWriter`: the sink's logic (batching, bounded buffer, spill,
  replay, dead letters), used by ``actors/sink.py``.
- the query helpers the API calls (`window_counts`, `hourly_counts`,
  `daily_counts`, `peak_hours`, `occupancy`, `dwell_stats`,
  `dwell_histogram`, `crossings`, `cameras`, `camera_counters`,
  `dead_letters`, `gaps`, `open_alerts`, `alert_changes`,
  `latest_forecasts`), each taking a `Backend`.
- `camera_tables` and `tables_by_kind`: Arrow batches ready for a write.
- URL helpers (`parse_url`, `mask_url`) and the errors.

See docs/warehouse.md for the tables and example queries.
"""

from camcount.warehouse.backends import Backend, ChdbBackend, ServerBackend, open_backend
from camcount.warehouse.connection import Warehouse, connect
from camcount.warehouse.errors import (
    QueryError,
    WarehouseAuthError,
    WarehouseError,
    WarehouseLocked,
    WarehouseRejected,
    WarehouseSchemaError,
    WarehouseUnavailable,
    WarehouseUrlError,
)
from camcount.warehouse.queries import (
    QUERIES,
    NamedQuery,
    alert_changes,
    camera_counters,
    camera_seen,
    cameras,
    crossings,
    daily_counts,
    dead_letters,
    dwell_histogram,
    dwell_stats,
    gaps,
    hourly_counts,
    latest_forecasts,
    occupancy,
    open_alerts,
    peak_hours,
    run_query,
    window_counts,
)
from camcount.warehouse.rows import KINDS, RowsInvalid, camera_tables
from camcount.warehouse.schema import MIGRATIONS, TABLES, Features, Migration, SchemaOptions
from camcount.warehouse.urls import WarehouseUrl, mask_url, parse_url
from camcount.warehouse.writer import RetryPolicy, WarehouseWriter, WriterSettings, tables_by_kind

__all__ = [
    "KINDS",
    "MIGRATIONS",
    "QUERIES",
    "TABLES",
    "Backend",
    "ChdbBackend",
    "Features",
    "Migration",
    "NamedQuery",
    "QueryError",
    "RetryPolicy",
    "RowsInvalid",
    "SchemaOptions",
    "ServerBackend",
    "Warehouse",
    "WarehouseAuthError",
    "WarehouseError",
    "WarehouseLocked",
    "WarehouseRejected",
    "WarehouseSchemaError",
    "WarehouseUnavailable",
    "WarehouseUrl",
    "WarehouseUrlError",
    "WarehouseWriter",
    "WriterSettings",
    "alert_changes",
    "camera_counters",
    "camera_seen",
    "camera_tables",
    "cameras",
    "connect",
    "crossings",
    "daily_counts",
    "dead_letters",
    "dwell_histogram",
    "dwell_stats",
    "gaps",
    "hourly_counts",
    "latest_forecasts",
    "mask_url",
    "occupancy",
    "open_alerts",
    "open_backend",
    "parse_url",
    "peak_hours",
    "run_query",
    "tables_by_kind",
    "window_counts",
]
