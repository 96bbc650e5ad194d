"""What a live replica writes: JSON, SSE events and WebSocket frames."""

from __future__ import annotations

import json

from camcount.http.live.encoding import dumps, encode_update, frames, sse_frame
from camcount.stream.livefeed import Update


def test_sse_frames_carry_an_id_only_for_updates() -> None:
    assert sse_frame("update", "{}", 7) == "id: 7\nevent: update\ndata: {}\n\n"
    assert sse_frame("heartbeat", "{}", -1) == "event: heartbeat\ndata: {}\n\n"


def test_json_without_nan() -> None:
    assert dumps({"a": float("nan"), "b": [float("inf"), 1.0]}) == '{"a":null,"b":[null,1.0]}'


def test_batched_frames_join_consecutive_updates_and_keep_notices_in_place() -> None:
    items = [
        (-1, "heartbeat", '{"type":"heartbeat"}'),
        (1, "update", '{"seq":1}'),
        (2, "update", '{"seq":2}'),
        (-1, "gap", '{"type":"gap"}'),
        (9, "update", '{"seq":9}'),
    ]
    assert frames(items, batch=False) == [t for _, _, t in items]
    out = frames(items, batch=True)
    assert out[0] == '{"type":"heartbeat"}' and out[2] == '{"type":"gap"}'
    assert json.loads(out[1]) == {"type": "updates", "updates": [{"seq": 1}, {"seq": 2}]}
    assert out[3] == '{"seq":9}'  # a lone update stays a plain update frame


def test_an_update_carries_its_stamps_to_the_microsecond_beside_its_data() -> None:
    data = {"counter_id": "door", "event_time": 1767225599.9}
    stamped = json.loads(encode_update(Update(7, "crossing", "cam", data, 1767225600.1234567, 2.5)))
    assert stamped["created"] == 1767225600.123457 and stamped["published"] == 2.5
    assert stamped["data"] == data  # the event's own fields, nothing added
    bare = json.loads(encode_update(Update(8, "window_row", "cam", {})))
    assert bare["created"] is None and bare["published"] is None
