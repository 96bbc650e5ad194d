"""Open the configured warehouse: connect, check, migrate.

`connect` is what the sink, the CLI and the notebook call. It fails at
once, with the masked URL, when the URL, the password or the server is
wrong, and leaves the schema at the newest version before returning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any

import pyarrow as pa

from camcount.config import WarehouseConfig
from camcount.warehouse.backends import Backend, open_backend
from camcount.warehouse.queries import run_query
from camcount.warehouse.rows import batch_digest, check_source, convert, kind_of
from camcount.warehouse.schema import ClusterOptions, Features, SchemaOptions, migrate
from camcount.warehouse.urls import parse_url, resolve_password

log = logging.getLogger(__name__)


class Warehouse:
    """An open warehouse whose schema is current.

    Writes here are direct and synchronous (load a file of events, a
    notebook's data); the pipeline writes through the sink, which batches,
    buffers and spills.
    """

    def __init__(self, backend: Backend, migrated: list[int]) -> None:
        self.backend = backend
        self.migrated = migrated

    def __repr__(self) -> str:
        return f"Warehouse({self.url}, server {self.backend.server_version})"

    @property
    def url(self) -> str:
        return self.backend.url.masked()

    @property
    def features(self) -> Features:
        return self.backend.features

    def query(self, name: str, **params: object) -> pa.Table:
        """A documented query by name (see `camcount.warehouse.queries`)."""
        return run_query(self.backend, name, params)

    def sql(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table:
        """Any SELECT, with ``{name:Type}`` placeholders bound safely."""
        return self.backend.query(sql, params)

    def insert(self, kind_name: str, batch: pa.Table) -> int:
        """Convert and insert one batch now; errors propagate (no buffer)."""
        kind = kind_of(kind_name)
        check_source(kind, batch)
        if batch.num_rows == 0:
            return 0
        rows = convert(kind, batch)
        self.backend.insert(kind.table.name, rows, f"{kind.name}-{batch_digest(kind, rows)}")
        return int(rows.num_rows)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    config: WarehouseConfig | str,
    role: str = "camcount",
    schema: SchemaOptions | None = None,
    environ: Mapping[str, str] | None = None,
    **config_overrides: Any,
) -> Warehouse:
    """Open the warehouse named by a config (or a URL), migrate, return it.

    ``role`` is written into a chDB lock so that a second opener learns
    who holds the database. With ``cluster`` in the config, the database
    and tables are made on every node of that cluster
    (`camcount.warehouse.schema`).
    """
    cfg = WarehouseConfig(url=config) if isinstance(config, str) else config
    if config_overrides:
        cfg = cfg.model_copy(update=config_overrides)
    url = resolve_password(parse_url(cfg.url), cfg.password_env, cfg.password_file, environ)
    if schema is None:
        schema = SchemaOptions(raw_ttl_days=cfg.raw_ttl_days)
    if cfg.cluster is not None and schema.cluster is None:
        schema = replace(schema, cluster=ClusterOptions(cfg.cluster, cfg.zookeeper_path))
    cluster = schema.cluster.name if schema.cluster is not None else None
    backend = open_backend(url, role=role, cluster=cluster)
    try:
        applied = migrate(backend, backend.features, schema)
    except BaseException:
        backend.close()
        raise
    if applied:
        log.info("warehouse %s: applied migrations %s", url.masked(), applied)
    return Warehouse(backend, applied)
