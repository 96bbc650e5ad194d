"""The configuration schema: one YAML file drives every command.

Validation happens once, where the file is read; an error names the field
path and the file line it came from. Every number must be finite (NaN and
infinities compare false with everything, so a line or threshold holding one
would silently count nothing), and the REST API validates cameras with these
same models.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from camcount.alerts.rules import AlertsConfig
from camcount.detectors import check_model_name
from camcount.detectors.slicing import MAX_REGIONS, SliceSettings
from camcount.errors import ConfigError, DetectorError, GeometryError
from camcount.forecast.book import ForecastSettings
from camcount.geometry import Anchor, Polygon
from camcount.outputs.settings import OutputConfig
from camcount.vision.gating import GateSettings
from camcount.vision.interval import IntervalSettings
from camcount.vision.motion import MotionSettings
from camcount.vision.tracking import TrackerSettings

Coordinate = tuple[float, float]
#: One rule for every id (cameras, lines, zones, groups): ids travel in URL
#: paths, warehouse keys and live topics, and one any of them refuses could
#: be created but never read, changed or removed.
IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.-]+$"
MAX_ID_CHARS = 128
Identifier = Annotated[
    str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)
]
_TRACKER = TrackerSettings()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def simple_polygon(points: tuple[Coordinate, ...]) -> tuple[Coordinate, ...]:
    """A zone or region whose border does not cross itself and that encloses
    some area; the error names the point where the border crosses."""
    if len(points) >= 3:
        try:
            Polygon(points)
        except GeometryError as exc:
            raise ValueError(str(exc)) from None
    return points


def distinct_ends(points: tuple[Coordinate, Coordinate]) -> tuple[Coordinate, Coordinate]:
    """A line whose two points differ: one of a single point has no sides."""
    if points[0] == points[1]:
        raise ValueError(f"the two points of a line must differ, got {points[0]} twice")
    return points


class LineConfig(_Model):
    """A counting segment; walking from the first to the second point,
    crossing from left to right is ``in``."""

    id: Identifier
    points: tuple[Coordinate, Coordinate]
    anchor: Anchor = Anchor.BOTTOM_CENTER
    band_px: Annotated[float, Field(ge=0)] = 8.0
    classes: tuple[str, ...] = ()

    @field_validator("points")
    @classmethod
    def _not_degenerate(cls, v: tuple[Coordinate, Coordinate]) -> tuple[Coordinate, Coordinate]:
        return distinct_ends(v)


class ZoneConfig(_Model):
    """A polygon, its points in order around its border (a border that
    crosses itself is refused)."""

    id: Identifier
    polygon: Annotated[tuple[Coordinate, ...], Field(min_length=3)]
    anchor: Anchor = Anchor.BOTTOM_CENTER
    band_px: Annotated[float, Field(ge=0)] = 8.0
    classes: tuple[str, ...] = ()
    sample_every_s: Annotated[float, Field(ge=0)] = 1.0

    @field_validator("polygon")
    @classmethod
    def _simple(cls, v: tuple[Coordinate, ...]) -> tuple[Coordinate, ...]:
        return simple_polygon(v)


class TrackerConfig(_Model):
    """Tracker settings; defaults are the tracker's own (see ``TrackerSettings``)."""

    high_threshold: Annotated[float, Field(ge=0, le=1)] = _TRACKER.high_threshold
    low_threshold: Annotated[float, Field(ge=0, le=1)] = _TRACKER.low_threshold
    new_track_threshold: Annotated[float, Field(ge=0, le=1)] = _TRACKER.new_track_threshold
    match_iou: Annotated[float, Field(gt=0, le=1)] = _TRACKER.match_iou
    low_match_iou: Annotated[float, Field(gt=0, le=1)] = _TRACKER.low_match_iou
    tentative_match_iou: Annotated[float, Field(gt=0, le=1)] = _TRACKER.tentative_match_iou
    min_hits: Annotated[int, Field(ge=1)] = _TRACKER.min_hits
    lost_track_buffer_s: Annotated[float, Field(ge=0)] = _TRACKER.lost_track_buffer_s
    match_box_buffer: Annotated[float, Field(ge=0)] = _TRACKER.match_box_buffer
    lost_box_growth_per_frame: Annotated[float, Field(ge=0)] = _TRACKER.lost_box_growth_per_frame
    lost_box_growth_max: Annotated[float, Field(ge=0)] = _TRACKER.lost_box_growth_max
    tentative_max_misses: Annotated[int, Field(ge=0)] = Field(
        default=_TRACKER.tentative_max_misses,
        description="frames a track not yet confirmed may go undetected before it is dropped",
    )
    weak_min_hits: Annotated[int, Field(ge=1)] = Field(
        default=_TRACKER.weak_min_hits,
        description="sightings that confirm a track started below new_track_threshold or fed "
        "by low-confidence detections (never fewer than min_hits)",
    )
    match_distance: Annotated[float, Field(ge=0)] = Field(
        default=_TRACKER.match_distance,
        description="where overlap fails, a track takes a detection whose centre lies within "
        "this share of the track's own motion since last seen (at most one box diagonal per "
        "frame) of its predicted centre; 0 turns matching by distance off",
    )
    birth_distance: Annotated[float, Field(ge=0)] = Field(
        default=_TRACKER.birth_distance,
        description="box diagonals per frame a track seen once (at new_track_threshold or more) "
        "may move to its second sighting, so fast objects start tracks; 0 turns it off",
    )
    max_size_ratio: Annotated[float, Field(ge=1)] = Field(
        default=_TRACKER.max_size_ratio,
        description="a match by distance needs box diagonals within this ratio of each other",
    )
    faint_min_travel: Annotated[float, Field(ge=0)] = Field(
        default=_TRACKER.faint_min_travel,
        description="box heights a track started by low-confidence detections must travel "
        "from its first sighting before it confirms (clutter stays put)",
    )
    faint_min_speed: Annotated[float, Field(ge=0)] = Field(
        default=_TRACKER.faint_min_speed,
        description="box heights per second such a track must average since its first "
        "sighting before it confirms",
    )
    faint_max_gap_s: Annotated[float, Field(ge=0)] = Field(
        default=_TRACKER.faint_max_gap_s,
        description="seconds such a track, not yet confirmed, may go undetected before it "
        "is dropped (never fewer than tentative_max_misses frames)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> TrackerConfig:
        if self.low_threshold > self.high_threshold:
            raise ValueError(
                f"low_threshold {self.low_threshold} is above high_threshold {self.high_threshold}"
            )
        return self


_SLICE = SliceSettings(grid=(2, 2))
_Pair = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]


