"""``POST /events``: a batch of external events for one source, checked
where it enters (docs/api.md). The body::

    {"source": "doors", "events": [{"device_id": ..., "seq": ..., ...}, ...]}

A bad body is a 422 whose detail names every bad field
(``events[2].seq``); an ``Idempotency-Key`` header makes a retried
request answer as the first did, without applying anything again (and
the device sequences would drop its events anyway).
"""

from __future__ import annotations

import re
from typing import Any

from camcount.config import IDENTIFIER_PATTERN, MAX_ID_CHARS
from camcount.errors import RequestError
from camcount.external import ExternalCount, ExternalEventError, parse_events

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_CHARS = 200
_KEY = re.compile(r"^[\x21-\x7e]+$")


def external_batch(body: Any) -> tuple[str, list[ExternalCount]]:
    """The source id and its events, or a 422 naming the field."""
    if not isinstance(body, dict):
        raise RequestError(
            "invalid", 'a batch is a JSON object {"source": ..., "events": [...]}', 422
        )
    extra = sorted(set(body) - {"source", "events"})
    if extra:
        raise _invalid([(extra[0], f"unknown field {extra[0]!r}")])
    source = body.get("source")
    if (
        not isinstance(source, str)
        or not re.fullmatch(IDENTIFIER_PATTERN, source)
        or len(source) > MAX_ID_CHARS
    ):
        raise _invalid([("source", "the id of a configured external source is required")])
    if "events" not in body:
        raise _invalid([("events", "a list of one or more events is required")])
    events = body["events"]
    if not isinstance(events, list):
        raise _invalid([("events", "a list of one or more events is required")])
    try:
        return source, parse_events(events, source)
    except ExternalEventError as exc:
        raise refusal(exc) from None


def refusal(exc: ExternalEventError) -> RequestError:
    """A 422 with one detail entry per bad field (``events[2].seq: ...``)."""
    problems = []
    for line in exc.problems:
        field, _, msg = line.partition(": ")
        problems.append((field, msg) if msg else ("events", line))
    return _invalid(problems)


def _invalid(problems: list[tuple[str, str]]) -> RequestError:
    detail = [
        {"loc": ["body", *_loc(field)], "msg": msg, "type": "value_error"}
        for field, msg in problems
    ]
    message = "; ".join(f"{field}: {msg}" for field, msg in problems)
    return RequestError("invalid", f"invalid events: {message}"[:1000], 422, detail)


def _loc(field: str) -> list[str]:
    """``events[2].seq`` as ``["events", "2", "seq"]``."""
    return [p for p in re.split(r"[\[\].]+", field) if p]


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _KEY.fullmatch(value) or len(value) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise RequestError(
            "invalid",
            f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable characters",
            422,
            [{"loc": ["header", IDEMPOTENCY_HEADER], "msg": "invalid key", "type": "value_error"}],
        )
    return value
