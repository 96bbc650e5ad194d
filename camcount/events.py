"""Event types, their deterministic identities and their Arrow schemas.

Identity is built from what an event describes (camera, counter, track,
frame), never from a random id or arrival time, so an event produced twice
by a replay is recognisably the same event everywhere downstream.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypedDict, TypeVar, cast

if TYPE_CHECKING:
    import pyarrow as pa


class Direction(StrEnum):
    IN = "in"
    OUT = "out"
    ENTER = "enter"
    EXIT = "exit"


def stable_id(*parts: object) -> int:
    """A 63-bit id from the parts' text, the same in every process and run.

    63 bits keep it positive in both Arrow int64 and ClickHouse UInt64.
    """
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big") >> 1


WindowKey = tuple[str, str, str, str]


class Countable(Protocol):
    """An event that window aggregation counts: it has a time and a key."""

    @property
    def event_time(self) -> float: ...

    def window_key(self) -> WindowKey: ...


@dataclass(frozen=True, slots=True)
class Crossing:
    """A confirmed track crossed a counting line once, in one direction."""

    camera_id: str
    counter_id: str
    track_id: int
    frame_index: int
    event_time: float
    class_name: str
    direction: Direction
    confidence: float
    anchor_x: float
    anchor_y: float

    kind: ClassVar[str] = "crossing"

    @property
    def event_id(self) -> int:
        return stable_id(
            self.kind, self.camera_id, self.counter_id, self.track_id, self.frame_index
        )

    def window_key(self) -> WindowKey:
        return (self.camera_id, self.counter_id, self.class_name, self.direction.value)


@dataclass(frozen=True, slots=True)
class ZoneTransition:
    """A confirmed track entered or left a zone."""

    camera_id: str
    counter_id: str
    track_id: int
    frame_index: int
    event_time: float
    class_name: str
    direction: Direction

    kind: ClassVar[str] = "zone_transition"

    @property
    def event_id(self) -> int:
        return stable_id(
            self.kind, self.camera_id, self.counter_id, self.track_id, self.frame_index
        )

    def window_key(self) -> WindowKey:
        return (self.camera_id, self.counter_id, self.class_name, self.direction.value)


@dataclass(frozen=True, slots=True)
class ZoneVisit:
    """One track's stay in a zone, emitted when it ends.

    ``exited_at`` is the last event time the track was seen inside; a visit
    survives detection gaps as long as the tracker keeps the track.
    """

    camera_id: str
    zone_id: str
    track_id: int
    entered_at: float
    exited_at: float
    class_name: str
    entry_frame: int
    exit_frame: int

    kind: ClassVar[str] = "zone_visit"

    @property
    def dwell_s(self) -> float:
        return self.exited_at - self.entered_at

    @property
    def event_id(self) -> int:
        return stable_id(self.kind, self.camera_id, self.zone_id, self.track_id, self.entered_at)


@dataclass(frozen=True, slots=True)
class ZoneSample:
    """Occupancy of a zone at one frame, total and per class."""

    camera_id: str
    zone_id: str
    frame_index: int
    event_time: float
    occupancy: int
    class_names: tuple[str, ...]
    class_counts: tuple[int, ...]

    kind: ClassVar[str] = "zone_sample"

    @property
    def event_id(self) -> int:
        return stable_id(self.kind, self.camera_id, self.zone_id, self.frame_index)


@dataclass(frozen=True, slots=True)
class WindowRow:
    """A closed, final tumbling-window count for one key."""

    camera_id: str
    counter_id: str
    class_name: str
    direction: str
    window_size_s: int
    window_start: float
    count: int

    kind: ClassVar[str] = "window_row"

    @property
    def window_end(self) -> float:
        return self.window_start + self.window_size_s

    @property
    def event_id(self) -> int:
        return stable_id(
            self.kind,
            self.camera_id,
            self.counter_id,
            self.class_name,
            self.direction,
            self.window_size_s,
            self.window_start,
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something that could not be processed, kept with the reason for replay."""

    source: str
    reason: str
    detail: str
    event_time: float
    payload_kind: str
    payload_id: int

    kind: ClassVar[str] = "dead_letter"

    @property
    def event_id(self) -> int:
        return stable_id(self.kind, self.source, self.reason, self.payload_kind, self.payload_id)


@dataclass(frozen=True, slots=True)
class Gap:
    """Time a source was not watched (a live camera restarted or
    reconnected): what was never captured there is not counted, and this
    says so. ``frames_lost`` is -1 when unknown."""

    camera_id: str
    gap_from: float
    gap_to: float
    reason: str
    frames_lost: int

    kind: ClassVar[str] = "gap"

    @property
    def event_id(self) -> int:
        return stable_id(self.kind, self.camera_id, self.gap_from)