class SlicingConfig(_Model):
    """Detect in overlapping tiles of the frame too, for small, distant
    objects (camcount.detectors.slicing). Each tile is one more model input per frame."""

    tile_px: _Pair | None = Field(
        default=None,
        description="tile width and height in frame pixels, whatever the camera's "
        "coordinates (or give grid)",
    )
    grid: _Pair | None = Field(
        default=None,
        description=f"tile columns and rows, sized to cover the frame with the overlap "
        f"(default 2 x 2 when tile_px is not given); at most {MAX_REGIONS} regions a frame",
    )
    overlap: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=_SLICE.overlap, description="share of a tile its neighbour covers too"
    )
    whole_frame: bool = Field(
        default=_SLICE.whole_frame,
        description="detect in the whole frame as well, for objects larger than a tile",
    )
    merge: Literal["nmm", "nms"] = Field(
        default=_SLICE.merge,
        description="nmm: matching boxes fold into the most confident one, grown to cover "
        "them (a person cut by a tile border is one box); nms: they are dropped",
    )
    match_metric: Literal["ios", "iou"] = Field(
        default=_SLICE.match_metric,
        description="how boxes of one class match: intersection over the smaller box (a "
        "piece cut by a border matches its whole) or over their union",
    )
    match_threshold: Annotated[float, Field(gt=0, le=1)] = _SLICE.match_threshold

    @model_validator(mode="after")
    def _one_tiling(self) -> SlicingConfig:
        if self.tile_px is not None and self.grid is not None:
            raise ValueError("give tile_px or grid, not both")
        if self.grid is not None and self.grid[0] * self.grid[1] + self.whole_frame > MAX_REGIONS:
            raise ValueError(
                f"a {self.grid[0]} x {self.grid[1]} grid is more than {MAX_REGIONS} regions a frame"
            )
        if self.tile_px is not None:
            step = min(self.tile_px) * (1 - self.overlap)
            if step < 1:
                raise ValueError(
                    f"tiles of {list(self.tile_px)} px overlapping by {self.overlap} "
                    f"would step by {step:.2f} px; use larger tiles or less overlap"
                )
        return self

    def settings(self) -> SliceSettings:
        grid = self.grid if self.grid is not None or self.tile_px is not None else _SLICE.grid
        return SliceSettings(
            tile_px=self.tile_px,
            grid=grid,
            overlap=self.overlap,
            whole_frame=self.whole_frame,
            merge=self.merge,
            match_metric=self.match_metric,
            match_threshold=self.match_threshold,
        )


