"""How every HTTP refusal of the REST and live apps looks on the wire.

One body for all of them, ``{"error": code, "message": ..., "detail": ...}``
(docs/api.md lists the codes), one set of exception handlers both apps
install, so the two never drift: a 503 and a rate limit say when to come
back (``Retry-After``), a parameter of the wrong type is a 422 naming it, and
an unexpected failure is a 500 whose reference finds its traceback in the
replica's log, never the traceback itself.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from camcount.errors import RequestError

log = logging.getLogger("camcount.http")

#: Seconds a client is told to wait when the pipeline is unreachable.
UNAVAILABLE_RETRY_S = 2
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}

Handler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


def error_body(code: str, text: str, detail: Any = None) -> dict[str, Any]:
    """The body of every 4xx/5xx of the REST and live HTTP routes."""
    body: dict[str, Any] = {"error": code, "message": text}
    if detail is not None:
        body["detail"] = detail
    return body


def json_error(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=headers)


def retry_after(exc: RequestError) -> str | None:
    """Whole seconds to wait, for a refusal that passes: the unreachable
    pipeline (503) or a limit that says how long (``retry_after_s``)."""
    wait_s = exc.detail.get("retry_after_s") if isinstance(exc.detail, dict) else None
    if isinstance(wait_s, int | float) and math.isfinite(wait_s):
        return str(max(1, math.ceil(wait_s)))
    if exc.status == 503:
        return str(UNAVAILABLE_RETRY_S)
    return None


async def request_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RequestError):
        return await internal_error(request, exc)
    wait = retry_after(exc)
    headers = {"Retry-After": wait} if wait is not None else None
    return json_error(exc.status, exc.code, exc.message, exc.detail, headers)


async def http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):
        return await internal_error(request, exc)
    return json_error(
        exc.status_code,
        _HTTP_CODES.get(exc.status_code, "http_error"),
        str(exc.detail),
        headers=exc.headers,
    )


async def validation_error(request: Request, exc: Exception) -> Response:
    """A declared parameter of the wrong type or out of range: 422 naming it
    (``loc`` as pydantic gives it: where, then the name)."""
    if not isinstance(exc, RequestValidationError):
        return await internal_error(request, exc)
    detail = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type")}
        for e in exc.errors()
    ]
    names = sorted({d["loc"][-1] for d in detail if d["loc"]})
    return json_error(422, "bad_parameter", f"invalid parameter(s): {', '.join(names)}", detail)


async def internal_error(request: Request, exc: Exception) -> Response:
    reference = secrets.token_hex(6)
    log.error(
        "unhandled error %s on %s %s",
        reference,
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return json_error(
        500,
        "internal_error",
        f"unexpected error; the replica's log has it under reference {reference}",
        {"reference": reference},
    )


def exception_handlers() -> dict[Any, Handler]:
    """The handlers both apps install (Starlette and FastAPI alike)."""
    return {
        RequestError: request_error,
        HTTPException: http_error,
        RequestValidationError: validation_error,
        Exception: internal_error,
    }
