"""What the OpenAPI document says of responses and bodies that every
route shares: the error body per status, public routes, bodies a route
reads itself."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from camcount.http.models import ErrorBody

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