def _as_utc(t: datetime) -> datetime:
    """A start time without a zone is UTC."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


#: A longer interval saves little more (the detector runs near lines anyway)
#: and lets a track's course drift far from its model.
MAX_INTERVAL_FRAMES = 30

EARLIEST_START = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_START = datetime(2106, 2, 6, tzinfo=UTC)  # a day before DateTime's end


class MotionConfig(_Model):
    """The motion gate: the detector skips frames where nothing moves and
    nothing is tracked (docs/detectors.md, "Motion gating")."""

    enabled: bool = False
    keyframe_s: Annotated[float, Field(gt=0)] = Field(
        default=2.0, description="the detector runs at least this often, motion or not"
    )
    threshold: Annotated[int, Field(ge=1, le=254)] = Field(
        default=15, description="grey levels a pixel must change by, after shrinking and blur"
    )
    min_area: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.0004, description="smallest moving blob, as a fraction of the frame"
    )
    masks: tuple[tuple[Coordinate, ...], ...] = Field(
        default=(),
        description="polygons in normalized (0-1) coordinates where change is ignored "
        "(a timestamp overlay, a screen, trees)",
    )

    @field_validator("masks")
    @classmethod
    def _masks_in_frame(
        cls, masks: tuple[tuple[Coordinate, ...], ...]
    ) -> tuple[tuple[Coordinate, ...], ...]:
        for polygon in masks:
            if len(polygon) < 3:
                raise ValueError("a mask needs at least 3 points")
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in polygon):
                raise ValueError("mask points are normalized: 0 to 1")
            simple_polygon(polygon)
        return masks

    def settings(self) -> GateSettings:
        return GateSettings(
            enabled=self.enabled,
            keyframe_s=self.keyframe_s,
            motion=MotionSettings(
                threshold=self.threshold, min_area=self.min_area, masks=self.masks
            ),
        )


class IntervalConfig(_Model):
    """The detector interval: between detector calls, tracks are carried by
    their motion model, except near lines and zone borders and wherever a
    track is new or lost or something new moves (docs/detectors.md,
    "Detector interval")."""

    max_interval: Annotated[int, Field(ge=1, le=MAX_INTERVAL_FRAMES)] = Field(
        default=1,
        description="the most frames from one detector call to the next; 1 (the default) "
        "detects every frame",
    )
    margin_px: Annotated[float, Field(ge=0)] = Field(
        default=16.0,
        description="pixels beyond a line's or a zone's band within which a track's reach "
        "sends the frame to the detector",
    )

    def settings(self) -> IntervalSettings:
        return IntervalSettings(max_interval=self.max_interval, margin_px=self.margin_px)


#: A resource name as Ray takes it in ``ray start --resources`` and actor options.
ResourceName = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
ResourceAmount = Annotated[float, Field(gt=0)]


class CameraPlacement(_Model):
    """Which nodes may run a camera's process.

    A camera reads its stream over the network of the site it films; on a
    cluster that spans sites, it belongs on a node of that network. Nodes
    say where they are with custom resources (``ray start --resources
    '{"site-north": 1000}'``) or labels (``ray start --labels
    'site=north'``); a camera names them here. Of the nodes that qualify,
    it goes to the least loaded (docs/capacity.md, Placement).
    """

    resources: dict[ResourceName, ResourceAmount] = Field(
        default_factory=dict,
        description="custom resources the camera's process takes from its node, e.g. "
        '{"site-north": 0.001}: only nodes that have them run it',
    )
    labels: dict[ResourceName, str] = Field(
        default_factory=dict,
        description="node labels (ray start --labels) a node must carry to run the camera",
    )

    @property
    def constrained(self) -> bool:
        return bool(self.resources or self.labels)


class CameraConfig(_Model):
    id: Identifier
    source: Annotated[
        str, Field(min_length=1, description="file path, rtsp://, http(s):// or webcam index")
    ]
    fps: Annotated[
        float | None, Field(gt=0, description="sampling rate; None keeps every frame")
    ] = None
    start_time: datetime = Field(
        default=datetime(2026, 1, 1, tzinfo=UTC),
        description="event time of a file's first frame (live sources use the capture clock)",
    )
    coordinates: Literal["pixel", "normalized"] = "pixel"
    lines: tuple[LineConfig, ...] = ()
    zones: tuple[ZoneConfig, ...] = ()
    classes: tuple[str, ...] = ()
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.0
    roi: tuple[Coordinate, ...] | None = None
    site: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    loop: bool = Field(default=False, description="play a file source over and over")
    realtime: bool = Field(
        default=False, description="play a file at its own speed, as a live camera would"
    )
    tracker: TrackerConfig | None = Field(
        default=None, description="this camera's tracker settings, instead of the global ones"
    )
    slicing: SlicingConfig | None = Field(
        default=None,
        description="detect in overlapping tiles as well as the whole frame, for small, "
        "distant objects; off (null) by default, each tile costs one more model input",
    )
    motion: MotionConfig = Field(
        default_factory=MotionConfig,
        description="skip the detector on frames where nothing moves and nothing is tracked",
    )
    interval: IntervalConfig = Field(
        default_factory=IntervalConfig,
        description="carry tracks by their motion model between detector calls, up to "
        "max_interval frames apart",
    )
    decode_threads: Annotated[int, Field(ge=0, le=64)] = Field(
        default=1,
        description="FFmpeg decoding threads (0: one per core); one keeps a node with many "
        "cameras from running cores x cameras decoder threads",
    )
    placement: CameraPlacement = Field(
        default_factory=CameraPlacement,
        description="the nodes that may run this camera (a site's network); any node if empty",
    )

    @model_validator(mode="after")
    def _unique_counter_ids(self) -> CameraConfig:
        ids = [c.id for c in self.lines] + [z.id for z in self.zones]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"line and zone ids must be unique within a camera: {dupes}")
        if self.roi is not None and len(self.roi) < 3:
            raise ValueError("roi needs at least 3 points")
        return self

    @field_validator("roi")
    @classmethod
    def _simple_roi(cls, v: tuple[Coordinate, ...] | None) -> tuple[Coordinate, ...] | None:
        return None if v is None else simple_polygon(v)

    @field_validator("start_time")
    @classmethod
    def _storable_start(cls, value: datetime) -> datetime:
        """Event times are stored as ClickHouse DateTime: whole seconds since
        1970 as an unsigned 32-bit number, so a file must start in that range
        (with a day to spare at the end for the video itself)."""
        if not EARLIEST_START <= _as_utc(value) < LATEST_START:
            raise ValueError(
                f"must be between {EARLIEST_START:%Y-%m-%d} and {LATEST_START:%Y-%m-%d} "
                "(the warehouse stores event times as seconds since 1970 in 32 bits)"
            )
        return value

    @property
    def start_timestamp(self) -> float:
        return _as_utc(self.start_time).timestamp()


class AutoscalingConfig(_Model):
    """How the detector's replica count follows its load (Ray Serve
    autoscaling). Serve adds replicas while the requests in flight per
    replica stay above ``target_ongoing_requests`` for ``upscale_delay_s``
    and removes them while they stay below it for ``downscale_delay_s``;
    docs/capacity.md says how to choose the numbers."""

    min_replicas: Annotated[int, Field(ge=1)] = 1
    max_replicas: Annotated[int, Field(ge=1)] = 4
    initial_replicas: Annotated[int, Field(ge=1)] | None = None
    target_ongoing_requests: Annotated[float, Field(gt=0)] = Field(
        default=4.0,
        description="requests in flight per replica that Serve keeps replicas at; a camera "
        "request carries 4 frames or more, so 4 is about two model batches of 8 queued",
    )
    upscale_delay_s: Annotated[float, Field(ge=0)] = 10.0
    downscale_delay_s: Annotated[float, Field(ge=0)] = 120.0
    metrics_interval_s: Annotated[float, Field(gt=0)] = 2.0
    look_back_period_s: Annotated[float, Field(gt=0)] = 10.0

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) is above max_replicas ({self.max_replicas})"
            )
        start = self.initial_replicas
        if start is not None and not self.min_replicas <= start <= self.max_replicas:
            raise ValueError(
                f"initial_replicas ({start}) must lie between min_replicas "
                f"({self.min_replicas}) and max_replicas ({self.max_replicas})"
            )
        return self

    def serve_options(self) -> dict[str, Any]:
        """The ``autoscaling_config`` Serve takes."""
        return self.model_dump(exclude_none=True)


class DetectorConfig(_Model):
    model: str = Field(
        default="ssdlite-person",
        description="ssdlite-person, torchvision:<name>, torchscript:<path>, onnx:<path>, "
        "oracle or noisy",
    )
    weights: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.3
    classes: tuple[str, ...] = ()
    max_batch_size: Annotated[int, Field(ge=1)] = 8
    batch_wait_timeout_s: Annotated[float, Field(ge=0)] = 0.01
    num_replicas: Annotated[int, Field(ge=1)] = 1
    num_gpus: Annotated[float, Field(ge=0)] = 0.0
    max_ongoing_requests: Annotated[int, Field(ge=1)] = 32
    max_queued_requests: Annotated[int, Field(ge=-1)] = 64
    reserve_cores: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        default="auto",
        description="cores of its node each replica pins its model to; cameras and "
        "aggregators on that node keep off them (Linux). auto: 1 for a model on CPU "
        "(num_gpus 0), none on a GPU or for the synthetic detectors; 0: no pinning",
    )
    autoscaling: AutoscalingConfig | None = Field(
        default=None,
        description="replicas follow the load between min_replicas and max_replicas "
        "(num_replicas is then unused); null: a fixed num_replicas",
    )
    resources: dict[ResourceName, ResourceAmount] = Field(
        default_factory=dict,
        description='custom resources each replica takes from its node, e.g. {"detector": 1}: '
        "only the nodes that declare them (the GPU nodes) run replicas",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="backend specific settings")

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        try:
            check_model_name(model)
        except DetectorError as exc:
            raise ValueError(str(exc)) from None
        return model

    def reserved_cores(self) -> int:
        """How many cores a replica reserves: ``auto`` protects a real model
        on CPU, where the model is what every camera waits for; a GPU replica
        and the synthetic detectors need no core to themselves."""
        if self.reserve_cores != "auto":
            return self.reserve_cores
        synthetic = self.model in ("oracle", "noisy")
        return 0 if synthetic or self.num_gpus > 0 or self.device == "cuda" else 1


class WindowsConfig(_Model):
    sizes_s: Annotated[tuple[Annotated[int, Field(gt=0)], ...], Field(min_length=1)] = (
        10,
        60,
        900,
        3600,
    )
    allowed_lateness_s: Annotated[float, Field(ge=0)] = 5.0
    idle_timeout_s: Annotated[float, Field(gt=0)] = 30.0


class StorageConfig(_Model):
    root: str = Field(
        default="file://./var/store", description="pyarrow.fs URI for checkpoints and dead letters"
    )
    checkpoint_interval_s: Annotated[float, Field(gt=0)] = 5.0
    keep_checkpoints: Annotated[int, Field(ge=1)] = 3
    spare_camera: bool = Field(
        default=True,
        description="keep one started, idle camera process that takes over a camera that "
        "dies (under a second instead of the seconds a new process needs; about 100 MB)",
    )


#: Cameras one camera process holds unless the config says otherwise
#: (bench/RESULTS.md, "Cameras per process", has the measurements behind it).
DEFAULT_CAMERAS_PER_PROCESS = 8


class PipelineConfig(_Model):
    """How the running pipeline lays its parts out in processes."""

    cameras_per_process: Annotated[int, Field(ge=1, le=256)] = Field(
        default=DEFAULT_CAMERAS_PER_PROCESS,
        description="cameras sharing one camera process, each in its own task with its own "
        "decoder thread, state and checkpoints: a process costs ~190 MB before its first "
        "camera, so more per process is less memory; a process lost takes all of its cameras "
        "back to the last checkpoint together. 1: a process per camera",
    )


class WarehouseConfig(_Model):
    """Where rows land (docs/warehouse.md) and how the sink batches them."""

    enabled: bool = Field(
        default=True,
        description="false: no sink; counts reach the live API and /counts from memory only",
    )
    url: str = Field(
        default="chdb://./var/chdb", description="chdb:///path or clickhouse://user@host:port/db"
    )
    password_env: str | None = None
    password_file: str | None = None
    batch_rows: Annotated[int, Field(ge=1)] = 10_000
    flush_interval_s: Annotated[float, Field(gt=0)] = 2.0
    buffer_max_rows: Annotated[int, Field(ge=1)] = Field(
        default=100_000,
        description="rows held in memory while the warehouse is down, before spilling to storage",
    )
    inserts_in_flight: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="concurrent inserts (default: 2 to a server, 1 to chDB)"
    )
    raw_ttl_days: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="drop raw events (crossings, zone rows) after this many days, where the "
        "server supports TTL; window counts are kept",
    )
    sink_id: str = Field(
        default="sink-0", description="names the sink's spill folder and its metrics"
    )
    cluster: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")] | None = Field(
        default=None,
        description="a ClickHouse cluster (remote_servers) to create the tables on: replicated "
        "tables on every node and a Distributed table over them that reads and writes use; "
        "needs a clickhouse:// URL",
    )
    zookeeper_path: str = Field(
        default="/clickhouse/tables/{shard}/{database}/{table}",
        pattern=r"^/.*\{table\}",
        description="with cluster: ZooKeeper path of each replicated table; {shard} is the "
        "server's macro (and {replica} names each replica), {database} and {table} are "
        "filled in by camcount",
    )

    @model_validator(mode="after")
    def _cluster_needs_a_server(self) -> WarehouseConfig:
        if self.cluster is not None and not self.url.lower().startswith("clickhouse://"):
            raise ValueError(
                f"cluster {self.cluster!r} needs a clickhouse:// server URL, got {self.url!r}"
            )
        return self


TokenScope = Literal["read", "admin"]


class TokenConfig(_Model):
    """A bearer token and what it may do: ``read`` (REST reads and every
    live stream) or ``admin`` (reads and every change)."""

    token: Annotated[str, Field(min_length=1)]
    scope: TokenScope = "admin"


class SourcesConfig(_Model):
    """Which camera sources the API may add (docs/api.md, source allow-list).

    A source is opened by the server, with the server's network and files:
    without a rule, any token could read a local file or reach any address
    the server can. Cameras of the config file itself are the operator's
    and are not checked."""

    schemes: tuple[str, ...] = Field(
        default=("rtsp", "rtsps", "http", "https"),
        description="URL schemes a camera added through the API may use (file: never; "
        "local files are allowed by folders)",
    )
    hosts: tuple[str, ...] = Field(
        default=(),
        description="host names (a leading '*.' matches any subdomain) and networks (CIDR, "
        "or one address) a URL may name; empty: any host except loopback, link-local and "
        "unspecified addresses (the server itself, cloud metadata services)",
    )
    folders: tuple[str, ...] = Field(
        default=(),
        description="absolute local folders whose files (below them, links resolved) may be "
        "sources; empty: no local file",
    )
    webcams: bool = Field(
        default=False, description="whether a device index (0, 1...) may be a source"
    )

    @field_validator("schemes")
    @classmethod
    def _no_file_scheme(cls, schemes: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(s.lower() for s in schemes)
        if "file" in lowered:
            raise ValueError("file: is not a stream scheme; allow local files with folders")
        return lowered

    @field_validator("hosts")
    @classmethod
    def _hosts_parse(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        for host in hosts:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError:
                if "/" in host or not host.strip() or any(c in host for c in " :@?#[]"):
                    raise ValueError(
                        f"{host!r} is not a host name, address or network (CIDR such as 10.0.0.0/8)"
                    ) from None
        return tuple(h.lower() for h in hosts)

    @field_validator("folders")
    @classmethod
    def _absolute_folders(cls, folders: tuple[str, ...]) -> tuple[str, ...]:
        relative = [f for f in folders if not Path(f).is_absolute()]
        if relative:
            raise ValueError(f"folders must be absolute paths: {relative}")
        return folders


class ApiConfig(_Model):
    """The Serve endpoint (docs/api.md). With no token configured, every
    route but health answers 401: the API is never open by accident."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    tokens: tuple[str | TokenConfig, ...] = Field(
        default=(),
        description="bearer tokens: a plain string is an admin token, {token, scope} names "
        "its scope (read or admin)",
    )
    tokens_env: str | None = Field(
        default="CAMCOUNT_API_TOKENS",
        description="variable holding more admin tokens, comma separated",
    )
    read_tokens_env: str | None = Field(
        default="CAMCOUNT_API_READ_TOKENS",
        description="variable holding more read tokens, comma separated",
    )
    sources: SourcesConfig = Field(
        default_factory=SourcesConfig,
        description="the sources a camera added through the API may have",
    )
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_s: Annotated[float, Field(gt=0)] = Field(
        default=50.0, description="requests and client messages per token and replica"
    )
    rate_limit_burst: Annotated[int, Field(ge=1)] = 200
    replicas: Annotated[int, Field(ge=1)] = 1
    live_replicas: Annotated[int, Field(ge=1)] = 1
    live_max_connections: Annotated[int, Field(ge=1)] = Field(
        default=2000, description="open WebSocket/SSE/poll requests per live replica"
    )
    live_direct: bool = Field(
        default=True,
        description="live replicas also serve WebSocket and SSE on a port of their own "
        "(GET /live/endpoints names them), off Serve's per-write relay",
    )
    live_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=0, description="first port a live replica tries for its own streams (0: any free)"
    )
    live_port_range: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=100, description="consecutive ports from live_port a replica may take"
    )
    heartbeat_s: Annotated[float, Field(gt=0)] = 15.0
    live_batch_s: Annotated[float, Field(ge=0, le=5)] = Field(
        default=0.1,
        description="fan-out rounds at least this far apart: updates meanwhile go out together",
    )
    client_buffer: Annotated[int, Field(ge=1)] = Field(
        default=2000, description="updates queued for one client before it is dropped as slow"
    )
    ack_window: Annotated[int, Field(ge=1)] = Field(
        default=1000, description="updates sent to a WebSocket client ahead of its last ack"
    )
    sse_max_events: Annotated[int, Field(ge=1)] = Field(
        default=10_000, description="updates per SSE response; the browser then resumes"
    )
    preview_fps: Annotated[float, Field(gt=0, le=10)] = 2.0


