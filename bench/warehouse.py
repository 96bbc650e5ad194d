"""Warehouse write throughput: a bare clickhouse-driver insert against the sink.

Prints, in one run, rows/s of

1. a bare clickhouse-driver columnar insert of N crossing rows (columns
   already in the driver's form: the cost of the driver and the server);
2. the same N rows through the `WarehouseSink` actor: Arrow batches sent
   with ``write`` (as aggregators send them), converted and batched by the
   sink, inserted by the same driver, ending with ``flush()``;

and their ratio (target: at least 0.8). Each side writes into its own
fresh database; both are checked to hold exactly N rows afterwards.

Without ``--url`` it starts Debian's ClickHouse server (18.16) on free
ports in a temporary directory.

    python bench/warehouse.py --rows 500000 --batch-rows 50000
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa


def crossing_batch(n: int, seed: int = 0) -> pa.Table:
    """N crossings in the event Arrow schema, over a day, eight cameras."""
    from camcount.events import Crossing, arrow_schema

    rng = np.random.default_rng(seed)
    cams = np.array([f"cam-{i:02d}" for i in range(8)], dtype=object)
    classes = np.array(["person", "car", "bicycle", "truck"], dtype=object)
    directions = np.array(["in", "out"], dtype=object)
    t0 = 1767225600.0
    columns = {
        "event_id": rng.choice(2**62, size=n, replace=False).astype(np.int64),
        "camera_id": cams[rng.integers(0, len(cams), n)],
        "counter_id": np.array(["line-main"] * n, dtype=object),
        "track_id": np.arange(n, dtype=np.int64),
        "frame_index": np.arange(n, dtype=np.int64) * 3,
        "event_time": np.round(t0 + np.sort(rng.uniform(0, 86400, n)), 3),
        "class_name": classes[rng.integers(0, len(classes), n)],
        "direction": directions[rng.integers(0, 2, n)],
        "confidence": rng.uniform(0.3, 1.0, n),
        "anchor_x": rng.uniform(0, 640, n),
        "anchor_y": rng.uniform(0, 360, n),
    }
    schema = arrow_schema(Crossing)
    return pa.table([pa.array(columns[f.name], f.type) for f in schema], schema=schema)


def cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by a process; 0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One timed side: wall seconds, CPU seconds of our processes (this
    one, and the sink actor's) and of the server."""

    wall_s: float
    client_cpu_s: float
    server_cpu_s: float
    actor_cpu_s: float = 0.0  # the part of client_cpu_s spent in the sink actor


def bare_insert(url: str, rows: pa.Table, server_pid: int | None, from_arrow: bool = False) -> Run:
    """One columnar insert of all rows. The columns are prepared before the
    clock starts, unless ``from_arrow``: then the clock also covers turning
    the Arrow event table into driver columns."""
    from clickhouse_driver import Client

    from camcount.warehouse import connect
    from camcount.warehouse.backends import _driver_column
    from camcount.warehouse.rows import convert, kind_of

    with connect(url) as wh:  # schema only
        u = wh.backend.url

    def columns_of(table: pa.Table) -> tuple[str, list[object]]:
        warehouse_rows = convert(kind_of("crossing"), table)
        names = ", ".join(f"`{n}`" for n in warehouse_rows.column_names)
        return names, [_driver_column(c, numpy=True) for c in warehouse_rows.columns]

    names, columns = columns_of(rows)
    host = u.hosts[0]
    client = Client(
        host.host,
        host.port,
        user=u.user,
        password=u.password or "",
        database=u.database,
        compression="lz4",
        settings={"use_numpy": True},
    )
    client.execute("SELECT 1")  # connect outside the timing
    cpu0, server0 = time.process_time(), cpu_s(server_pid)
    started = time.perf_counter()
    if from_arrow:
        names, columns = columns_of(rows)
    client.execute(f"INSERT INTO crossings ({names}) VALUES", columns, columnar=True)
    elapsed = time.perf_counter() - started
    run = Run(elapsed, time.process_time() - cpu0, cpu_s(server_pid) - server0)
    client.disconnect()
    return run


def sink_insert(
    url: str,
    parts: list[pa.Table],
    batch_rows: int,
    store: str,
    inflight: int | None,
    server_pid: int | None,
) -> Run:
    """From the first ``write`` to the end of ``flush()``."""
    import ray

    from actors.sink import start_sink
    from camcount.config import WarehouseConfig

    sink = start_sink(
        WarehouseConfig(url=url, batch_rows=batch_rows, flush_interval_s=60),
        store,
        sink_id="bench",
        inserts_in_flight=inflight,
    )
    total = sum(p.num_rows for p in parts)
    refs = [ray.put(p) for p in parts]  # the aggregators' batches already exist
    actor_pid = ray.get(sink.__ray_call__.remote(lambda actor: os.getpid()))
    cpu0, actor0, server0 = time.process_time(), cpu_s(actor_pid), cpu_s(server_pid)
    started = time.perf_counter()
    ray.get([sink.write.remote("crossing", r) for r in refs])
    ray.get(sink.flush.remote())
    elapsed = time.perf_counter() - started
    actor_cpu = cpu_s(actor_pid) - actor0
    run = Run(
        elapsed,
        time.process_time() - cpu0 + actor_cpu,
        cpu_s(server_pid) - server0,
        actor_cpu,
    )
    stats = ray.get(sink.stats.remote())
    ray.get(sink.close.remote())
    ray.kill(sink)
    if stats["rows_written_total"] != total:
        raise SystemExit(f"sink wrote {stats['rows_written_total']} of {total} rows")
    return run


