"""A throwaway ClickHouse server on free local ports, for tests and benchmarks.

It runs Debian's ``clickhouse-server`` (18.16) with the packaged config,
overriding on the command line everything that would touch the system:
ports, data and temporary paths, logs and the users file all live under
one directory, so it runs as root or as any user, beside a system server,
and a restart on the same directory finds its data again. Settings that
the command line cannot carry (a cluster, ZooKeeper, macros) go into
``extra_config``, merged over a copy of the packaged config
(`camcount.warehouse.localcluster` uses it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path
from types import TracebackType
from typing import Any

from camcount.localprocess import LocalProcess, free_port

SERVER_BINARY = "/usr/sbin/clickhouse-server"
SERVER_CONFIG = "/etc/clickhouse-server/config.xml"

_USERS_XML = """<?xml version="1.0"?>
<yandex>
  <profiles><default>
    <max_memory_usage>4000000000</max_memory_usage>
    <!-- How often an idle connection checks for shutdown (10 s by
         default): a stop waits that long for every open one. -->
    <poll_interval>1</poll_interval>
  </default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </default>
    <{user}>
      <password>{password}</password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </{user}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
"""


__all__ = ["SERVER_BINARY", "SERVER_CONFIG", "LocalServer", "available", "free_port"]


class LocalServer(LocalProcess):
    """One server process under ``root``; ``start``/``stop`` may repeat
    (same ports, same data)."""

    name = "clickhouse-server"

    def __init__(
        self,
        root: Path,
        user: str = "camcount",
        password: str = "camcount-test-password",
        binary: str = SERVER_BINARY,
        config: str = SERVER_CONFIG,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.user = user
        self.password = password
        self.binary = binary
        self.config = config
        self.tcp_port = free_port()
        self.http_port = free_port()
        self.interserver_port = free_port()
        #: XML (a ``<yandex>`` document) merged over the packaged config;
        #: set it before `start`, once the ports are known.
        self.extra_config: str | None = None

    @property
    def config_file(self) -> Path:
        """The config the server reads: the packaged one, or a copy of it
        beside ``config.d/`` when there is extra config (the server merges
        ``config.d/*.xml`` found next to its config file)."""
        if self.extra_config is None:
            return Path(self.config)
        return self.root / "config.xml"

    @property
    def command(self) -> list[str]:
        d = self.root
        return [
            self.binary,
            f"--config-file={self.config_file}",
            "--",
            f"--tcp_port={self.tcp_port}",
            f"--http_port={self.http_port}",
            f"--interserver_http_port={self.interserver_port}",
            # Replicas fetch parts from the host a server announces: this
            # one, not the machine's name, which may not resolve.
            "--interserver_http_host=127.0.0.1",
            "--listen_host=127.0.0.1",
            f"--path={d}/data/",
            f"--tmp_path={d}/data/tmp/",
            f"--user_files_path={d}/data/user_files/",
            f"--format_schema_path={d}/data/format_schemas/",
            f"--users_config={d}/users.xml",
            f"--logger.log={d}/log/server.log",
            f"--logger.errorlog={d}/log/server.err.log",
            "--logger.level=warning",
        ]

    def url(self, database: str = "camcount", with_password: bool = True) -> str:
        auth = f"{self.user}:{self.password}" if with_password else self.user
        return f"clickhouse://{auth}@127.0.0.1:{self.tcp_port}/{database}"

    def start(self, timeout_s: float = 60.0) -> None:
        if self.running:
            return
        (self.root / "log").mkdir(parents=True, exist_ok=True)
        (self.root / "users.xml").write_text(
            _USERS_XML.format(user=self.user, password=self.password)
        )
        if self.extra_config is not None:
            shutil.copyfile(self.config, self.config_file)
            (self.root / "config.d").mkdir(exist_ok=True)
            (self.root / "config.d" / "camcount.xml").write_text(self.extra_config)
        log = self.root / "log" / "stdout.log"
        self.spawn(self.command, log, self.root, self.tcp_port, timeout_s)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def client(self, database: str = "default", **settings: Any) -> Any:
        """A native-protocol client of this server, as its own user (the
        caller disconnects it)."""
        from clickhouse_driver import Client

        return Client(
            "127.0.0.1",
            self.tcp_port,
            user=self.user,
            password=self.password,
            database=database,
            **settings,
        )

    def answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.5),
        ):
            try:
                self.client(connect_timeout=1).execute("SELECT 1")
            except Exception:
                return False
            return True
        return False

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def available(binary: str = SERVER_BINARY) -> bool:
    return os.path.exists(binary)
