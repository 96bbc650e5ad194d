"""Fan-out of live updates to many WebSocket clients on live replicas.

Starts the pipeline's Serve apps on a local Ray cluster (no camera), opens
``--clients`` WebSocket clients (spread over ``--procs`` client processes)
on each path measured (``--path``): ``direct``, the live replica's own port
as ``GET /live/endpoints`` names it, and ``relayed``, ``/live/ws`` through
Serve's proxy. It publishes a steady stream of updates straight into the
live hub, each stamped with the wall time just before the hub call.
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
ones, per path. Everything runs on loopback and stops by itself.

``--replicas N`` starts N live replicas and spreads the client processes
over them on the direct path (process i on replica i mod N), as clients
spread by ``GET /live/endpoints``. ``--client lean`` reads with a lean
asyncio protocol instead of the ``websockets`` library (same handshake,
frames and acks, less client CPU), to tell the clients' share of a shared
machine from the server's.

    python bench/fanout.py     # 1000 clients, 10 updates/s, both paths, 20 s per phase
    python bench/fanout.py --path direct --clients 10000 --rate 1 --batches 1 --procs 4 --replicas 2
    python bench/fanout.py --clip ../shared/data/videos/intel_one-by-one-person-detection.mp4

With ``--clip``, the pipeline counts a real clip served as a live MJPEG
camera (so an event's time is its frame's capture clock, on this machine),
and ``--clients`` clients on the direct path measure, in the same run,
three delays to their ``recv`` of each update (docs/api.md, measuring
delay):

- capture: from the frame's capture clock (``data.event_time``; updates
  that carry one), which includes decoding and detection;
- created: from the camera actor's creation of the update's events
  (``created``): the shard, the hub, the replica and the socket;
- hub call: from the shard's call to the hub (``published``): the hub,
  the replica and the socket, what the synthetic stream above measures.

    python bench/fanout.py --clip ../shared/data/videos/intel_one-by-one-person-detection.mp4 \
        --clients 20 --seconds 15
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
import resource
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOKEN = "bench-token-0c5e"
ACK_EVERY = 20
ACK_WINDOW = 60
CLIENT_BUFFER = 100
CONNECT_CONCURRENCY = 64
CONNECT_TRIES = 5
TAIL_S = 3.0
WARMUP_S = 2.0
CLOSE_4408 = b"\x11\x38slow consumer"  # a close frame's code and reason (serve_app/live.py)


# ----------------------------------------------------------------- client processes


def raise_fd_limit() -> int:
    """As many open files as the hard limit allows (a socket is one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


#: The delays a clip's updates are measured by: the update's field (top
#: level, or in ``data``) each is measured from, and what it is called.
CLIP_DELAYS = (
    ("capture", "event_time", "capture -> recv"),
    ("created", "created", "created -> recv"),
    ("hub", "published", "hub call -> recv"),
)


def _delays(now: float, update: dict[str, Any]) -> list[tuple[str, float]]:
    """The bench's own stamp (``t``, measured ``m``) as the ``hub`` delay,
    or a clip's update's stamps (``CLIP_DELAYS``), those it carries."""
    data = update["data"]
    if "t" in data:
        return [("hub", now - float(data["t"]))] if data.get("m") else []
    out = []
    for name, field, _ in CLIP_DELAYS:
        t = data.get(field) if field == "event_time" else update.get(field)
        if isinstance(t, int | float):
            out.append((name, now - float(t)))
    return out


async def _reader(
    url: str,
    camera: str,
    delays: dict[str, list[float]],
    counts: list[int],
    ready: Any,
    go: Any,
) -> None:
    import websockets

    sub = json.dumps({"type": "subscribe", "cameras": [camera]})
    for attempt in range(CONNECT_TRIES):
        try:
            async with go:
                ws = await websockets.connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {TOKEN}"},
                    compression=None,
                    max_queue=None,
                    open_timeout=120,
                    ping_interval=None,
                )
            break
        except (OSError, TimeoutError, websockets.InvalidHandshake):
            # A loaded machine: the server's open timeout, a full backlog.
            if attempt == CONNECT_TRIES - 1:
                raise
            await asyncio.sleep(0.5 + attempt)
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
                measured = _delays(now, u)
                for name, d in measured:
                    delays.setdefault(name, []).append(d)
                counts[0] += bool(measured)
            if ups and (n // ACK_EVERY) != ((n + len(ups)) // ACK_EVERY):
                await ws.send(json.dumps({"type": "ack", "seq": ups[-1]["seq"]}))
            n += len(ups)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 2)


