"""The ``/counts`` query: closed window rows of one camera over a time
range, from whichever store holds them (the warehouse or the aggregator
shards' memory), filtered, ordered and cut to a limit the same way."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from camcount.errors import RequestError
from camcount.http.live.query import ID_PATTERN, int_param
from camcount.http.models import DIRECTIONS

MAX_COUNT_ROWS = 10_000
DEFAULT_COUNT_ROWS = 1000
MAX_EPOCH_S = 2**32 - 1  # the warehouse keeps DateTime (UInt32 seconds)
MAX_CLASS_CHARS = 64


@dataclass(frozen=True, slots=True)
class CountsQuery:
    camera_id: str
    counter_id: str
    class_name: str
    direction: str
    window_size_s: int
    start: float
    end: float
    limit: int


def parse_time(name: str, text: str) -> float:
    """Epoch seconds, or an ISO 8601 time (UTC when it names no zone)."""
    try:
        value = float(text)
    except ValueError:
        try:
            t = datetime.fromisoformat(text.strip())
        except ValueError:
            raise RequestError(
                "bad_parameter", f"{name} must be epoch seconds or an ISO 8601 time", 422
            ) from None
        value = (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value) or not 0 <= value <= MAX_EPOCH_S:
        raise RequestError("bad_parameter", f"{name} must be within [0, {MAX_EPOCH_S}]", 422)
    return value


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name) or ()
    return values[-1] if values and values[-1] != "" else None


def counts_query(params: Mapping[str, Sequence[str]], window_sizes: Sequence[int]) -> CountsQuery:
    """A query from a raw query string (the last of repeated values wins)."""
    return checked_counts_query(
        window_sizes,
        camera=_one(params, "camera"),
        counter=_one(params, "counter"),
        class_name=_one(params, "class"),
        direction=_one(params, "direction"),
        window=int_param(params, "window", 1, 10**9),
        start=_one(params, "start"),
        end=_one(params, "end"),
        limit=int_param(params, "limit", 1, MAX_COUNT_ROWS),
    )


def checked_counts_query(
    window_sizes: Sequence[int],
    *,
    camera: str | None,
    counter: str | None = None,
    class_name: str | None = None,
    direction: str | None = None,
    window: int | None = None,
    start: str | None = None,
    end: str | None = None,
    limit: int | None = None,
) -> CountsQuery:
    """A query from typed values; an empty value means absent. Every rule
    lives here, so the REST route and ``counts_query`` refuse alike."""
    if not camera:
        raise RequestError("bad_parameter", "camera is required", 422)
    for name, value in (("camera", camera), ("counter", counter or "")):
        if value and not re.fullmatch(ID_PATTERN, value):
            raise RequestError("bad_parameter", f"{name} must match {ID_PATTERN}", 422)
    cls = class_name or ""
    if len(cls) > MAX_CLASS_CHARS:
        raise RequestError("bad_parameter", f"class is at most {MAX_CLASS_CHARS} characters", 422)
    if direction and direction not in DIRECTIONS:
        raise RequestError("bad_parameter", f"direction must be one of {list(DIRECTIONS)}", 422)
    sizes = sorted(window_sizes)
    size = window if window is not None else (sizes[0] if sizes else 60)
    if sizes and size not in sizes:
        raise RequestError("bad_parameter", f"window must be one of the sizes {sizes}", 422)
    if limit is not None and not 1 <= limit <= MAX_COUNT_ROWS:
        raise RequestError("bad_parameter", f"limit must be in [1, {MAX_COUNT_ROWS}]", 422)
    t0 = parse_time("start", start) if start else 0.0
    t1 = parse_time("end", end) if end else float(MAX_EPOCH_S)
    if t1 < t0:
        raise RequestError("bad_parameter", "end is before start", 422)
    return CountsQuery(
        camera_id=camera,
        counter_id=counter or "",
        class_name=cls,
        direction=direction or "",
        window_size_s=int(size),
        start=t0,
        end=t1,
        limit=limit if limit is not None else DEFAULT_COUNT_ROWS,
    )


def count_row(
    camera_id: str,
    counter_id: str,
    class_name: str,
    direction: str,
    window_size_s: int,
    window_start: float,
    count: int,
) -> dict[str, Any]:
    return {
        "camera_id": camera_id,
        "counter_id": counter_id,
        "class_name": class_name,
        "direction": direction,
        "window_size_s": window_size_s,
        "window_start": window_start,
        "window_end": window_start + window_size_s,
        "count": count,
    }


def wanted(q: CountsQuery, row: Mapping[str, Any]) -> bool:
    """Whether a count row answers the query (half-open range on the window start)."""
    return (
        row["camera_id"] == q.camera_id
        and row["window_size_s"] == q.window_size_s
        and q.start <= row["window_start"] < q.end
        and (not q.counter_id or row["counter_id"] == q.counter_id)
        and (not q.class_name or row["class_name"] == q.class_name)
        and (not q.direction or row["direction"] == q.direction)
    )


def counts_answer(q: CountsQuery, rows: Sequence[dict[str, Any]], source: str) -> dict[str, Any]:
    ordered = sorted(
        rows, key=lambda r: (r["window_start"], r["counter_id"], r["class_name"], r["direction"])
    )
    return {
        "camera_id": q.camera_id,
        "window_size_s": q.window_size_s,
        "start": q.start,
        "end": q.end,
        "source": source,
        "truncated": len(ordered) > q.limit,
        "rows": ordered[: q.limit],
    }
