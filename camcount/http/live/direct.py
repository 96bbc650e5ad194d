"""The live streams served straight from a replica's own port.

Serve carries a WebSocket or an SSE response as a streaming request: every
write a replica makes becomes an item that its HTTP proxy receives and
relays, about 0.13 ms of CPU each (bench/RESULTS.md, Fan-out), so a round
to a thousand clients took most of a second. Here a replica listens on a
port of its own (``api.live_port``, ``api.live_port_range``) with the
``websockets`` server, and a write is a frame appended to a socket.

The protocol is the relayed one's, from the same pieces: the fan-out
(``Fanout``) encodes each update once and fills bounded outboxes, a
``Session`` reads client messages, ``encoding`` builds the frames. What
changes is who writes:

- Writes are synchronous. After every fan-out round the caller calls
  ``flush``: each connection's outbox is taken and written at once, and the
  frame bytes of one run of updates are built once per round and written
  to every connection that takes the same run (no task wakes per client).
- A socket is back-pressure: a client whose send buffer is full is not
  written to; its outbox fills, and at ``client_buffer`` updates it is
  told ``overflow`` and closed (4408), acknowledgements or not. Others
  never wait for it.

A WebSocket connection (``/ws``), in steps: 1. origin; 2. token from the
header, the ``access_token`` query or the first message; 3. rate limit;
4. ``after`` and ``batch``; 5. the replica's mirror in sync with the hub;
6. the session. ``/events`` (Server-Sent Events) and ``/healthz`` are plain
HTTP on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from camcount.config import ApiConfig
from camcount.errors import RequestError
from camcount.http.cors import origin_allowed
from camcount.http.errors import error_body
from camcount.http.limits import RateLimiter
from camcount.http.live.encoding import (
    CloseCode,
    Item,
    dumps,
    error_message,
    frames,
    message,
    sse_frame,
)
from camcount.http.live.fanout import Fanout
from camcount.http.live.messages import AuthMsg, parse_client_message
from camcount.http.live.outbox import Outbox, Subscriber
from camcount.http.live.query import MAX_SEQ, filter_from_query, int_param, resume_point
from camcount.http.live.session import Session
from camcount.http.tokens import TokenCheck

log = logging.getLogger("camcount.live.direct")

#: A socket holding more unsent bytes than this is not written to.
WRITE_LIMIT_BYTES = 64 * 1024
#: How often a client with a full socket is looked at again.
DRAIN_POLL_S = 0.05
#: A connection must send its request (and a WebSocket its auth) within this.
OPEN_TIMEOUT_S = 10.0
SSE_RETRY_MS = 2000
#: Connections waiting to be accepted: thousands of clients come back at
#: once after a replica restarts.
LISTEN_BACKLOG = 4096
QUERY_TOKEN = "access_token"

Params = dict[str, list[str]]
#: Frame bytes of one run of updates, built once per round.
FrameCache = dict[tuple[Any, ...], list[bytes]]


def split_path(path: str) -> tuple[str, Params]:
    """A request target's path and its query parameters (every value kept)."""
    parts = urlsplit(path)
    return parts.path or "/", parse_qs(parts.query, keep_blank_values=True)


def request_token(headers: Headers, params: Mapping[str, Sequence[str]]) -> str | None:
    """The bearer token of the header, else the ``access_token`` query."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    values = params.get(QUERY_TOKEN)
    return values[-1] if values else None


def _json_response(
    status: int, body: Any, reason: str = "", headers: Mapping[str, str] | None = None
) -> Response:
    data = dumps(body).encode()
    h = Headers(
        {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
    )
    h["Connection"] = "close"
    return Response(status, reason or _REASONS.get(status, "Error"), h, data)


_REASONS = {
    200: "OK",
    401: "Unauthorized",
    404: "Not Found",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


class _OpenTimeoutConnection(ServerConnection):
    """Aborts a connection that has not sent its request in time. The
    server's own ``open_timeout`` is off, since an SSE stream is answered
    inside the handshake and lasts as long as the client stays."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.loop.call_later(OPEN_TIMEOUT_S, self._check_opened)

    def _check_opened(self) -> None:
        if self.request is None:
            self.transport.abort()


