"""Which browser origins may call the API: a page's own origin always, others
only when configured, so a page elsewhere cannot ride a user's credentials."""

from __future__ import annotations

from collections.abc import Sequence


def origin_allowed(origin: str | None, host: str | None, allowed: Sequence[str]) -> bool:
    """A browser's WebSocket may come from the page's own origin or a
    configured one; a client without ``Origin`` is not a browser page."""
    if not origin:
        return True
    if "*" in allowed or origin in allowed:
        return True
    bare = origin.split("://", 1)[-1]
    return host is not None and bare == host
