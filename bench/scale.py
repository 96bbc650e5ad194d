"""Scale: can the aggregator shards and the warehouse sink keep up with
thousands of cameras, and what memory does a camera take? Synthetic
events, no video; Ray only for the memory part (4).

Prints, in one run, side by side:

1. events/s per aggregator shard at 1, 2 and 4 shards: each shard a process
   of its own running the shard's core (``camcount.stream.aggregation``)
   over its cameras' batches, plus the Arrow tables it hands the sink (what
   ``actors/aggregator.py`` does per push, less the Ray call);
2. rows/s through the warehouse sink's write path into embedded chDB
   (Arrow batches of ``--batch-rows`` crossings, converted and inserted as
   ``Warehouse.insert`` does for the sink);
3. a simulated ``--cameras`` cameras at one crossing per camera per second
   for ``--seconds`` seconds, each camera sending one batch a second (its
   crossing, its progress and its frame count): per shard count, the
   busiest shard's seconds of work per simulated second, the lag it would
   end with, and whether the sink keeps up with the rows they produce;
4. resident memory per camera at 1, 8 and 32 cameras per process, from
   ``bench/memory.py`` (it starts a local Ray cluster; ``--no-memory``
   skips it).

    python bench/scale.py --cameras 10000 --seconds 3
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camcount.events import Crossing, Direction, WindowRow, group_by_type, to_arrow
from camcount.stream.aggregation import Aggregator, shard_router
from camcount.stream.channels import Counted, Envelope, Progress

START = 1767225600.0  # 2026-01-01, the cameras' default start
WINDOWS_S = (10, 60, 900, 3600)  # the config's default windows
ALLOWED_LATENESS_S = 5.0
FPS = 5
CLASSES = ("person", "car")


@dataclass
class ShardRun:
    """One shard's work over the simulated seconds."""

    shard: int
    cameras: int
    events: int
    rows: int
    seconds_per_tick: list[float]

    @property
    def busy_s(self) -> float:
        return sum(self.seconds_per_tick)


def camera_ids(n: int) -> list[str]:
    return [f"cam{i:05d}" for i in range(n)]


def envelope(camera: str, second: int) -> Envelope:
    """Camera ``camera``'s batch for second ``second``: one crossing, the
    progress of its clock, and the frames it counted."""
    t = START + second
    crossing = Crossing(
        camera_id=camera,
        counter_id="line-main",
        track_id=second,
        frame_index=second * FPS,
        event_time=t + 0.5,
        class_name=CLASSES[second % 2],
        direction=Direction.IN if second % 3 else Direction.OUT,
        confidence=0.9,
        anchor_x=320.0,
        anchor_y=200.0,
    )
    controls = (Progress(t + 1.0), Counted(second * FPS, second * FPS + FPS - 1))
    return Envelope(f"{camera}#0", second, (crossing,), controls)


def run_shard(args: tuple[int, list[str], int]) -> ShardRun:
    """A shard's process: the core over its cameras, one simulated second
    (every camera's batch) after the other, its CPU seconds taken per
    simulated second (CPU, not wall: on a shared machine the wall time
    says more about the neighbours than about the shard; a shard actor has
    its core to itself when the cluster is sized by these figures). The
    batches are made before each second's clock starts (the cameras' work)."""
    shard, cameras, seconds = args
    agg = Aggregator(WINDOWS_S, ALLOWED_LATENESS_S)
    for camera in cameras:
        agg.register(camera, f"{camera}#0")
    ticks: list[float] = []
    events = rows = 0
    for second in range(seconds):
        batch = [envelope(c, second) for c in cameras]
        started = time.process_time()
        produced: list[object] = []
        closed: list[WindowRow] = []
        for env in batch:
            out = agg.accept(env)
            produced.extend(out.events)
            closed.extend(out.rows)
        # What the shard actor hands the sink, once per second (it batches
        # up to 5 000 rows or one second per kind).
        for cls, items in group_by_type(produced).items():
            to_arrow(cls, items)  # type: ignore[type-var]
        if closed:
            to_arrow(WindowRow, closed)
        ticks.append(time.process_time() - started)
        events += len(produced)
        rows += len(closed)
    return ShardRun(shard, len(cameras), events, rows, ticks)


def shards_at(n_shards: int, cameras: list[str], seconds: int) -> list[ShardRun]:
    route = shard_router(n_shards, {}, [])
    split: list[list[str]] = [[] for _ in range(n_shards)]
    for camera in cameras:
        split[int(route(camera))].append(camera)
    ctx = mp.get_context("fork")
    with ctx.Pool(n_shards) as pool:
        return pool.map(run_shard, [(i, split[i], seconds) for i in range(n_shards)])


def lag_after(seconds_per_tick: list[float]) -> float:
    """Seconds of work still queued at the end, one simulated second of
    input arriving per wall second (a queue that drains at the shard's own
    speed)."""
    backlog = 0.0
    for work in seconds_per_tick:
        backlog = max(0.0, backlog + work - 1.0)
    return backlog