class ServeConfig(_Model):
    """Who owns the Serve applications (cluster/README.md, "One rule")."""

    apps: Literal["auto", "owned", "declared"] = Field(
        default="auto",
        description="owned: `camcount run` creates the detector, REST and live apps and "
        "deletes them on stop; declared: a Serve config or RayService deployed them and "
        "`camcount run` only uses them (an error if one is missing or misconfigured); "
        "auto: declared when Serve already runs a camcount app deployed from a config, "
        "else owned",
    )


class MetricsConfig(_Model):
    """How Prometheus finds the clusters `camcount run` starts or joins."""

    export_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=0,
        description="port a local cluster exports its metrics on (0: one Ray picks); "
        "clusters you start yourself take `ray start --metrics-export-port`",
    )
    targets_file: str | None = Field(
        default="var/prometheus/targets.json",
        description="file_sd target file `camcount run` writes and keeps current: every "
        "live node's metrics address (null: none written)",
    )


class GroupMember(_Model):
    camera: str
    counter: str


MIN_FORECAST_WINDOW_S = 300


class ForecastConfig(_Model):
    """Forecasts of every key's counts at these window sizes (each one of
    ``windows.sizes_s``; left out: those of ``MIN_FORECAST_WINDOW_S`` up to
    the horizon that divide a day), the next ``horizon_s``: docs/alerts.md."""

    enabled: bool = True
    window_sizes_s: tuple[Annotated[int, Field(gt=0)], ...] | None = None
    horizon_s: Annotated[int, Field(gt=0)] = 3600
    profile_smoothing: Annotated[float, Field(gt=0, le=1)] = 0.35
    level_smoothing: Annotated[float, Field(gt=0, le=1)] = 0.02
    band_width: Annotated[float, Field(gt=0)] = 2.5

    @model_validator(mode="after")
    def _whole_days(self) -> ForecastConfig:
        for size in self.window_sizes_s or ():
            if 86_400 % size:
                raise ValueError(f"a forecast window must divide a day, got {size} s")
            if size > self.horizon_s:
                raise ValueError(f"horizon_s {self.horizon_s} is shorter than a {size} s window")
        return self

    def sizes(self, counted: tuple[int, ...]) -> tuple[int, ...]:
        """The window sizes forecast, given those counted (empty: none)."""
        if not self.enabled:
            return ()
        if self.window_sizes_s is not None:
            return self.window_sizes_s
        # Shorter windows hold too few counts to show a daily shape, and a
        # week of them is a large profile per key.
        return tuple(
            s for s in counted if MIN_FORECAST_WINDOW_S <= s <= self.horizon_s and 86_400 % s == 0
        )

    def settings(self, counted: tuple[int, ...]) -> ForecastSettings:
        return ForecastSettings(
            window_sizes_s=self.sizes(counted),
            horizon_s=self.horizon_s,
            profile_smoothing=self.profile_smoothing,
            level_smoothing=self.level_smoothing,
            band_width=self.band_width,
        )


