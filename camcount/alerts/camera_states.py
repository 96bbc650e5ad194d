"""What the controller reports of a camera to its shard, for ``camera``
alert rules: one of the rule states, or ``ok`` (any other state clears).

Read from the camera's status as the controller polls it, so the mapping
is one place: a source that stopped sending (``stalled``), a source or
loop that failed, or a camera the controller is replacing after it died
(``failed``), and a camera whose last counted frame had nothing in it
(``no_detections``, dated by the last frame that had).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

from camcount.alerts.rules import CameraState

#: Every state a rule may name, and the one that clears them all.
RULE_STATES: tuple[str, ...] = get_args(CameraState)
OK = "ok"


def observed_state(status: Mapping[str, Any], replaced: bool = False) -> tuple[str, float | None]:
    """The state to report and, where the status dates it, the event time
    it began (None: the shard dates it when it first hears of it).

    ``replaced``: the camera died and a new incarnation is being made."""
    if replaced:
        return "failed", None
    state = status.get("state")
    if state in ("stalled", "failed"):
        return str(state), None
    last_frame = status.get("last_frame_time")
    if state == "streaming" and last_frame is not None:
        seen = status.get("last_detection_time")
        if seen is None or float(last_frame) > float(seen):
            return "no_detections", None if seen is None else float(seen)
    return OK, None