def _upgrade(host: str, port: int, target: str) -> bytes:
    """A client's WebSocket opening request, with the bench's token."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()


def _masked(opcode: int, payload: bytes) -> bytes:
    """A client frame (RFC 6455 5.3: a client masks what it sends)."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode]) + (
        bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    )
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return head + mask + (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class _LeanReader(asyncio.Protocol):
    """A reading client as a load generator: the handshake, unmasked server
    frames parsed from the byte stream, the subscribe and the acks, with no
    task per connection. It asks for no compression. The same protocol as
    ``_reader``, at a fraction of its CPU, so that on a machine shared by the
    server and its clients the figures are the server's more than theirs."""

    def __init__(
        self, camera: str, delays: dict[str, list[float]], counts: list[int], ready: Any
    ) -> None:
        self.camera = camera
        self.delays = delays
        self.counts = counts
        self.ready = ready
        self.buf = b""
        self.opened = False
        self.n = 0
        self.parts: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data
        if not self.opened:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if b" 101 " not in buf.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"handshake refused: {buf[:80]!r}")
            self.opened = True
            buf = buf[end + 4 :]
        i, size = 0, len(buf)
        while size - i >= 2:
            b0, b1 = buf[i], buf[i + 1] & 0x7F
            at = i + 2
            if b1 == 126:
                if size - at < 2:
                    break
                b1, at = int.from_bytes(buf[at : at + 2], "big"), at + 2
            elif b1 == 127:
                if size - at < 8:
                    break
                b1, at = int.from_bytes(buf[at : at + 8], "big"), at + 8
            if size - at < b1:
                break
            payload, i = buf[at : at + b1], at + b1
            self._frame(b0 & 0x0F, bool(b0 & 0x80), payload, now)
        self.buf = buf[i:]

    def _frame(self, opcode: int, fin: bool, payload: bytes, now: float) -> None:
        assert self.transport is not None
        if opcode == 0x9:  # ping
            self.transport.write(_masked(0xA, payload))
            return
        if opcode == 0x8:  # close: answer it, as a client does
            self.transport.write(_masked(0x8, payload[:2]))
            self.transport.close()
            return
        if opcode not in (0x0, 0x1):
            return
        self.parts.append(payload)
        if not fin:
            return
        m = json.loads(b"".join(self.parts))
        self.parts = []
        kind = m["type"]
        if kind == "hello":
            sub = {"type": "subscribe", "cameras": [self.camera]}
            self.transport.write(_masked(0x1, json.dumps(sub).encode()))
            return
        if kind == "subscribed":
            self.ready()
            return
        ups = m["updates"] if kind == "updates" else [m] if kind == "update" else []
        for u in ups:
            measured = _delays(now, u)
            for name, d in measured:
                self.delays.setdefault(name, []).append(d)
            self.counts[0] += bool(measured)
        n = self.n
        if ups and (n // ACK_EVERY) != ((n + len(ups)) // ACK_EVERY):
            ack = {"type": "ack", "seq": ups[-1]["seq"]}
            self.transport.write(_masked(0x1, json.dumps(ack).encode()))
        self.n = n + len(ups)


async def _lean_reader(
    url: str,
    camera: str,
    delays: dict[str, list[float]],
    counts: list[int],
    ready: Any,
    go: Any,
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    for attempt in range(CONNECT_TRIES):
        try:
            async with go:
                _, proto = await loop.create_connection(
                    lambda: _LeanReader(camera, delays, counts, ready), host, port
                )
            break
        except OSError:
            if attempt == CONNECT_TRIES - 1:
                raise
            await asyncio.sleep(0.5 + attempt)
    assert proto.transport is not None
    proto.transport.write(_upgrade(host, port, target))
    try:
        await proto.closed
    finally:
        proto.transport.close()


def client_process(
    url: str, camera: str, n: int, ready_q: Any, stop_evt: Any, out_q: Any, lean: bool = False
) -> None:
    """``n`` reading clients; reports (delays in s by name, measured
    messages, closes)."""
    raise_fd_limit()

    async def run() -> None:
        delays: dict[str, list[float]] = {}
        counts = [0]
        ready = [0]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        def one_ready() -> None:
            ready[0] += 1
            if ready[0] == n:
                ready_q.put(n)

        read = _lean_reader if lean else _reader
        tasks = [
            asyncio.create_task(read(url, camera, delays, counts, one_ready, gate))
            for _ in range(n)
        ]
        while not stop_evt.is_set():
            await asyncio.sleep(0.2)
        closed_early = sum(1 for t in tasks if t.done())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raw = {k: np.asarray(v, dtype=np.float64).tobytes() for k, v in delays.items()}
        out_q.put((raw, counts[0], closed_early))

    asyncio.run(run())


# ----------------------------------------------------------------- silent clients


def silent_client(url: str) -> socket.socket:
    """Handshake, subscribe, then never read again (a stalled TCP reader)."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(_upgrade(host, port, path))
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(f"handshake refused: {head[:80]!r}")
    payload = json.dumps({"type": "subscribe", "cameras": ["bench"]}).encode()
    s.sendall(_masked(0x1, payload))
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
    path: str
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
            "path": self.path,
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


def live_connections(health_url: str) -> int:
    """Connections the live replica still serves (its health route)."""
    import urllib.request

    try:
        with urllib.request.urlopen(health_url, timeout=60) as r:
            return int(json.loads(r.read())["connections"])
    except OSError:  # a replica too busy to answer in time: not a reason to lose the run
        return -1


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
    path: str,
    name: str,
    urls: list[str],
    healths: list[str],
    hub: Any,
    args: argparse.Namespace,
    silent: int,
) -> Phase:
    """One phase; with several live replicas (``urls``), client process ``i``
    connects to replica ``i`` modulo their number, as clients spread by
    ``GET /live/endpoints`` would."""
    readers = args.clients - silent
    ctx = mp.get_context("spawn")
    ready_q, out_q, stop_evt = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [
        readers // args.procs + (1 if i < readers % args.procs else 0) for i in range(args.procs)
    ]
    procs = [
        ctx.Process(
            target=client_process,
            args=(urls[i % len(urls)], "bench", n, ready_q, stop_evt, out_q, args.client == "lean"),
            daemon=True,
        )
        for i, n in enumerate(shares)
        if n
    ]
    for p in procs:
        p.start()
    sockets = [silent_client(urls[i % len(urls)]) for i in range(silent)]
    t_connect = time.monotonic()
    for _ in procs:
        ready_q.get(timeout=900)
    print(
        f"[{path}, {name}] {readers} reading + {silent} silent clients connected in "
        f"{time.monotonic() - t_connect:.1f} s",
        file=sys.stderr,
    )

    async def stream() -> int:
        await publish(hub, args.rate, args.batches, WARMUP_S, False, 0)
        n = await publish(hub, args.rate, args.batches, args.seconds, True, 10**6)
        await publish(hub, args.rate, args.batches, TAIL_S, False, 10**7)
        return n

    measured = asyncio.run(stream())
    server_connections = sum(live_connections(h) for h in healths)
    stop_evt.set()
    delays: list[np.ndarray] = []
    delivered = closed_early = 0
    for _ in procs:
        raw, n, closed = out_q.get(timeout=120)
        delays.append(np.frombuffer(raw.get("hub", b""), dtype=np.float64))
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
        path,
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


def find_endpoints(api_url: str, replicas: int = 1, timeout_s: float = 60.0) -> dict[str, Any]:
    """``GET /live/endpoints`` once every live replica has told the hub its port."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        req = urllib.request.Request(
            f"{api_url}/live/endpoints", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(req, timeout=10) as r:
                body: dict[str, Any] = json.loads(r.read())
            if len(body["endpoints"]) >= replicas or time.monotonic() > deadline:
                return body
        if time.monotonic() > deadline:
            raise RuntimeError("no live endpoint")
        time.sleep(0.5)


def clip_latency(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """A real clip's updates, on the direct path: the delay to the client
    from capture, from the events' creation and from the hub call."""
    ctx = mp.get_context("spawn")
    ready_q, out_q, stop_evt = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [
        args.clients // args.procs + (i < args.clients % args.procs) for i in range(args.procs)
    ]
    procs = [
        ctx.Process(
            target=client_process,
            args=(url, "clip", n, ready_q, stop_evt, out_q, args.client == "lean"),
        )
        for n in shares
        if n
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready_q.get(timeout=300)
    time.sleep(args.seconds)
    stop_evt.set()
    delays: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in CLIP_DELAYS}
    received = 0
    for _ in procs:
        raw, n, _ = out_q.get(timeout=120)
        received += n
        for name, values in raw.items():
            delays[name].append(np.frombuffer(values, dtype=np.float64))
    for p in procs:
        p.join(timeout=30)
    result: dict[str, Any] = {"clients": args.clients, "updates_received": received}
    for name, _, _ in CLIP_DELAYS:
        d = np.concatenate(delays[name]) * 1000 if delays[name] else np.zeros(0)
        result[f"{name}_to_client_n"] = int(d.size)
        for q, key in ((50, "p50"), (99, "p99"), (100, "max")):
            ms = round(float(np.percentile(d, q)), 1) if d.size else None
            result[f"{name}_to_client_{key}_ms"] = ms
    return result


def clip_summary(clip: dict[str, Any]) -> list[str]:
    """One line per delay measured on a clip."""
    lines = []
    for name, _, label in CLIP_DELAYS:
        n = clip[f"{name}_to_client_n"]
        if not n:
            lines.append(f"{label:>16}: no update carried it")
            continue
        lines.append(
            f"{label:>16}: p50 {clip[f'{name}_to_client_p50_ms']:8.1f} ms   "
            f"p99 {clip[f'{name}_to_client_p99_ms']:8.1f} ms   "
            f"max {clip[f'{name}_to_client_max_ms']:8.1f} ms   ({n} receipts, all clients)"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="updates per second")
    parser.add_argument("--batches", type=float, default=10.0, help="hub publishes per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per phase")
    parser.add_argument(
        "--path", choices=("both", "direct", "relayed"), default="both", help="paths measured"
    )
    parser.add_argument(
        "--batch-s",
        type=float,
        default=1.0,
        help="api.live_batch_s: writes through Serve's proxy at least this far apart",
    )
    parser.add_argument(
        "--one-per-frame", action="store_true", help="one update per frame (no ?batch=1)"
    )
    parser.add_argument("--reading-only", action="store_true", help="skip the silent phase")
    parser.add_argument("--slow", type=float, default=0.1, help="share of silent clients")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument(
        "--replicas", type=int, default=1, help="live replicas (the direct path spreads clients)"
    )
    parser.add_argument(
        "--client",
        choices=("websockets", "lean"),
        default="websockets",
        help="reading clients: the websockets library, or a lean protocol (less client CPU)",
    )
    parser.add_argument("--clip", type=Path, help="a real clip, served as a live camera")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.clients <= 20_000 or not 0 < args.seconds <= 300:
        parser.error("--clients must be in [1, 20000] and --seconds in (0, 300]")
    if args.clip is not None and not args.clip.is_file():
        parser.error(f"--clip: no such file {args.clip}")
    fds = raise_fd_limit()
    if args.clients + 1000 > fds:
        parser.error(f"--clients {args.clients} needs more open files than the limit {fds}")

    import logging

    import ray

    from camcount.config import (
        ApiConfig,
        AppConfig,
        CameraConfig,
        DetectorConfig,
        WarehouseConfig,
        ZoneConfig,
    )
    from serve_app.app import start_pipeline

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ray.init(address="local", num_cpus=4, include_dashboard=False, logging_level=logging.ERROR)
    stream = None
    cameras: tuple[CameraConfig, ...] = ()
    detector = DetectorConfig(model="oracle")
    if args.clip is not None:
        from tests.integration.mjpeg import MjpegCamera

        stream = MjpegCamera(args.clip, fps=10)
        stream.start()
        # The table of intel_one-by-one-person-detection.mp4 (tests use it too).
        table = ZoneConfig(id="table", polygon=((250, 250), (650, 250), (650, 431), (250, 431)))
        cameras = (CameraConfig(id="clip", source=stream.url, zones=(table,)),)
        detector = DetectorConfig(model="ssdlite-person", score_threshold=0.5)
    config = AppConfig(
        cameras=cameras,
        detector=detector,
        warehouse=WarehouseConfig(enabled=args.clip is None),
        api=ApiConfig(
            port=port,
            tokens=(TOKEN,),
            rate_limit_per_s=1e6,
            rate_limit_burst=1_000_000,
            live_max_connections=args.clients + 500,
            heartbeat_s=30,
            live_batch_s=args.batch_s,
            live_replicas=args.replicas,
            ack_window=ACK_WINDOW,
            client_buffer=CLIENT_BUFFER,
        ),
    )
    pipeline = start_pipeline(config)
    phases: list[Phase] = []
    clip: dict[str, Any] = {}
    try:
        hub = ray.get(pipeline.controller.hub_handle.remote())
        api = f"http://127.0.0.1:{port}"
        found = find_endpoints(api, args.replicas)
        tail = "" if args.one_per_frame else "?batch=1"
        if args.clip is not None:
            clip = clip_latency(found["ws"] + tail, args)
        else:
            mine = found["endpoints"][: args.replicas]
            paths = {
                "direct": ([e["ws"] + tail for e in mine], [e["health"] for e in mine]),
                "relayed": ([found["relayed"]["ws"] + tail], [f"{api}/live/healthz"]),
            }
            silent = round(args.clients * args.slow)
            for path in ("direct", "relayed") if args.path == "both" else (args.path,):
                urls, healths = paths[path]
                phases.append(run_phase(path, "all reading", urls, healths, hub, args, 0))
                if not args.reading_only:
                    name = f"{silent} never reading"
                    phases.append(run_phase(path, name, urls, healths, hub, args, silent))
    finally:
        pipeline.stop(checkpoint=False)
        ray.shutdown()
        if stream is not None:
            stream.cut()
    machine = (
        f"{os.cpu_count()} CPU, {platform.machine()}, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )
    if clip:
        clip["clip"] = args.clip.name if args.clip is not None else None
        clip["machine"] = machine
        print(json.dumps(clip, indent=2))
        if not args.json:
            print("\n".join(clip_summary(clip)))
        return 0
    rows = [p.row() for p in phases]
    ratios = {}
    for path in dict.fromkeys(r["path"] for r in rows):
        mine = [r for r in rows if r["path"] == path]
        if len(mine) == 2 and mine[0]["p99_ms"]:
            ratios[path] = round(mine[1]["p99_ms"] / mine[0]["p99_ms"], 3)
    result = {
        "clients": args.clients,
        "rate_per_s": args.rate,
        "hub_batches_per_s": args.batches,
        "live_batch_s": args.batch_s,
        "batch_frames": not args.one_per_frame,
        "seconds": args.seconds,
        "procs": args.procs,
        "client": args.client,
        "live_replicas": args.replicas,
        "ack_every": ACK_EVERY,
        "ack_window": ACK_WINDOW,
        "client_buffer": CLIENT_BUFFER,
        "machine": machine,
        "phases": rows,
        "p99_ratio_with_silent": ratios,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    for path, ratio in ratios.items():
        print(f"{path}: p99 of reading clients, with / without silent clients: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
