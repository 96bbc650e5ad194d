"""Which browser origins may open a WebSocket."""

from __future__ import annotations

import pytest

from camcount.http.cors import origin_allowed


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "h:8000", (), True),  # not a browser
        ("http://h:8000", "h:8000", (), True),  # same origin
        ("http://evil.example", "h:8000", (), False),
        ("http://app.example", "h:8000", ("http://app.example",), True),
        ("http://any.example", "h:8000", ("*",), True),
    ],
)
def test_websocket_origins(origin: str | None, host: str, allowed: tuple, ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok
