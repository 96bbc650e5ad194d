"""The rule format (the ``alerts:`` section of the config, and the API's
body when rules change while running): docs/alerts.md.

Every rule compares one value with a threshold, ``above`` or ``below``,
and has two guards against flapping: ``clear``, the value that resolves it
(hysteresis: an occupancy limit of 50 that clears at 45 does not open and
close with every person at the door), and ``hold_s``, how long in event
time the condition must hold before the alert opens, and its end before
it resolves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")]
Severity = Literal["info", "warning", "critical"]
CameraState = Literal["stalled", "failed", "no_detections"]


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    id: Identifier
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    hold_s: Annotated[float, Field(ge=0)] = 5.0


class _Threshold(_Rule):
    above: float | None = None
    below: float | None = None
    clear: float | None = None

    @model_validator(mode="after")
    def _one_side(self) -> _Threshold:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above or below")
        if self.clear is not None:
            if self.above is not None and self.clear > self.above:
                raise ValueError(
                    f"clear ({self.clear}) must not be above the threshold ({self.above})"
                )
            if self.below is not None and self.clear < self.below:
                raise ValueError(
                    f"clear ({self.clear}) must not be below the threshold ({self.below})"
                )
        return self

    @property
    def threshold(self) -> float:
        edge = self.above if self.above is not None else self.below
        assert edge is not None  # the validator saw to it
        return edge

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.above is not None else value < self.threshold

    def cleared(self, value: float) -> bool:
        edge = self.clear if self.clear is not None else self.threshold
        return value <= edge if self.above is not None else value >= edge


class OccupancyRule(_Threshold):
    """People (or one class) in a zone, in all of a camera's zones, or in a
    group (its running in minus out, from its net rows at ``window_s``)."""

    kind: Literal["occupancy"] = "occupancy"
    camera: Identifier | None = None
    zone: Identifier | None = None
    group: Identifier | None = None
    class_name: str | None = None
    window_s: Annotated[int, Field(gt=0)] = 10

    @model_validator(mode="after")
    def _target(self) -> OccupancyRule:
        if (self.group is None) == (self.camera is None):
            raise ValueError("an occupancy rule names a camera (and optionally a zone) or a group")
        if self.group is not None and self.zone is not None:
            raise ValueError("a group's occupancy has no zone")
        return self

    @property
    def target(self) -> str:
        if self.group is not None:
            return f"group:{self.group}"
        return f"{self.camera}/{self.zone}" if self.zone else str(self.camera)


class _OnACounter(BaseModel):
    """A rule on one counter of a camera or of a group (their window rows)."""

    camera: Identifier | None = None
    group: Identifier | None = None
    counter: Identifier

    @model_validator(mode="after")
    def _camera_or_group(self) -> _OnACounter:
        if (self.group is None) == (self.camera is None):
            kind = getattr(self, "kind", "this")
            raise ValueError(f"a {kind} rule names a camera or a group")
        return self

    @property
    def source(self) -> str:
        """The window rows' ``camera_id``: the camera, or ``group:id``."""
        return f"group:{self.group}" if self.group is not None else str(self.camera)


class FlowRule(_Threshold, _OnACounter):
    """Crossings per window of one counter (or a group's), optionally one
    class and one direction; a window nobody crossed counts 0."""

    kind: Literal["flow"] = "flow"
    class_name: str | None = None
    direction: str | None = None
    window_s: Annotated[int, Field(gt=0)] = 60
    hold_s: Annotated[float, Field(ge=0)] = 0.0

    @property
    def target(self) -> str:
        parts = [self.source, self.counter, self.class_name or "*", self.direction or "*"]
        return "/".join(parts)


class CameraRule(_Rule):
    """A camera in a state (stalled, failed, no detections) for ``hold_s``."""

    kind: Literal["camera"] = "camera"
    camera: Identifier | None = Field(default=None, description="every camera when left out")
    state: CameraState
    hold_s: Annotated[float, Field(ge=0)] = 30.0


class ForecastRule(_Rule, _OnACounter):
    """A window's count outside its forecast band: ``deviation`` times the
    band's half-width from the forecast (1.0: just outside the band)."""

    kind: Literal["forecast"] = "forecast"
    class_name: str
    direction: str
    window_s: Annotated[int, Field(gt=0)] = 300
    deviation: Annotated[float, Field(gt=0)] = 1.0
    hold_s: Annotated[float, Field(ge=0)] = 0.0

    @property
    def target(self) -> str:
        return "/".join([self.source, self.counter, self.class_name, self.direction])


AlertRule = Annotated[
    OccupancyRule | FlowRule | CameraRule | ForecastRule, Field(discriminator="kind")
]


class AlertsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[AlertRule, ...] = ()

    def document(self) -> dict[str, Any]:
        """The rules as the config's ``alerts:`` section has them (what
        ``GET /alerts/rules`` answers and ``PUT`` takes): what was left
        out stays out, so the answer reads back as it was given."""
        return {"rules": [r.model_dump(mode="json", exclude_none=True) for r in self.rules]}

    @model_validator(mode="after")
    def _unique(self) -> AlertsConfig:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"alert rule ids must be unique: {dupes}")
        return self
