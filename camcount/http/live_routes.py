"""The live HTTP routes (long poll, Server-Sent Events, health), declared
with their parameters and models so the OpenAPI document is generated
from them. The WebSocket ``/ws`` has no OpenAPI form (docs/api.md).

FastAPI checks each declared parameter's type and range first (a 422
naming it); the live service then reads the query string with the live
protocol's own parser, which applies the same limits.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from camcount.http.live.query import (
    DEFAULT_POLL_TIMEOUT_S,
    KINDS,
    MAX_POLL_LIMIT,
    MAX_POLL_TIMEOUT_S,
    MAX_SEQ,
)
from camcount.http.models import Poll
from camcount.http.responses import errors, health_route


class LiveEndpoints(Protocol):
    """The live deployment's handlers (``serve_app.live.LiveService``)."""

    async def poll(self, request: Request) -> Response: ...

    async def events(self, request: Request) -> Response: ...

    async def health(self, request: Request) -> Response: ...

    async def endpoints(self, request: Request) -> Response: ...


def _live(request: Request) -> LiveEndpoints:
    live: LiveEndpoints = request.app.state.live
    return live


Live = Annotated[LiveEndpoints, Depends(_live)]
After = Annotated[
    int | None, Query(ge=0, le=MAX_SEQ, description="last sequence number seen (default: now)")
]
Cameras = Annotated[str | None, Query(description="camera ids, comma separated (default: all)")]
Counters = Annotated[
    str | None, Query(description="line or zone ids, comma separated (default: all)")
]
Kinds = Annotated[
    str | None,
    Query(description=f"update kinds, comma separated, among {sorted(KINDS)} (default: all)"),
]


class Endpoint(BaseModel):
    """One live replica's own port."""

    ws: str = Field(description="WebSocket URL (the /live/ws protocol)")
    events: str = Field(description="Server-Sent Events URL (the /live/events protocol)")
    health: str
    connections: int = Field(description="open streams on that replica when it last said")


class Relayed(BaseModel):
    ws: str
    events: str
    poll: str


class Endpoints(BaseModel):
    """Where to open a live stream: ``ws`` and ``events`` are the least
    loaded replica's own port, or the relayed routes when no replica has
    one (``api.live_direct`` off)."""

    ws: str
    events: str
    endpoints: list[Endpoint]
    relayed: Relayed


def live_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        "/endpoints",
        operation_id="liveEndpoints",
        summary="where to open a live stream: the live replicas' own ports, least loaded first",
        response_model=Endpoints,
        responses=errors(401, 429, 503),
    )
    async def endpoints(request: Request, live: Live) -> Response:
        return await live.endpoints(request)

    @health_route(router, "liveHealth", "live")
    async def health(request: Request, live: Live) -> Response:
        return await live.health(request)

    @router.get(
        "/poll",
        operation_id="poll",
        summary="long poll: updates after `after`, waiting up to `timeout` seconds",
        response_model=Poll,
        responses=errors(401, 422, 429, 503),
    )
    async def poll(
        request: Request,
        live: Live,
        after: After = None,
        timeout: Annotated[
            float | None,
            Query(
                ge=0,
                le=MAX_POLL_TIMEOUT_S,
                description=f"seconds to wait (default {DEFAULT_POLL_TIMEOUT_S})",
            ),
        ] = None,
        limit: Annotated[
            int | None, Query(ge=1, le=MAX_POLL_LIMIT, description="updates at most")
        ] = None,
        cameras: Cameras = None,
        counters: Counters = None,
        kinds: Kinds = None,
    ) -> Response:
        return await live.poll(request)

    @router.get(
        "/events",
        operation_id="events",
        summary=(
            "Server-Sent Events: `update` events with `id` = sequence number; resumes after "
            "`Last-Event-ID` (token as `access_token` for EventSource)"
        ),
        response_class=Response,
        responses={
            200: {
                "description": "event stream",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **errors(401, 422, 429, 503),
        },
    )
    async def events(
        request: Request,
        live: Live,
        after: After = None,
        last_event_id: Annotated[
            str | None,
            Header(alias="Last-Event-ID", description="resume point sent by EventSource"),
        ] = None,
        cameras: Cameras = None,
        counters: Counters = None,
        kinds: Kinds = None,
    ) -> Response:
        return await live.events(request)

    return router
