"""What a live client may send over a WebSocket, and how it is read.

Every way a client text frame can be wrong (too long, not JSON, NaN, not an
object, an unknown type, a bad field) is a ``RequestError`` with its own
code, so a client is told, never dropped by a traceback. A token never
reaches a log through a message's repr.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from camcount.errors import RequestError
from camcount.http.live.query import (
    ID_PATTERN,
    MAX_SEQ,
    Filter,
    IdList,
    make_filter,
    validation_detail,
)

MAX_MESSAGE_CHARS = 16_384


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthMsg(_Msg):
    type: Literal["auth"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]

    def __repr__(self) -> str:  # a token never reaches a log through a repr
        return "AuthMsg(token=***)"


class SubscribeMsg(_Msg):
    type: Literal["subscribe"]
    id: Annotated[str, Field(pattern=ID_PATTERN)] = "default"
    cameras: IdList = []
    counters: IdList = []
    kinds: IdList = []
    after: Annotated[int, Field(ge=0, le=MAX_SEQ)] | None = None

    def filter(self) -> Filter:
        return make_filter(self.cameras, self.counters, self.kinds)


class UnsubscribeMsg(_Msg):
    type: Literal["unsubscribe"]
    id: Annotated[str, Field(pattern=ID_PATTERN)] = "default"


class AckMsg(_Msg):
    type: Literal["ack"]
    seq: Annotated[int, Field(ge=0, le=MAX_SEQ)]


class PingMsg(_Msg):
    type: Literal["ping"]
    data: Annotated[str, Field(max_length=256)] | None = None


ClientMessage = AuthMsg | SubscribeMsg | UnsubscribeMsg | AckMsg | PingMsg
_client_message: TypeAdapter[ClientMessage] = TypeAdapter(
    Annotated[ClientMessage, Field(discriminator="type")]
)
CLIENT_TYPES = ("auth", "subscribe", "unsubscribe", "ack", "ping")


def parse_client_message(text: str) -> ClientMessage:
    """One client text frame; every way it can be wrong is a ``RequestError``."""
    if len(text) > MAX_MESSAGE_CHARS:
        raise RequestError("too_large", f"messages are limited to {MAX_MESSAGE_CHARS} characters")
    try:
        raw = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise RequestError("bad_json", "the message is not valid JSON") from None
    if not isinstance(raw, dict):
        raise RequestError("bad_message", "a message is a JSON object with a 'type'")
    if raw.get("type") not in CLIENT_TYPES:
        raise RequestError("unknown_type", f"'type' must be one of {list(CLIENT_TYPES)}")
    try:
        return _client_message.validate_python(raw)
    except ValidationError as exc:
        raise RequestError(
            "bad_message", "invalid message", detail=validation_detail(exc)
        ) from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")
