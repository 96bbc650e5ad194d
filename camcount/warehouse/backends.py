"""Two ways to reach ClickHouse behind one small interface.

- `ServerBackend`: a ClickHouse server through clickhouse-driver's native
  protocol: columnar inserts (NumPy buffers where the column allows),
  LZ4 compression, connect/send/receive timeouts, failover across the
  URL's hosts (the driver tries each in order), a few quick retries for
  queries. 18.16 has no server-side parameters, so queries are bound
  client-side by `binding.bind`.
- `ChdbBackend`: the engine embedded in the process (chDB). It binds
  parameters natively and inserts Arrow tables through the ``Python()``
  table function, which reports a refused row as an error (the streaming
  Arrow insert was seen to drop such rows silently). chDB lets one process
  open a database, and a process open one path, so the backend takes an
  exclusive lock file beside the data first: a second opener gets a
  `WarehouseLocked` that names the holder instead of chDB's bare
  "Error initializing EmbeddedServer".

Both map every failure to the warehouse errors: auth (fix the config),
unavailable (retry later), rejected (the rows themselves), so the writer
above never looks at driver exception types.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import pyarrow as pa
import pyarrow.compute as pc

from camcount.warehouse.binding import bind, native_params
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
from camcount.warehouse.schema import Features
from camcount.warehouse.urls import WarehouseUrl, redact

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCK_FILE = "camcount.lock"
QUERY_ATTEMPTS = 3
QUERY_RETRY_BASE_S = 0.2

# ClickHouse error codes, by what the caller should do.
AUTH_CODES = frozenset({192, 193, 194, 516})  # unknown user, wrong/required password, auth failed
UNAVAILABLE_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        16,  # NO_SUCH_COLUMN_IN_TABLE: schema not migrated yet; wait, do not dead-letter
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        999,  # KEEPER_EXCEPTION
    }
)
_CODE = re.compile(r"Code:\s*(\d+)")


def server_message(text: str) -> str:
    """The server's own words: the exception text without the stack trace
    that 18.16 appends, on one line."""
    text = text.split("Stack trace", 1)[0]
    return " ".join(text.split()).strip()


@runtime_checkable
class Backend(Protocol):
    """What the warehouse needs from a ClickHouse: run DDL, insert an
    Arrow table into a table, run a parameterised query into Arrow."""

    url: WarehouseUrl

    @property
    def server_version(self) -> str: ...

    @property
    def features(self) -> Features: ...

    def execute(self, sql: str) -> None: ...

    def insert(self, table: str, rows: pa.Table, dedup_token: str | None = None) -> None: ...

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table: ...

    def close(self) -> None: ...


def open_backend(url: WarehouseUrl, role: str = "camcount", cluster: str | None = None) -> Backend:
    """Connect (and create the database if missing, on every node of
    ``cluster`` when one is named); raise a clear error now rather than at
    the first write."""
    if url.is_embedded:
        if cluster is not None:
            raise WarehouseUrlError(url.masked(), "a cluster needs a clickhouse:// server URL")
        return ChdbBackend(url, role=role)
    return ServerBackend(url, cluster=cluster)


# ---------------------------------------------------------------- server


class ServerBackend:
    """A ClickHouse server reached through clickhouse-driver.

    A driver client is not thread-safe: each inserting thread gets its
    own connections (so a writer may keep several inserts in flight), and
    queries use one more behind a lock, so an API query never waits behind
    a large insert.

    With a ``cluster``, the tables written are Distributed ones, and each
    insert is synchronous (``insert_distributed_sync``): it returns once
    every row is on a replica of its shard, not when it is queued on this
    node's disk, so an acknowledged flush is as durable as on one server.
    """

    def __init__(
        self, url: WarehouseUrl, client_name: str = "camcount", cluster: str | None = None
    ) -> None:
        from clickhouse_driver import Client  # noqa: F401  (fail early if missing)

        self.url = url
        self.cluster = cluster
        self._client_name = client_name
        self._local = threading.local()
        self._clients: list[Any] = []
        self._clients_lock = threading.Lock()
        self._query_lock = threading.Lock()
        boot = self._client(database="default")
        try:
            version = self._guard(lambda: boot.execute("SELECT version()")[0][0])
            on_cluster = ""
            if cluster is not None:
                self._check_cluster(boot, cluster)
                on_cluster = f" ON CLUSTER `{cluster}`"
            self._guard(
                lambda: boot.execute(f"CREATE DATABASE IF NOT EXISTS `{url.database}`{on_cluster}")
            )
        finally:
            boot.disconnect()
        self._version = str(version)
        self._features = Features.of(self._version)
        self._query_client = self._client()
        self._clients.append(self._query_client)

    def __repr__(self) -> str:
        on = f", cluster {self.cluster}" if self.cluster else ""
        return f"ServerBackend({self.url.masked()}{on})"

    @property
    def server_version(self) -> str:
        return self._version

    @property
    def features(self) -> Features:
        return self._features

    def _check_cluster(self, boot: Any, cluster: str) -> None:
        """A cluster the server does not know is a config mistake: name the
        ones it knows, rather than failing later on the first DDL."""
        rows = self._guard(lambda: boot.execute("SELECT DISTINCT cluster FROM system.clusters"))
        known = sorted(str(r[0]) for r in rows)
        if cluster not in known:
            raise WarehouseSchemaError(
                f"warehouse.cluster {cluster!r} is not in the remote_servers of "
                f"{self.url.masked()}; it knows {known}"
            )

    def _client(self, database: str | None = None, use_numpy: bool = False) -> Any:
        from clickhouse_driver import Client
        from clickhouse_driver.errors import UnknownCompressionMethod

        u = self.url
        compression = u.options.get("compression", "lz4").lower()
        try:
            return self._new_client(Client, database, use_numpy, compression)
        except UnknownCompressionMethod:
            raise WarehouseUrlError(
                u.masked(),
                f"compression={compression} needs clickhouse-driver's extras "
                "(pip install 'clickhouse-driver[lz4,zstd]'), or use compression=none",
            ) from None

    def _new_client(
        self, client: Any, database: str | None, use_numpy: bool, compression: str
    ) -> Any:
        u = self.url
        first, *others = u.hosts
        return client(
            host=first.host,
            port=first.port,
            user=u.user,
            password=u.password or "",
            database=database or u.database,
            alt_hosts=",".join(str(h) for h in others) or None,
            connect_timeout=u.option_float("connect_timeout", 3.0),
            send_receive_timeout=u.option_float("send_receive_timeout", 30.0),
            sync_request_timeout=u.option_float("sync_request_timeout", 5.0),
            compression=False if compression == "none" else compression,
            secure=u.option_bool("secure", False),
            verify=u.option_bool("verify", True),
            client_name=self._client_name,
            settings={"use_numpy": use_numpy},
        )

    def execute(self, sql: str) -> None:
        with self._query_lock:
            self._guard(lambda: self._query_client.execute(sql))

    def insert(self, table: str, rows: pa.Table, dedup_token: str | None = None) -> None:
        if rows.num_rows == 0:
            return
        has_lists = any(pa.types.is_list(f.type) for f in rows.schema)
        columns = [_driver_column(c, numpy=not has_lists) for c in rows.columns]
        names = ", ".join(f"`{n}`" for n in rows.column_names)
        settings: dict[str, Any] = {}
        if dedup_token is not None and self._features.insert_dedup_token:
            settings["insert_deduplication_token"] = dedup_token
        if self.cluster is not None:
            settings["insert_distributed_sync"] = 1
        client = self._insert_client(numpy=not has_lists)
        self._guard(
            lambda: client.execute(
                f"INSERT INTO `{table}` ({names}) VALUES",
                columns,
                columnar=True,
                settings=settings or None,
            ),
            table=table,
        )

    def _insert_client(self, numpy: bool) -> Any:
        """This thread's insert connection (NumPy columns, or lists for
        tables with arrays, which the driver's NumPy mode lacks)."""
        key = "numpy" if numpy else "lists"
        client = getattr(self._local, key, None)
        if client is None:
            client = self._client(use_numpy=numpy)
            setattr(self._local, key, client)
            with self._clients_lock:
                self._clients.append(client)
        return client

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table:
        text = bind(sql, params or {})

        def run() -> pa.Table:
            with self._query_lock:
                return self._guard(
                    lambda: self._query_client.query_arrow(text, field_metadata=False)
                )

        return _with_retries(run)

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for c in clients:
            with contextlib.suppress(Exception):
                c.disconnect()

    def _guard(self, fn: Callable[[], T], table: str | None = None) -> T:
        """Run a driver call; translate its failures into warehouse errors."""
        from clickhouse_driver import errors as ch

        try:
            return fn()
        except ch.ServerException as exc:
            raise self._server_error(exc.code or 0, exc.message, table) from None
        except (ch.NetworkError, ch.SocketTimeoutError, ch.UnexpectedPacketFromServerError) as exc:
            raise WarehouseUnavailable(self.url.masked(), self._clean(str(exc))) from None
        except (EOFError, OSError) as exc:  # refused, reset, timed out
            raise WarehouseUnavailable(self.url.masked(), self._clean(repr(exc))) from None
        except (ch.Error, struct.error, TypeError, ValueError, OverflowError) as exc:
            if table is None:
                raise QueryError(self._clean(str(exc))) from None
            raise WarehouseRejected(table, self._clean(f"{type(exc).__name__}: {exc}")) from None

    def _server_error(self, code: int, message: str, table: str | None) -> WarehouseError:
        text = self._clean(server_message(message))
        if code in AUTH_CODES:
            return WarehouseAuthError(self.url.masked(), text)
        if code in UNAVAILABLE_CODES:
            return WarehouseUnavailable(self.url.masked(), f"code {code}: {text}")
        if table is not None:
            return WarehouseRejected(table, text, code)
        return QueryError(f"code {code}: {text}")

    def _clean(self, text: str) -> str:
        return redact(text, self.url.password)


