"""Counted truth for real clips: what a person saw cross a line or visit a zone.

Benchmarks and tests compare counts with it, so a truth that contradicts
itself (a total that is not the sum of the crossings listed, a line outside
the picture, a crossing after the clip's last frame) must be refused when
the file is read, not discovered as a strange error figure later. The
models reuse the config's line and zone rules, so a line that a camera
would refuse is refused here too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from camcount.config import (
    CameraConfig,
    Coordinate,
    Identifier,
    LineConfig,
    distinct_ends,
    simple_polygon,
)
from camcount.errors import ConfigError
from camcount.geometry import Polygon, Segment

FrameRange = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _ordered(frames: FrameRange) -> FrameRange:
    if frames[0] > frames[1]:
        raise ValueError(f"frames must run forwards, got {frames[0]} to {frames[1]}")
    return frames


class SeenCrossing(_Model):
    """One person or vehicle seen crossing, with when and who, so a count
    that disagrees can be traced to the crossing it missed."""

    direction: Literal["in", "out"]
    frames: FrameRange
    who: str = ""

    @model_validator(mode="after")
    def _forwards(self) -> SeenCrossing:
        _ordered(self.frames)
        return self


class LineTruth(_Model):
    """A line's counts per direction and the crossings they are made of."""

    id: Identifier
    points: tuple[Coordinate, Coordinate]
    counts: dict[Literal["in", "out"], Annotated[int, Field(ge=0)]]
    crossings: tuple[SeenCrossing, ...]

    @model_validator(mode="after")
    def _counts_are_the_crossings(self) -> LineTruth:
        distinct_ends(self.points)
        for direction in ("in", "out"):
            listed = sum(c.direction == direction for c in self.crossings)
            said = self.counts.get(direction, 0)
            if listed != said:
                raise ValueError(
                    f"line {self.id!r}: counts say {said} {direction}, "
                    f"but {listed} such crossings are listed"
                )
        return self

    def total(self, direction: Literal["in", "out"]) -> int:
        return self.counts.get(direction, 0)


class SeenVisit(_Model):
    frames: FrameRange

    @model_validator(mode="after")
    def _forwards(self) -> SeenVisit:
        _ordered(self.frames)
        return self


class ZoneTruth(_Model):
    """A zone's number of visits and the visits it is made of."""

    id: Identifier
    polygon: Annotated[tuple[Coordinate, ...], Field(min_length=3)]
    count: Annotated[int, Field(ge=0)]
    visits: tuple[SeenVisit, ...]

    @model_validator(mode="after")
    def _count_is_the_visits(self) -> ZoneTruth:
        simple_polygon(self.polygon)
        if self.count != len(self.visits):
            raise ValueError(
                f"zone {self.id!r}: count says {self.count}, "
                f"but {len(self.visits)} visits are listed"
            )
        return self


class CountedCrossing(NamedTuple):
    """A crossing a counter made, as the truth judges it."""

    line: str
    direction: str
    frame: int


class CrossingMatch(NamedTuple):
    """``false``: the counted crossings no true one matches; ``missed``: how
    many true crossings no counted one matched."""

    false: list[CountedCrossing]
    missed: int


