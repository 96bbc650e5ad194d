"""What the controller reports of a camera to its shard, read from the
camera's status (camcount/alerts/camera_states.py)."""

from __future__ import annotations

import pytest

from camcount.alerts.camera_states import OK, RULE_STATES, observed_state


@pytest.mark.parametrize(
    ("status", "replaced", "want"),
    [
        # a source that stopped sending frames
        ({"state": "stalled", "last_frame_time": 50.0}, False, ("stalled", None)),
        # a file that cannot be read, or a loop that broke
        ({"state": "failed"}, False, ("failed", None)),
        # a camera that died, a new incarnation being made: failed, whatever it said last
        ({"state": "streaming", "last_frame_time": 50.0}, True, ("failed", None)),
        # frames counted, the last with something in it
        (
            {"state": "streaming", "last_frame_time": 50.0, "last_detection_time": 50.0},
            False,
            (OK, None),
        ),
        # nothing seen since 42 s: no detections from then
        (
            {"state": "streaming", "last_frame_time": 50.0, "last_detection_time": 42.0},
            False,
            ("no_detections", 42.0),
        ),
        # nothing seen in any frame yet: dated by the shard
        ({"state": "streaming", "last_frame_time": 50.0}, False, ("no_detections", None)),
        # no frame counted yet: nothing to say about detections
        ({"state": "streaming", "last_frame_time": None}, False, (OK, None)),
        # connecting, finished, stopped: none of the rule states
        ({"state": "connecting"}, False, (OK, None)),
        ({"state": "finished", "last_frame_time": 9.0}, False, (OK, None)),
        ({}, False, (OK, None)),
    ],
)
def test_a_status_maps_to_one_reported_state(
    status: dict, replaced: bool, want: tuple[str, float | None]
) -> None:
    assert observed_state(status, replaced) == want


def test_every_reported_state_but_ok_is_one_a_rule_may_name() -> None:
    assert set(RULE_STATES) == {"stalled", "failed", "no_detections"}
    assert OK not in RULE_STATES
