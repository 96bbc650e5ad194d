"""The REST API's request and response models: the one source of its
OpenAPI document (``camcount.http.rest`` declares each route with them).

Responses allow fields beyond those named (``extra="allow"``): a camera's
status grows with the pipeline, and the document names what a client may
rely on, not everything it may see.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from camcount.config import CameraConfig, Coordinate, LineConfig, SlicingConfig, ZoneConfig

#: Directions a count row may have: lines count in and out, zones enter and
#: exit, groups their net.
Direction = Literal["in", "out", "enter", "exit", "net"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)
CameraState = Literal[
    "connecting", "streaming", "stalled", "finished", "failed", "stopped", "restoring"
]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class CameraPatch(BaseModel):
    """What may change while a camera runs; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lines: tuple[LineConfig, ...] = ()
    zones: tuple[ZoneConfig, ...] = ()
    classes: tuple[str, ...] = ()
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.0
    roi: tuple[Coordinate, ...] | None = None
    coordinates: Literal["pixel", "normalized"] = "pixel"
    site: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    slicing: SlicingConfig | None = None  # from the next frame sent to the detector


class EventBatch(BaseModel):
    """The body of ``POST /events`` (docs/mqtt.md has the event format)."""

    source: str = Field(description="a configured external source's id")
    events: list[dict[str, Any]] = Field(
        description="one or more events: device_id, seq, event_time, counter_id, "
        "class, direction, count"
    )


class EventsTaken(_Answer):
    source: str
    accepted: int = Field(description="events counted now")
    duplicates: int = Field(description="events dropped: their device sequence was seen")
    replayed: bool = Field(description="the answer to an Idempotency-Key seen before")


class ErrorBody(BaseModel):
    """Every 4xx and 5xx of the REST and live HTTP routes."""

    error: str = Field(description="machine-readable code (docs/api.md lists them)")
    message: str
    detail: Any = None


class Health(_Answer):
    status: Literal["ok"]


class Total(_Answer):
    camera_id: str
    counter_id: str
    class_name: str
    direction: str
    count: int


class CameraStatus(_Answer):
    """The camera actor's status: state, fps, frames, drops, lag, totals."""

    camera_id: str
    state: CameraState
    detail: str = ""
    fps: float | None = None
    frames_processed: int = 0
    frames_dropped: int = 0
    lag_s: float | None = None
    idle_s: float | None = None
    last_frame_time: float | None = None
    totals: list[Total] = Field(default_factory=list)


class Camera(_Answer):
    config: CameraConfig
    status: CameraStatus


class CameraList(_Answer):
    cameras: list[Camera]


class Removed(_Answer):
    camera_id: str
    removed: Literal[True]
    status: dict[str, Any] = Field(description="the camera's final status")


class Status(_Answer):
    cameras: list[CameraStatus]
    shards: int | None = None
    window_sizes_s: list[int] = Field(default_factory=list)
    preview_fps: float | None = None


class CountRow(_Answer):
    camera_id: str
    counter_id: str
    class_name: str
    direction: Direction
    window_size_s: int
    window_start: float = Field(description="epoch seconds (UTC)")
    window_end: float
    count: Annotated[int, Field(ge=0)]


class Counts(_Answer):
    camera_id: str
    window_size_s: int
    start: float
    end: float
    source: Literal["warehouse", "aggregator"]
    truncated: bool
    rows: list[CountRow]


class Update(_Answer):
    type: Literal["update"]
    seq: Annotated[int, Field(ge=1)]
    kind: str
    camera_id: str
    created: float | None = Field(
        default=None,
        description="epoch seconds when the camera made the events this update comes from "
        "(null for updates no camera push made); a replay after recovery may carry a new one",
    )
    published: float | None = Field(
        default=None, description="epoch seconds when the update was handed to the live hub"
    )
    data: dict[str, Any]


class Poll(_Answer):
    updates: list[Update]
    last_seq: int = Field(description="pass as `after` next time")
    gap: bool = Field(description="some updates after `after` are gone")
