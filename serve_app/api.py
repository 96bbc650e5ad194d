"""The REST deployment: cameras, status, counts, previews, and the dashboard.

Request/response routes only (the streams are ``serve_app/live.py``'s):
Serve's ``max_ongoing_requests`` here is sized for requests that answer
now. Handlers convert and call: the controller owns the topology, camera
actors draw their previews, history comes from the warehouse sink when the
pipeline has one, else from the aggregator shards' closed window rows
(``fetch_counts``, the one place to change when every deployment has a
warehouse). Parsing and the OpenAPI document are ``camcount.apischema``'s.

Routes: ``/`` and ``/static/*`` (the dashboard: static files holding no
data, open so a browser can load the page that then asks for a token),
``/healthz`` (open), ``/openapi.json``, ``/status``, ``/cameras``,
``/cameras/{id}``, ``/cameras/{id}/preview.jpg``, ``/counts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from camcount.apischema import (
    CountsQuery,
    camera_id,
    count_row,
    counts_answer,
    counts_query,
    new_camera,
    openapi_document,
    parse_json,
    patched_camera,
    wanted,
)
from camcount.config import ApiConfig, CameraConfig
from camcount.errors import GeometryError, RequestError
from camcount.http.limits import RateLimiter
from camcount.source_rules import camera_source_allowed
from serve_app.auth import Guard, TokenCheck, json_error
from serve_app.history import require_known

log = logging.getLogger("camcount.api")

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1 << 20
CONTROLLER_TIMEOUT_S = 30.0
SINK_LOOKUP_S = 10.0
#: The pipeline's warehouse sink is a named actor (started by
#: serve_app.app.start_pipeline), so API apps deployed on their own find it.
SINK_NAME = "camcount-sink"
_PUBLIC = ("/", "/healthz", "/favicon.ico")
#: The page may load only what this app serves: nothing from the internet.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _params(request: Request) -> dict[str, list[str]]:
    q = request.query_params
    return {k: q.getlist(k) for k in q}


def _unwrap(exc: BaseException) -> BaseException:
    """The user exception inside a Ray task error (KeyError, ValueError...)."""
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    return exc


class Pipeline:
    """The REST replica's view of the running pipeline: the controller,
    found by name (again after a restart), and cached camera handles."""

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

    async def controller(self) -> Any:
        if self._controller is None:
            try:
                self._controller = await asyncio.to_thread(
                    ray.get_actor, self._name, self._namespace
                )
            except ValueError:
                raise RequestError("unavailable", "the pipeline is not running", 503) from None
        return self._controller

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

    async def sink_query(self, sink: Any, name: str, params: dict[str, Any]) -> Any:
        try:
            return await sink.query.remote(name, params)
        except RayActorError:
            self._sink, self._sink_looked_at = None, 0.0
            raise RequestError("unavailable", "the warehouse sink is gone", 503) from None

    async def call(self, method: str, *args: Any) -> Any:
        """A controller method; its KeyError/ValueError come back as themselves."""
        controller = await self.controller()
        try:
            return await asyncio.wait_for(
                getattr(controller, method).remote(*args), CONTROLLER_TIMEOUT_S
            )
        except RayActorError:
            self._controller = None
            raise RequestError("unavailable", "the pipeline controller is gone", 503) from None
        except TimeoutError:
            raise RequestError("unavailable", "the pipeline controller is busy", 503) from None
        except RayTaskError as exc:
            raise _unwrap(exc) from None

    async def camera(self, cam_id: str) -> Any:
        handle = self._cameras.get(cam_id)
        if handle is None:
            try:
                handle = await self.call("camera_handle", cam_id)
            except KeyError:
                raise RequestError("not_found", f"no camera {cam_id!r}", 404) from None
            self._cameras[cam_id] = handle
        return handle

    def forget(self, cam_id: str) -> None:
        self._cameras.pop(cam_id, None)

    async def camera_call(self, cam_id: str, method: str, *args: Any) -> Any:
        """A camera actor's method; a stale handle (camera re-added, or
        restarted by the controller) is looked up again once."""
        for attempt in (0, 1):
            handle = await self.camera(cam_id)
            try:
                return await getattr(handle, method).remote(*args)
            except RayActorError:
                self.forget(cam_id)
                if attempt:
                    raise RequestError("not_found", f"camera {cam_id!r} is gone", 404) from None
        raise AssertionError("unreachable")


class ApiService:
    """The REST routes of one replica."""

    def __init__(
        self,
        settings: ApiConfig,
        token_digests: Sequence[str],
        pipeline: Pipeline,
        window_sizes: Sequence[int],
    ) -> None:
        self.settings = settings
        self.check = TokenCheck(token_digests)
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
        self.pipeline = pipeline
        self.window_sizes = tuple(sorted(window_sizes))
        self._openapi = openapi_document(self.window_sizes)

    async def index(self, request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204)

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "auth": self.check.configured})

    async def openapi(self, request: Request) -> JSONResponse:
        return JSONResponse(self._openapi)

    async def status(self, request: Request) -> JSONResponse:
        status = await self.pipeline.call("status")
        now = time.time()
        for cam in status.get("cameras", []):
            cam["lag_s"] = _lag(cam, now)
        status["window_sizes_s"] = list(self.window_sizes)
        status["preview_fps"] = self.settings.preview_fps
        return JSONResponse(status)

    # ------------------------------------------------------------ cameras

    async def _view(self, cam_id: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
        config = await self.pipeline.camera_call(cam_id, "config")
        if status is None:
            status = await self.pipeline.camera_call(cam_id, "status")
        status = {**status, "lag_s": _lag(status, time.time())}
        return {"config": config, "status": status}

    async def list_cameras(self, request: Request) -> JSONResponse:
        status = await self.pipeline.call("status")
        cams = status.get("cameras", [])
        views = await asyncio.gather(
            *(self._view(c["camera_id"], c) for c in cams), return_exceptions=True
        )
        out = [v for v in views if isinstance(v, dict)]  # a camera removed meanwhile drops out
        return JSONResponse({"cameras": out})

    async def add_camera(self, request: Request) -> JSONResponse:
        cfg = new_camera(parse_json(await request.body()))
        await asyncio.to_thread(camera_source_allowed, cfg.source, self.settings.sources)
        try:
            await self.pipeline.call("add_camera", cfg.model_dump(mode="json"))
        except ValueError as exc:
            raise RequestError("exists", str(exc), 409) from None
        self.pipeline.forget(cfg.id)
        log.info("camera %s added", cfg.id)
        return JSONResponse(
            await self._view(cfg.id), status_code=201, headers={"Location": f"/cameras/{cfg.id}"}
        )

    async def get_camera(self, request: Request) -> JSONResponse:
        return JSONResponse(await self._view(camera_id(request.path_params["camera_id"])))

    async def update_camera(self, request: Request) -> JSONResponse:
        cam_id = camera_id(request.path_params["camera_id"])
        body = parse_json(await request.body())
        current = CameraConfig.model_validate(await self.pipeline.camera_call(cam_id, "config"))
        cfg = patched_camera(current, body)
        try:
            await self.pipeline.call("update_camera", cfg.model_dump(mode="json"))
        except KeyError:
            raise RequestError("not_found", f"no camera {cam_id!r}", 404) from None
        except GeometryError as exc:  # valid alone, not in this camera's frame
            loc = [str(p) for p in exc.loc]
            detail = [{"loc": loc, "msg": str(exc), "type": "geometry"}]
            raise RequestError("invalid", str(exc), 422, detail) from None
        except ValueError as exc:
            raise RequestError("conflict", str(exc), 409) from None
        log.info("camera %s updated", cam_id)
        return JSONResponse(await self._view(cam_id))

    async def remove_camera(self, request: Request) -> JSONResponse:
        cam_id = camera_id(request.path_params["camera_id"])
        try:
            status = await self.pipeline.call("remove_camera", cam_id)
        except KeyError:
            raise RequestError("not_found", f"no camera {cam_id!r}", 404) from None
        self.pipeline.forget(cam_id)
        log.info("camera %s removed", cam_id)
        return JSONResponse({"camera_id": cam_id, "removed": True, "status": status})

    async def preview(self, request: Request) -> Response:
        cam_id = camera_id(request.path_params["camera_id"])
        jpeg = await self.pipeline.camera_call(cam_id, "preview", self.settings.preview_fps)
        if jpeg is None:
            raise RequestError(
                "no_frame_yet", f"camera {cam_id!r} has no frame yet; ask again shortly", 404
            )
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    # ------------------------------------------------------------ counts

    async def counts(self, request: Request) -> JSONResponse:
        q = counts_query(_params(request), self.window_sizes)
        rows, source = await self.fetch_counts(q)
        if not rows:
            await require_known(self.pipeline, q.camera_id)
        return JSONResponse(counts_answer(q, rows, source))

    async def fetch_counts(self, q: CountsQuery) -> tuple[list[dict[str, Any]], str]:
        """Closed window rows answering ``q``: from the warehouse sink when
        the pipeline has one, else from the aggregator shards' memory."""
        sink = await self.pipeline.sink()
        if sink is not None:
            table = await self.pipeline.sink_query(
                sink,
                "window_counts",
                {
                    "camera_id": q.camera_id,
                    "counter_id": q.counter_id,
                    "class_name": q.class_name,
                    "window_size_s": q.window_size_s,
                    "start": math.floor(q.start),
                    "end": math.ceil(q.end),
                },
            )
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
        shards = await self.pipeline.call("shard_handles")
        found: list[dict[str, Any]] = []
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


