"""A throwaway ClickHouse cluster on free local ports: one shard of
replicas and the ZooKeeper they share, for tests and benchmarks.

ZooKeeper is Debian's (``zookeeper``/``zookeeperd``), run as a standalone
server straight from its jar (the package's scripts expect systemd and
``/etc``); its data, config and log live under the cluster's directory.
Each replica is a `LocalServer` whose extra config names the cluster
(``remote_servers``, ``internal_replication`` on, since the tables
replicate themselves), the ZooKeeper, and its ``{shard}``/``{replica}``
macros. Start-up takes about a second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from pathlib import Path
from types import TracebackType

from camcount.localprocess import LocalProcess, free_port
from camcount.warehouse.localserver import LocalServer

JAVA_BINARY = "/usr/bin/java"
ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
ZOOKEEPER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
CLUSTER_NAME = "camcount_test"
SHARD = "01"

_ZOO_CFG = """tickTime=500
initLimit=10
syncLimit=5
dataDir={data}
clientPort={port}
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=srvr
"""


class LocalZooKeeper(LocalProcess):
    """One standalone ZooKeeper under ``root``, on a free port."""

    name = "zookeeper"
    stop_timeout_s = 15.0

    def __init__(self, root: Path, java: str = JAVA_BINARY, jar: str = ZOOKEEPER_JAR) -> None:
        super().__init__()
        self.root = Path(root)
        self.java = java
        self.jar = jar
        self.port = free_port()

    @property
    def command(self) -> list[str]:
        # A small heap and the quick JIT: it serves a few clients for a
        # few minutes, and start-up time is what counts.
        return [
            self.java,
            "-Xmx128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            self.jar,
            ZOOKEEPER_MAIN,
            str(self.root / "zoo.cfg"),
        ]

    def start(self, timeout_s: float = 30.0) -> None:
        if self.running:
            return
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "zoo.cfg").write_text(_ZOO_CFG.format(data=self.root / "data", port=self.port))
        self.spawn(self.command, self.root / "zookeeper.log", self.root, self.port, timeout_s)

    def answers(self) -> bool:
        """ZooKeeper's ``srvr`` four-letter word names the mode once it
        serves sessions (``ruok`` says ``imok`` before: a server that
        connects then loses its session, and 18.16 may crash on that)."""
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s,
        ):
            s.sendall(b"srvr")
            reply = b""
            while chunk := s.recv(4096):
                reply += chunk
            return b"Mode: standalone" in reply
        return False


def _cluster_xml(
    name: str, replicas: list[LocalServer], zookeeper_port: int, replica_name: str
) -> str:
    hosts = "".join(
        f"<replica><host>127.0.0.1</host><port>{r.tcp_port}</port></replica>" for r in replicas
    )
    return f"""<?xml version="1.0"?>
<yandex>
  <remote_servers>
    <{name}><shard><internal_replication>true</internal_replication>{hosts}</shard></{name}>
  </remote_servers>
  <zookeeper>
    <node><host>127.0.0.1</host><port>{zookeeper_port}</port></node>
    <session_timeout_ms>10000</session_timeout_ms>
  </zookeeper>
  <macros><shard>{SHARD}</shard><replica>{replica_name}</replica></macros>
</yandex>
"""


class LocalCluster:
    """A ZooKeeper and ``replicas`` servers forming cluster ``name``: one
    shard, every server a replica of it."""

    def __init__(self, root: Path, replicas: int = 2, name: str = CLUSTER_NAME) -> None:
        if replicas < 1:
            raise ValueError(f"a cluster needs 1 replica or more, got {replicas}")
        self.root = Path(root)
        self.name = name
        self.zookeeper = LocalZooKeeper(self.root / "zookeeper")
        self.replicas = [LocalServer(self.root / f"replica-{i + 1}") for i in range(replicas)]
        for i, server in enumerate(self.replicas):
            server.extra_config = _cluster_xml(
                name, self.replicas, self.zookeeper.port, f"replica-{i + 1}"
            )

    def url(self, database: str = "camcount", replica: int = 0) -> str:
        return self.replicas[replica].url(database)

    def start(self, timeout_s: float = 60.0) -> None:
        self.zookeeper.start()
        try:
            for server in self.replicas:
                server.start()
            deadline = time.monotonic() + timeout_s
            for server in self.replicas:
                self._wait_for_session(server, deadline)
        except BaseException:
            self.stop()
            raise

    def _wait_for_session(self, server: LocalServer, deadline: float) -> None:
        """Until the server holds a ZooKeeper session: replicated DDL sent
        before then fails, or crashes 18.16."""
        client = server.client()
        try:
            while True:
                try:
                    client.execute("SELECT count() FROM system.zookeeper WHERE path = '/'")
                    return
                except Exception:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"clickhouse-server on {server.tcp_port} has no ZooKeeper session; "
                            f"see {server.root / 'log'}"
                        ) from None
                    time.sleep(0.1)
        finally:
            client.disconnect()

    def stop(self) -> None:
        for server in self.replicas:
            server.terminate()
        for server in self.replicas:
            server.stop()
        self.zookeeper.stop()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def available(java: str = JAVA_BINARY, jar: str = ZOOKEEPER_JAR) -> bool:
    return os.path.exists(java) and os.path.exists(jar)