def _driver_column(col: pa.ChunkedArray, numpy: bool) -> Any:
    """One Arrow column as clickhouse-driver wants it for a columnar
    insert: NumPy buffers (zero-copy for numbers) or Python lists."""
    if not numpy:
        return col.to_pylist()
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        # Ids, classes and directions repeat: build each Python string once
        # and index into them (several times faster than one per row).
        encoded = pc.dictionary_encode(col).combine_chunks()
        if len(encoded.dictionary) * 2 > len(encoded):
            return col.to_numpy(zero_copy_only=False)
        return encoded.dictionary.to_numpy(zero_copy_only=False)[encoded.indices.to_numpy()]
    return col.to_numpy()


def _with_retries(fn: Callable[[], T]) -> T:
    """A query retried a few times, quickly, while the server is
    unreachable: failover and restarts take a moment, an API caller
    should not see them."""
    for attempt in range(QUERY_ATTEMPTS):
        try:
            return fn()
        except WarehouseUnavailable:
            if attempt == QUERY_ATTEMPTS - 1:
                raise
            time.sleep(QUERY_RETRY_BASE_S * 2**attempt)
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- embedded


class ChdbBackend:
    """The embedded engine, owning its data path for its whole life."""

    def __init__(self, url: WarehouseUrl, role: str = "camcount") -> None:
        from chdb.session import Session

        self.url = url
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        path = url.path
        if not url.in_memory:
            Path(path).mkdir(parents=True, exist_ok=True)
            self._lock_fd = _take_owner_lock(Path(path), role)
        try:
            try:
                self._session: Any = Session(path)
            except RuntimeError as exc:
                raise _open_error(path, str(exc)) from None
            self._run(f"CREATE DATABASE IF NOT EXISTS `{url.database}`")
            self._run(f"USE `{url.database}`")
            version = self._run("SELECT version()", "ArrowTable")
            self._version = str(version.column(0)[0].as_py())
        except BaseException:
            self.close()
            raise
        self._features = Features.of(self._version)

    def __repr__(self) -> str:
        return f"ChdbBackend({self.url.masked()})"

    @property
    def server_version(self) -> str:
        return self._version

    @property
    def features(self) -> Features:
        return self._features

    def execute(self, sql: str) -> None:
        self._run(sql)

    def insert(self, table: str, rows: pa.Table, dedup_token: str | None = None) -> None:
        if rows.num_rows == 0:
            return
        names = ", ".join(f"`{n}`" for n in rows.column_names)
        settings = ""
        if dedup_token is not None and self._features.insert_dedup_token:
            settings = f" SETTINGS insert_deduplication_token = '{_token(dedup_token)}'"
        # Python() finds the table by this local variable's name.
        camcount_rows_ = rows  # noqa: F841
        self._run(
            f"INSERT INTO `{table}` ({names}){settings} SELECT * FROM Python(camcount_rows_)",
            table=table,
        )

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table:
        values = native_params(sql, params or {})
        result: pa.Table = self._run(sql, "ArrowTable", values)
        if any(pa.types.is_uint32(f.type) for f in result.schema):
            result = self._restore_datetimes(sql, values, result)
        return result

    def _restore_datetimes(
        self, sql: str, values: Mapping[str, object], result: pa.Table
    ) -> pa.Table:
        """chDB's Arrow output carries DateTime as uint32 seconds; give
        them back their type, as the server backend does."""
        described = self._run(f"DESCRIBE ({sql})", "ArrowTable", values).to_pydict()
        types = dict(zip(described["name"], described["type"], strict=True))
        columns = []
        for field, column in zip(result.schema, result.columns, strict=True):
            if pa.types.is_uint32(field.type) and str(types.get(field.name, "")).startswith(
                ("DateTime", "LowCardinality(DateTime")
            ):
                column = column.cast(pa.int64()).cast(pa.timestamp("s", tz="UTC"))
            columns.append(column)
        return pa.table(columns, names=result.column_names)

    def close(self) -> None:
        session = getattr(self, "_session", None)
        self._session = None
        if session is not None:
            with contextlib.suppress(Exception):
                session.close()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    def _run(
        self,
        sql: str,
        fmt: str = "CSV",
        params: Mapping[str, object] | None = None,
        table: str | None = None,
    ) -> Any:
        if getattr(self, "_session", None) is None:
            raise WarehouseUnavailable(self.url.masked(), "the embedded warehouse is closed")
        with self._lock:
            try:
                return self._session.query(sql, fmt, params=dict(params) if params else None)
            except Exception as exc:  # chDB raises ChdbError (a RuntimeError)
                raise self._error(str(exc), table) from None

    def _error(self, text: str, table: str | None) -> WarehouseError:
        m = _CODE.search(text)
        code = int(m.group(1)) if m else 0
        message = server_message(text)
        if code in UNAVAILABLE_CODES:
            return WarehouseUnavailable(self.url.masked(), f"code {code}: {message}")
        if table is not None:
            return WarehouseRejected(table, message, code)
        return QueryError(f"code {code}: {message}")


