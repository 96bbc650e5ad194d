"""What 1,000 events cost through the webhook output, beside the warehouse sink.

Prints, per 1,000 crossings, the wall time and the CPU time of

1. the webhook output (`WebhookSink`): events written in aggregator-sized
   batches, posted as signed JSON in posts of ``--batch-size`` to a real
   receiver in its own process on loopback, which checks every signature
   (as docs/webhooks.md asks) and counts distinct event ids, ending with
   ``flush``; the receiver's CPU is reported apart;
2. the warehouse writer (`WarehouseWriter`) over embedded chDB (the
   default backend; its engine runs in this process, so its CPU is in
   ours), the same events, ending with ``flush``.

Each side is checked to have delivered exactly N events.

    python bench/webhooks.py --events 20000 --batch-size 100,1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa

# Run as ``python bench/webhooks.py``: bench/ is on the path, and its
# warehouse bench's event maker and CPU reader are shared.
from warehouse import cpu_s, crossing_batch

SECRET = "bench-secret"


def receiver_main() -> None:
    """A receiver that verifies signatures and counts distinct event ids;
    ``GET`` answers the count. Prints its port, then serves until killed."""
    from camcount.errors import SignatureError
    from camcount.outputs.signing import SIGNATURE_HEADER, verify

    seen: set[str] = set()
    bytes_in = [0]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a production server does

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                verify(SECRET, self.headers.get(SIGNATURE_HEADER), body)
            except SignatureError:
                self.send_response(401)
            else:
                seen.update(e["event_id"] for e in json.loads(body)["events"])
                bytes_in[0] += len(body)
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            answer = json.dumps({"events": len(seen), "bytes": bytes_in[0]}).encode()
            seen.clear()
            bytes_in[0] = 0
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    receiver_cpu_s: float = 0.0
    body_bytes: int = 0


def parts_of(events: pa.Table, size: int) -> list[pa.Table]:
    return [events.slice(i, size) for i in range(0, events.num_rows, size)]


def webhook_run(
    url: str, receiver_pid: int, parts: list[pa.Table], batch_size: int, root: str
) -> Run:
    import httpx

    from camcount.outputs.settings import WebhookOutputConfig
    from camcount.outputs.webhook import WebhookSink

    total = sum(p.num_rows for p in parts)
    config = WebhookOutputConfig(
        type="webhook",
        name="bench",
        url=url + "/hook",
        secret=SECRET,
        batch_size=batch_size,
        linger_s=1.0,
    )
    sink = WebhookSink(config, root)
    cpu0, rcpu0 = time.process_time(), cpu_s(receiver_pid)
    started = time.perf_counter()
    for p in parts:
        sink.write("crossing", p)
    ack = sink.flush(1)
    wall = time.perf_counter() - started
    run = Run(wall, time.process_time() - cpu0, cpu_s(receiver_pid) - rcpu0)
    sink.close()
    got = httpx.get(url).json()
    if ack.delivered != total or got["events"] != total:
        raise SystemExit(
            f"webhook delivered {ack.delivered}, receiver saw {got['events']} of {total}"
        )
    run.body_bytes = got["bytes"]
    return run


def warehouse_run(parts: list[pa.Table], batch_rows: int, folder: str) -> Run:
    from camcount.stream.spill import SpillStore
    from camcount.warehouse import WarehouseWriter, WriterSettings, connect

    total = sum(p.num_rows for p in parts)
    with connect(f"chdb://{folder}/chdb") as wh:
        writer = WarehouseWriter(
            wh.backend,
            SpillStore(f"file://{folder}/store"),
            WriterSettings(batch_rows=batch_rows, flush_interval_s=60),
        )
        cpu0 = time.process_time()
        started = time.perf_counter()
        for p in parts:
            writer.write("crossing", p)
        writer.flush()
        run = Run(time.perf_counter() - started, time.process_time() - cpu0)
        writer.close()
        n = int(wh.sql("SELECT count() AS n FROM crossings FINAL").column(0)[0].as_py())
    if n != total:
        raise SystemExit(f"warehouse holds {n} of {total} crossings")
    return run


def per_thousand(runs: list[Run], n: int, field: str) -> float:
    return statistics.median(getattr(r, field) for r in runs) * 1000 / n * 1000  # ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=20_000, help="N crossings per run")
    p.add_argument("--send-events", type=int, default=500, help="events per write() call")
    p.add_argument("--batch-size", default="100,1000", help="webhook posts' sizes to measure")
    p.add_argument("--batch-rows", type=int, default=10_000, help="the warehouse's batch_rows")
    p.add_argument("--repeat", type=int, default=3, help="runs per side; the median is kept")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    events = crossing_batch(args.events)
    parts = parts_of(events, args.send_events)
    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        url = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
        results: dict[str, dict[str, float]] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for size in (int(s) for s in args.batch_size.split(",")):
                runs = [
                    webhook_run(url, receiver.pid, parts, size, f"file://{tmp}/hooks")
                    for _ in range(args.repeat)
                ]
                results[f"webhook, posts of {size}"] = {
                    "wall_ms": per_thousand(runs, args.events, "wall_s"),
                    "cpu_ms": per_thousand(runs, args.events, "cpu_s"),
                    "receiver_cpu_ms": per_thousand(runs, args.events, "receiver_cpu_s"),
                    "bytes_per_event": runs[0].body_bytes / args.events,
                }
            runs = [
                warehouse_run(parts, args.batch_rows, f"{tmp}/wh{i}") for i in range(args.repeat)
            ]
            results[f"warehouse (chDB), batch_rows {args.batch_rows}"] = {
                "wall_ms": per_thousand(runs, args.events, "wall_s"),
                "cpu_ms": per_thousand(runs, args.events, "cpu_s"),
            }
    finally:
        receiver.kill()
        receiver.wait()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{args.events} crossings in writes of {args.send_events}, median of {args.repeat}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"{'per 1,000 events':<36} {'wall ms':>9} {'CPU ms':>9} "
        f"{'receiver CPU ms':>16} {'B/event':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:<36} {r['wall_ms']:>9.1f} {r['cpu_ms']:>9.1f} "
            f"{r.get('receiver_cpu_ms', float('nan')):>16.1f} "
            f"{r.get('bytes_per_event', float('nan')):>8.0f}"
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["--receiver"]:
        receiver_main()
    else:
        main()
