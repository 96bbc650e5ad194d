"""The external event format on the wire (MQTT payloads and ``POST /events``
bodies), checked once where it enters.

One event is a JSON object; a message or a request may carry one or a
list of them (docs/mqtt.md)::

    {"device_id": "door-7", "seq": 1041, "event_time": "2026-03-01T10:15:02Z",
     "counter_id": "main", "class": "person", "direction": "in", "count": 3}

``event_time`` is seconds since the epoch or an ISO 8601 time with a zone;
``class`` defaults to ``person`` and ``count`` to 1. A refusal names every
bad field by its place (``events[2].seq``), so a device's developer or an
API client reads what to fix in one line each.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from camcount.errors import CamcountError
from camcount.events import Direction
from camcount.external.events import ExternalCount

#: More events than this in one message or request is refused: a batch
#: is applied as one envelope, and a shard holds envelopes in memory.
MAX_BATCH_EVENTS = 10_000
#: One event counts at most this many objects: a larger number is a
#: device's bug, not a crowd.
MAX_COUNT = 100_000
_ID = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
_CLASS = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class ExternalEventError(CamcountError, ValueError):
    """A message or request of external events cannot be used; ``problems``
    holds one line per bad field, each naming it."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    def __reduce__(self) -> tuple[type[ExternalEventError], tuple[list[str]]]:
        # Raised in the controller, caught in an API replica: it crosses
        # processes pickled, and must arrive with its problems a line each.
        return (type(self), (self.problems,))


class ExternalEventIn(BaseModel):
    """One external event as a device or a client sends it."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True
    )

    device_id: _ID
    seq: Annotated[int, Field(ge=0, le=2**62)]
    event_time: datetime | Annotated[float, Field(ge=0)]
    counter_id: _ID
    class_name: _CLASS = Field(default="person", alias="class")
    direction: Direction
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = 1

    @field_validator("event_time")
    @classmethod
    def _zoned(cls, v: datetime | float) -> datetime | float:
        if isinstance(v, datetime) and v.tzinfo is None:
            raise ValueError("a time without a zone is ambiguous: add Z or +hh:mm")
        return v

    def to_event(self, source_id: str) -> ExternalCount:
        t = (
            self.event_time.timestamp()
            if isinstance(self.event_time, datetime)
            else self.event_time
        )
        return ExternalCount(
            source_id,
            self.device_id,
            self.seq,
            self.counter_id,
            self.class_name,
            self.direction,
            self.count,
            float(t),
        )


_BATCH = TypeAdapter(
    Annotated[list[ExternalEventIn], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]
)


def parse_events(
    data: Any, source_id: str, counters: Sequence[str] = (), where: str = "events"
) -> list[ExternalCount]:
    """Events from decoded JSON (one object or a list), or from raw bytes
    (an MQTT payload). ``counters``, when given, are the only counter ids
    the source may report (``check_counters``)."""
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data, parse_constant=_refuse_constant)
        except (ValueError, RecursionError, UnicodeDecodeError):
            raise ExternalEventError([f"{where}: not valid JSON"]) from None
    many = isinstance(data, list)
    try:
        events = _BATCH.validate_python(data if many else [data])
    except ValidationError as exc:
        raise ExternalEventError([_problem(where, many, e) for e in exc.errors()]) from None
    out = [e.to_event(source_id) for e in events]
    if counters:
        check_counters(out, counters, where, many)
    return out


def check_counters(
    events: Sequence[ExternalCount],
    counters: Sequence[str],
    where: str = "events",
    many: bool = True,
) -> None:
    """Refuse events of counters the source does not have: they would
    count under a key no group or dashboard knows, silently."""
    known = set(counters)
    problems = [
        f"{_place(where, many, i)}.counter_id: {e.counter_id!r} is not a counter "
        f"of source {e.source_id!r} (known: {sorted(known)})"
        for i, e in enumerate(events)
        if e.counter_id not in known
    ]
    if problems:
        raise ExternalEventError(problems)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _place(where: str, many: bool, index: int) -> str:
    return f"{where}[{index}]" if many else where


def _problem(where: str, many: bool, error: Any) -> str:
    loc = list(error["loc"])
    head = where
    if loc and isinstance(loc[0], int):
        head = _place(where, many, loc.pop(0))
    path = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in loc)
    return f"{head}{path}: {error['msg']}"
