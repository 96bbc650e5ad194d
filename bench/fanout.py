"""Fan-out of live updates to many WebSocket clients on one live replica.

Starts the pipeline's Serve apps on a local Ray cluster (no camera), opens
``--clients`` WebSocket clients on ``/live/ws`` (spread over ``--procs``
client processes), and publishes a steady stream of updates straight into
the live hub, each stamped with the wall time just before the hub call.
Every reading client subscribes to the stream and acknowledges every
``ACK_EVERY`` updates, as the protocol asks. Two phases, same stream:

1. every client reads;
2. a fraction (``--slow``) of the clients never reads its socket at all
   (raw TCP: handshake, subscribe, then silence), the rest as in 1.

Printed per phase: p50/p99/max delay from the hub call to the client's
``recv`` (reading clients, measured window only), messages delivered per
second, the share of the expected messages delivered, and for phase 2 how
many silent clients were told ``overflow`` and closed with 4408. The last
line is the ratio of the reading clients' p99 with and without the silent
ones. Everything runs on loopback and stops by itself.

    python bench/fanout.py     # 1000 clients, 10 updates/s, rounds 1 s apart, 20 s per phase
    python bench/fanout.py --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOKEN = "bench-token-0c5e"
ACK_EVERY = 20
ACK_WINDOW = 60
CLIENT_BUFFER = 100
CONNECT_CONCURRENCY = 64
TAIL_S = 3.0
WARMUP_S = 2.0
CLOSE_4408 = b"\x11\x38slow consumer"  # a close frame's code and reason (serve_app/live.py)


# ----------------------------------------------------------------- client processes


async def _reader(url: str, delays: list[float], counts: list[int], ready: Any, go: Any) -> None:
    import websockets

    sub = json.dumps({"type": "subscribe", "cameras": ["bench"]})
    async with go:
        ws = await websockets.connect(
            url,
            additional_headers={"Authorization": f"Bearer {TOKEN}"},
            compression=None,
            max_queue=None,
            open_timeout=120,
            ping_interval=None,
        )
    try:
        await ws.recv()  # hello
        await ws.send(sub)
        await ws.recv()  # subscribed
        ready()
        n = 0
        async for raw in ws:
            now = time.time()
            m = json.loads(raw)
            ups = m["updates"] if m["type"] == "updates" else [m] if m["type"] == "update" else []
            for u in ups:
                d = u["data"]
                if d.get("m"):
                    delays.append(now - d["t"])
                    counts[0] += 1
            if ups and (n // ACK_EVERY) != ((n + len(ups)) // ACK_EVERY):
                await ws.send(json.dumps({"type": "ack", "seq": ups[-1]["seq"]}))
            n += len(ups)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2)


def client_process(url: str, n: int, ready_q: Any, stop_evt: Any, out_q: Any) -> None:
    """``n`` reading clients; reports (delays in s, measured messages, closes)."""

    async def run() -> None:
        delays: list[float] = []
        counts = [0]
        ready = [0]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        def one_ready() -> None:
            ready[0] += 1
            if ready[0] == n:
                ready_q.put(n)

        tasks = [
            asyncio.create_task(_reader(url, delays, counts, one_ready, gate)) for _ in range(n)
        ]
        while not stop_evt.is_set():
            await asyncio.sleep(0.2)
        closed_early = sum(1 for t in tasks if t.done())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        out_q.put((np.asarray(delays, dtype=np.float64).tobytes(), counts[0], closed_early))

    asyncio.run(run())


# ----------------------------------------------------------------- silent clients


def silent_client(host: str, port: int) -> socket.socket:
    """Handshake, subscribe, then never read again (a stalled TCP reader)."""
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /live/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    payload = json.dumps({"type": "subscribe", "cameras": ["bench"]}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return s


def drain_for_close(sockets: list[socket.socket], timeout_s: float = 20.0) -> list[bytes]:
    """Read at last what the silent clients never read, all at once, until
    the server closed each or ``timeout_s`` passed."""
    import selectors

    sel = selectors.DefaultSelector()
    data = {s.fileno(): b"" for s in sockets}
    for s in sockets:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    open_ = len(sockets)
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                data[sock.fileno()] += chunk
            if not chunk or CLOSE_4408 in data[sock.fileno()][-64:]:
                sel.unregister(sock)
                open_ -= 1
    sel.close()
    return [data[s.fileno()] for s in sockets]


def told_and_closed(data: bytes) -> tuple[bool, bool]:
    """Was the client sent the overflow notice, then close code 4408?"""
    return b'"type":"overflow"' in data, CLOSE_4408 in data


# ----------------------------------------------------------------- phases


@dataclass
class Phase:
    name: str
    readers: int
    silent: int
    delays_ms: np.ndarray
    delivered: int
    expected: int
    seconds: float
    closed_early: int
    silent_told: int = 0
    silent_4408: int = 0
    server_connections: int = 0

    def row(self) -> dict[str, Any]:
        d = self.delays_ms
        pct = (lambda q: float(np.percentile(d, q))) if d.size else (lambda q: float("nan"))
        return {
            "phase": self.name,
            "reading_clients": self.readers,
            "silent_clients": self.silent,
            "p50_ms": round(pct(50), 1),
            "p99_ms": round(pct(99), 1),
            "max_ms": round(float(d.max()) if d.size else float("nan"), 1),
            "messages_per_s": round(self.delivered / self.seconds),
            "delivered_share": round(self.delivered / max(1, self.expected), 4),
            "readers_closed_early": self.closed_early,
            "silent_told_overflow": self.silent_told,
            "silent_closed_4408": self.silent_4408,
            "server_connections_at_end": self.server_connections,
        }


def live_connections(host: str, port: int) -> int:
    """Connections the live replica still serves (its health route)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{host}:{port}/live/healthz", timeout=10) as r:
        return int(json.loads(r.read())["connections"])


