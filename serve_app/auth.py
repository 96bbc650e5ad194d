"""Bearer tokens, scopes and per-token rate limits for the REST and live apps.

Which tokens exist, their digests and scopes are ``camcount.http.tokens``'s
(Ray-free, tested alone); this module applies them to requests: a missing
or wrong token is 401, a read token asking to change something is 403.

With no token configured every protected route refuses: an API is never
open by accident.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs

from ray.util import metrics
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from camcount.http.errors import json_error
from camcount.http.limits import RateLimiter
from camcount.http.tokens import (
    LABEL_CHARS,
    Caller,
    TokenCheck,
    forbidden,
    resolve_digests,
    scoped_digest,
    token_digest,
)

__all__ = [
    "LABEL_CHARS",
    "Caller",
    "Guard",
    "TokenCheck",
    "bearer_token",
    "json_error",
    "request_token",
    "resolve_digests",
    "route_path",
    "scoped_digest",
    "token_digest",
]

QUERY_TOKEN = "access_token"


def route_path(scope: Scope) -> str:
    """The path below the app's mount point (Serve's route prefix arrives
    as ``root_path``), as the app's routes see it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path or "/"


def bearer_token(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def query_token(scope: Scope) -> str | None:
    raw = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(raw).get(QUERY_TOKEN)
    return values[-1] if values else None


def request_token(scope: Scope, allow_query: bool) -> str | None:
    """The header's bearer token; the ``access_token`` query parameter only
    where a browser API cannot set headers (EventSource, WebSocket, <img>)."""
    token = bearer_token(Headers(scope=scope))
    if token is None and allow_query:
        token = query_token(scope)
    return token


class Guard:
    """ASGI middleware: the token check, the token's scope (a read token
    asking to change something is 403, ``forbidden``) and the per-token
    rate limit for every HTTP route that ``public`` does not name.
    WebSocket routes do their own (they answer with close codes, and only
    read), so they pass through."""

    def __init__(
        self,
        app: ASGIApp,
        check: TokenCheck,
        limiter: RateLimiter,
        public: Callable[[str], bool],
        query_allowed: Callable[[str], bool],
        app_name: str,
    ) -> None:
        self.app = app
        self.check = check
        self.limiter = limiter
        self.public = public
        self.query_allowed = query_allowed
        self._refused = metrics.Counter(
            "camcount_api_refused", "requests refused by auth or rate limit", ("app", "reason")
        )
        self._refused.set_default_tags({"app": app_name})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if self.public(path):
            await self.app(scope, receive, send)
            return
        token = request_token(scope, self.query_allowed(path))
        caller = self.check.identify(token)
        if caller is None:
            code, text = self.check.refusal(token)
            self._refused.inc(tags={"reason": code})
            response = json_error(401, code, text, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        why = forbidden(caller, scope["method"])
        if why is not None:
            self._refused.inc(tags={"reason": "forbidden"})
            await json_error(403, "forbidden", why)(scope, receive, send)
            return
        label = caller.label
        wait_s = self.limiter.take(label)
        if wait_s > 0:
            self._refused.inc(tags={"reason": "rate_limited"})
            response = json_error(
                429,
                "rate_limited",
                f"too many requests for this token; retry in {wait_s:.2f} s",
                {"retry_after_s": round(wait_s, 3)},
                {"Retry-After": str(max(1, round(wait_s)))},
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["token_label"] = label
        await self.app(scope, receive, send)
