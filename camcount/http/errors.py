"""Error bodies: one shape for every 4xx/5xx of the REST and live HTTP routes,
so a client reads ``error`` (a stable code) the same way everywhere."""

from __future__ import annotations

from typing import Any


def error_body(code: str, text: str, detail: Any = None) -> dict[str, Any]:
    """The body of every 4xx/5xx of the REST and live HTTP routes."""
    body: dict[str, Any] = {"error": code, "message": text}
    if detail is not None:
        body["detail"] = detail
    return body
