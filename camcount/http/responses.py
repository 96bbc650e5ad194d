"""What the OpenAPI document says of responses and bodies that every
route shares: the error body per status, public routes, bodies a route
reads itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from camcount.http.models import ErrorBody, Health

_ERROR_TEXT = {
    400: "malformed request (bad JSON)",
    401: "missing or wrong bearer token",
    403: "the token's scope does not allow this (a read token asking to change)",
    404: "no such camera or route",
    409: "conflicts with the current state",
    413: "request body too large",
    422: "invalid parameters or body",
    429: "rate limit of this token reached (Retry-After)",
    503: "the pipeline is not reachable (Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The refusals a route may answer with, for its ``responses``."""
    return {s: {"model": ErrorBody, "description": _ERROR_TEXT[s]} for s in statuses}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` naming a body the route reads itself."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


#: ``openapi_extra`` of a route that needs no token.
PUBLIC: dict[str, Any] = {"security": []}


def health_route(router: APIRouter, operation_id: str, replica: str) -> Callable[[Any], Any]:
    """The ``/healthz`` route of a replica: public, so a load balancer or
    Serve's proxy can ask it without a token; the same on REST and live."""
    return router.get(
        "/healthz",
        operation_id=operation_id,
        summary=f"liveness of the {replica} replica (no token needed)",
        response_model=Health,
        openapi_extra=PUBLIC,
    )
