"""Fixtures for tests on real components: one Ray cluster per test session.

Ray starts once (it takes seconds) and every integration test shares it;
tests clean up the actors and Serve applications they create.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camcount.warehouse.localcluster import JAVA_BINARY, ZOOKEEPER_JAR, LocalCluster
from camcount.warehouse.localserver import SERVER_BINARY, LocalServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    import ray

    # More logical CPUs than cores: actors here mostly wait on I/O and
    # each other, and tests start many of them on a 2-core machine.
    ray.init(
        address="local",
        num_cpus=8,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=True,
    )
    try:
        yield
    finally:
        ray.shutdown()


#: The application that keeps Serve up between a module's runs.
KEEP_SERVE_UP_APP = "tests-keep-serve-up"


@pytest.fixture(scope="module")
def serve_kept_up(ray_cluster: None) -> Iterator[None]:
    """Serve kept running between a module's runs, as on a cluster where it
    runs for good: each run deploys and deletes only its own apps, and
    Serve's controller and proxy start once, not once a run (seconds each
    on two cores). For runs without the REST API only: Serve keeps the
    address it was started with."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class KeepServeUp:
        def __call__(self) -> str:
            return "up"

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    serve.run(KeepServeUp.bind(), name=KEEP_SERVE_UP_APP, route_prefix=None)
    try:
        yield
    finally:
        serve.delete(KEEP_SERVE_UP_APP)
        if not serve.status().applications:
            serve.shutdown()


@pytest.fixture(scope="session")
def replay_scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The synthetic cameras of the exactly-once replay
    (tests/integration/test_exactly_once.py), written once for every
    module that replays them."""
    from camcount.scenes.synthetic import generate_scene, write_scene
    from tests.integration.test_exactly_once import LAYOUT, SEEDS

    root = tmp_path_factory.mktemp("replay-scenes")
    return [write_scene(generate_scene(s, LAYOUT), root / f"cam{s}.mp4")[0] for s in SEEDS]


@pytest.fixture(scope="session")
def fault_free_replay(
    ray_cluster: None, replay_scenes: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One fault-free replay of ``replay_scenes``: what every run with
    kills, crashes or restarts on them must end with. It is the same
    replay for every module, so it runs once per session."""
    from tests.integration.test_exactly_once import config_for, replay

    return replay(config_for(replay_scenes, tmp_path_factory.mktemp("fault-free")))


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """Debian's ClickHouse server (18.16) on free ports, its data, logs and
    users file under a temporary directory. Skipped where the package is
    absent, a failure under CI (``.ci/run`` installs it). Tests that stop
    it must start it again."""
    from tests.conftest import require_binary

    require_binary(SERVER_BINARY, "ClickHouse server (apt-get install clickhouse-server)")
    server = LocalServer(tmp_path_factory.mktemp("clickhouse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def clickhouse_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A ClickHouse cluster of one shard and two replicas (Debian's 18.16
    servers) with a standalone ZooKeeper (Debian's ``zookeeperd``), all on
    free ports under a temporary directory; about two seconds to start.
    Skipped where a package is absent, a failure under CI."""
    from tests.conftest import require_binary

    require_binary(SERVER_BINARY, "ClickHouse server (apt-get install clickhouse-server)")
    require_binary(JAVA_BINARY, "Java (apt-get install zookeeperd)")
    require_binary(ZOOKEEPER_JAR, "ZooKeeper (apt-get install zookeeperd)")
    cluster = LocalCluster(tmp_path_factory.mktemp("clickhouse-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
