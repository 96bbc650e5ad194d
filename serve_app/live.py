"""The live deployment: WebSocket, Server-Sent Events and long polling.

A deployment of its own because Serve counts an open WebSocket or SSE
stream (and a waiting long poll) as an ongoing request for its whole life:
sized for connections (``api.live_max_connections``), apart from the REST
routes and the detector, thousands of idle listeners never take the slots
that requests needing an answer now would wait for.

Each replica runs one pump that long-polls the live hub and hands every
batch to a ``Fanout`` (camcount.http.live), which encodes each update
once and appends it to bounded per-client outboxes without ever waiting
for a client. A client that falls more than ``api.client_buffer`` updates
behind is sent an ``overflow`` notice and closed (4408); it can resume
from its last sequence number.

Two ways out of the outboxes:

- The replica's own port (``api.live_direct``; camcount.http.live.direct):
  WebSocket and SSE written straight to the sockets, in the pump's step.
  The port is told to the hub, and ``GET /live/endpoints`` lists every
  replica's. This is the path clients should use.
- Through Serve's proxy (``/live/ws``, ``/live/events``): one writer task
  per connection, its writes at least ``api.live_batch_s`` apart, since
  each is an item the proxy relays. Clients acknowledge (``ack``): the
  proxy buffers without back-pressure, so acknowledgements are the only
  signal that a client is really reading (docs/api.md, flow control).

Routes (under the application's prefix, ``/live``): ``/endpoints``,
``/ws``, ``/events``, ``/poll``, ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.util import metrics
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from camcount.config import ApiConfig
from camcount.errors import RequestError
from camcount.http.cors import origin_allowed
from camcount.http.limits import RateLimiter
from camcount.http.live import (
    PROTOCOL_VERSION,
    AuthMsg,
    CloseCode,
    Fanout,
    Outbox,
    Subscriber,
    error_message,
    filter_from_query,
    frames,
    int_param,
    message,
    parse_client_message,
    poll_body,
    poll_query,
    resume_point,
    sse_frame,
)
from camcount.http.live.direct import DirectServer
from camcount.http.live.session import Session
from camcount.http.live_routes import live_router
from serve_app.auth import TokenCheck, request_token
from serve_app.ingress import edge_app

log = logging.getLogger("camcount.live")

HUB_WAIT_S = 5.0  # one long poll of the hub
HUB_BATCH = 1000
MIRROR_CAPACITY = 10_000  # the hub's own buffer size
AUTH_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 10.0
TICK_S = 1.0
#: A replica tells the hub its own port this often; the hub forgets it
#: after ``ENDPOINT_TTL_S`` without news (a replica gone for good).
ENDPOINT_EVERY_S = 2.0
ENDPOINT_TTL_S = 10.0
SSE_RETRY_MS = 2000
_PUSH_LATENCY_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]


def _params(request: Request | WebSocket) -> dict[str, list[str]]:
    q = request.query_params
    return {k: q.getlist(k) for k in q}


class LiveService:
    """One replica's live state: the pump, the fan-out and the connections.

    ``hub`` is a LiveHub handle; without one it is found through the
    controller's name (and found again if the controller restarts).
    """

    def __init__(
        self,
        settings: ApiConfig,
        token_digests: Sequence[str],
        controller_name: str,
        namespace: str,
        hub: Any = None,
    ) -> None:
        self.settings = settings
        self.check = TokenCheck(token_digests)
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.fanout = Fanout(MIRROR_CAPACITY)
        self.ready = asyncio.Event()
        self._controller_name = controller_name
        self._namespace = namespace
        self._fixed_hub = hub
        self._hub: Any = hub
        self._tasks: list[asyncio.Task[None]] = []
        self.direct = (
            DirectServer(
                self.fanout,
                settings,
                self.check,
                self.limiter,
                self.hello,
                self.wait_ready,
                on_sent=lambda transport, n: self._m_sent.inc(n, tags={"transport": transport}),
                on_slow=lambda transport: self._m_slow.inc(tags={"transport": transport}),
            )
            if settings.live_direct
            else None
        )
        #: This replica's own stream URLs, once its port is open.
        self.urls: dict[str, str] = {}
        self._m_clients = metrics.Gauge(
            "camcount_live_clients", "open live connections", ("transport",)
        )
        self._m_sent = metrics.Counter(
            "camcount_live_updates_sent", "updates written to clients", ("transport",)
        )
        self._m_slow = metrics.Counter(
            "camcount_live_slow_clients", "clients dropped for falling behind", ("transport",)
        )
        self._m_push = metrics.Histogram(
            "camcount_live_capture_to_push_s",
            "event time (capture clock) to the replica's fan-out, live sources",
            boundaries=_PUSH_LATENCY_S,
        )
        self._m_created = metrics.Histogram(
            "camcount_live_created_to_push_s",
            "the camera's creation of an update's events to the replica's fan-out",
            boundaries=_PUSH_LATENCY_S,
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.direct is not None:
            # One open file per client: the soft limit (often 1024) would cap them.
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            if soft < hard:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            s = self.settings
            port = await self.direct.start(s.host, s.live_port, s.live_port_range)
            host = s.host
            if host in ("0.0.0.0", "::", ""):
                host = ray.util.get_node_ip_address()
            if ":" in host:
                host = f"[{host}]"
            self.urls = {
                "ws": f"ws://{host}:{port}/ws",
                "events": f"http://{host}:{port}/events",
                "health": f"http://{host}:{port}/healthz",
            }
            log.info("live streams on %s", self.urls["ws"])
        self._tasks = [loop.create_task(self._pump()), loop.create_task(self._tick())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), 5.0)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.direct is not None:
            with contextlib.suppress(Exception):
                hub = await asyncio.wait_for(self._hub_handle(), 2.0)
                await asyncio.wait_for(hub.forget_endpoint.remote(self.urls["ws"]), 2.0)
            await self.direct.stop()
        for sub in self.fanout.connections():
            sub.outbox.push_control("bye", message("bye", reason="replica stopping"))

    async def _hub_handle(self) -> Any:
        if self._hub is None:
            controller = await asyncio.to_thread(
                ray.get_actor, self._controller_name, self._namespace
            )
            self._hub = await controller.hub_handle.remote()
        return self._hub

    async def _pump(self) -> None:
        """Follow the hub forever; every batch goes to the fan-out at once,
        and the replica's own port writes it out in the same step. (Writes
        through Serve's proxy are paced per connection: ``_paced``.)"""
        last = 0
        backoff_s = 0.2
        while True:
            try:
                hub = await self._hub_handle()
                since = await hub.updates_since.remote(last, HUB_WAIT_S, HUB_BATCH)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # hub or controller not there (yet): try again
                log.warning("live hub unreachable (%s); retrying in %.1f s", exc, backoff_s)
                self._hub = self._fixed_hub
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            backoff_s = 0.2
            if since.last_seq < last:  # a new hub: numbering starts again
                self.fanout.reset()
                if self.direct is not None:
                    self.direct.flush()
                last = 0
                continue
            if since.updates:
                # Overflowed clients are counted where they are closed.
                self.fanout.publish(since.updates, gap=since.gap)
                if self.direct is not None:
                    self.direct.flush()
                last = since.updates[-1].seq
                self._observe_latency(since.updates)
            if len(since.updates) < HUB_BATCH:
                self.ready.set()

    def _observe_latency(self, updates: Sequence[Any]) -> None:
        now = time.time()
        for u in updates:
            t = u.data.get("event_time")
            if isinstance(t, float | int) and 0 <= now - t < 600:
                self._m_push.observe(now - t)
            if u.created is not None and 0 <= now - u.created < 600:
                self._m_created.observe(now - u.created)

    async def _tick(self) -> None:
        """Heartbeats on idle connections, the connection gauges, and this
        replica's own port told to the hub (``/live/endpoints``)."""
        told_at = 0.0
        while True:
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            if self.direct is not None and now - told_at >= ENDPOINT_EVERY_S:
                told_at = now
                await self._tell_hub()
            counts = {"ws": 0, "sse": 0}
            for sub in self.fanout.connections():
                counts[sub.transport] = counts.get(sub.transport, 0) + 1
                if now - sub.last_write >= self.settings.heartbeat_s:
                    sub.last_write = now
                    sub.outbox.push_control(
                        "heartbeat",
                        message("heartbeat", seq=self.fanout.mirror.last_seq, time=time.time()),
                    )
            if self.direct is not None:
                self.direct.flush()
            for transport, n in counts.items():
                self._m_clients.set(n, tags={"transport": transport})

    async def _tell_hub(self) -> None:
        try:
            hub = await self._hub_handle()
            await hub.register_endpoint.remote(
                self.urls["ws"],
                self.urls,
                self.direct.connections if self.direct is not None else 0,
                ENDPOINT_TTL_S,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the pump logs and finds the hub again
            log.debug("live endpoint not registered: %r", exc)

    async def endpoints(self, request: Request) -> JSONResponse:
        """Every live replica's own stream URLs, least loaded first, and the
        relayed ones through Serve's proxy (always there)."""
        try:
            hub = await self._hub_handle()
            found: list[dict[str, Any]] = await hub.endpoints.remote()
        except Exception as exc:
            raise RequestError("unavailable", "the live hub is not reachable", 503) from exc
        base = str(request.base_url).rstrip("/")
        relayed = {
            "ws": base.replace("http", "ws", 1) + "/ws",
            "events": base + "/events",
            "poll": base + "/poll",
        }
        best = found[0] if found else relayed
        return JSONResponse(
            {"ws": best["ws"], "events": best["events"], "endpoints": found, "relayed": relayed}
        )

    async def wait_ready(self) -> bool:
        try:
            await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT_S)
        except TimeoutError:
            return False
        return True

    def hello(self, transport: str, batch: bool = False) -> str:
        return message(
            "hello",
            protocol=PROTOCOL_VERSION,
            seq=self.fanout.mirror.last_seq,
            heartbeat_s=self.settings.heartbeat_s,
            ack_window=self.settings.ack_window if transport == "ws" else None,
            buffer=self.settings.client_buffer,
            batch=batch,
        )

    # ------------------------------------------------------------ WebSocket

    async def websocket(self, ws: WebSocket) -> None:
        """Steps: 1. origin; 2. accept; 3. token from the header, the query or
        the first message; 4. rate limit; 5. the session."""
        # Step 1
        allowed = origin_allowed(
            ws.headers.get("origin"), ws.headers.get("host"), self.settings.cors_origins
        )
        # Step 2: accept first, so every refusal is a close code a browser can read.
        await ws.accept()
        if not allowed:
            await self._refuse(ws, CloseCode.FORBIDDEN_ORIGIN, "forbidden_origin", "origin refused")
            return
        # Step 3
        token = request_token(ws.scope, allow_query=True)
        if token is not None:
            label = self.check.verify(token)
            if label is None:
                await self._refuse(ws, CloseCode.UNAUTHORIZED, *self.check.refusal(token))
                return
        else:
            label = await self._first_message_auth(ws)
            if label is None:
                return
        # Step 4
        wait_s = self.limiter.take(label)
        if wait_s > 0:
            await self._refuse(
                ws, CloseCode.RATE_LIMITED, "rate_limited", f"retry in {wait_s:.1f} s"
            )
            return
        try:
            params = _params(ws)
            after = int_param(params, "after", 0, 2**63 - 1)
            batch = bool(int_param(params, "batch", 0, 1, 0))
        except RequestError as err:
            await self._refuse(ws, CloseCode.PROTOCOL_ERROR, err.code, err.message)
            return
        if not await self.wait_ready():
            await self._refuse(ws, 1013, "unavailable", "the live hub is not reachable")
            return
        # Step 5
        await self._session(ws, label, after, batch)

    async def _paced(self, written_at: float) -> float:
        """Writes through Serve's proxy cost a relayed item each, whatever
        they carry: one connection's are at least ``live_batch_s`` apart,
        and what came meanwhile goes out together. Returns the write's time."""
        pause = written_at + self.settings.live_batch_s - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        return time.monotonic()

    async def _refuse(self, ws: WebSocket, code: int, error: str, text: str) -> None:
        with contextlib.suppress(Exception):
            await ws.send_text(error_message(RequestError(error, text)))
            await ws.close(int(code), text[:120])

    async def _first_message_auth(self, ws: WebSocket) -> str | None:
        try:
            msg = await asyncio.wait_for(ws.receive(), AUTH_TIMEOUT_S)
        except TimeoutError:
            await self._refuse(ws, CloseCode.UNAUTHORIZED, "unauthorized", "no auth message")
            return None
        if msg["type"] == "websocket.disconnect":
            return None
        try:
            parsed = parse_client_message(msg.get("text") or "")
        except RequestError:
            parsed = None
        if not isinstance(parsed, AuthMsg):
            await self._refuse(
                ws,
                CloseCode.UNAUTHORIZED,
                "unauthorized",
                'authenticate first: {"type": "auth", "token": TOKEN}',
            )
            return None
        label = self.check.verify(parsed.token)
        if label is None:
            await self._refuse(ws, CloseCode.UNAUTHORIZED, *self.check.refusal(parsed.token))
        return label

    async def _session(self, ws: WebSocket, label: str, after: int | None, batch: bool) -> None:
        sub = Subscriber(
            Outbox(self.settings.client_buffer, self.settings.ack_window),
            transport="ws",
            label=label,
        )
        self.fanout.connect(sub)
        sub.outbox.push_control("hello", self.hello("ws", batch))
        writer = asyncio.create_task(self._ws_writer(ws, sub, batch))
        reader = asyncio.create_task(self._ws_reader(ws, sub, after))
        try:
            done, pending = await asyncio.wait({writer, reader}, return_when="FIRST_COMPLETED")
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.warning("live connection ended: %r", task.exception())
        finally:
            writer.cancel()
            reader.cancel()
            self.fanout.detach(sub)

    async def _ws_writer(self, ws: WebSocket, sub: Subscriber, batch: bool) -> None:
        outbox = sub.outbox
        written_at = 0.0
        try:
            while True:
                await outbox.changed.wait()
                written_at = await self._paced(written_at)
                if outbox.overflowed:
                    self._m_slow.inc(tags={"transport": "ws"})
                    await ws.send_text(
                        message(
                            "overflow",
                            message=f"more than {outbox.capacity} updates waiting: closing",
                            resume_after=outbox.last_sent_seq,
                        )
                    )
                    await ws.close(int(CloseCode.SLOW_CONSUMER), "slow consumer")
                    return
                items = outbox.take()
                for text in frames(items, batch):
                    await ws.send_text(text)
                sent = sum(seq >= 0 for seq, _, _ in items)
                if items:
                    sub.last_write = time.monotonic()
                if sent:
                    self._m_sent.inc(sent, tags={"transport": "ws"})
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    async def _ws_reader(self, ws: WebSocket, sub: Subscriber, after: int | None) -> None:
        session = Session(self.fanout, sub, self.limiter, after)
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if not session.receive(msg.get("text")):
                await self._refuse(ws, CloseCode.RATE_LIMITED, "rate_limited", "too many messages")
                return

    # ------------------------------------------------------------ SSE

    async def events(self, request: Request) -> Response:
        params = _params(request)
        flt = filter_from_query(params)
        after = resume_point(request.headers.get("last-event-id"), params)
        if not await self.wait_ready():
            raise RequestError("unavailable", "the live hub is not reachable", 503)
        sub = Subscriber(
            Outbox(self.settings.client_buffer, None),
            frozenset({flt}),
            transport="sse",
            label=request.scope.get("state", {}).get("token_label", ""),
        )
        hello = self.hello("sse")
        self.fanout.attach(sub, after)
        return StreamingResponse(
            self._sse_stream(sub, hello),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _sse_stream(self, sub: Subscriber, hello: str) -> AsyncIterator[str]:
        outbox = sub.outbox
        sent = 0
        written_at = 0.0
        try:
            yield f"retry: {SSE_RETRY_MS}\n\n" + sse_frame("hello", hello)
            while True:
                await outbox.changed.wait()
                written_at = await self._paced(written_at)
                if outbox.overflowed:
                    self._m_slow.inc(tags={"transport": "sse"})
                    yield sse_frame(
                        "overflow",
                        message("overflow", message="client too slow: closing",
                                resume_after=outbox.last_sent_seq),
                    )  # fmt: skip
                    return
                items = outbox.take()
                if not items:
                    continue
                n = sum(seq >= 0 for seq, _, _ in items)
                yield "".join(sse_frame(event, text, seq) for seq, event, text in items)
                sub.last_write = time.monotonic()
                if n:
                    self._m_sent.inc(n, tags={"transport": "sse"})
                sent += n
                if sent >= self.settings.sse_max_events:
                    yield sse_frame(
                        "end",
                        message("end", reason="max_events", resume_after=outbox.last_sent_seq),
                    )
                    return
        finally:
            self.fanout.detach(sub)

    # ------------------------------------------------------------ long poll

    async def poll(self, request: Request) -> Response:
        q = poll_query(_params(request))
        if not await self.wait_ready():
            raise RequestError("unavailable", "the live hub is not reachable", 503)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + q.timeout_s
        after = q.after
        while True:
            changed = self.fanout.changed
            items, scanned, gap = self.fanout.poll(after, q.filter, q.limit)
            if after is None:
                after = scanned
            left = deadline - loop.time()
            if items or gap or left <= 0:
                return Response(poll_body(items, scanned, gap), media_type="application/json")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "synced": self.ready.is_set(),
                "seq": self.fanout.mirror.last_seq,
                "connections": len(self.fanout.connections()),
                "direct": self.urls.get("ws"),
            }
        )


def build_live_app(service: LiveService) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = edge_app(
        settings=service.settings,
        check=service.check,
        limiter=service.limiter,
        app_name="live",
        public=lambda path: path == "/healthz",
        query_allowed=lambda path: path == "/events",
        allow_headers=("Authorization", "Last-Event-ID"),
        lifespan=lifespan,
    )
    app.state.live = service
    app.include_router(live_router())
    app.router.routes.append(WebSocketRoute("/ws", service.websocket))
    return app


@serve.deployment(name="Live", max_ongoing_requests=2000, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class LiveIngress:
    """The Serve shell around ``LiveService`` (see the module docstring)."""

    def __init__(
        self,
        settings: ApiConfig | Mapping[str, Any],
        token_digests: Sequence[str],
        controller_name: str,
        namespace: str,
        hub: Any = None,
    ) -> None:
        """``settings`` as ``ApiIngress`` takes them: a checked
        ``ApiConfig``, or a mapping from plain data, checked here."""
        self.service = LiveService(
            settings if isinstance(settings, ApiConfig) else ApiConfig.model_validate(settings),
            token_digests,
            controller_name,
            namespace,
            hub,
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_live_app(self.service)
