"""External events: counts that other systems made (an IoT door counter's
"3 in at 10:15:02", a batch posted to ``POST /events``), entering the
aggregators as one more ordered input beside the cameras (docs/mqtt.md).

Public: the event (``ExternalCount``), the wire format and its checks
(``parse_events``, ``ExternalEventError``), and the source that dedupes by
device sequence and speaks the channel protocol (``ExternalSource``).
"""

from camcount.external.events import ExternalCount
from camcount.external.source import Accepted, ExternalSource, ExternalSourceState
from camcount.external.wire import (
    MAX_BATCH_EVENTS,
    ExternalEventError,
    check_counters,
    parse_events,
)

__all__ = [
    "MAX_BATCH_EVENTS",
    "Accepted",
    "ExternalCount",
    "ExternalEventError",
    "ExternalSource",
    "ExternalSourceState",
    "check_counters",
    "parse_events",
]
