"""The REST deployment: cameras, status, counts, previews, the dashboard
and the API's own pages.

A thin Serve shell: the routes and their models are
``camcount.http.rest``'s, the OpenAPI document is generated from them
(``camcount.http.openapi``), the app around them is the shell shared with
the live deployment (``serve_app.ingress``). What stays here is the Ray
side: ``ControllerClient``, the replica's typed view of the controller,
the camera actors and the warehouse sink.

Request/response routes only (the streams are ``serve_app/live.py``'s):
Serve's ``max_ongoing_requests`` here is sized for requests that answer
now. Open without a token: ``/`` and ``/static/*`` (the dashboard: static
files holding no data, so a browser can load the page that then asks for
a token), ``/docs`` and ``/openapi.json`` (the API's description), and
``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from camcount.alerts.rules import AlertsConfig
from camcount.config import ApiConfig, CameraConfig
from camcount.errors import CameraNotHosted, RequestError
from camcount.external import ExternalCount
from camcount.http.alert_rules import alert_rules_router
from camcount.http.alerts import alerts_router
from camcount.http.counts import CountsQuery, count_row, wanted
from camcount.http.limits import RateLimiter
from camcount.http.openapi import openapi_document
from camcount.http.rest import RestContext, rest_router
from serve_app.auth import TokenCheck
from serve_app.ingress import edge_app

log = logging.getLogger("camcount.api")

STATIC_DIR = Path(__file__).parent / "static"
CONTROLLER_TIMEOUT_S = 30.0
SINK_LOOKUP_S = 10.0
#: The pipeline's warehouse sink is a named actor (started by
#: serve_app.app.start_pipeline), so API apps deployed on their own find it.
SINK_NAME = "camcount-sink"
_PUBLIC = ("/", "/healthz", "/favicon.ico", "/docs", "/openapi.json")
#: The pages may load only what this app serves: nothing from the internet.
#: WebSockets may go elsewhere: live replicas serve them on ports of their own.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; connect-src 'self' ws: wss:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _unwrap(exc: BaseException) -> BaseException:
    """The user exception inside a Ray task error (KeyError, ValueError...)."""
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    return exc


class ControllerClient:
    """The REST replica's typed view of the running pipeline
    (``camcount.http.controller.ControllerPort``): the controller, found
    by name (again after a restart), cached camera handles, and the
    warehouse sink. Configs travel as ``CameraConfig`` objects, checked
    once at the edge."""

    def __init__(
        self, controller_name: str, namespace: str, sink: Any = None, find_sink: bool = True
    ) -> None:
        self._name = controller_name
        self._namespace = namespace
        self._sink = sink
        self._find_sink = find_sink
        self._sink_looked_at = 0.0
        self._controller: Any = None
        self._cameras: dict[str, Any] = {}

    # ------------------------------------------------------------ controller

    async def status(self) -> dict[str, Any]:
        status: dict[str, Any] = await self._call(lambda c: c.status.remote())
        return status

    async def add_camera(self, cfg: CameraConfig) -> dict[str, Any]:
        status: dict[str, Any] = await self._call(lambda c: c.add_camera.remote(cfg))
        self._cameras.pop(cfg.id, None)
        return status

    async def update_camera(self, cfg: CameraConfig) -> dict[str, Any]:
        status: dict[str, Any] = await self._call(lambda c: c.update_camera.remote(cfg))
        return status

    async def remove_camera(self, camera_id: str) -> dict[str, Any]:
        status: dict[str, Any] = await self._call(lambda c: c.remove_camera.remote(camera_id))
        self._cameras.pop(camera_id, None)
        return status

    async def post_events(
        self, source_id: str, events: list[ExternalCount], key: str | None
    ) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call(
            lambda c: c.post_events.remote(source_id, events, key)
        )
        return answer

    async def alert_rules(self) -> AlertsConfig:
        rules: AlertsConfig = await self._call(lambda c: c.alert_rules.remote())
        return rules

    async def set_alert_rules(self, rules: AlertsConfig) -> AlertsConfig:
        in_force: AlertsConfig = await self._call(lambda c: c.set_alert_rules.remote(rules))
        return in_force

    async def shard_handles(self) -> list[Any]:
        shards: list[Any] = await self._call(lambda c: c.shard_handles.remote())
        return shards

    async def _controller_handle(self) -> Any:
        if self._controller is None:
            try:
                self._controller = await asyncio.to_thread(
                    ray.get_actor, self._name, self._namespace
                )
            except ValueError:
                raise RequestError("unavailable", "the pipeline is not running", 503) from None
        return self._controller

    async def _call(self, make: Any) -> Any:
        """One controller call; its KeyError/ValueError come back as themselves."""
        controller = await self._controller_handle()
        try:
            return await asyncio.wait_for(make(controller), CONTROLLER_TIMEOUT_S)
        except RayActorError:
            self._controller = None
            raise RequestError("unavailable", "the pipeline controller is gone", 503) from None
        except TimeoutError:
            raise RequestError("unavailable", "the pipeline controller is busy", 503) from None
        except RayTaskError as exc:
            raise _unwrap(exc) from None

    # ------------------------------------------------------------ cameras

    async def camera_config(self, camera_id: str) -> CameraConfig:
        config: CameraConfig = await self._camera_call(camera_id, lambda h: h.config.remote())
        return config

    async def camera_status(self, camera_id: str) -> dict[str, Any]:
        status: dict[str, Any] = await self._camera_call(camera_id, lambda h: h.status.remote())
        return status

    async def camera_preview(self, camera_id: str, max_fps: float) -> bytes | None:
        jpeg: bytes | None = await self._camera_call(camera_id, lambda h: h.preview.remote(max_fps))
        return jpeg

    async def _camera(self, camera_id: str) -> Any:
        handle = self._cameras.get(camera_id)
        if handle is None:
            try:
                handle = await self._call(lambda c: c.camera_handle.remote(camera_id))
            except KeyError:
                raise RequestError("not_found", f"no camera {camera_id!r}", 404) from None
            self._cameras[camera_id] = handle
        return handle

    async def _camera_call(self, camera_id: str, make: Any) -> Any:
        """A camera actor's method; a stale handle (camera re-added, or
        restarted by the controller) is looked up again once."""
        for attempt in (0, 1):
            handle = await self._camera(camera_id)
            try:
                return await make(handle)
            except (RayActorError, CameraNotHosted):  # its process, or it, moved
                self._cameras.pop(camera_id, None)
                if attempt:
                    raise RequestError("not_found", f"camera {camera_id!r} is gone", 404) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ history

    async def sink(self) -> Any:
        """The warehouse sink: the one given, else the pipeline's named sink
        (API apps deployed on their own find it so), else None: history
        then comes from the shards. A missing sink is looked for again at
        most every ``SINK_LOOKUP_S``."""
        if (
            self._sink is None
            and self._find_sink
            and time.monotonic() - self._sink_looked_at >= SINK_LOOKUP_S
        ):
            self._sink_looked_at = time.monotonic()
            with contextlib.suppress(ValueError):  # no sink: warehouse disabled or not started
                self._sink = await asyncio.to_thread(ray.get_actor, SINK_NAME, self._namespace)
        return self._sink

    async def window_counts(self, q: CountsQuery) -> tuple[list[dict[str, Any]], str]:
        """Closed window rows answering ``q``: from the warehouse sink when
        the pipeline has one, else from the aggregator shards' memory (the
        one place to change when every deployment has a warehouse)."""
        sink = await self.sink()
        if sink is not None:
            params = {
                "camera_id": q.camera_id,
                "counter_id": q.counter_id,
                "class_name": q.class_name,
                "window_size_s": q.window_size_s,
                "start": math.floor(q.start),
                "end": math.ceil(q.end),
            }
            try:
                table = await sink.query.remote("window_counts", params)
            except RayActorError:
                self._sink, self._sink_looked_at = None, 0.0
                raise RequestError("unavailable", "the warehouse sink is gone", 503) from None
            rows = [
                count_row(
                    q.camera_id,
                    r["counter_id"],
                    r["class_name"],
                    r["direction"],
                    q.window_size_s,
                    r["window_start"].timestamp(),
                    int(r["count"]),
                )
                for r in table.to_pylist()
            ]
            return [r for r in rows if wanted(q, r)], "warehouse"
        found: list[dict[str, Any]] = []
        shards = await self.shard_handles()
        for shard_rows in await asyncio.gather(*(s.rows.remote() for s in shards)):
            for w in shard_rows:
                row = count_row(
                    w.camera_id,
                    w.counter_id,
                    w.class_name,
                    w.direction,
                    w.window_size_s,
                    w.window_start,
                    w.count,
                )
                if wanted(q, row):
                    found.append(row)
        return found, "aggregator"

    async def warehouse_rows(
        self, name: str, params: Mapping[str, object]
    ) -> list[dict[str, Any]] | None:
        """A documented query's rows from the warehouse sink; None without one."""
        sink = await self.sink()
        if sink is None:
            return None
        try:
            table = await sink.query.remote(name, dict(params))
        except RayActorError:
            self._sink, self._sink_looked_at = None, 0.0
            raise RequestError("unavailable", "the warehouse sink is gone", 503) from None
        rows: list[dict[str, Any]] = table.to_pylist()
        return rows

    async def camera_known(self, camera_id: str) -> bool:
        """Running now, or with history: a camera removed through the API
        keeps its rows in the warehouse, and those stay readable. History
        is the warehouse's (``camera_seen``: a row in the cameras table,
        current or removed, or a window count; groups, ``group:ID``, have
        only the latter) when the pipeline has a sink, else the shards'
        closed window rows in memory."""
        try:
            await self._camera(camera_id)
            return True
        except RequestError as exc:
            if exc.status != 404:
                raise
        sink = await self.sink()
        if sink is not None:
            try:
                seen = await sink.query.remote("camera_seen", {"camera_id": camera_id})
            except RayActorError:
                self._sink, self._sink_looked_at = None, 0.0
                raise RequestError("unavailable", "the warehouse sink is gone", 503) from None
            return bool(seen.num_rows)
        shards = await self.shard_handles()
        for rows in await asyncio.gather(*(s.rows.remote() for s in shards)):
            if any(w.camera_id == camera_id for w in rows):
                return True
        return False


