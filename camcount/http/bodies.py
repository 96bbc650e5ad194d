"""Request bodies and path ids of the REST API, checked once where they
enter: a body that is not JSON is a 400, one that is not a valid camera or
patch a 422 naming every invalid field, a path id no camera could have a
404. What passes is a typed ``CameraConfig`` that travels as it is."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from camcount.config import IDENTIFIER_PATTERN, MAX_ID_CHARS, CameraConfig
from camcount.errors import RequestError
from camcount.http.live.query import validation_detail
from camcount.http.models import CameraPatch

CAMERA_ID_PATTERN = IDENTIFIER_PATTERN
#: Fields fixed for a camera's life: changing them means remove and add.
IMMUTABLE_FIELDS = ("id", "source", "fps", "start_time", "loop", "realtime", "tracker")


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