def _lag(status: dict[str, Any], now: float) -> float | None:
    """Seconds behind the capture clock: live sources only (a file's event
    time is its configured start time plus its position)."""
    last = status.get("last_frame_time")
    if last is None or not str(status.get("source", "")).count("://"):
        return None
    return round(max(0.0, now - float(last)), 3)


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    headers = {"Retry-After": "2"} if exc.status == 503 else None
    return json_error(exc.status, exc.code, exc.message, exc.detail, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    return json_error(
        exc.status_code,
        codes.get(exc.status_code, "http_error"),
        str(exc.detail),
        headers=exc.headers,
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s: %r", request.method, request.url.path, exc)
    return json_error(500, "internal_error", "unexpected error; see the replica's log")


def _is_public(path: str) -> bool:
    return path in _PUBLIC or path.startswith("/static/")


def build_api_app(service: ApiService) -> Starlette:
    settings = service.settings
    return Starlette(
        routes=[
            Route("/", service.index),
            Route("/favicon.ico", service.favicon),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
            Route("/healthz", service.health),
            Route("/openapi.json", service.openapi),
            Route("/status", service.status),
            Route("/cameras", service.list_cameras, methods=["GET"]),
            Route("/cameras", service.add_camera, methods=["POST"]),
            Route("/cameras/{camera_id}", service.get_camera, methods=["GET"]),
            Route("/cameras/{camera_id}", service.update_camera, methods=["PATCH"]),
            Route("/cameras/{camera_id}", service.remove_camera, methods=["DELETE"]),
            Route("/cameras/{camera_id}/preview.jpg", service.preview),
            Route("/counts", service.counts),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
            ),
            Middleware(
                Guard,
                check=service.check,
                limiter=service.limiter,
                public=_is_public,
                query_allowed=lambda path: path.endswith("/preview.jpg"),
                app_name="api",
            ),
        ],
        exception_handlers={
            RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        max_body_size=MAX_BODY_BYTES,
    )


@serve.deployment(name="Api", max_ongoing_requests=100, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class ApiIngress:
    """The Serve shell around ``ApiService`` (see the module docstring)."""

    def __init__(
        self,
        settings: dict[str, Any],
        token_digests: Sequence[str],
        controller_name: str,
        namespace: str,
        window_sizes: Sequence[int],
        sink: Any = None,
    ) -> None:
        pipeline = Pipeline(controller_name, namespace, sink)
        self.service = ApiService(
            ApiConfig.model_validate(settings), token_digests, pipeline, window_sizes
        )

    def __serve_build_asgi_app__(self) -> Starlette:
        return build_api_app(self.service)
