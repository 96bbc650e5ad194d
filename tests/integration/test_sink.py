"""The warehouse sink actor on a real Ray cluster: chDB ownership, timed
flushes, clear start errors, and a real 30 s server outage."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import ray

from actors.sink import start_sink
from camcount.config import WarehouseConfig
from camcount.warehouse import (
    RetryPolicy,
    WarehouseAuthError,
    WarehouseLocked,
    WarehouseUnavailable,
    connect,
)
from camcount.warehouse.localserver import LocalServer, free_port
from camcount.warehouse.urls import WarehouseUrl, parse_url
from tests.core.test_warehouse_chdb import CAMERAS, T0, answers, camera_config, make_events

pytestmark = pytest.mark.integration


class ThroughSink:
    """The documented queries asked through the sink (which owns an
    embedded database): the shape of a `Backend` the query helpers need."""

    def __init__(self, sink: Any, url: str) -> None:
        self.sink = sink
        self.url: WarehouseUrl = parse_url(url)

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table:
        return ray.get(self.sink.sql.remote(sql, dict(params or {})))


def chunks(table: pa.Table, size: int) -> list[pa.Table]:
    return [table.slice(i, size) for i in range(0, table.num_rows, size)]


def test_chdb_sink_owns_the_database_and_answers_queries(ray_cluster: None, tmp_path: Path) -> None:
    url = f"chdb://{tmp_path}/chdb"
    cfg = WarehouseConfig(url=url, batch_rows=300, flush_interval_s=0.5)
    sink = start_sink(cfg, f"file://{tmp_path}/store")
    tables = make_events(seed=21)
    refs = [sink.write.remote(kind, part) for kind, t in tables.items() for part in chunks(t, 250)]
    refs.append(sink.write_cameras.remote([camera_config(c) for c in CAMERAS], 9))
    ray.get(refs)
    assert ray.get(sink.flush.remote()) >= 0
    stats = ray.get(sink.stats.remote())
    assert stats["rows_written"]["crossing"] == tables["crossing"].num_rows
    assert stats["pending_rows"] == stats["buffer_rows"] == stats["spilled_rows"] == 0
    through_sink = answers(ThroughSink(sink, url))  # type: ignore[arg-type]
    assert through_sink["cameras"][0]["current_version"] == 9
    named = ray.get(
        sink.query.remote(
            "hourly_counts",
            {
                "camera_id": "cam-a",
                "counter_id": "",
                "class_name": "",
                "window_size_s": 60,
                "start": int(T0),
                "end": int(T0) + 86400,
            },
        )
    )
    assert named.to_pylist() == through_sink["cam-a/hourly"]

    # While the sink holds it, a notebook cannot open it, and is told why.
    with pytest.raises(WarehouseLocked, match="warehouse sink sink-0"):
        connect(url, role="notebook")

    assert ray.get(sink.close.remote()) == 0
    ray.kill(sink)
    with connect(url, role="notebook") as wh:  # free once the pipeline is gone
        assert answers(wh.backend) == through_sink


def test_rows_are_flushed_by_time_without_a_flush_call(ray_cluster: None, tmp_path: Path) -> None:
    cfg = WarehouseConfig(url=f"chdb://{tmp_path}/chdb", batch_rows=10_000, flush_interval_s=0.3)
    sink = start_sink(cfg, f"file://{tmp_path}/store", tick_interval_s=0.1)
    try:
        ray.get(sink.write.remote("crossing", make_events()["crossing"].slice(0, 42)))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if ray.get(sink.stats.remote())["rows_written_total"] == 42:
                break
            time.sleep(0.1)
        got = ray.get(sink.sql.remote("SELECT count() AS n FROM crossings FINAL"))
        assert got.to_pylist() == [{"n": 42}]
    finally:
        ray.get(sink.close.remote())
        ray.kill(sink)


def test_bad_password_or_port_fails_at_start(
    ray_cluster: None, clickhouse_server: LocalServer, tmp_path: Path
) -> None:
    s = clickhouse_server
    wrong_pw = WarehouseConfig(
        url=f"clickhouse://{s.user}:nope-nope@127.0.0.1:{s.tcp_port}/camcount"
    )
    with pytest.raises(WarehouseAuthError, match=r"camcount:\*\*\*@.*Wrong password") as info:
        start_sink(wrong_pw, f"file://{tmp_path}/store")
    assert "nope-nope" not in str(info.value)
    wrong_port = WarehouseConfig(
        url=f"clickhouse://{s.user}@127.0.0.1:{free_port()}/camcount?connect_timeout=1",
        password_env="CAMCOUNT_TEST_UNUSED",
    )
    with pytest.raises(Exception, match="CAMCOUNT_TEST_UNUSED"):
        start_sink(wrong_port, f"file://{tmp_path}/store")  # password_env not set: config error
    wrong_port = wrong_port.model_copy(update={"password_env": None})
    with pytest.raises(WarehouseUnavailable, match="Connection refused"):
        start_sink(wrong_port, f"file://{tmp_path}/store")


def _metrics(port: int) -> dict[str, float]:
    """Sink gauges as exported to Prometheus by Ray."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for m in re.finditer(
        r"^ray_(camcount_sink_\w+?)\{[^}]*sink=\"outage\"[^}]*\}\s+(\S+)$", text, re.M
    ):
        out[m.group(1)] = max(out.get(m.group(1), 0.0), float(m.group(2)))
    return out