def settle(url: str, timeout_s: float = 60.0) -> None:
    """Wait until the server has no merge running, so one side's background
    merges never slow the other side's timing."""
    from camcount.warehouse import connect

    deadline = time.monotonic() + timeout_s
    with connect(url) as wh:
        while time.monotonic() < deadline:
            if wh.sql("SELECT count() AS n FROM system.merges").column(0)[0].as_py() == 0:
                break
            time.sleep(0.2)
    time.sleep(0.5)


def count(url: str) -> int:
    from camcount.warehouse import connect

    with connect(url) as wh:
        n = int(wh.sql("SELECT count() AS n FROM crossings FINAL").column(0)[0].as_py())
        wh.backend.execute(f"DROP DATABASE {wh.backend.url.database}")
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=500_000, help="N rows per run")
    p.add_argument("--batch-rows", type=int, default=50_000, help="the sink's batch_rows")
    p.add_argument("--send-rows", type=int, default=5_000, help="rows per write() call")
    p.add_argument("--repeat", type=int, default=3, help="runs per side; the median is kept")
    p.add_argument("--url", help="clickhouse://user:pass@host:port (default: a local 18.16)")
    p.add_argument("--inflight", type=int, help="sink inserts in flight (default: the sink's, 2)")
    args = p.parse_args()

    # Ray starts its workers at nice 15; the bare insert runs here at the
    # bench's priority. On a shared machine that alone skews the ratio, so
    # the sink actor runs at the same priority unless told otherwise.
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    from camcount.warehouse.localserver import LocalServer

    tmp = Path(tempfile.mkdtemp(prefix="camcount-bench-"))
    server = None
    base = args.url
    if base is None:
        server = LocalServer(tmp / "clickhouse")
        server.start()
        base = server.url("default").rsplit("/", 1)[0]
    base = base.rstrip("/")
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.ERROR)
    try:
        rows = crossing_batch(args.rows)
        server_pid = server.pid if server is not None else None
        bare: list[Run] = []
        arrow: list[Run] = []
        sink: list[Run] = []
        parts = [rows.slice(i, args.send_rows) for i in range(0, args.rows, args.send_rows)]
        store = f"file://{tmp}/store"
        for run in range(args.repeat):
            bare_url, sink_url = f"{base}/bench_bare_{run}", f"{base}/bench_sink_{run}"
            arrow_url = f"{base}/bench_arrow_{run}"
            # Rotate which side goes first; let merges finish in between.
            sides = ["bare", "sink", "arrow"]
            for side in sides[run % 3 :] + sides[: run % 3]:
                settle(f"{base}/default")
                if side == "bare":
                    bare.append(bare_insert(bare_url, rows, server_pid))
                elif side == "arrow":
                    arrow.append(bare_insert(arrow_url, rows, server_pid, from_arrow=True))
                else:
                    sink.append(
                        sink_insert(
                            sink_url, parts, args.batch_rows, store, args.inflight, server_pid
                        )
                    )
            for url in (bare_url, sink_url, arrow_url):
                if (n := count(url)) != args.rows:
                    raise SystemExit(f"{url}: {n} rows, expected {args.rows}")

        def median(runs: list[Run], field: str) -> float:
            return statistics.median(getattr(r, field) for r in runs)

        bare_rps = args.rows / median(bare, "wall_s")
        arrow_rps = args.rows / median(arrow, "wall_s")
        sink_rps = args.rows / median(sink, "wall_s")
        ratios = sorted(b.wall_s / s.wall_s for b, s in zip(bare, sink, strict=True))
        per_m = 1e6 / args.rows
        version = "?"
        from camcount.warehouse import connect

        with connect(f"{base}/default") as wh:
            version = wh.backend.server_version
        print(
            f"server: ClickHouse {version}; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs; Ray worker niceness {os.environ['RAY_worker_niceness']}"  # noqa: SIM112
        )
        print(
            f"rows: {args.rows}, sink batch_rows: {args.batch_rows}, rows per write(): "
            f"{args.send_rows}, inserts in flight: {args.inflight or 'default (2)'}, "
            f"median of {args.repeat} runs"
        )
        print(f"bare clickhouse-driver columnar insert:  {bare_rps:,.0f} rows/s (columns ready)")
        print(f"  the same, columns built from Arrow:     {arrow_rps:,.0f} rows/s")
        print(f"through the WarehouseSink actor:         {sink_rps:,.0f} rows/s")
        print(f"ratio sink / bare: {sink_rps / bare_rps:.2f} (target >= 0.80)")
        print(f"  per-run ratios: {', '.join(f'{r:.2f}' for r in ratios)}")
        print(f"ratio sink / bare from Arrow: {sink_rps / arrow_rps:.2f}")
        load = os.getloadavg()[0]
        print(f"CPU seconds per million rows (ours + server; 1-min load {load:.1f}):")
        for name, runs in (("bare", bare), ("bare from Arrow", arrow), ("sink", sink)):
            ours, srv = median(runs, "client_cpu_s") * per_m, median(runs, "server_cpu_s") * per_m
            print(f"  {name:<16} {ours:5.2f} + {srv:5.2f} = {ours + srv:5.2f}")
        actor = median(sink, "actor_cpu_s") * per_m
        print(f"  (sink: {actor:.2f} in the actor, the rest in the caller's write() calls)")
    finally:
        ray.shutdown()
        if server is not None:
            server.remove()


if __name__ == "__main__":
    main()