class GroupConfig(_Model):
    """Counters of several cameras counted together (a site's entrances):
    window rows under ``group:<id>`` with in, out and net (in minus out).
    External sources join a group from their own section (``joins``), so
    a group may have no camera member at all."""

    id: Identifier
    members: tuple[GroupMember, ...] = ()


class MqttSubscriptionConfig(_Model):
    """Where an external source's devices publish (docs/mqtt.md)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    topics: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(min_length=1)]
    qos: Literal[0, 1, 2] = 1
    client_id: str = Field(
        default="", description="a persistent session's id; default camcount-<source id>"
    )
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="the environment variable holding the password"
    )
    keepalive_s: Annotated[int, Field(ge=5)] = 30
    reconnect_max_delay_s: Annotated[float, Field(gt=0)] = 5.0


class GroupJoin(_Model):
    """One counter of an external source counted in a group."""

    group: Identifier
    counter: Identifier


class ExternalSourceConfig(_Model):
    """IoT counters (or any other system) that count by themselves and send
    their events over MQTT or ``POST /events``; counted beside the cameras
    under the source's id, as if it were one (docs/mqtt.md)."""

    id: Identifier
    site: str = ""
    counters: Annotated[tuple[Identifier, ...], Field(min_length=1)] = Field(
        description="the counter ids its devices report; any other is refused"
    )
    mqtt: MqttSubscriptionConfig | None = None
    api: bool = Field(default=True, description="accept its events on POST /events")
    joins: tuple[GroupJoin, ...] = ()

    @model_validator(mode="after")
    def _joins_name_counters(self) -> ExternalSourceConfig:
        bad = [j.counter for j in self.joins if j.counter not in self.counters]
        if bad:
            raise ValueError(
                f"joins name counters {bad} that source {self.id!r} does not have "
                f"(counters: {list(self.counters)})"
            )
        return self