@pytest.mark.slow
def test_a_30_s_server_outage_loses_nothing_and_doubles_nothing(
    ray_cluster: None, clickhouse_server: LocalServer, tmp_path: Path
) -> None:
    s = clickhouse_server
    cfg = WarehouseConfig(
        url=s.url("t_outage") + "?connect_timeout=1&send_receive_timeout=5",
        batch_rows=400,
        flush_interval_s=0.5,
    )
    sink = start_sink(
        cfg,
        f"file://{tmp_path}/store",
        sink_id="outage",
        buffer_max_rows=1500,
        retry=RetryPolicy(base_s=0.5, max_s=2.0),
        tick_interval_s=0.2,
    )
    metrics_port = ray._private.worker.global_worker.node.metrics_export_port
    crossings = make_events(seed=31, hours=6, per_hour=1000)["crossing"]
    parts = chunks(crossings, 100)  # 12000 rows in 120 batches
    seen_down: dict[str, Any] = {}
    seen_metrics: dict[str, float] = {}
    sent = 0
    try:
        for part in parts[:20]:
            ray.get(sink.write.remote("crossing", part))
            sent += part.num_rows
            time.sleep(0.05)
        s.stop()
        outage_started = time.monotonic()
        i = 20
        while time.monotonic() - outage_started < 30:
            if i < 100:
                ray.get(sink.write.remote("crossing", parts[i]))
                sent += parts[i].num_rows
                i += 1
            stats = ray.get(sink.stats.remote())
            if not stats["warehouse_up"]:
                for key in ("buffer_rows", "spilled_rows"):
                    seen_down[key] = max(seen_down.get(key, 0), stats[key])
            for k, v in _metrics(metrics_port).items():
                seen_metrics[k] = max(seen_metrics.get(k, 0.0), v)
            time.sleep(0.25)
        assert seen_down["buffer_rows"] > 0 and seen_down["spilled_rows"] > 0
        assert ray.get(sink.stats.remote())["warehouse_up"] is False
        s.start()
        for part in parts[i:]:
            ray.get(sink.write.remote("crossing", part))
            sent += part.num_rows
        ray.get(sink.flush.remote())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = ray.get(sink.stats.remote())
            if stats["spilled_rows"] == 0 and stats["buffer_rows"] == 0 and stats["warehouse_up"]:
                break
            time.sleep(0.2)
        assert stats["spilled_rows"] == 0 and stats["buffer_rows"] == 0, stats
        assert stats["replayed_rows_total"] > 0
    finally:
        if not s.running:
            s.start()
        ray.get(sink.close.remote())
        ray.kill(sink)

    assert sent == crossings.num_rows
    with connect(s.url("t_outage")) as wh:
        got = wh.sql(
            "SELECT count() AS n, uniqExact(event_id) AS ids FROM crossings FINAL"
        ).to_pylist()
        assert got == [{"n": sent, "ids": sent}]  # every row exactly once
        ids = set(wh.sql("SELECT event_id FROM crossings").column(0).to_pylist())
        assert ids == set(crossings.column("event_id").to_pylist())
        wh.backend.execute("DROP DATABASE t_outage")
    # Ray exports the gauges every few seconds; over 30 s they show.
    assert seen_metrics.get("camcount_sink_spilled_rows", 0) > 0, seen_metrics
    assert seen_metrics.get("camcount_sink_buffer_rows", 0) > 0, seen_metrics