class ApiService:
    """One replica's REST state: settings, token check, rate limits and
    the controller client the routes read through ``RestContext``."""

    def __init__(
        self,
        settings: ApiConfig,
        token_digests: Sequence[str],
        controller: ControllerClient,
        window_sizes: Sequence[int],
    ) -> None:
        self.settings = settings
        self.check = TokenCheck(token_digests)
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.controller = controller
        self.window_sizes = tuple(sorted(window_sizes))
        self.context = RestContext(
            controller=controller,
            window_sizes=self.window_sizes,
            preview_fps=settings.preview_fps,
            auth_configured=self.check.configured,
            sources=settings.sources,
        )

    async def fetch_counts(self, q: CountsQuery) -> tuple[list[dict[str, Any]], str]:
        return await self.controller.window_counts(q)


async def _index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


async def _docs(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "docs.html", headers=PAGE_HEADERS)


async def _favicon(request: Request) -> Response:
    return Response(status_code=204)


def _is_public(path: str) -> bool:
    return path in _PUBLIC or path.startswith("/static/")


def build_api_app(service: ApiService) -> FastAPI:
    app = edge_app(
        settings=service.settings,
        check=service.check,
        limiter=service.limiter,
        app_name="api",
        public=_is_public,
        query_allowed=lambda path: path.endswith("/preview.jpg"),
        allow_methods=("GET", "POST", "PUT", "PATCH", "DELETE"),
        allow_headers=("Authorization", "Content-Type"),
        openapi_url="/openapi.json",
    )
    app.state.rest = service.context
    app.include_router(rest_router(service.window_sizes))
    app.include_router(alerts_router(service.window_sizes))
    app.include_router(alert_rules_router())
    app.add_route("/", _index, include_in_schema=False)
    app.add_route("/docs", _docs, include_in_schema=False)
    app.add_route("/favicon.ico", _favicon, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Served at /openapi.json: this app's routes and the live app's, which
    # Serve puts at /live on the same origin (FastAPI's documented override).
    document = openapi_document(service.window_sizes)
    app.openapi = lambda: document  # type: ignore[method-assign]
    return app


@serve.deployment(name="Api", max_ongoing_requests=100, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class ApiIngress:
    """The Serve shell around ``ApiService`` (see the module docstring)."""

    def __init__(
        self,
        settings: ApiConfig | Mapping[str, Any],
        token_digests: Sequence[str],
        controller_name: str,
        namespace: str,
        window_sizes: Sequence[int],
        sink: Any = None,
    ) -> None:
        """``settings`` arrive as a checked ``ApiConfig`` from
        ``api_applications``; bound from plain data instead (a builder
        handed a Serve config file's ``args``), as a mapping, checked here."""
        controller = ControllerClient(controller_name, namespace, sink)
        self.service = ApiService(
            settings if isinstance(settings, ApiConfig) else ApiConfig.model_validate(settings),
            token_digests,
            controller,
            window_sizes,
        )

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api_app(self.service)