async def publish(
    hub: Any, rate: float, batches: float, seconds: float, measured: bool, start_i: int
) -> int:
    """``rate`` updates/s in ``batches`` hub calls a second, for ``seconds``."""
    batch_s = 1.0 / batches
    per_batch = max(1, round(rate * batch_s))
    t0 = time.monotonic()
    i = start_i
    k = 0
    while time.monotonic() - t0 < seconds:
        batch = [
            ("zone_sample", "bench", {"zone_id": "z", "i": i + j, "m": measured, "t": time.time()})
            for j in range(per_batch)
        ]
        await hub.publish.remote(batch)
        i += per_batch
        k += 1
        await asyncio.sleep(max(0.0, t0 + k * batch_s - time.monotonic()))
    return i - start_i


def run_phase(
    name: str, url: str, host: str, port: int, hub: Any, args: argparse.Namespace, silent: int
) -> Phase:
    readers = args.clients - silent
    ctx = mp.get_context("spawn")
    ready_q, out_q, stop_evt = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [
        readers // args.procs + (1 if i < readers % args.procs else 0) for i in range(args.procs)
    ]
    procs = [
        ctx.Process(target=client_process, args=(url, n, ready_q, stop_evt, out_q), daemon=True)
        for n in shares
        if n
    ]
    for p in procs:
        p.start()
    sockets = [silent_client(host, port) for _ in range(silent)]
    t_connect = time.monotonic()
    for _ in procs:
        ready_q.get(timeout=300)
    print(
        f"[{name}] {readers} reading + {silent} silent clients connected in "
        f"{time.monotonic() - t_connect:.1f} s",
        file=sys.stderr,
    )

    async def stream() -> int:
        await publish(hub, args.rate, args.batches, WARMUP_S, False, 0)
        n = await publish(hub, args.rate, args.batches, args.seconds, True, 10**6)
        await publish(hub, args.rate, args.batches, TAIL_S, False, 10**7)
        return n

    measured = asyncio.run(stream())
    server_connections = live_connections(host, port)
    stop_evt.set()
    delays: list[np.ndarray] = []
    delivered = closed_early = 0
    for _ in procs:
        raw, n, closed = out_q.get(timeout=120)
        delays.append(np.frombuffer(raw, dtype=np.float64))
        delivered += n
        closed_early += closed
    for p in procs:
        p.join(timeout=30)
    told = closed_4408 = 0
    for raw in drain_for_close(sockets):
        t, c = told_and_closed(raw)
        told += t
        closed_4408 += c
    for s in sockets:
        s.close()
    return Phase(
        name,
        readers,
        silent,
        np.concatenate(delays) * 1000 if delays else np.zeros(0),
        delivered,
        readers * measured,
        args.seconds,
        closed_early,
        told,
        closed_4408,
        server_connections,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="updates per second")
    parser.add_argument("--batches", type=float, default=10.0, help="hub publishes per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per phase")
    parser.add_argument(
        "--batch-s", type=float, default=1.0, help="api.live_batch_s: fan-out rounds' spacing"
    )
    parser.add_argument(
        "--one-per-frame", action="store_true", help="one update per frame (no ?batch=1)"
    )
    parser.add_argument("--reading-only", action="store_true", help="skip the silent phase")
    parser.add_argument("--slow", type=float, default=0.1, help="share of silent clients")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.clients <= 5000 or not 0 < args.seconds <= 300:
        parser.error("--clients must be in [1, 5000] and --seconds in (0, 300]")

    import logging

    import ray

    from camcount.config import ApiConfig, AppConfig, DetectorConfig
    from serve_app.app import start_pipeline

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.ERROR)
    config = AppConfig(
        detector=DetectorConfig(model="oracle"),
        api=ApiConfig(
            port=port,
            tokens=(TOKEN,),
            rate_limit_per_s=1e6,
            rate_limit_burst=1_000_000,
            live_max_connections=args.clients + 500,
            heartbeat_s=30,
            live_batch_s=args.batch_s,
            ack_window=ACK_WINDOW,
            client_buffer=CLIENT_BUFFER,
        ),
    )
    pipeline = start_pipeline(config)
    try:
        hub = ray.get(pipeline.controller.hub_handle.remote())
        url = f"ws://127.0.0.1:{port}/live/ws" + ("" if args.one_per_frame else "?batch=1")
        silent = round(args.clients * args.slow)
        phases = [run_phase("all reading", url, "127.0.0.1", port, hub, args, 0)]
        if not args.reading_only:
            phases.append(
                run_phase(f"{silent} never reading", url, "127.0.0.1", port, hub, args, silent)
            )
    finally:
        pipeline.stop()
        ray.shutdown()
    rows = [p.row() for p in phases]
    ratio = rows[-1]["p99_ms"] / rows[0]["p99_ms"] if rows[0]["p99_ms"] else float("nan")
    result = {
        "clients": args.clients,
        "rate_per_s": args.rate,
        "hub_batches_per_s": args.batches,
        "live_batch_s": args.batch_s,
        "batch_frames": not args.one_per_frame,
        "seconds": args.seconds,
        "procs": args.procs,
        "ack_every": ACK_EVERY,
        "ack_window": ACK_WINDOW,
        "client_buffer": CLIENT_BUFFER,
        "machine": f"{os.cpu_count()} CPU, {platform.machine()}, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}",
        "phases": rows,
        "p99_ratio_with_silent": round(ratio, 3),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    print(f"p99 of reading clients, with / without silent clients: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