class ExternalConfig(_Model):
    sources: tuple[ExternalSourceConfig, ...] = ()

    def source(self, source_id: str) -> ExternalSourceConfig:
        for s in self.sources:
            if s.id == source_id:
                return s
        raise KeyError(source_id)


class PlacementConfig(_Model):
    """How the controller spreads its parts over the cluster's nodes
    (docs/capacity.md, Placement)."""

    cameras: Literal["least_loaded", "ray"] = Field(
        default="least_loaded",
        description="least_loaded: each camera (a new one, or one restored after a loss) is "
        "pinned to the alive node with the fewest cameras per CPU among those its placement "
        "allows; ray: Ray's own scheduler decides",
    )
    shards: Literal["spread", "ray"] = Field(
        default="spread",
        description="spread: aggregator shards go to different nodes where Ray can (SPREAD); "
        "ray: Ray's own scheduler decides",
    )


class AppConfig(_Model):
    """The whole file."""

    cameras: tuple[CameraConfig, ...] = ()
    groups: tuple[GroupConfig, ...] = ()
    detector: DetectorConfig = DetectorConfig()
    tracker: TrackerConfig = TrackerConfig()
    windows: WindowsConfig = WindowsConfig()
    storage: StorageConfig = StorageConfig()
    pipeline: PipelineConfig = PipelineConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    outputs: tuple[OutputConfig, ...] = Field(
        default=(),
        description="more outputs beside the warehouse and the live hub (docs/outputs.md)",
    )
    api: ApiConfig = ApiConfig()
    serve: ServeConfig = ServeConfig()
    metrics: MetricsConfig = MetricsConfig()
    placement: PlacementConfig = PlacementConfig()
    alerts: AlertsConfig = AlertsConfig()
    forecast: ForecastConfig = ForecastConfig()
    external: ExternalConfig = ExternalConfig()

    @field_validator("outputs")
    @classmethod
    def _unique_outputs(cls, outputs: tuple[OutputConfig, ...]) -> tuple[OutputConfig, ...]:
        labels = [o.label for o in outputs]
        dupes = sorted({n for n in labels if labels.count(n) > 1})
        if dupes:
            raise ValueError(f"output names must be unique (give each a name): {dupes}")
        return outputs

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: tuple[CameraConfig, ...]) -> tuple[CameraConfig, ...]:
        ids = [c.id for c in cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"camera ids must be unique: {dupes}")
        return cameras

    @model_validator(mode="after")
    def _groups_name_what_exists(self) -> AppConfig:
        """A group member naming a camera, line or zone the config does not
        have would add nothing to the group's rows, silently."""
        counters = {
            c.id: [*(ln.id for ln in c.lines), *(z.id for z in c.zones)] for c in self.cameras
        }
        problems = []
        for group in self.groups:
            for m in group.members:
                if m.camera not in counters:
                    problems.append(
                        f"group {group.id!r} names camera {m.camera!r}, which the config "
                        f"does not have{_did_you_mean(m.camera, counters)}"
                    )
                elif m.counter not in counters[m.camera]:
                    problems.append(
                        f"group {group.id!r} names counter {m.counter!r} of camera "
                        f"{m.camera!r}, which has no such line or zone"
                        f"{_did_you_mean(m.counter, counters[m.camera])}"
                    )
        problems.extend(self._external_problems())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _windows_exist(self) -> AppConfig:
        """A forecast or rule on a window size nobody counts, or a group the
        config does not have, would wait for rows that never come."""
        sizes = set(self.windows.sizes_s)
        forecast = self.forecast.sizes(self.windows.sizes_s)
        problems = [
            f"forecast.window_sizes_s has {size} s, not one of windows.sizes_s {sorted(sizes)}"
            for size in forecast
            if size not in sizes
        ]
        problems.extend(self.rule_problems(self.alerts))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def rule_problems(self, alerts: AlertsConfig) -> list[str]:
        """Why alert rules cannot run on this config's windows, groups and
        forecasts: the file's rules and those set through the API are held
        to the same."""
        sizes = set(self.windows.sizes_s)
        forecast = self.forecast.sizes(self.windows.sizes_s)
        problems = []
        groups = {g.id for g in self.groups}
        for rule in alerts.rules:
            size = getattr(rule, "window_s", None)
            counted = rule.kind != "occupancy" or getattr(rule, "group", None) is not None
            if size is not None and counted and size not in sizes:
                problems.append(
                    f"alert rule {rule.id!r}: window_s {size} is not one of windows.sizes_s "
                    f"{sorted(sizes)}"
                )
            group = getattr(rule, "group", None)
            if group is not None and group not in groups:
                problems.append(
                    f"alert rule {rule.id!r} names group {group!r}, which the config does not "
                    f"have{_did_you_mean(group, groups)}"
                )
            if rule.kind == "forecast" and size not in forecast:
                problems.append(
                    f"alert rule {rule.id!r}: no forecast at window_s {size} "
                    f"(forecasts at {list(forecast)} s)"
                )
        return problems

    def _external_problems(self) -> list[str]:
        """An external source counts under its id as a camera does, so the
        two share one namespace; a join to a group that does not exist
        would count nowhere, and a group with no input counts nothing."""
        problems = []
        cameras = {c.id for c in self.cameras}
        groups = {g.id for g in self.groups}
        seen: set[str] = set()
        for src in self.external.sources:
            if src.id in cameras:
                problems.append(f"external source {src.id!r} has the id of a camera")
            if src.id in seen:
                problems.append(f"external source ids must be unique: {src.id!r} twice")
            seen.add(src.id)
            for j in src.joins:
                if j.group not in groups:
                    problems.append(
                        f"external source {src.id!r} joins group {j.group!r}, which the "
                        f"config does not have{_did_you_mean(j.group, groups)}"
                    )
        joined = {j.group for src in self.external.sources for j in src.joins}
        for g in self.groups:
            if not g.members and g.id not in joined:
                problems.append(f"group {g.id!r} has no members and no external source joins it")
        return problems

    def group_members(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Each group's (input, counter) pairs: its cameras' counters and the
        external sources' counters that join it."""
        out = []
        for g in self.groups:
            members = [(m.camera, m.counter) for m in g.members]
            for src in self.external.sources:
                members += [(src.id, j.counter) for j in src.joins if j.group == g.id]
            out.append((g.id, members))
        return out

    def camera(self, camera_id: str) -> CameraConfig:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(camera_id)


def json_schema() -> str:
    return json.dumps(AppConfig.model_json_schema(), indent=2, sort_keys=False)


def load_config(path: str | Path) -> AppConfig:
    """Read and validate a YAML file.

    A camera source that is a relative file path is taken relative to the
    file's folder, so a config and its videos can move together.
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read the file: {exc.strerror}"]) from exc
    config = parse_config(text, source=str(p))
    cameras = tuple(
        c.model_copy(update={"source": str((p.parent / c.source).resolve())})
        if is_relative_file(c.source)
        else c
        for c in config.cameras
    )
    return config.model_copy(update={"cameras": cameras})


def with_absolute_paths(config: AppConfig, base: Path | None = None) -> AppConfig:
    """Local storage and chDB paths made absolute from ``base`` (default:
    the working directory), before the config travels to actors whose
    working directory may differ."""
    root = Path.cwd() if base is None else base
    storage, warehouse = config.storage, config.warehouse
    if storage.root.startswith("file://") or "://" not in storage.root:
        local = storage.root.removeprefix("file://")
        if not Path(local).is_absolute():
            storage = storage.model_copy(update={"root": f"file://{(root / local).resolve()}"})
    if warehouse.url.startswith("chdb://"):
        path, sep, query = warehouse.url.removeprefix("chdb://").partition("?")
        if path and path != ":memory:" and not Path(path).is_absolute():
            url = f"chdb://{(root / path).resolve()}{sep}{query}"
            warehouse = warehouse.model_copy(update={"url": url})
    return config.model_copy(update={"storage": storage, "warehouse": warehouse})


def is_relative_file(source: str) -> bool:
    return "://" not in source and not source.isdigit() and not Path(source).is_absolute()


def parse_config(text: str, source: str = "<string>") -> AppConfig:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(source, [f"{where}not valid YAML: {exc}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            source, [f"line 1: the top level must be a mapping, got {type(data).__name__}"]
        )
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        for err in errors:
            loc = tuple(err["loc"])
            if err["type"] == "too_short" and any(
                len(o["loc"]) > len(loc) and tuple(o["loc"][: len(loc)]) == loc for o in errors
            ):
                continue  # an item was refused, and so the list came out short: said once
            field = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(node, loc)
            where = f"line {line}: " if line else ""
            problems.append(f"{where}{field}: {err['msg']}")
        raise ConfigError(source, problems) from None


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest YAML node that ``loc`` reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                break
            node = nxt
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
