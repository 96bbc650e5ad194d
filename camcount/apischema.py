"""The REST API's shapes: request parsing, answers, and the OpenAPI document.

The REST deployment (``serve_app/api.py``) converts and calls; what a
request may contain, how a bad one is refused, and how the API describes
itself live here, without Ray or Starlette, so they are tested in
milliseconds. Every refusal is a ``RequestError`` carrying the HTTP status
and a machine-readable code (docs/api.md lists them).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from camcount.config import (
    IDENTIFIER_PATTERN,
    MAX_ID_CHARS,
    CameraConfig,
    Coordinate,
    LineConfig,
    SlicingConfig,
    ZoneConfig,
)
from camcount.errors import RequestError
from camcount.http.live.query import (
    DEFAULT_POLL_TIMEOUT_S,
    ID_PATTERN,
    KINDS,
    MAX_POLL_LIMIT,
    MAX_POLL_TIMEOUT_S,
    int_param,
    validation_detail,
)

API_VERSION = "1.0.0"
CAMERA_ID_PATTERN = IDENTIFIER_PATTERN
DIRECTIONS = ("in", "out", "enter", "exit", "net")
MAX_COUNT_ROWS = 10_000
DEFAULT_COUNT_ROWS = 1000
MAX_EPOCH_S = 2**32 - 1  # the warehouse keeps DateTime (UInt32 seconds)
#: Fields fixed for a camera's life: changing them means remove and add.
IMMUTABLE_FIELDS = ("id", "source", "fps", "start_time", "loop", "realtime", "tracker")


# ----------------------------------------------------------------- bodies


def parse_json(body: bytes) -> Any:
    """A request body as JSON; NaN and Infinity (not JSON) are refused."""
    if not body.strip():
        raise RequestError("bad_json", "the request body is empty; send a JSON object")
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise RequestError("bad_json", "the request body is not valid JSON") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def new_camera(body: Any) -> CameraConfig:
    if not isinstance(body, dict):
        raise RequestError("invalid", "a camera is a JSON object", 422)
    try:
        return CameraConfig.model_validate(body)
    except ValidationError as exc:
        raise RequestError("invalid", "invalid camera", 422, validation_detail(exc)) from None


class CameraPatch(BaseModel):
    """What may change while a camera runs; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lines: tuple[LineConfig, ...] = ()
    zones: tuple[ZoneConfig, ...] = ()
    classes: tuple[str, ...] = ()
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.0
    roi: tuple[Coordinate, ...] | None = None
    coordinates: Literal["pixel", "normalized"] = "pixel"
    site: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    slicing: SlicingConfig | None = None  # from the next frame sent to the detector


def patched_camera(current: CameraConfig, body: Any) -> CameraConfig:
    """``current`` with the patch applied, validated as a whole (so new line
    ids that clash with zone ids are refused like in a config file)."""
    if not isinstance(body, dict):
        raise RequestError("invalid", "a camera patch is a JSON object", 422)
    fixed = current.model_dump(mode="json")
    changed = sorted(k for k in IMMUTABLE_FIELDS if k in body and body[k] != fixed.get(k))
    if changed:
        raise RequestError(
            "immutable",
            f"{changed} cannot change while the camera runs: remove it and add it again",
            422,
            {"fields": changed},
        )
    try:
        patch = CameraPatch.model_validate(
            {k: v for k, v in body.items() if k not in IMMUTABLE_FIELDS}
        )
        merged = {**fixed, **patch.model_dump(mode="json", exclude_unset=True)}
        return CameraConfig.model_validate(merged)
    except ValidationError as exc:
        raise RequestError("invalid", "invalid camera patch", 422, validation_detail(exc)) from None


def camera_id(value: str) -> str:
    """A path's camera id; one that no camera could have is simply not found."""
    if not re.fullmatch(CAMERA_ID_PATTERN, value) or len(value) > MAX_ID_CHARS:
        raise RequestError("not_found", f"no camera {value[:MAX_ID_CHARS]!r}", 404)
    return value