def crossing_table(n: int) -> pa.Table:
    cams = camera_ids(max(1, n // 50))
    items = [envelope(cams[i % len(cams)], i // len(cams)).events[0] for i in range(n)]
    return to_arrow(Crossing, items)


def sink_rows_per_s(rows: int, batch_rows: int, repeat: int) -> tuple[float, list[float]]:
    """Median rows per CPU second of ``rows`` crossings written in batches
    of ``batch_rows`` into a fresh embedded chDB (in this process, so its
    threads' CPU is this process's), each run checked by count."""
    from camcount.warehouse import connect

    table = crossing_table(rows)
    batches = [table.slice(i, batch_rows) for i in range(0, rows, batch_rows)]
    rates = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp, connect(f"chdb://{tmp}/chdb") as wh:
            started, wall = time.process_time(), time.perf_counter()
            for b in batches:
                wh.insert("crossing", b)
            elapsed = time.process_time() - started
            print(f"  chDB run: {rows / (time.perf_counter() - wall):,.0f} rows/s wall", flush=True)
            n = int(wh.sql("SELECT count() AS n FROM crossings FINAL").column(0)[0].as_py())
            if n != rows:
                raise SystemExit(f"chDB holds {n} of {rows} rows")
            rates.append(rows / elapsed)
    return statistics.median(rates), rates


def memory_per_camera(counts: list[int]) -> str:
    """bench/memory.py's table: resident memory per camera at ``counts``
    cameras per process (it starts a local Ray cluster and runs cameras)."""
    path = Path(__file__).with_name("memory.py")
    spec = importlib.util.spec_from_file_location("camcount_bench_memory", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"bench/memory.py could not be loaded from {path}")
    memory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(memory)
    fps, seconds = 10.0, 15.0
    return str(memory.table(memory.measure(counts, fps, seconds=seconds), fps, seconds))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cameras", type=int, default=10_000, help="simulated cameras")
    p.add_argument("--seconds", type=int, default=3, help="simulated seconds")
    p.add_argument("--shards", default="1,2,4", help="shard counts to compare")
    p.add_argument("--sink-rows", type=int, default=200_000, help="rows per chDB run")
    p.add_argument("--batch-rows", type=int, default=10_000, help="rows per insert")
    p.add_argument("--repeat", type=int, default=3, help="chDB runs; the median is kept")
    p.add_argument(
        "--memory-per-process",
        default="1,8,32",
        help="cameras per process that bench/memory.py measures memory at",
    )
    p.add_argument("--no-memory", action="store_true", help="skip bench/memory.py (Ray)")
    args = p.parse_args()
    if args.cameras < 1 or args.seconds < 2:
        p.error("--cameras must be at least 1 and --seconds at least 2")
    try:
        shard_counts = [int(s) for s in args.shards.split(",")]
        memory_counts = [int(k) for k in args.memory_per_process.split(",")]
    except ValueError:
        p.error("--shards and --memory-per-process are comma-separated whole numbers")
    if min(shard_counts) < 1 or min(memory_counts) < 1:
        p.error("--shards and --memory-per-process must be at least 1")

    print(
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    cameras = camera_ids(args.cameras)
    sink_rate, sink_runs = sink_rows_per_s(args.sink_rows, args.batch_rows, args.repeat)
    print(
        f"sink (chDB, batches of {args.batch_rows}): {sink_rate:,.0f} rows per CPU s, median "
        f"(runs: {', '.join(f'{r:,.0f}' for r in sink_runs)})"
    )
    header = (
        "shards | cameras per shard | events per CPU s per shard | "
        "all shards events/s, a core each | busiest shard CPU s per s | lag after run s | "
        "needed events/s | rows to sink/s | "
        "sink CPU s per s | keeps up"
    )
    print(header)
    print("|".join("---" for _ in header.split("|")))
    for n in shard_counts:
        runs = shards_at(n, cameras, args.seconds)
        per_shard = [r.events / r.busy_s for r in runs]
        # Seconds 1.. only: the first second registers every window.
        busiest = max(statistics.median(r.seconds_per_tick[1:]) for r in runs)
        wall = max(r.busy_s for r in runs)
        events = sum(r.events for r in runs)
        rows_per_s = (events + sum(r.rows for r in runs)) / args.seconds
        sink_busy = rows_per_s / sink_rate
        lag = max(lag_after(r.seconds_per_tick) for r in runs)
        keeps_up = busiest < 1.0 and sink_busy < 1.0
        print(
            f"{n} | {max(r.cameras for r in runs):,} | {statistics.median(per_shard):,.0f} | "
            f"{events / wall:,.0f} | "
            f"{busiest:.3f} | {lag:.2f} | {args.cameras:,} | {rows_per_s:,.0f} | "
            f"{sink_busy:.2f} | {'yes' if keeps_up else 'no'}",
            flush=True,
        )
    if not args.no_memory:
        print("memory per camera by cameras per process (bench/memory.py):", flush=True)
        print(memory_per_camera(memory_counts))


if __name__ == "__main__":
    main()
