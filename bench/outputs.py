"""What each output costs per 1,000 events, side by side in one run.

Every output gets the very batches a shard sends (crossings and their
window rows, gathered by the core's ``Outbox`` into tables of
``BATCH_ROWS``), and a flush every ``--flush-every`` batches as a
checkpoint barrier would; the time of the writes and flushes, divided by
the events, is the output's cost. The outputs run in this process, with
no actor around them, so the figures are the core's work (the actor hop
is the same for every output and is in bench/pipeline.py's figures).

Adding an output is one entry in ``OUTPUTS``: a name and a function that
builds its ``Sink`` under a scratch folder.

    python bench/outputs.py --events 200000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from camcount.events import Crossing, Direction, WindowRow
from camcount.outputs.batching import BATCH_ROWS, Outbox
from camcount.outputs.port import Sink
from camcount.outputs.tables import batches_of

T0 = 1_796_515_200.0  # 2026-12-06T00:00:00Z


def make_warehouse(scratch: Path) -> Sink:
    """The warehouse writer on embedded chDB (the default for one machine)."""
    from camcount.config import WarehouseConfig
    from camcount.outputs.warehouse import WarehouseOutput
    from camcount.stream.spill import SpillStore
    from camcount.warehouse import WarehouseWriter, WriterSettings, connect

    cfg = WarehouseConfig(url=f"chdb://{scratch}/chdb")
    warehouse = connect(cfg, role="bench")
    spill = SpillStore(f"file://{scratch}/store", namespace="warehouse/bench")
    writer = WarehouseWriter(warehouse.backend, spill, WriterSettings.from_config(cfg))
    sink = WarehouseOutput(writer)
    close = sink.close

    def close_both() -> None:
        close()
        warehouse.close()

    sink.close = close_both  # type: ignore[method-assign]
    return sink


def make_live(scratch: Path) -> Sink:
    """The live encoding: each batch as the hub's updates (publishing is a
    list append here; the hub's own cost is in bench/fanout.py)."""
    from camcount.outputs.live import LiveSink

    published: list[object] = []
    meta = {f"cam-{i:02d}": {"site": "north", "tags": {"floor": "1"}} for i in range(8)}
    return LiveSink(published.append, meta)


def make_archive(scratch: Path) -> Sink:
    """Parquet files on the local disk (file://)."""
    from camcount.outputs.archive import ArchiveSink

    return ArchiveSink(f"file://{scratch}/archive", "s0", "bench")


def make_mqtt(scratch: Path) -> Sink:
    """The MQTT output, QoS 1, against mosquitto started on loopback under
    the scratch folder (stopped when the sink is closed): flushes wait for
    every PUBACK."""
    from camcount.outputs.mqtt import MqttSettings, MqttSink
    from tests.mosquitto import Mosquitto

    broker = Mosquitto(scratch / "mosquitto")
    broker.start()
    sink = MqttSink(MqttSettings(broker.host, broker.port, topic_prefix="bench", qos=1))
    sink.connected(5)
    close = sink.close

    def close_both() -> None:
        close()
        broker.stop()

    sink.close = close_both  # type: ignore[method-assign]
    return sink


#: name -> a function building the output's ``Sink`` under a scratch folder.
OUTPUTS: dict[str, Callable[[Path], Sink]] = {
    "warehouse (chDB)": make_warehouse,
    "live encoding": make_live,
    "archive (file://)": make_archive,
    "mqtt (QoS 1)": make_mqtt,
}


def make_events(n: int, seed: int = 0) -> list[object]:
    """``n`` events: crossings of eight cameras over an hour, and one closed
    window row for every ten crossings."""
    rng = np.random.default_rng(seed)
    times = np.sort(T0 + rng.uniform(0, 3600, n))
    events: list[object] = []
    for i, t in enumerate(times):
        if i % 11 == 10:
            events.append(WindowRow(f"cam-{i % 8:02d}", "door", "person", "in", 60, T0, i % 7))
            continue
        events.append(
            Crossing(
                f"cam-{i % 8:02d}",
                "door",
                i,
                i * 3,
                float(round(t, 3)),
                ("person", "car")[i % 2],
                Direction.IN if i % 3 else Direction.OUT,
                0.8,
                320.0,
                200.0,
            )
        )
    return events


def shard_batches(events: list[object]) -> tuple[list[list[tuple[str, pa.Table]]], float]:
    """The events as a shard's outbox sends them (a push of 50 events at a
    time), and the batching's own seconds."""
    box = Outbox(batch_rows=BATCH_ROWS, max_delay_s=3600.0)
    out: list[list[tuple[str, pa.Table]]] = []
    t0 = time.perf_counter()
    for i in range(0, len(events), 50):
        crossings = [e for e in events[i : i + 50] if isinstance(e, Crossing)]
        rows = [e for e in events[i : i + 50] if isinstance(e, WindowRow)]
        box.add(batches_of(crossings, rows))
        if box.due():
            out.append(box.take())
    if box:
        out.append(box.take())
    return out, time.perf_counter() - t0


def run_one(
    make: Callable[[Path], Sink], batches: list[list[tuple[str, pa.Table]]], flush_every: int
) -> float:
    with tempfile.TemporaryDirectory(prefix="camcount-bench-outputs-") as tmp:
        sink = make(Path(tmp))
        try:
            t0 = time.perf_counter()
            checkpoint = 0
            for i, tables in enumerate(batches, start=1):
                for kind, table in tables:
                    sink.write(kind, table)
                if i % flush_every == 0:
                    checkpoint += 1
                    sink.flush(checkpoint)
            sink.flush(checkpoint + 1)
            return time.perf_counter() - t0
        finally:
            sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--flush-every", type=int, default=4, help="batches per checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    events = make_events(args.events)
    shard_batches(events[:100])  # imports (pyarrow loads pandas) are not the batching's cost
    batches, batching_s = shard_batches(events)
    n = len(events)
    print(
        f"{n} events in {len(batches)} outbox batches of up to {BATCH_ROWS} rows, "
        f"a flush every {args.flush_every}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; median of {args.repeats}"
    )
    print(f"{'output':<20} {'ms / 1,000 events':>18} {'events/s':>12}")
    print(f"{'(outbox batching)':<20} {batching_s / n * 1e6:>18.2f} {n / batching_s:>12,.0f}")
    for name, make in OUTPUTS.items():
        seconds = statistics.median(
            run_one(make, batches, args.flush_every) for _ in range(args.repeats)
        )
        print(f"{name:<20} {seconds / n * 1e6:>18.2f} {n / seconds:>12,.0f}")


if __name__ == "__main__":
    main()