# ----------------------------------------------------------------- counts


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
    camera = _one(params, "camera")
    if camera is None:
        raise RequestError("bad_parameter", "camera is required", 422)
    ids = {"camera": camera, "counter": _one(params, "counter") or ""}
    for name, value in ids.items():
        if value and (not re.fullmatch(ID_PATTERN, value)):
            raise RequestError("bad_parameter", f"{name} must match {ID_PATTERN}", 422)
    cls = _one(params, "class") or ""
    if len(cls) > 64:
        raise RequestError("bad_parameter", "class is at most 64 characters", 422)
    direction = _one(params, "direction") or ""
    if direction and direction not in DIRECTIONS:
        raise RequestError("bad_parameter", f"direction must be one of {list(DIRECTIONS)}", 422)
    sizes = sorted(window_sizes)
    window = int_param(params, "window", 1, 10**9, sizes[0] if sizes else 60)
    if sizes and window not in sizes:
        raise RequestError("bad_parameter", f"window must be one of the sizes {sizes}", 422)
    start_text, end_text = _one(params, "start"), _one(params, "end")
    start = parse_time("start", start_text) if start_text is not None else 0.0
    end = parse_time("end", end_text) if end_text is not None else float(MAX_EPOCH_S)
    if end < start:
        raise RequestError("bad_parameter", "end is before start", 422)
    limit = int_param(params, "limit", 1, MAX_COUNT_ROWS, DEFAULT_COUNT_ROWS)
    return CountsQuery(
        camera_id=camera,
        counter_id=ids["counter"],
        class_name=cls,
        direction=direction,
        window_size_s=int(window or 60),
        start=start,
        end=end,
        limit=int(limit or DEFAULT_COUNT_ROWS),
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
        "class": class_name,
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
        and (not q.class_name or row["class"] == q.class_name)
        and (not q.direction or row["direction"] == q.direction)
    )


def counts_answer(q: CountsQuery, rows: Sequence[dict[str, Any]], source: str) -> dict[str, Any]:
    ordered = sorted(
        rows, key=lambda r: (r["window_start"], r["counter_id"], r["class"], r["direction"])
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


# ----------------------------------------------------------------- OpenAPI

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "malformed request (bad JSON)",
        401: "missing or wrong bearer token",
        403: "the token's scope does not allow this (a read token asking to change)",
        404: "no such camera or route",
        409: "conflicts with the current state",
        413: "request body too large",
        422: "invalid parameters or body",
        429: "rate limit of this token reached (Retry-After)",
        503: "the pipeline is not reachable",
    }
    return {str(s): _json(_ERROR, text[s]) for s in statuses}


def _param(
    name: str,
    schema: dict[str, Any],
    description: str,
    where: str = "query",
    required: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "schema": schema,
        "description": description,
    }


_CAMERA_ID = _param(
    "camera_id",
    {"type": "string", "pattern": CAMERA_ID_PATTERN, "maxLength": MAX_ID_CHARS},
    "camera id",
    "path",
)
_FILTER_PARAMS = [
    _param("cameras", {"type": "string"}, "camera ids, comma separated (default: all)"),
    _param("counters", {"type": "string"}, "line or zone ids, comma separated (default: all)"),
    _param(
        "kinds",
        {"type": "string"},
        f"update kinds, comma separated, among {sorted(KINDS)} (default: all)",
    ),
]