class _Client:
    """One connection as the writer sees it."""

    transport_name = "ws"

    def __init__(self, server: DirectServer, sub: Subscriber) -> None:
        self.server = server
        self.sub = sub
        self.closing = False
        self._drain: asyncio.Task[None] | None = None

    def flush(self, cache: FrameCache) -> None:
        """Write what the outbox lets out now, if the socket takes it."""
        if self.closing:
            return
        outbox = self.sub.outbox
        if outbox.overflowed:
            self.closing = True
            self.server.slow(self, self.transport_name)
            self.overflow()
            return
        if self.blocked():
            if self._drain is None:
                self._drain = self.server.spawn(self._wait_drained())
            return
        items = outbox.take()
        if not items:
            return
        try:
            self.write(items, cache)
        except Exception:  # the connection is going away under us
            self.closing = True
            return
        self.sub.last_write = time.monotonic()
        sent = sum(seq >= 0 for seq, _, _ in items)
        if sent:
            self.server.sent(self.transport_name, sent)

    async def _wait_drained(self) -> None:
        try:
            while self.blocked() and not self.closing:
                await asyncio.sleep(DRAIN_POLL_S)
                if self.sub.outbox.overflowed:
                    break
        finally:
            self._drain = None
        self.flush({})

    def blocked(self) -> bool:
        raise NotImplementedError

    def write(self, items: list[Item], cache: FrameCache) -> None:
        raise NotImplementedError

    def overflow(self) -> None:
        raise NotImplementedError


class _WsClient(_Client):
    def __init__(
        self, server: DirectServer, sub: Subscriber, ws: ServerConnection, batch: bool
    ) -> None:
        super().__init__(server, sub)
        self.ws = ws
        self.batch = batch

    def blocked(self) -> bool:
        ws = self.ws
        return ws.paused or ws.transport.get_write_buffer_size() > WRITE_LIMIT_BYTES

    def write(self, items: list[Item], cache: FrameCache) -> None:
        ws = self.ws
        if ws.protocol.state is not State.OPEN:
            self.closing = True
            return
        for data in ws_frame_bytes(items, self.batch, cache):
            ws.protocol.send_text(data)
        ws.send_data()

    def overflow(self) -> None:
        outbox = self.sub.outbox
        text = message(
            "overflow",
            message=f"more than {outbox.capacity} updates waiting: closing",
            resume_after=outbox.last_sent_seq,
        )
        self.server.spawn(self._close(text))

    async def _close(self, text: str) -> None:
        with contextlib.suppress(Exception):
            self.ws.protocol.send_text(text.encode())
            self.ws.send_data()
            await self.ws.close(int(CloseCode.SLOW_CONSUMER), "slow consumer")


class _SseClient(_Client):
    transport_name = "sse"

    def __init__(
        self, server: DirectServer, sub: Subscriber, transport: asyncio.WriteTransport
    ) -> None:
        super().__init__(server, sub)
        self.transport = transport
        self.ended = asyncio.get_running_loop().create_future()
        self.sent_total = 0

    def blocked(self) -> bool:
        return self.transport.get_write_buffer_size() > WRITE_LIMIT_BYTES

    def write(self, items: list[Item], cache: FrameCache) -> None:
        if self.transport.is_closing():
            self.closing = True
            self.end()
            return
        self.transport.write(sse_frame_bytes(items, cache))
        self.sent_total += sum(seq >= 0 for seq, _, _ in items)
        if self.sent_total >= self.server.settings.sse_max_events:
            self.closing = True
            last = self.sub.outbox.last_sent_seq
            end = message("end", reason="max_events", resume_after=last)
            self.transport.write(sse_frame("end", end).encode())
            self.end()

    def overflow(self) -> None:
        text = message(
            "overflow",
            message="client too slow: closing",
            resume_after=self.sub.outbox.last_sent_seq,
        )
        with contextlib.suppress(Exception):
            self.transport.write(sse_frame("overflow", text).encode())
        self.end()

    def end(self) -> None:
        """Close once what is written has gone (``close`` flushes first)."""
        self.transport.close()
        if not self.ended.done():
            self.ended.set_result(None)


def ws_frame_bytes(items: list[Item], batch: bool, cache: FrameCache) -> list[bytes]:
    """The frames' bytes; a run of updates only (no notice or control, which
    are per client) is built once per round and shared."""
    if all(seq >= 0 for seq, _, _ in items):
        key: tuple[Any, ...] = (batch, *(seq for seq, _, _ in items))
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = [text.encode() for text in frames(items, batch)]
        return hit
    return [text.encode() for text in frames(items, batch)]


def sse_frame_bytes(items: list[Item], cache: FrameCache) -> bytes:
    def build() -> bytes:
        return "".join(sse_frame(event, text, seq) for seq, event, text in items).encode()

    if all(seq >= 0 for seq, _, _ in items):
        key: tuple[Any, ...] = ("sse", *(seq for seq, _, _ in items))
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = [build()]
        return hit[0]
    return build()


