"""The external count event: what a device counted, with its own identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from camcount.events import Direction, WindowKey, stable_id


@dataclass(frozen=True, slots=True)
class ExternalCount:
    """``count`` objects of ``class_name`` went ``direction`` past counter
    ``counter_id`` of device ``device_id`` at ``event_time``; the device
    numbers what it sends (``seq``, increasing), which is how a resent
    message is recognised.

    Its window key puts the external source where a camera would be, so
    it is counted in the same windows, totals, sites and groups.
    """

    source_id: str
    device_id: str
    seq: int
    counter_id: str
    class_name: str
    direction: Direction
    count: int
    event_time: float

    kind: ClassVar[str] = "external_count"

    @property
    def event_id(self) -> int:
        return stable_id(self.kind, self.source_id, self.device_id, self.seq)

    @property
    def weight(self) -> int:
        """How many objects this one event counts in a window."""
        return self.count

    def window_key(self) -> WindowKey:
        return (self.source_id, self.counter_id, self.class_name, self.direction.value)