def _schemas() -> dict[str, Any]:
    ref = "#/components/schemas/{model}"
    camera = CameraConfig.model_json_schema(ref_template=ref)
    patch = CameraPatch.model_json_schema(ref_template=ref)
    defs: dict[str, Any] = {**camera.pop("$defs", {}), **patch.pop("$defs", {})}
    status = {
        "type": "object",
        "description": "the camera actor's status: state, fps, frames, drops, lag, totals",
        "properties": {
            "camera_id": {"type": "string"},
            "state": {
                "type": "string",
                "enum": ["connecting", "streaming", "stalled", "finished", "failed", "stopped"],
            },
            "detail": {"type": "string"},
            "fps": {"type": "number"},
            "frames_processed": {"type": "integer"},
            "frames_dropped": {"type": "integer"},
            "lag_s": {"type": ["number", "null"]},
            "idle_s": {"type": ["number", "null"]},
            "last_frame_time": {"type": ["number", "null"]},
            "totals": {"type": "array", "items": {"$ref": "#/components/schemas/Total"}},
        },
        "additionalProperties": True,
    }
    update = {
        "type": "object",
        "required": ["type", "seq", "kind", "camera_id", "data"],
        "properties": {
            "type": {"const": "update"},
            "seq": {"type": "integer", "minimum": 1},
            "kind": {"type": "string", "enum": sorted(KINDS)},
            "camera_id": {"type": "string"},
            "data": {"type": "object"},
        },
    }
    return {
        **defs,
        "CameraConfig": camera,
        "CameraPatch": patch,
        "CameraStatus": status,
        "Camera": {
            "type": "object",
            "required": ["config", "status"],
            "properties": {
                "config": {"$ref": "#/components/schemas/CameraConfig"},
                "status": {"$ref": "#/components/schemas/CameraStatus"},
            },
        },
        "CameraList": {
            "type": "object",
            "required": ["cameras"],
            "properties": {
                "cameras": {"type": "array", "items": {"$ref": "#/components/schemas/Camera"}}
            },
        },
        "Status": {
            "type": "object",
            "required": ["cameras"],
            "properties": {
                "cameras": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/CameraStatus"},
                },
                "shards": {"type": "integer"},
                "window_sizes_s": {"type": "array", "items": {"type": "integer"}},
                "preview_fps": {"type": "number"},
            },
        },
        "Total": {
            "type": "object",
            "properties": {
                "camera_id": {"type": "string"},
                "counter_id": {"type": "string"},
                "class": {"type": "string"},
                "direction": {"type": "string"},
                "count": {"type": "integer"},
            },
        },
        "CountRow": {
            "type": "object",
            "required": ["camera_id", "counter_id", "class", "direction", "window_start", "count"],
            "properties": {
                "camera_id": {"type": "string"},
                "counter_id": {"type": "string"},
                "class": {"type": "string"},
                "direction": {"type": "string", "enum": list(DIRECTIONS)},
                "window_size_s": {"type": "integer"},
                "window_start": {"type": "number", "description": "epoch seconds (UTC)"},
                "window_end": {"type": "number"},
                "count": {"type": "integer", "minimum": 0},
            },
        },
        "Counts": {
            "type": "object",
            "required": ["rows", "source"],
            "properties": {
                "camera_id": {"type": "string"},
                "window_size_s": {"type": "integer"},
                "start": {"type": "number"},
                "end": {"type": "number"},
                "source": {"type": "string", "enum": ["warehouse", "aggregator"]},
                "truncated": {"type": "boolean"},
                "rows": {"type": "array", "items": {"$ref": "#/components/schemas/CountRow"}},
            },
        },
        "Update": update,
        "Poll": {
            "type": "object",
            "required": ["updates", "last_seq", "gap"],
            "properties": {
                "updates": {"type": "array", "items": {"$ref": "#/components/schemas/Update"}},
                "last_seq": {"type": "integer", "description": "pass as `after` next time"},
                "gap": {"type": "boolean", "description": "some updates after `after` are gone"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "machine-readable code"},
                "message": {"type": "string"},
                "detail": {},
            },
        },
    }


