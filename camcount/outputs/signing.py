"""Signatures on webhook posts, and the check a receiver runs on them.

A post carries ``X-Camcount-Signature: t=<unix seconds>,v1=<hex>``, where
the hex is HMAC-SHA256, keyed by the webhook's shared secret, over
``"<t>." + body`` (the layout Stripe documents). Signing the timestamp with
the body lets a receiver refuse a captured post replayed later: it checks
that ``t`` is within its tolerance of its own clock as well as the MAC.
Several ``v1=`` entries may appear (a receiver accepts any one that
matches), so a secret can be rotated without a window of refused posts.

Receivers that are not in Python follow the same three steps; docs/webhooks.md
has the snippet.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

from camcount.errors import SignatureError

SIGNATURE_HEADER = "X-Camcount-Signature"
SCHEME = "v1"
#: How far a post's timestamp may be from the receiver's clock, either way.
DEFAULT_TOLERANCE_S = 300.0


def _as_bytes(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>." + body``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def sign(secrets: Sequence[str | bytes], timestamp: int, body: bytes) -> str:
    """The header value for a post: ``t=<timestamp>,v1=<hex>[,v1=<hex>...]``,
    one ``v1`` per secret (the new one first while rotating)."""
    if not secrets:
        raise ValueError("a post needs at least one secret to be signed with")
    parts = [f"t={timestamp}"]
    parts += [f"{SCHEME}={signature(s, timestamp, body)}" for s in secrets]
    return ",".join(parts)


def verify(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: Callable[[], float] = time.time,
) -> int:
    """Checks a post as a receiver must, and returns its signed timestamp.

    1. Parse ``t`` and every ``v1`` from the header (other schemes are
       ignored, so a later scheme can be added beside ``v1``).
    2. Compute the expected signature over the *raw* body as received
       (re-encoding parsed JSON changes the bytes), and compare it with
       each ``v1`` in constant time.
    3. Refuse a timestamp further than ``tolerance_s`` from ``now``.

    Raises `SignatureError` saying which step failed.
    """
    # Step 1
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} entry {item.strip()!r}")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"timestamp {value!r} is not whole seconds") from None
        elif key == SCHEME:
            candidates.append(value)
    if timestamp is None:
        raise SignatureError(f"{SIGNATURE_HEADER} has no t= timestamp")
    if not candidates:
        raise SignatureError(f"{SIGNATURE_HEADER} has no {SCHEME}= signature")
    # Step 2
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise SignatureError("signature does not match the body and secret")
    # Step 3
    skew_s = abs(now() - timestamp)
    if skew_s > tolerance_s:
        raise SignatureError(
            f"timestamp {timestamp} is {skew_s:.0f} s from now, beyond the {tolerance_s:g} s "
            "tolerance"
        )
    return timestamp
