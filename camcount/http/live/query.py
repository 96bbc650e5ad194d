"""What a live client asks for: filters, and the poll and resume query strings.

Inputs are checked here, where they enter, once: every way a query or a
filter can be wrong is a ``RequestError`` (422) naming the parameter, never
a traceback, and a filter naming an unknown kind is refused, so a typo is an
error rather than silence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from camcount.config import MAX_ID_CHARS
from camcount.errors import RequestError
from camcount.stream.livefeed import Update

#: Update kinds the pipeline publishes (actors/aggregator.py); a filter
#: naming another is refused so a typo is an error, not silence.
KINDS = frozenset(
    {
        "crossing",
        "zone_transition",
        "zone_visit",
        "zone_sample",
        "window_row",
        "dead_letter",
        "alert",
        "forecast",
    }
)
#: The config's id rule (``Identifier``: letters, digits, ``_.-``, at most
#: ``MAX_ID_CHARS``) plus ``:``, because window rows of derived keys carry
#: ``site:<site>`` or ``group:<id>`` as their camera id (camcount.stream.aggregation)
#: and a filter or a counts query must be able to name them.
ID_PATTERN = rf"^[A-Za-z0-9_.:-]{{1,{MAX_ID_CHARS}}}$"
MAX_FILTER_VALUES = 256
MAX_POLL_TIMEOUT_S = 60.0
DEFAULT_POLL_TIMEOUT_S = 25.0
MAX_POLL_LIMIT = 1000
MAX_SEQ = 2**63 - 1

#: A list of ids, as filters and subscriptions take them.
IdList = Annotated[
    list[Annotated[str, Field(pattern=ID_PATTERN)]], Field(max_length=MAX_FILTER_VALUES)
]


def counter_of(update: Update) -> str:
    """The line or zone an update is about ('' for none, e.g. a dead letter)."""
    data = update.data
    value = data.get("counter_id") or data.get("zone_id") or ""
    return str(value)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which updates a subscription wants; an empty set means any."""

    cameras: frozenset[str] = frozenset()
    counters: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()

    def matches(self, update: Update) -> bool:
        if self.kinds and update.kind not in self.kinds:
            return False
        if self.cameras and update.camera_id not in self.cameras:
            return False
        return not self.counters or counter_of(update) in self.counters

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "cameras": sorted(self.cameras),
            "counters": sorted(self.counters),
            "kinds": sorted(self.kinds),
        }


def make_filter(
    cameras: Iterable[str] = (), counters: Iterable[str] = (), kinds: Iterable[str] = ()
) -> Filter:
    """A filter from already type-checked values; refuses unknown kinds."""
    unknown = sorted(set(kinds) - KINDS)
    if unknown:
        raise RequestError("bad_filter", f"unknown kind(s) {unknown}; known: {sorted(KINDS)}", 422)
    return Filter(frozenset(cameras), frozenset(counters), frozenset(kinds))


def _split(values: Sequence[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


class _FilterQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cameras: IdList = []
    counters: IdList = []
    kinds: IdList = []


def filter_from_query(params: Mapping[str, Sequence[str]]) -> Filter:
    """``cameras``, ``counters`` and ``kinds`` from a query string, each
    repeated or comma separated (``?kinds=crossing,window_row``)."""
    raw = {k: _split(params.get(k, ())) for k in ("cameras", "counters", "kinds")}
    try:
        q = _FilterQuery.model_validate(raw)
    except ValidationError as exc:
        raise RequestError("bad_filter", "invalid filter", 422, validation_detail(exc)) from None
    return make_filter(q.cameras, q.counters, q.kinds)


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as plain JSON: where, what, and the error type."""
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def int_param(
    params: Mapping[str, Sequence[str]], name: str, lo: int, hi: int, default: int | None = None
) -> int | None:
    values = params.get(name) or ()
    if not values or values[-1] == "":
        return default
    text = values[-1].strip()
    if not text.isdigit() or len(text) > 19:
        raise RequestError("bad_parameter", f"{name} must be an integer in [{lo}, {hi}]", 422)
    value = int(text)
    if not lo <= value <= hi:
        raise RequestError("bad_parameter", f"{name} must be in [{lo}, {hi}], got {value}", 422)
    return value


def float_param(
    params: Mapping[str, Sequence[str]], name: str, lo: float, hi: float, default: float
) -> float:
    values = params.get(name) or ()
    if not values or values[-1] == "":
        return default
    try:
        value = float(values[-1])
    except ValueError:
        raise RequestError("bad_parameter", f"{name} must be a number", 422) from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise RequestError("bad_parameter", f"{name} must be in [{lo}, {hi}]", 422)
    return value


@dataclass(frozen=True, slots=True)
class PollQuery:
    after: int | None
    timeout_s: float
    limit: int
    filter: Filter


def poll_query(params: Mapping[str, Sequence[str]]) -> PollQuery:
    return PollQuery(
        after=int_param(params, "after", 0, MAX_SEQ),
        timeout_s=float_param(params, "timeout", 0.0, MAX_POLL_TIMEOUT_S, DEFAULT_POLL_TIMEOUT_S),
        limit=int_param(params, "limit", 1, MAX_POLL_LIMIT, MAX_POLL_LIMIT) or MAX_POLL_LIMIT,
        filter=filter_from_query(params),
    )


def resume_point(last_event_id: str | None, params: Mapping[str, Sequence[str]]) -> int | None:
    """Where an SSE stream starts: ``Last-Event-ID`` (the browser's resume)
    over ``?after=`` (the first connection)."""
    if last_event_id is not None and last_event_id.strip():
        return int_param({"Last-Event-ID": [last_event_id]}, "Last-Event-ID", 0, MAX_SEQ)
    return int_param(params, "after", 0, MAX_SEQ)