def openapi_document(window_sizes: Sequence[int] = ()) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every HTTP route (REST at ``/``, live
    at ``/live``); the WebSocket ``/live/ws`` is described in prose."""
    sizes = sorted(window_sizes) or [10]
    camera_ref = {"$ref": "#/components/schemas/Camera"}
    public: list[dict[str, Any]] = []
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "camcount API",
            "version": API_VERSION,
            "description": (
                "Cameras, counts and live updates of camcount. Every route but the health "
                "checks needs `Authorization: Bearer TOKEN`: a read token reads, changes "
                "(POST, PATCH, DELETE) need an admin token. Live updates also stream over "
                "the WebSocket `/live/ws` (see docs/api.md)."
            ),
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "liveness of the REST replica (no token needed)",
                    "security": public,
                    "responses": {"200": _json({"type": "object"}, "alive")},
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "this document",
                    "responses": {
                        "200": _json({"type": "object"}, "OpenAPI 3.1"),
                        **_errors(401, 429),
                    },
                }
            },
            "/status": {
                "get": {
                    "operationId": "status",
                    "summary": "every camera's state, fps, drops and lag",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Status"}, "status"),
                        **_errors(401, 429, 503),
                    },
                }
            },
            "/cameras": {
                "get": {
                    "operationId": "listCameras",
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/CameraList"}, "cameras"),
                        **_errors(401, 429, 503),
                    },
                },
                "post": {
                    "operationId": "addCamera",
                    "summary": "add a camera: its actor starts at once",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CameraConfig"}
                            }
                        },
                    },
                    "responses": {
                        "201": _json(camera_ref, "added (state may be `failed` with the reason)"),
                        **_errors(400, 401, 403, 409, 413, 422, 429, 503),
                    },
                },
            },
            "/cameras/{camera_id}": {
                "parameters": [_CAMERA_ID],
                "get": {
                    "operationId": "getCamera",
                    "responses": {"200": _json(camera_ref, "camera"), **_errors(401, 404, 429)},
                },
                "patch": {
                    "operationId": "updateCamera",
                    "summary": "change lines, zones, classes... while it runs; counts carry on",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/CameraPatch"}
                            }
                        },
                    },
                    "responses": {
                        "200": _json(camera_ref, "updated"),
                        **_errors(400, 401, 403, 404, 413, 422, 429),
                    },
                },
                "delete": {
                    "operationId": "removeCamera",
                    "responses": {
                        "200": _json({"type": "object"}, "removed; its final status"),
                        **_errors(401, 403, 404, 429),
                    },
                },
            },
            "/cameras/{camera_id}/preview.jpg": {
                "parameters": [_CAMERA_ID],
                "get": {
                    "operationId": "preview",
                    "summary": (
                        "the latest annotated frame; asking turns previews on for a few seconds "
                        "(the token may be passed as `access_token` for an <img>)"
                    ),
                    "responses": {
                        "200": {
                            "description": "JPEG",
                            "content": {"image/jpeg": {"schema": {"type": "string"}}},
                        },
                        **_errors(401, 404, 429),
                    },
                },
            },
            "/counts": {
                "get": {
                    "operationId": "counts",
                    "summary": "closed window counts of one camera over a time range",
                    "parameters": [
                        _param(
                            "camera",
                            {"type": "string", "pattern": ID_PATTERN},
                            "camera id",
                            required=True,
                        ),
                        _param("counter", {"type": "string"}, "line or zone id (default: all)"),
                        _param("class", {"type": "string"}, "class name (default: all)"),
                        _param(
                            "direction", {"type": "string", "enum": list(DIRECTIONS)}, "direction"
                        ),
                        _param(
                            "window",
                            {"type": "integer", "enum": sizes},
                            f"window size in seconds (default {sizes[0]})",
                        ),
                        _param("start", {"type": "string"}, "epoch seconds or ISO 8601 (from)"),
                        _param("end", {"type": "string"}, "epoch seconds or ISO 8601 (before)"),
                        _param(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": MAX_COUNT_ROWS},
                            f"rows at most (default {DEFAULT_COUNT_ROWS})",
                        ),
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Counts"}, "rows"),
                        **_errors(401, 404, 422, 429, 503),
                    },
                }
            },
            "/live/healthz": {
                "get": {
                    "operationId": "liveHealth",
                    "summary": "liveness of the live replica (no token needed)",
                    "security": public,
                    "responses": {"200": _json({"type": "object"}, "alive")},
                }
            },
            "/live/poll": {
                "get": {
                    "operationId": "poll",
                    "summary": "long poll: updates after `after`, waiting up to `timeout` seconds",
                    "parameters": [
                        _param(
                            "after",
                            {"type": "integer", "minimum": 0},
                            "last sequence number seen (default: now)",
                        ),
                        _param(
                            "timeout",
                            {"type": "number", "minimum": 0, "maximum": MAX_POLL_TIMEOUT_S},
                            f"seconds to wait (default {DEFAULT_POLL_TIMEOUT_S})",
                        ),
                        _param(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": MAX_POLL_LIMIT},
                            "updates at most",
                        ),
                        *_FILTER_PARAMS,
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Poll"}, "updates"),
                        **_errors(401, 422, 429, 503),
                    },
                }
            },
            "/live/events": {
                "get": {
                    "operationId": "events",
                    "summary": (
                        "Server-Sent Events: `update` events with `id` = sequence number; "
                        "resumes after `Last-Event-ID` (token as `access_token` for EventSource)"
                    ),
                    "parameters": [
                        _param("after", {"type": "integer", "minimum": 0}, "resume point"),
                        _param(
                            "Last-Event-ID",
                            {"type": "string"},
                            "resume point sent by EventSource",
                            "header",
                        ),
                        *_FILTER_PARAMS,
                    ],
                    "responses": {
                        "200": {
                            "description": "event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(401, 422, 429, 503),
                    },
                }
            },
        },
    }
