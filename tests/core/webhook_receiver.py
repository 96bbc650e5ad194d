"""A real webhook receiver on a loopback port, for the webhook tests.

It does what docs/webhooks.md asks of a receiver: it checks each post's
signature over the raw body with its own secret (401 when that fails),
dedupes events by ``event_id``, and answers 2xx. A test can make it answer
with a chosen status for a while (``fail_next``) or take it down and bring
it back on the same port (``down``/``up``): a closed port refuses
connections as a crashed receiver's would.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from camcount.errors import SignatureError
from camcount.outputs.signing import SIGNATURE_HEADER, verify


@dataclass
class Received:
    """What a receiver was sent, as it saw it."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # by event_id
    deliveries: int = 0  # posts with a valid signature, answered 2xx
    duplicates: int = 0  # events seen again (a retry or replay)
    requests: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status)
    refused_signatures: list[str] = field(default_factory=list)
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)  # headers, body


class WebhookReceiver:
    def __init__(self, secret: str, tolerance_s: float = 300.0) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.received = Received()
        self._lock = threading.Lock()
        self._failures: list[tuple[int, dict[str, str]]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/camcount"

    def fail_next(self, n: int, status: int, headers: dict[str, str] | None = None) -> None:
        """The next ``n`` posts are answered ``status`` (before any check)."""
        with self._lock:
            self._failures += [(status, headers or {})] * n

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver.received.posts.append((dict(self.headers.items()), body))
                status, headers = receiver._answer(self.headers.get(SIGNATURE_HEADER), body)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def down(self) -> None:
        """Stops listening: posts get connection refused until ``up``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def up_after(self, delay_s: float) -> threading.Timer:
        timer = threading.Timer(delay_s, self.up)
        timer.start()
        return timer

    def close(self) -> None:
        self.down()

    def _answer(self, signature: str | None, body: bytes) -> tuple[int, dict[str, str]]:
        with self._lock:
            now = time.monotonic()
            if self._failures:
                status, headers = self._failures.pop(0)
                self.received.requests.append((now, status))
                return status, headers
            try:
                verify(self.secret, signature, body, self.tolerance_s)
            except SignatureError as exc:
                self.received.refused_signatures.append(str(exc))
                self.received.requests.append((now, 401))
                return 401, {}
            for event in json.loads(body)["events"]:
                if event["event_id"] in self.received.events:
                    self.received.duplicates += 1
                self.received.events[event["event_id"]] = event
            self.received.deliveries += 1
            self.received.requests.append((now, 204))
            return 204, {}
