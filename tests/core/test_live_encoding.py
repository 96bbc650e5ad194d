"""What a live replica writes: JSON, SSE events and WebSocket frames."""

from __future__ import annotations

import json

from camcount.http.live.encoding import dumps, frames, sse_frame


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
