"""What a live replica writes: JSON, update objects, notices, WebSocket frames,
Server-Sent Events and long-poll bodies.

Message formats are documented in docs/api.md; ``PROTOCOL_VERSION`` moves
when one changes incompatibly. JSON here never holds NaN or infinity (which
JSON has not): such a value is written as null, so every client's parser
reads every message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from camcount.errors import RequestError
from camcount.stream.livefeed import Update

PROTOCOL_VERSION = 1

#: What an outbox holds: (seq, or -1 for a notice or control; event name;
#: JSON text).
Item = tuple[int, str, str]
#: An update with its JSON text, encoded once.
Encoded = tuple[Update, str]


class CloseCode(IntEnum):
    """WebSocket close codes; 4xxx mirror the HTTP status they stand for."""

    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    PROTOCOL_ERROR = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN_ORIGIN = 4403
    SLOW_CONSUMER = 4408
    RATE_LIMITED = 4429


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(obj: Any) -> str:
    """Compact JSON; a NaN or infinity (which JSON has not) becomes null."""
    try:
        return _dumps(obj)
    except ValueError:
        return _dumps(_finite(obj))


def update_object(update: Update) -> dict[str, Any]:
    """``created`` and ``published`` are epoch seconds to the microsecond
    (null when the update has none): enough to measure a delay on one
    machine, and no longer in the text than that needs."""
    return {
        "type": "update",
        "seq": update.seq,
        "kind": update.kind,
        "camera_id": update.camera_id,
        "created": _stamp(update.created),
        "published": _stamp(update.published),
        "data": update.data,
    }


def _stamp(t: float | None) -> float | None:
    return None if t is None else round(t, 6)


def encode_update(update: Update) -> str:
    return dumps(update_object(update))


def message(type_: str, **fields: Any) -> str:
    return dumps({"type": type_, **fields})


def error_message(error: RequestError, ref: str | None = None) -> str:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.detail is not None:
        body["detail"] = error.detail
    if ref is not None:
        body["ref"] = ref
    return message("error", **body)


def gap_message(after: int, resume_after: int, reason: str = "expired") -> str:
    """Updates in (after, resume_after] are gone: delivery goes on after them."""
    return message("gap", after=after, resume_after=resume_after, reason=reason)


def frames(items: Sequence[Item], batch: bool) -> list[str]:
    """The WebSocket frames for items taken from an outbox, in order.

    Unbatched, one frame per item. Batched (a client's choice), consecutive
    updates share one ``updates`` frame: a write through Serve's proxy costs
    about as much as the text it carries, so a busy client gets fewer,
    fuller frames. Notices and controls stay frames of their own, in place.
    """
    if not batch:
        return [text for _, _, text in items]
    out: list[str] = []
    run: list[str] = []
    for seq, _, text in items:
        if seq >= 0:
            run.append(text)
            continue
        if run:
            out.append(_updates_frame(run))
            run = []
        out.append(text)
    if run:
        out.append(_updates_frame(run))
    return out


def _updates_frame(texts: list[str]) -> str:
    return texts[0] if len(texts) == 1 else '{"type":"updates","updates":[' + ",".join(texts) + "]}"


def sse_frame(event: str, data: str, seq: int | None = None) -> str:
    """One Server-Sent Event; ``id`` only on updates, so ``Last-Event-ID``
    is always an update's sequence number."""
    head = f"id: {seq}\n" if seq is not None and seq >= 0 else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


def poll_body(items: Sequence[Encoded], last_seq: int, gap: bool) -> str:
    """The long-poll answer, built from the texts already encoded."""
    return (
        '{"updates":['
        + ",".join(text for _, text in items)
        + f'],"last_seq":{last_seq},"gap":{"true" if gap else "false"}}}'
    )
