"""The REST routes, declared with their models: FastAPI generates the
OpenAPI document from these declarations, so the document cannot drift
from what the routes do.

Routes convert and call: bodies and query strings are checked once here
(``camcount.http.bodies``, ``camcount.http.counts``), the typed result goes
to the ``ControllerPort`` the app holds in ``app.state.rest``. Bodies are
read by the route, not by FastAPI, so that a body that is not JSON is a
400 and an invalid camera a 422 naming every field, as docs/api.md says;
the document still names their models (``openapi_extra``).

No ``from __future__ import annotations`` here: FastAPI reads the
routes' annotations, and those name the closure's own dependency.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import JSONResponse, Response

from camcount.config import MAX_ID_CHARS, CameraConfig, SourcesConfig
from camcount.errors import GeometryError, RequestError
from camcount.external import ExternalEventError
from camcount.http import bodies
from camcount.http.controller import ControllerPort
from camcount.http.counts import (
    DEFAULT_COUNT_ROWS,
    MAX_COUNT_ROWS,
    CountsQuery,
    checked_counts_query,
    counts_answer,
)
from camcount.http.external import IDEMPOTENCY_HEADER, external_batch, idempotency_key, refusal
from camcount.http.live.query import ID_PATTERN
from camcount.http.models import (
    Camera,
    CameraList,
    CameraPatch,
    Counts,
    Direction,
    EventBatch,
    EventsTaken,
    Removed,
    Status,
)
from camcount.http.responses import errors, health_route, json_body
from camcount.http.sources import camera_source_allowed

log = logging.getLogger("camcount.api")


@dataclass(frozen=True)
class RestContext:
    """What the routes of one replica share: the pipeline and its settings."""

    controller: ControllerPort
    window_sizes: tuple[int, ...]
    preview_fps: float
    auth_configured: bool
    #: Where a camera added through the API may read from.
    sources: SourcesConfig = field(default_factory=SourcesConfig)


def _context(request: Request) -> RestContext:
    context: RestContext = request.app.state.rest
    return context


Context = Annotated[RestContext, Depends(_context)]
CameraId = Annotated[
    str,
    Path(
        description="camera id",
        json_schema_extra={"pattern": bodies.CAMERA_ID_PATTERN, "maxLength": MAX_ID_CHARS},
    ),
]


def _lag(status: dict[str, Any], now: float) -> float | None:
    """Seconds behind the capture clock: live sources only (a file's event
    time is its configured start time plus its position)."""
    last = status.get("last_frame_time")
    if last is None or not str(status.get("source", "")).count("://"):
        return None
    return round(max(0.0, now - float(last)), 3)


async def _view(
    ctx: RestContext, cam_id: str, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    config = (await ctx.controller.camera_config(cam_id)).model_dump(mode="json")
    if status is None:
        status = await ctx.controller.camera_status(cam_id)
    return {"config": config, "status": {**status, "lag_s": _lag(status, time.time())}}


def rest_router(window_sizes: Sequence[int]) -> APIRouter:
    """The REST routes; ``window_sizes`` are the configured window sizes
    that ``/counts`` accepts (named in the document)."""
    sizes = sorted(window_sizes) or [10]
    router = APIRouter()

    @health_route(router, "health", "REST")
    async def health(ctx: Context) -> JSONResponse:
        return JSONResponse({"status": "ok", "auth": ctx.auth_configured})

    @router.get(
        "/status",
        operation_id="status",
        summary="every camera's state, fps, drops and lag",
        response_model=Status,
        responses=errors(401, 429, 503),
    )
    async def status(ctx: Context) -> JSONResponse:
        answer = await ctx.controller.status()
        now = time.time()
        for cam in answer.get("cameras", []):
            cam["lag_s"] = _lag(cam, now)
        answer["window_sizes_s"] = list(ctx.window_sizes)
        answer["preview_fps"] = ctx.preview_fps
        return JSONResponse(answer)

    @router.get(
        "/cameras",
        operation_id="listCameras",
        summary="every camera's config and status",
        response_model=CameraList,
        responses=errors(401, 429, 503),
    )
    async def list_cameras(ctx: Context) -> JSONResponse:
        cams = (await ctx.controller.status()).get("cameras", [])
        views = await asyncio.gather(
            *(_view(ctx, c["camera_id"], c) for c in cams), return_exceptions=True
        )
        out = [v for v in views if isinstance(v, dict)]  # a camera removed meanwhile drops out
        return JSONResponse({"cameras": out})

    @router.post(
        "/cameras",
        operation_id="addCamera",
        summary="add a camera: its actor starts at once",
        status_code=201,
        response_model=Camera,
        response_description="added (state may be `failed` with the reason)",
        responses=errors(400, 401, 403, 409, 413, 422, 429, 503),
        openapi_extra=json_body(CameraConfig),
    )
    async def add_camera(request: Request, ctx: Context) -> JSONResponse:
        cfg = bodies.new_camera(bodies.parse_json(await request.body()))
        # Looks host names up: off the event loop.
        await asyncio.to_thread(camera_source_allowed, cfg.source, ctx.sources)
        try:
            await ctx.controller.add_camera(cfg)
        except ValueError as exc:
            raise RequestError("exists", str(exc), 409) from None
        log.info("camera %s added", cfg.id)
        return JSONResponse(
            await _view(ctx, cfg.id), status_code=201, headers={"Location": f"/cameras/{cfg.id}"}
        )

    @router.get(
        "/cameras/{camera_id}",
        operation_id="getCamera",
        summary="one camera's config and status",
        response_model=Camera,
        responses=errors(401, 404, 422, 429),
    )
    async def get_camera(camera_id: CameraId, ctx: Context) -> JSONResponse:
        return JSONResponse(await _view(ctx, bodies.camera_id(camera_id)))

    @router.patch(
        "/cameras/{camera_id}",
        operation_id="updateCamera",
        summary="change lines, zones, classes... while it runs; counts carry on",
        response_model=Camera,
        responses=errors(400, 401, 403, 404, 413, 422, 429),
        openapi_extra=json_body(CameraPatch),
    )
    async def update_camera(request: Request, camera_id: CameraId, ctx: Context) -> JSONResponse:
        cam_id = bodies.camera_id(camera_id)
        body = bodies.parse_json(await request.body())
        current = await ctx.controller.camera_config(cam_id)
        cfg = bodies.patched_camera(current, body)
        try:
            await ctx.controller.update_camera(cfg)
        except KeyError:
            raise RequestError("not_found", f"no camera {cam_id!r}", 404) from None
        except GeometryError as exc:  # valid alone, not in this camera's frame
            loc = [str(p) for p in exc.loc]
            detail = [{"loc": loc, "msg": str(exc), "type": "geometry"}]
            raise RequestError("invalid", str(exc), 422, detail) from None
        except ValueError as exc:
            raise RequestError("conflict", str(exc), 409) from None
        log.info("camera %s updated", cam_id)
        return JSONResponse(await _view(ctx, cam_id))

    @router.delete(
        "/cameras/{camera_id}",
        operation_id="removeCamera",
        summary="stop a camera and forget it",
        response_model=Removed,
        responses=errors(401, 403, 404, 422, 429),
    )
    async def remove_camera(camera_id: CameraId, ctx: Context) -> JSONResponse:
        cam_id = bodies.camera_id(camera_id)
        try:
            final = await ctx.controller.remove_camera(cam_id)
        except KeyError:
            raise RequestError("not_found", f"no camera {cam_id!r}", 404) from None
        log.info("camera %s removed", cam_id)
        return JSONResponse({"camera_id": cam_id, "removed": True, "status": final})

    @router.post(
        "/events",
        operation_id="postEvents",
        summary="external events (IoT counters) for one source, counted with the cameras'",
        response_model=EventsTaken,
        responses=errors(400, 401, 403, 413, 422, 429, 503),
        openapi_extra={
            **json_body(EventBatch),
            "parameters": [
                {
                    "name": IDEMPOTENCY_HEADER,
                    "in": "header",
                    "required": False,
                    "description": "a retry with the same key answers as the first request did",
                    "schema": {"type": "string", "maxLength": 200},
                }
            ],
        },
    )
    async def post_events(request: Request, ctx: Context) -> JSONResponse:
        key = idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
        source, events = external_batch(bodies.parse_json(await request.body()))
        try:
            answer = await ctx.controller.post_events(source, events, key)
        except KeyError:
            detail = [{"loc": ["body", "source"], "msg": "no such source", "type": "value_error"}]
            raise RequestError(
                "invalid", f"source: no external source {source!r} is configured", 422, detail
            ) from None
        except ExternalEventError as exc:
            raise refusal(exc) from None
        return JSONResponse(answer)

    @router.get(
        "/cameras/{camera_id}/preview.jpg",
        operation_id="preview",
        summary=(
            "the latest annotated frame; asking turns previews on for a few seconds "
            "(the token may be passed as `access_token` for an <img>)"
        ),
        response_class=Response,
        responses={
            200: {"description": "JPEG", "content": {"image/jpeg": {"schema": {"type": "string"}}}},
            **errors(401, 404, 422, 429),
        },
    )
    async def preview(camera_id: CameraId, ctx: Context) -> Response:
        cam_id = bodies.camera_id(camera_id)
        jpeg = await ctx.controller.camera_preview(cam_id, ctx.preview_fps)
        if jpeg is None:
            raise RequestError(
                "no_frame_yet", f"camera {cam_id!r} has no frame yet; ask again shortly", 404
            )
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    def counts_params(
        camera: Annotated[str, Query(description="camera id", pattern=ID_PATTERN)],
        counter: Annotated[str | None, Query(description="line or zone id (default: all)")] = None,
        class_name: Annotated[
            str | None, Query(alias="class", description="class name (default: all)")
        ] = None,
        direction: Annotated[Direction | None, Query(description="direction")] = None,
        window: Annotated[
            int | None,
            Query(
                description=f"window size in seconds (default {sizes[0]})",
                json_schema_extra={"enum": sizes},
            ),
        ] = None,
        start: Annotated[str | None, Query(description="epoch seconds or ISO 8601 (from)")] = None,
        end: Annotated[str | None, Query(description="epoch seconds or ISO 8601 (before)")] = None,
        limit: Annotated[
            int | None,
            Query(
                ge=1, le=MAX_COUNT_ROWS, description=f"rows at most (default {DEFAULT_COUNT_ROWS})"
            ),
        ] = None,
    ) -> CountsQuery:
        return checked_counts_query(
            window_sizes,
            camera=camera,
            counter=counter,
            class_name=class_name,
            direction=direction,
            window=window,
            start=start,
            end=end,
            limit=limit,
        )

    @router.get(
        "/counts",
        operation_id="counts",
        summary="closed window counts of one camera over a time range",
        response_model=Counts,
        responses=errors(401, 404, 422, 429, 503),
    )
    async def counts(
        q: Annotated[CountsQuery, Depends(counts_params)], ctx: Context
    ) -> JSONResponse:
        rows, source = await ctx.controller.window_counts(q)
        # Asked only when nothing was found, so a busy camera never pays for it.
        if not rows and not await ctx.controller.camera_known(q.camera_id):
            raise RequestError(
                "not_found", f"no camera {q.camera_id!r}: not running and no history", 404
            )
        return JSONResponse(counts_answer(q, rows, source))

    return router