def _token(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", text):
        raise ValueError(f"dedup token must be plain text, got {text!r}")
    return text


def _open_error(path: str, text: str) -> WarehouseError:
    if "cannot connect with different path" in text:
        return WarehouseLocked(
            path,
            "this process, which already has another chDB database open",
            "chDB opens one database path per process: close the other warehouse first, "
            "or open this one from another process.",
        )
    return WarehouseLocked(path, "another chDB user", f"chDB could not open it: {text}")


def _take_owner_lock(path: Path, role: str) -> int:
    """Hold an exclusive lock on ``path/camcount.lock`` for the backend's
    life, and write who holds it, so a second opener can be told."""
    lock_path = path / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe_holder(fd)
        os.close(fd)
        raise WarehouseLocked(
            str(path),
            holder,
            "chDB lets one process open a database. While the pipeline runs, its warehouse "
            "sink owns it: query through the API (or the sink's query method), or stop the "
            "pipeline first.",
        ) from None
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "role": role,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return fd


def _describe_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        if info:
            return (
                f"{info.get('role', 'a process')} (pid {info.get('pid')} on {info.get('host')}, "
                f"since {info.get('since')})"
            )
    return "another process"


@contextlib.contextmanager
def opened(url: WarehouseUrl, role: str = "camcount") -> Iterator[Backend]:
    backend = open_backend(url, role)
    try:
        yield backend
    finally:
        backend.close()
