"""Bearer tokens and per-token rate limits for the REST and live apps.

Tokens come from the config (``api.tokens``) and an environment variable
(``api.tokens_env``, comma separated). The driver turns them into SHA-256
digests before deploying, so the raw tokens never travel in a deployment's
arguments, never sit in Serve's state, and can never reach a log: replicas
hold digests and compare a candidate's digest against every one of them
with ``hmac.compare_digest``, without stopping at the first match, so the
time taken says nothing about which token, or how much of one, was right.
A token is known to logs and rate limits only by its label, a short prefix
of its digest.

With no token configured every protected route refuses: an API is never
open by accident.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from ray.util import metrics
from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from camcount.config import ApiConfig
from camcount.http.errors import error_body
from camcount.http.limits import RateLimiter

QUERY_TOKEN = "access_token"
LABEL_CHARS = 8


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def resolve_digests(api: ApiConfig, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Digests of every configured token (config file, then the variable)."""
    env = os.environ if environ is None else environ
    tokens = [t.strip() for t in api.tokens if t.strip()]
    if api.tokens_env and env.get(api.tokens_env):
        tokens += [t.strip() for t in env[api.tokens_env].split(",") if t.strip()]
    return tuple(sorted({token_digest(t) for t in tokens}))


class TokenCheck:
    """Answers which configured token a candidate is, in constant time."""

    def __init__(self, digests: Sequence[str]) -> None:
        self._digests = [bytes.fromhex(d) for d in digests]

    @property
    def configured(self) -> bool:
        return bool(self._digests)

    def verify(self, candidate: str | None) -> str | None:
        """The token's label, or None for a missing or wrong token."""
        if not candidate or not self._digests:
            return None
        digest = hashlib.sha256(candidate.encode(errors="replace")).digest()
        found: bytes | None = None
        for known in self._digests:
            if hmac.compare_digest(digest, known):
                found = known
        return found.hex()[:LABEL_CHARS] if found is not None else None

    def refusal(self, candidate: str | None) -> tuple[str, str]:
        """Why a request is refused: (error code, message), token-free."""
        if not self.configured:
            return (
                "auth_not_configured",
                "no API token is configured: set api.tokens or the api.tokens_env variable",
            )
        if not candidate:
            return ("unauthorized", "a bearer token is required (Authorization: Bearer TOKEN)")
        return ("unauthorized", "the token is not valid")


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


def json_error(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=headers)


class Guard:
    """ASGI middleware: the token check and the per-token rate limit for
    every HTTP route that ``public`` does not name. WebSocket routes do
    their own (they answer with close codes), so they pass through."""

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
        path = get_route_path(scope) or "/"
        if self.public(path):
            await self.app(scope, receive, send)
            return
        token = request_token(scope, self.query_allowed(path))
        label = self.check.verify(token)
        if label is None:
            code, text = self.check.refusal(token)
            self._refused.inc(tags={"reason": code})
            response = json_error(401, code, text, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
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