class DirectServer:
    """A replica's own live port: WebSocket ``/ws``, SSE ``/events``,
    ``/healthz``. It shares the replica's fan-out with the relayed routes;
    ``flush`` after every round (and after heartbeats) writes to its
    clients."""

    def __init__(
        self,
        fanout: Fanout,
        settings: ApiConfig,
        check: TokenCheck,
        limiter: RateLimiter,
        hello: Callable[[str, bool], str],
        ready: Callable[[], Awaitable[bool]],
        on_sent: Callable[[str, int], None] | None = None,
        on_slow: Callable[[str], None] | None = None,
    ) -> None:
        self.fanout = fanout
        self.settings = settings
        self.check = check
        self.limiter = limiter
        self._hello = hello
        self._ready = ready
        self._on_sent = on_sent
        self._on_slow = on_slow
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: Server | None = None
        self.port = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str, first_port: int, count: int = 1) -> int:
        """Listen on the first free port of ``first_port .. first_port +
        count - 1`` (0: any free port); returns it. Several replicas on one
        node take one port each."""
        ports = [0] if first_port == 0 else range(first_port, min(65536, first_port + count))
        last_error: OSError | None = None
        for port in ports:
            try:
                self._server = await serve(
                    self._ws_session,
                    host,
                    port,
                    process_request=self._http,
                    create_connection=_OpenTimeoutConnection,
                    open_timeout=None,
                    ping_interval=None,  # heartbeats are the protocol's own
                    write_limit=WRITE_LIMIT_BYTES,
                    max_size=1 << 16,
                    server_header=None,
                    backlog=LISTEN_BACKLOG,
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                last_error = exc
                continue
            self.port = int(self._server.sockets[0].getsockname()[1])
            return self.port
        raise OSError(
            errno.EADDRINUSE,
            f"no free live port in {first_port}..{first_port + count - 1}: {last_error}",
        )

    async def stop(self) -> None:
        for client in list(self._clients):
            client.sub.outbox.push_control("bye", message("bye", reason="replica stopping"))
        self.flush()
        if self._server is not None:
            self._server.close(close_connections=True, code=int(CloseCode.GOING_AWAY))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
        for task in list(self._tasks):
            task.cancel()

    @property
    def connections(self) -> int:
        return len(self._clients)

    def flush(self) -> None:
        """Write every client's pending items (after a round or heartbeats)."""
        cache: FrameCache = {}
        for client in list(self._clients):
            client.flush(cache)

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def sent(self, transport: str, n: int) -> None:
        if self._on_sent is not None:
            self._on_sent(transport, n)

    def slow(self, client: _Client, transport: str) -> None:
        """A client told ``overflow``: no longer served, even while its
        close handshake waits for a peer that does not read."""
        self._clients.discard(client)
        if self._on_slow is not None:
            self._on_slow(transport)

    def _origin_ok(self, headers: Headers) -> bool:
        """The page's own origin, the API's (this port is another origin
        than the page that the API served), or a configured one."""
        origin = headers.get("Origin")
        host = headers.get("Host")
        allowed = self.settings.cors_origins
        if origin_allowed(origin, host, allowed):
            return True
        api_host = (host or "").rsplit(":", 1)[0] + f":{self.settings.port}"
        return origin_allowed(origin, api_host, allowed)

    # ------------------------------------------------------------ plain HTTP

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path, params = split_path(request.path)
        if path == "/ws":
            return None  # the WebSocket handshake goes on (or is refused as one)
        if path == "/healthz":
            return _json_response(
                200,
                {
                    "status": "ok",
                    "seq": self.fanout.mirror.last_seq,
                    "connections": self.connections,
                },
            )
        if path == "/events":
            try:
                return await self._sse(connection, request, params)
            except RequestError as err:
                headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else {}
                wait_s = err.detail.get("retry_after_s") if isinstance(err.detail, dict) else None
                if wait_s is not None:
                    headers["Retry-After"] = str(max(1, round(wait_s)))
                return _json_response(
                    err.status, error_body(err.code, err.message, err.detail), headers=headers
                )
        return _json_response(404, error_body("not_found", f"no route {path}"))

    async def _sse(
        self, connection: ServerConnection, request: Request, params: Params
    ) -> Response:
        """Answered inside the handshake: the head and the stream are written
        to the socket, which is closed when the stream ends."""
        token = request_token(request.headers, params)
        label = self.check.verify(token)
        if label is None:
            code, text = self.check.refusal(token)
            raise RequestError(code, text, 401)
        wait_s = self.limiter.take(label)
        if wait_s > 0:
            raise RequestError(
                "rate_limited",
                f"too many requests for this token; retry in {wait_s:.2f} s",
                429,
                {"retry_after_s": round(wait_s, 3)},
            )
        flt = filter_from_query(params)
        after = resume_point(request.headers.get("Last-Event-ID"), params)
        if not await self._ready():
            raise RequestError("unavailable", "the live hub is not reachable", 503)
        head = [
            "HTTP/1.1 200 OK",
            "Content-Type: text/event-stream",
            "Cache-Control: no-store",
            "X-Accel-Buffering: no",
            "Connection: close",
        ]
        origin = request.headers.get("Origin")
        if origin and self._origin_ok(request.headers):
            head.append(f"Access-Control-Allow-Origin: {origin}")
            head.append("Vary: Origin")
        transport = connection.transport
        sub = Subscriber(Outbox(self.settings.client_buffer, None), frozenset({flt}), "sse", label)
        client = _SseClient(self, sub, transport)
        start = f"retry: {SSE_RETRY_MS}\n\n" + sse_frame("hello", self._hello("sse", False))
        transport.write(("\r\n".join(head) + "\r\n\r\n" + start).encode())
        self.fanout.attach(sub, after)
        self._clients.add(client)
        client.flush({})
        try:
            await asyncio.wait(
                [client.ended, connection.connection_lost_waiter],
                return_when=asyncio.FIRST_COMPLETED,
            )
            client.closing = True
            transport.close()
            await connection.connection_lost_waiter
        finally:
            self._clients.discard(client)
            self.fanout.detach(sub)
        return Response(200, "OK", Headers(), b"")  # the socket is closed: never written

    # ------------------------------------------------------------ WebSocket

    async def _ws_session(self, ws: ServerConnection) -> None:
        """Steps: see the module docstring."""
        assert ws.request is not None  # the handshake is done
        _, params = split_path(ws.request.path)
        # Step 1
        if not self._origin_ok(ws.request.headers):
            await _refuse(ws, CloseCode.FORBIDDEN_ORIGIN, "forbidden_origin", "origin refused")
            return
        # Step 2
        token = request_token(ws.request.headers, params)
        if token is not None:
            label = self.check.verify(token)
            if label is None:
                await _refuse(ws, CloseCode.UNAUTHORIZED, *self.check.refusal(token))
                return
        else:
            label = await self._first_message_auth(ws)
            if label is None:
                return
        # Step 3
        wait_s = self.limiter.take(label)
        if wait_s > 0:
            await _refuse(ws, CloseCode.RATE_LIMITED, "rate_limited", f"retry in {wait_s:.1f} s")
            return
        # Step 4
        try:
            after = int_param(params, "after", 0, MAX_SEQ)
            batch = bool(int_param(params, "batch", 0, 1, 0))
        except RequestError as err:
            await _refuse(ws, CloseCode.PROTOCOL_ERROR, err.code, err.message)
            return
        # Step 5
        if not await self._ready():
            await _refuse(ws, 1013, "unavailable", "the live hub is not reachable")
            return
        # Step 6
        sub = Subscriber(
            Outbox(self.settings.client_buffer, self.settings.ack_window),
            transport="ws",
            label=label,
        )
        client = _WsClient(self, sub, ws, batch)
        session = Session(self.fanout, sub, self.limiter, after)
        self.fanout.connect(sub)
        self._clients.add(client)
        sub.outbox.push_control("hello", self._hello("ws", batch))
        client.flush({})
        try:
            async for frame in ws:
                if not session.receive(frame if isinstance(frame, str) else None):
                    client.closing = True
                    await _refuse(ws, CloseCode.RATE_LIMITED, "rate_limited", "too many messages")
                    return
                client.flush({})
        except ConnectionClosed:
            pass
        finally:
            client.closing = True
            self._clients.discard(client)
            self.fanout.detach(sub)

    async def _first_message_auth(self, ws: ServerConnection) -> str | None:
        try:
            text = await asyncio.wait_for(ws.recv(), OPEN_TIMEOUT_S)
        except TimeoutError:
            await _refuse(ws, CloseCode.UNAUTHORIZED, "unauthorized", "no auth message")
            return None
        except ConnectionClosed:
            return None
        try:
            parsed = parse_client_message(text) if isinstance(text, str) else None
        except RequestError:
            parsed = None
        if not isinstance(parsed, AuthMsg):
            await _refuse(
                ws,
                CloseCode.UNAUTHORIZED,
                "unauthorized",
                'authenticate first: {"type": "auth", "token": TOKEN}',
            )
            return None
        label = self.check.verify(parsed.token)
        if label is None:
            await _refuse(ws, CloseCode.UNAUTHORIZED, *self.check.refusal(parsed.token))
        return label


async def _refuse(ws: ServerConnection, code: int, error: str, text: str) -> None:
    """Every refusal is an error message, then a close code a browser can read."""
    with contextlib.suppress(Exception):
        await ws.send(error_message(RequestError(error, text)))
        await ws.close(int(code), text[:120])
