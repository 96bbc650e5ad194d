"""From the pipeline's Arrow batches to warehouse rows, per kind.

The sink receives batches in the event schemas of `camcount.events`
(``write("crossing", to_arrow(Crossing, events))``) and camera metadata in
the schemas below. Conversion here is vectorised Arrow work and checks
every value against its column type (a negative track id, a NaN time or
a fractional window start is refused, never wrapped around), so both
backends receive exactly the same, valid rows.

Times: an event's float epoch seconds become a ``DateTime('UTC')`` column
(whole seconds) and a ``UInt16`` millisecond column; DateTime columns
travel as ``uint32`` epoch seconds, which both backends accept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from camcount.config import CameraConfig
from camcount.events import (
    Alert,
    Crossing,
    DeadLetter,
    Forecast,
    Gap,
    WindowRow,
    ZoneSample,
    ZoneTransition,
    ZoneVisit,
    arrow_schema,
    stable_id,
)
from camcount.warehouse import schema as s
from camcount.warehouse.urls import mask_url

_U64 = pa.uint64()
_U32 = pa.uint32()
_U16 = pa.uint16()
_F32 = pa.float32()
_F64 = pa.float64()
_STR = pa.string()

CAMERA_SCHEMA = pa.schema(
    [
        pa.field("camera_id", _STR, nullable=False),
        pa.field("version", _U64, nullable=False),
        pa.field("site", _STR, nullable=False),
        pa.field("source", _STR, nullable=False),
        pa.field("fps", _F64, nullable=False),
        pa.field("coordinates", _STR, nullable=False),
        pa.field("start_time", _U32, nullable=False),
        pa.field("classes", pa.list_(_STR), nullable=False),
        pa.field("min_confidence", _F32, nullable=False),
        pa.field("tags.key", pa.list_(_STR), nullable=False),
        pa.field("tags.value", pa.list_(_STR), nullable=False),
        pa.field("removed", pa.uint8(), nullable=False),
    ],
    metadata={"camcount.kind": "camera"},
)

CAMERA_COUNTER_SCHEMA = pa.schema(
    [
        pa.field("camera_id", _STR, nullable=False),
        pa.field("counter_id", _STR, nullable=False),
        pa.field("version", _U64, nullable=False),
        pa.field("kind", _STR, nullable=False),
        pa.field("points_x", pa.list_(_F64), nullable=False),
        pa.field("points_y", pa.list_(_F64), nullable=False),
        pa.field("anchor", _STR, nullable=False),
        pa.field("band_px", _F64, nullable=False),
        pa.field("classes", pa.list_(_STR), nullable=False),
        pa.field("sample_every_s", _F64, nullable=False),
    ],
    metadata={"camcount.kind": "camera_counter"},
)


class RowsInvalid(ValueError):
    """A batch holds a value its warehouse column cannot take."""


@dataclass(frozen=True)
class Kind:
    """How one kind of batch maps to its table.

    ``source_schema`` is what ``write`` accepts; ``convert`` yields the
    table's rows (without server-filled defaults); ``time_column`` names
    the float event time in the source schema.
    """

    name: str
    table: s.Table
    source_schema: pa.Schema
    convert: Callable[[pa.Table], pa.Table]
    time_column: str | None
    identity: tuple[str, ...]

    def ids(self, batch: pa.Table) -> list[int]:
        """Deterministic 63-bit identity of each row (source or warehouse
        shape: the identity columns exist in both)."""
        if self.identity == ("event_id",):
            return [int(v) for v in batch.column("event_id").to_pylist()]
        cols = [batch.column(c).to_pylist() for c in self.identity]
        return [stable_id(self.name, *parts) for parts in zip(*cols, strict=True)]

    def times(self, batch: pa.Table) -> list[float]:
        """Event time (float epoch seconds) of each row, either shape."""
        if self.time_column is None:
            return [0.0] * batch.num_rows
        if self.time_column in batch.column_names and pa.types.is_floating(
            batch.schema.field(self.time_column).type
        ):
            return [float(v) for v in batch.column(self.time_column).to_pylist()]
        seconds = batch.column(self._stored_time).to_pylist()
        ms_name = s.ms_column(self._stored_time)
        if ms_name in batch.column_names:
            ms = batch.column(ms_name).to_pylist()
            return [sec + m / 1000 for sec, m in zip(seconds, ms, strict=True)]
        return [float(v) for v in seconds]

    @property
    def _stored_time(self) -> str:
        return {"window_row": "window_start"}.get(self.name, self.time_column or "")


def _seconds_ms(t: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
    total_ms = pc.cast(pc.round(pc.multiply(t, 1000.0)), pa.int64())
    sec = pc.divide(total_ms, 1000)
    ms = pc.subtract(total_ms, pc.multiply(sec, 1000))
    return pc.cast(sec, _U32), pc.cast(ms, _U16)


def _table(columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    return pa.table(columns)


def _crossings(b: pa.Table) -> pa.Table:
    sec, ms = _seconds_ms(b["event_time"])
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "camera_id": b["camera_id"],
            "counter_id": b["counter_id"],
            "track_id": pc.cast(b["track_id"], _U64),
            "frame_index": pc.cast(b["frame_index"], _U64),
            "event_time": sec,
            "event_ms": ms,
            "class_name": b["class_name"],
            "direction": b["direction"],
            "confidence": pc.cast(b["confidence"], _F32),
            "anchor_x": pc.cast(b["anchor_x"], _F32),
            "anchor_y": pc.cast(b["anchor_y"], _F32),
        }
    )


def _transitions(b: pa.Table) -> pa.Table:
    sec, ms = _seconds_ms(b["event_time"])
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "camera_id": b["camera_id"],
            "zone_id": b["counter_id"],
            "track_id": pc.cast(b["track_id"], _U64),
            "frame_index": pc.cast(b["frame_index"], _U64),
            "event_time": sec,
            "event_ms": ms,
            "class_name": b["class_name"],
            "direction": b["direction"],
        }
    )


def _samples(b: pa.Table) -> pa.Table:
    sec, ms = _seconds_ms(b["event_time"])
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "camera_id": b["camera_id"],
            "zone_id": b["zone_id"],
            "frame_index": pc.cast(b["frame_index"], _U64),
            "event_time": sec,
            "event_ms": ms,
            "occupancy": pc.cast(b["occupancy"], _U32),
            "classes.name": b["class_names"],
            "classes.count": pc.cast(b["class_counts"], pa.list_(_U32)),
        }
    )


def _visits(b: pa.Table) -> pa.Table:
    entered, entered_ms = _seconds_ms(b["entered_at"])
    exited, exited_ms = _seconds_ms(b["exited_at"])
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "camera_id": b["camera_id"],
            "zone_id": b["zone_id"],
            "track_id": pc.cast(b["track_id"], _U64),
            "entered_at": entered,
            "entered_ms": entered_ms,
            "exited_at": exited,
            "exited_ms": exited_ms,
            "dwell_s": pc.subtract(b["exited_at"], b["entered_at"]),
            "class_name": b["class_name"],
            "entry_frame": pc.cast(b["entry_frame"], _U64),
            "exit_frame": pc.cast(b["exit_frame"], _U64),
        }
    )


def _windows(b: pa.Table) -> pa.Table:
    size = pc.cast(b["window_size_s"], _U32)
    start = pc.cast(b["window_start"], _U32)
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "camera_id": b["camera_id"],
            "counter_id": b["counter_id"],
            "class_name": b["class_name"],
            "direction": b["direction"],
            "window_size_s": size,
            "window_start": start,
            "window_end": pc.cast(pc.add_checked(pc.cast(start, pa.int64()), size), _U32),
            "count": pc.cast(b["count"], _U64),
        }
    )


def _dead_letters(b: pa.Table) -> pa.Table:
    sec, ms = _seconds_ms(b["event_time"])
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "source": b["source"],
            "reason": b["reason"],
            "detail": b["detail"],
            "event_time": sec,
            "event_ms": ms,
            "payload_kind": b["payload_kind"],
            "payload_id": pc.cast(b["payload_id"], _U64),
        }
    )


def _gaps(b: pa.Table) -> pa.Table:
    since, since_ms = _seconds_ms(b["gap_from"])
    until, until_ms = _seconds_ms(b["gap_to"])
    duration = pc.subtract(b["gap_to"], b["gap_from"])
    if pc.any(pc.less(duration, 0.0)).as_py():
        raise pa.ArrowInvalid("gap_to is before gap_from")
    if pc.any(pc.less(b["frames_lost"], -1)).as_py():
        raise pa.ArrowInvalid("frames_lost below -1 (-1 means unknown)")
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "camera_id": b["camera_id"],
            "gap_from": since,
            "gap_from_ms": since_ms,
            "gap_to": until,
            "gap_to_ms": until_ms,
            "duration_s": duration,
            "reason": b["reason"],
            "frames_lost": b["frames_lost"],
        }
    )


def _alerts(b: pa.Table) -> pa.Table:
    opened, opened_ms = _seconds_ms(b["opened_at"])
    sec, ms = _seconds_ms(b["event_time"])
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "alert_id": pc.cast(b["alert_id"], _U64),
            "rule_id": b["rule_id"],
            "target": b["target"],
            "camera_id": b["camera_id"],
            "state": b["state"],
            "severity": b["severity"],
            "value": b["value"],
            "threshold": b["threshold"],
            "opened_at": opened,
            "opened_ms": opened_ms,
            "event_time": sec,
            "event_ms": ms,
            "message": b["message"],
            "labels": b["labels"],
        }
    )


def _forecasts(b: pa.Table) -> pa.Table:
    size = pc.cast(b["window_size_s"], _U32)
    start = pc.cast(b["window_start"], _U32)
    issued = pc.cast(b["issued_for"], _U32)
    ahead = pc.subtract(pc.cast(start, pa.int64()), pc.cast(issued, pa.int64()))
    steps = pc.add(pc.divide(ahead, pc.cast(size, pa.int64())), 1)
    return _table(
        {
            "event_id": pc.cast(b["event_id"], _U64),
            "camera_id": b["camera_id"],
            "counter_id": b["counter_id"],
            "class_name": b["class_name"],
            "direction": b["direction"],
            "window_size_s": size,
            "window_start": start,
            "issued_for": issued,
            "steps_ahead": pc.cast(steps, pa.uint16()),
            "value": b["value"],
            "lower": b["lower"],
            "upper": b["upper"],
        }
    )


def _as_schema(schema: pa.Schema) -> Callable[[pa.Table], pa.Table]:
    def convert(b: pa.Table) -> pa.Table:
        return b.select(schema.names).cast(schema)

    return convert


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "crossing", s.CROSSINGS, arrow_schema(Crossing), _crossings, "event_time", ("event_id",)
        ),
        Kind(
            "zone_transition",
            s.ZONE_TRANSITIONS,
            arrow_schema(ZoneTransition),
            _transitions,
            "event_time",
            ("event_id",),
        ),
        Kind(
            "zone_sample",
            s.ZONE_SAMPLES,
            arrow_schema(ZoneSample),
            _samples,
            "event_time",
            ("event_id",),
        ),
        Kind(
            "zone_visit",
            s.ZONE_VISITS,
            arrow_schema(ZoneVisit),
            _visits,
            "entered_at",
            ("event_id",),
        ),
        Kind(
            "window_row",
            s.WINDOW_COUNTS,
            arrow_schema(WindowRow),
            _windows,
            "window_start",
            ("event_id",),
        ),
        Kind(
            "dead_letter",
            s.DEAD_LETTERS,
            arrow_schema(DeadLetter),
            _dead_letters,
            "event_time",
            ("event_id",),
        ),
        Kind("gap", s.GAPS, arrow_schema(Gap), _gaps, "gap_from", ("event_id",)),
        Kind("alert", s.ALERTS, arrow_schema(Alert), _alerts, "event_time", ("event_id",)),
        Kind(
            "forecast",
            s.FORECASTS,
            arrow_schema(Forecast),
            _forecasts,
            "window_start",
            ("event_id",),
        ),
        Kind(
            "camera",
            s.CAMERAS,
            CAMERA_SCHEMA,
            _as_schema(CAMERA_SCHEMA),
            None,
            ("camera_id", "version"),
        ),
        Kind(
            "camera_counter",
            s.CAMERA_COUNTERS,
            CAMERA_COUNTER_SCHEMA,
            _as_schema(CAMERA_COUNTER_SCHEMA),
            None,
            ("camera_id", "counter_id", "version"),
        ),
    )
}


def kind_of(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise RowsInvalid(f"unknown kind {name!r}; known: {sorted(KINDS)}") from None


def check_source(kind: Kind, batch: pa.Table) -> None:
    """Refuse a batch whose columns are not the kind's schema (a caller
    bug, reported at the call, never dead-lettered row by row)."""
    missing = [n for n in kind.source_schema.names if n not in batch.column_names]
    if missing:
        raise RowsInvalid(f"{kind.name} batch lacks columns {missing}")


def convert(kind: Kind, batch: pa.Table) -> pa.Table:
    """Source batch -> warehouse rows; `RowsInvalid` names the problem."""
    try:
        return kind.convert(batch)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, KeyError) as exc:
        raise RowsInvalid(f"{kind.name}: {exc}") from None


def batch_digest(kind: Kind, rows: pa.Table) -> str:
    """A deterministic name for a batch: the kind and a hash of its row
    identities in order. The same rows give the same digest in every
    process, which makes spill file names and insert tokens idempotent."""
    h = hashlib.blake2b(digest_size=16)
    h.update(kind.name.encode())
    if kind.identity == ("event_id",):
        ids = np.ascontiguousarray(rows.column("event_id").to_numpy(), dtype=np.uint64)
        h.update(ids.tobytes())
    else:
        for i in kind.ids(rows):
            h.update(i.to_bytes(8, "big"))
    return h.hexdigest()


def camera_tables(
    cameras: Sequence[CameraConfig], version: int, removed: Sequence[str] = ()
) -> dict[str, pa.Table]:
    """Metadata rows for ``write("camera", ...)`` and ``write("camera_counter", ...)``.

    ``version`` should grow with every config change (milliseconds since
    epoch is the convention); the current lines and zones of a camera are
    those written with its current version. Source URLs are stored with
    their password masked.
    """
    cam_rows: list[dict[str, object]] = []
    counter_rows: list[dict[str, object]] = []
    for c in cameras:
        cam_rows.append(
            {
                "camera_id": c.id,
                "version": version,
                "site": c.site,
                "source": mask_url(c.source),
                "fps": float(c.fps or 0.0),
                "coordinates": c.coordinates,
                "start_time": int(c.start_timestamp),
                "classes": list(c.classes),
                "min_confidence": c.min_confidence,
                "tags.key": list(c.tags),
                "tags.value": list(c.tags.values()),
                "removed": 0,
            }
        )
        for line in c.lines:
            counter_rows.append(
                {
                    "camera_id": c.id,
                    "counter_id": line.id,
                    "version": version,
                    "kind": "line",
                    "points_x": [p[0] for p in line.points],
                    "points_y": [p[1] for p in line.points],
                    "anchor": str(line.anchor.value),
                    "band_px": line.band_px,
                    "classes": list(line.classes),
                    "sample_every_s": 0.0,
                }
            )
        for zone in c.zones:
            counter_rows.append(
                {
                    "camera_id": c.id,
                    "counter_id": zone.id,
                    "version": version,
                    "kind": "zone",
                    "points_x": [p[0] for p in zone.polygon],
                    "points_y": [p[1] for p in zone.polygon],
                    "anchor": str(zone.anchor.value),
                    "band_px": zone.band_px,
                    "classes": list(zone.classes),
                    "sample_every_s": zone.sample_every_s,
                }
            )
    for camera_id in removed:
        cam_rows.append(
            {
                "camera_id": camera_id,
                "version": version,
                "site": "",
                "source": "",
                "fps": 0.0,
                "coordinates": "pixel",
                "start_time": 0,
                "classes": [],
                "min_confidence": 0.0,
                "tags.key": [],
                "tags.value": [],
                "removed": 1,
            }
        )
    return {
        "camera": pa.Table.from_pylist(cam_rows, schema=CAMERA_SCHEMA),
        "camera_counter": pa.Table.from_pylist(counter_rows, schema=CAMERA_COUNTER_SCHEMA),
    }