class ClipTruth(_Model):
    """One clip's truth; ``video`` is relative to the shared data folder."""

    video: Annotated[str, Field(min_length=1)]
    frames: Annotated[int, Field(ge=1)]
    fps: Annotated[float, Field(gt=0)]
    frame_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]
    # The one class the truth counts: a detector that cannot see it cannot
    # be measured on this clip.
    class_: Annotated[str, Field(alias="class", min_length=1)]
    frame_tolerance: Annotated[int, Field(ge=0)]
    counted: Annotated[str, Field(min_length=1)]
    lines: tuple[LineTruth, ...] = ()
    zones: tuple[ZoneTruth, ...] = ()

    @model_validator(mode="after")
    def _inside_the_clip(self) -> ClipTruth:
        if not self.lines and not self.zones:
            raise ValueError(f"{self.video}: no line or zone to count")
        for line in self.lines:
            Segment(line.points[0], line.points[1])  # the config's rules for a line
            self._points_inside(f"line {line.id!r}", line.points)
            self._frames_inside(f"line {line.id!r}", [c.frames for c in line.crossings])
        for zone in self.zones:
            Polygon(zone.polygon)
            self._points_inside(f"zone {zone.id!r}", zone.polygon)
            self._frames_inside(f"zone {zone.id!r}", [v.frames for v in zone.visits])
        return self

    def unmeasurable(self, class_names: Iterable[str]) -> str | None:
        """Why a line counter with a detector of ``class_names`` cannot be
        judged on this clip, or None."""
        if not self.lines:
            return "its truth is zone visits, not line crossings"
        names = list(class_names)
        if self.class_ not in names:
            return f"the detector sees no {self.class_}s (it sees {', '.join(names)})"
        return None

    def camera(self, video: Path, slice_grid: tuple[int, int] | None = None) -> CameraConfig:
        """The camera ``camcount count VIDEO --line ...`` builds for this
        clip's lines (plus ``--slice``)."""
        fields: dict[str, object] = {
            "id": video.stem.replace(" ", "_"),
            "source": str(video),
            "lines": [LineConfig(id=line.id, points=line.points) for line in self.lines],
        }
        if slice_grid is not None:
            fields["slicing"] = {"grid": slice_grid}
        return CameraConfig.model_validate(fields)

    def match(self, counted: Iterable[CountedCrossing]) -> CrossingMatch:
        """Each counted crossing matched, one to one, to a true crossing of
        its line and direction whose frames (widened by the tolerance) hold
        its frame, the nearest first. A right total can hide a miss and a
        false count that cancel; this cannot."""
        tol = self.frame_tolerance
        free = [
            (line.id, c.direction, c.frames[0] - tol, c.frames[1] + tol)
            for line in self.lines
            for c in line.crossings
        ]
        false: list[CountedCrossing] = []
        for c in sorted(counted, key=lambda c: c.frame):
            fits = [t for t in free if t[:2] == (c.line, c.direction) and t[2] <= c.frame <= t[3]]
            if not fits:
                false.append(c)
                continue
            free.remove(min(fits, key=lambda t: abs((t[2] + t[3]) / 2 - c.frame)))
        return CrossingMatch(false, len(free))

    def _points_inside(self, what: str, points: tuple[Coordinate, ...]) -> None:
        """Every point in the picture (its border included): truth counted
        by eye can only be about what the picture shows."""
        w, h = self.frame_size
        for x, y in points:
            if not (0 <= x <= w and 0 <= y <= h):
                raise ValueError(
                    f"{self.video}: {what} has the point ({x:g}, {y:g}) outside the {w}x{h} frame"
                )

    def _frames_inside(self, what: str, ranges: list[FrameRange]) -> None:
        for first, last in ranges:
            if last >= self.frames:
                raise ValueError(
                    f"{self.video}: {what} has frames {first}-{last}, "
                    f"but the clip's last frame is {self.frames - 1}"
                )


class TruthFile(_Model):
    version: Literal[1]
    clips: tuple[ClipTruth, ...]

    @model_validator(mode="after")
    def _one_entry_per_clip(self) -> TruthFile:
        seen: set[str] = set()
        for clip in self.clips:
            if clip.video in seen:
                raise ValueError(f"{clip.video} is listed twice")
            seen.add(clip.video)
        return self


def load_truth_file(path: str | Path) -> TruthFile:
    """Read and check a truth file; a problem is one line naming the field."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(str(p), [f"cannot read the file: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), [f"not valid YAML: {exc}"]) from exc
    try:
        return TruthFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise ConfigError(str(p), [f"{field + ': ' if field else ''}{first['msg']}"]) from None
