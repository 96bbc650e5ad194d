"""Bearer tokens, their digests and their scopes, without Ray or Starlette.

Tokens come from the config (``api.tokens``) and two environment variables
(``api.tokens_env`` for admin tokens, ``api.read_tokens_env`` for read
tokens, comma separated). The driver turns them into SHA-256 digests before
deploying, so the raw tokens never travel in a deployment's arguments,
never sit in Serve's state, and can never reach a log: replicas hold digests
and compare a candidate's digest against every one of them with
``hmac.compare_digest``, without stopping at the first match, so the time
taken says nothing about which token, or how much of one, was right. A
token is known to logs and rate limits only by its label, a short prefix of
its digest.

A deployed digest is a string: ``HEX`` for an admin token (as before scopes
existed, so digests made by an older driver keep their power) or
``read:HEX`` for a read token. A plain string in ``api.tokens`` is an admin
token, for the same reason.

Scopes: ``read`` reads (every GET, every live stream); ``admin`` also
changes (POST, PUT, PATCH, DELETE). The method decides, not the route, so a route
added later is protected the same way without being listed anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast, get_args

from camcount.config import ApiConfig, TokenConfig, TokenScope

LABEL_CHARS = 8
READ: TokenScope = "read"
ADMIN: TokenScope = "admin"
SCOPES: tuple[TokenScope, ...] = get_args(TokenScope)
#: Methods that change nothing; every other one needs ``admin``.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def scoped_digest(token: str, scope: TokenScope) -> str:
    """The deployed form of a token: its digest, prefixed by ``read:`` for
    a read token."""
    digest = token_digest(token)
    return digest if scope == ADMIN else f"{scope}:{digest}"


def _split(values: str) -> list[str]:
    return [t.strip() for t in values.split(",") if t.strip()]


def resolve_digests(api: ApiConfig, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Scoped digests of every configured token (config file, then the
    variables). A token given with both scopes keeps the higher one."""
    env = os.environ if environ is None else environ
    scopes: dict[str, TokenScope] = {}

    def grant(token: str, scope: TokenScope) -> None:
        token = token.strip()
        if token and scopes.get(token) != ADMIN:
            scopes[token] = scope

    for entry in api.tokens:
        if isinstance(entry, TokenConfig):
            grant(entry.token, entry.scope)
        else:
            grant(entry, ADMIN)
    for name, scope in ((api.tokens_env, ADMIN), (api.read_tokens_env, READ)):
        if name and env.get(name):
            for token in _split(env[name]):
                grant(token, scope)
    return tuple(sorted({scoped_digest(t, s) for t, s in scopes.items()}))


def required_scope(method: str) -> TokenScope:
    """What a request with this HTTP method needs."""
    return READ if method.upper() in READ_METHODS else ADMIN


def allows(granted: TokenScope, needed: TokenScope) -> bool:
    return needed == READ or granted == ADMIN


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a valid token is: its label (for logs and rate limits) and scope."""

    label: str
    scope: TokenScope


class TokenCheck:
    """Answers which configured token a candidate is, in constant time."""

    def __init__(self, digests: Sequence[str]) -> None:
        self._known: list[tuple[bytes, TokenScope]] = []
        for entry in digests:
            scope, _, digest = entry.rpartition(":")
            scope = scope or ADMIN
            if scope not in SCOPES:
                raise ValueError(f"unknown token scope {scope!r} (known: {list(SCOPES)})")
            self._known.append((bytes.fromhex(digest), cast(TokenScope, scope)))

    @property
    def configured(self) -> bool:
        return bool(self._known)

    def identify(self, candidate: str | None) -> Caller | None:
        """The token's label and scope, or None for a missing or wrong token."""
        if not candidate or not self._known:
            return None
        digest = hashlib.sha256(candidate.encode(errors="replace")).digest()
        found: tuple[bytes, TokenScope] | None = None
        for known in self._known:
            if hmac.compare_digest(digest, known[0]):
                found = known
        if found is None:
            return None
        return Caller(found[0].hex()[:LABEL_CHARS], found[1])

    def verify(self, candidate: str | None) -> str | None:
        """The token's label, or None for a missing or wrong token (any
        scope: the live routes only read)."""
        caller = self.identify(candidate)
        return caller.label if caller is not None else None

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


def forbidden(caller: Caller, method: str) -> str | None:
    """Why this caller may not make a request with ``method``, or None."""
    needed = required_scope(method)
    if allows(caller.scope, needed):
        return None
    return f"this token may only read: {method.upper()} needs an {needed} token"
