"""What a live client may send over a WebSocket, and how each mistake is told."""

from __future__ import annotations

import pytest

from camcount.errors import RequestError
from camcount.http.live.messages import (
    AckMsg,
    AuthMsg,
    PingMsg,
    SubscribeMsg,
    UnsubscribeMsg,
    parse_client_message,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"auth","token":"t"}', AuthMsg),
        ('{"type":"subscribe","kinds":["crossing"],"after":3}', SubscribeMsg),
        ('{"type":"unsubscribe","id":"x"}', UnsubscribeMsg),
        ('{"type":"ack","seq":7}', AckMsg),
        ('{"type":"ping"}', PingMsg),
    ],
)
def test_valid_client_messages(text: str, expected: type) -> None:
    assert isinstance(parse_client_message(text), expected)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_message"),  # not an object
        ('{"kinds": []}', "unknown_type"),  # no type
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "ack"}', "bad_message"),  # seq missing
        ('{"type": "ack", "seq": -1}', "bad_message"),
        ('{"type": "ack", "seq": NaN}', "bad_json"),  # NaN is not JSON
        ('{"type": "subscribe", "zoom": 2}', "bad_message"),  # unknown field
        ('{"type": "subscribe", "kinds": "crossing"}', "bad_message"),  # not a list
        ('{"type": "subscribe", "kinds": ["nope"]}', "bad_filter"),
        ('{"type": "subscribe", "id": "' + "x" * 200 + '"}', "bad_message"),
        ("x" * 20_000, "too_large"),
        ("[" * 100_000, "too_large"),
    ],
)
def test_malformed_client_messages_are_request_errors(text: str, code: str) -> None:
    with pytest.raises(RequestError) as exc:
        msg = parse_client_message(text)
        if isinstance(msg, SubscribeMsg):
            msg.filter()
    assert exc.value.code == code


def test_an_auth_message_never_shows_its_token() -> None:
    msg = parse_client_message('{"type":"auth","token":"s3cret"}')
    assert "s3cret" not in repr(msg)