@dataclass(frozen=True, slots=True)
class Alert:
    """One change of an alert: ``firing`` when its rule's condition held
    for the rule's hold time, ``resolved`` when it cleared as long.

    ``alert_id`` names the alert across both changes (rule, target and the
    event time it opened), so a replay raises the same id and receivers
    dedupe by ``event_id`` (the change) or group by ``alert_id`` (the alert).
    """

    alert_id: int
    rule_id: str
    target: str
    #: The target's camera, or ``group:id``: what outputs route and filter by.
    camera_id: str
    state: str
    severity: str
    value: float
    threshold: float
    opened_at: float
    event_time: float
    message: str
    labels: tuple[str, ...]

    kind: ClassVar[str] = "alert"

    @property
    def event_id(self) -> int:
        return stable_id(self.kind, self.alert_id, self.state)


@dataclass(frozen=True, slots=True)
class Forecast:
    """The expected count of one future window of a key, issued when the
    window before ``issued_for`` closed; ``lower``..``upper`` the band the
    measured errors put around it."""

    camera_id: str
    counter_id: str
    class_name: str
    direction: str
    window_size_s: int
    window_start: float
    issued_for: float
    value: float
    lower: float
    upper: float

    kind: ClassVar[str] = "forecast"

    @property
    def steps_ahead(self) -> int:
        return round((self.window_start - self.issued_for) / self.window_size_s) + 1

    @property
    def event_id(self) -> int:
        return stable_id(
            self.kind,
            self.camera_id,
            self.counter_id,
            self.class_name,
            self.direction,
            self.window_size_s,
            self.window_start,
            self.issued_for,
        )


Event = (
    Crossing
    | ZoneTransition
    | ZoneVisit
    | ZoneSample
    | WindowRow
    | DeadLetter
    | Gap
    | Alert
    | Forecast
)

_TYPES_BY_NAME: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "Direction": Direction,
    "tuple[str, ...]": tuple[str, ...],
    "tuple[int, ...]": tuple[int, ...],
}


def _arrow_type(py_type: Any) -> pa.DataType:
    # pyarrow is imported on first use: camera actors build events but never
    # tables, and stay lighter without it.
    import pyarrow as pa

    types: dict[Any, pa.DataType] = {
        str: pa.string(),
        int: pa.int64(),
        float: pa.float64(),
        Direction: pa.string(),
        tuple[str, ...]: pa.list_(pa.string()),
        tuple[int, ...]: pa.list_(pa.int64()),
    }
    return types[py_type]


def arrow_schema(cls: type) -> pa.Schema:
    """The Arrow schema of an event type: ``event_id`` then its fields in order."""
    import pyarrow as pa

    fields = [pa.field("event_id", pa.int64(), nullable=False)]
    for f in dataclasses.fields(cls):
        py_type = _TYPES_BY_NAME[f.type] if isinstance(f.type, str) else f.type
        fields.append(pa.field(f.name, _arrow_type(py_type), nullable=False))
    return pa.schema(fields, metadata={"camcount.kind": getattr(cls, "kind", cls.__name__)})


class Identified(Protocol):
    @property
    def event_id(self) -> int: ...


E = TypeVar("E", bound=Identified)


def to_arrow(cls: type[E], events: Iterable[E]) -> pa.Table:
    rows = list(events)
    schema = arrow_schema(cls)
    columns: dict[str, list[Any]] = {"event_id": [e.event_id for e in rows]}
    for f in dataclasses.fields(cast(Any, cls)):
        values = [getattr(e, f.name) for e in rows]
        if values and isinstance(values[0], StrEnum):
            values = [v.value for v in values]
        columns[f.name] = values
    import pyarrow as pa

    return pa.Table.from_pydict(columns, schema=schema)


def from_arrow(cls: type[E], table: pa.Table) -> list[E]:
    names = [f.name for f in dataclasses.fields(cast(Any, cls))]
    out: list[E] = []
    for row in table.select(names).to_pylist():
        if "direction" in row and cls is not WindowRow:
            row["direction"] = Direction(row["direction"])
        for key in ("class_names", "class_counts", "labels"):
            if key in row:
                row[key] = tuple(row[key])
        out.append(cls(**row))
    return out


def group_by_type(events: Sequence[object]) -> dict[type, list[object]]:
    groups: dict[type, list[object]] = {}
    for e in events:
        groups.setdefault(type(e), []).append(e)
    return groups


class CountRow(TypedDict):
    """A count since start, as ``count --json`` and ``replay --json`` print
    it; ``class_name`` as the warehouse columns and live updates name it."""

    camera_id: str
    counter_id: str
    class_name: str
    direction: str
    count: int


def row_order(row: CountRow) -> tuple[str, str, str, str]:
    """The one order count rows are printed and compared in, whichever
    command made them (``count --json`` and ``replay --json`` agree)."""
    return (row["camera_id"], row["counter_id"], row["class_name"], row["direction"])


def count_row(camera: str, counter: str, cls: str, direction: str, n: int) -> CountRow:
    return {
        "camera_id": camera,
        "counter_id": counter,
        "class_name": cls,
        "direction": direction,
        "count": n,
    }
