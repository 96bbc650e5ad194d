"""Drawing detections, tracks, lines and zones on frames, for people to look at.

Kept apart from the counting logic so OpenCV drawing never leaks into it:
everything here takes finished results (Detections, points, a camera's
count rows and occupancy) and returns pixels. Functions draw in place on the
BGR image they are given and return it, so calls chain; copy first to keep
the original. The dashboard's preview and ``camcount count --out`` draw a
counted frame with the same ``draw_counted``, so they never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import numpy.typing as npt

from camcount.detectors.detections import NO_TRACK, Detections
from camcount.errors import EmptyOutputError, SourceError
from camcount.geometry import to_pixels

if TYPE_CHECKING:
    from camcount.config import CameraConfig

Image = npt.NDArray[np.uint8]
Color = tuple[int, int, int]  # BGR
Point = tuple[float, float]

# Distinct, readable on video (BGR); a class or a track keeps its colour across frames.
PALETTE: tuple[Color, ...] = (
    (56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
    (10, 249, 72), (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0),
    (168, 153, 44), (255, 194, 0), (147, 69, 52), (255, 115, 100), (236, 24, 0),
    (255, 56, 132), (133, 0, 82), (255, 56, 203), (200, 149, 255), (199, 55, 255),
)  # fmt: skip
LINE_COLOR: Color = (255, 255, 255)
ZONE_COLOR: Color = (0, 200, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def color_for(index: int) -> Color:
    return PALETTE[index % len(PALETTE)]


def _scale(image: Image) -> float:
    """Text and strokes sized to the frame, so a 4K frame is as readable as a 640 one."""
    return max(0.4, min(image.shape[:2]) / 720)


def label_box(image: Image, text: str, origin: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where ``draw_label`` puts ``text``: (x1, y1, x2, y2), inclusive, kept
    inside the frame; so a reader of an annotated video can find a label."""
    scale = 0.5 * _scale(image)
    thickness = max(1, round(_scale(image)))
    (w, h), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x = min(max(origin[0], 0), max(image.shape[1] - w - 2, 0))
    y = min(max(origin[1], h + base + 2), image.shape[0] - 1)
    return x, y - h - base - 2, x + w + 2, y


def draw_label(image: Image, text: str, origin: tuple[int, int], color: Color) -> Image:
    """Text on a filled box of ``color``, kept inside the frame."""
    scale = 0.5 * _scale(image)
    thickness = max(1, round(_scale(image)))
    x1, y1, x2, y2 = label_box(image, text, origin)
    base = cv2.getTextSize(text, _FONT, scale, thickness)[1]
    cv2.rectangle(image, (x1, y1), (x2, y2), color, cv2.FILLED)
    luminance = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    cv2.putText(image, text, (x1 + 1, y2 - base - 1), _FONT, scale, ink, thickness, cv2.LINE_AA)
    return image


def draw_detections(
    image: Image,
    detections: Detections,
    class_names: Sequence[str],
    *,
    scores: bool = True,
) -> Image:
    """One box per detection, labelled ``#id class score``; a tracked box takes its
    track's colour (so an id switch is visible), an untracked one its class's."""
    thickness = max(1, round(2 * _scale(image)))
    for box, conf, cls, track in zip(
        detections.xyxy, detections.confidence, detections.class_id, detections.tracker_id,
        strict=True,
    ):  # fmt: skip
        color = color_for(int(track) if track != NO_TRACK else int(cls))
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thickness)
        name = class_names[cls] if 0 <= cls < len(class_names) else str(int(cls))
        parts = [f"#{int(track)}"] if track != NO_TRACK else []
        parts.append(name)
        if scores:
            parts.append(f"{float(conf):.2f}")
        draw_label(image, " ".join(parts), (x1, y1), color)
    return image


def draw_line(
    image: Image,
    start: Point,
    end: Point,
    *,
    label: str = "",
    counts: Mapping[str, int] | None = None,
    color: Color = LINE_COLOR,
) -> Image:
    """A counting segment with an arrow pointing to its ``in`` side.

    Walking from ``start`` to ``end``, crossing left to right is ``in``
    (``geometry.Segment``): in image coordinates, y down, that side lies
    along the normal (-dy, dx).
    """
    thickness = max(1, round(2 * _scale(image)))
    p0 = np.asarray(start, dtype=np.float64)
    p1 = np.asarray(end, dtype=np.float64)
    cv2.line(image, _px(p0), _px(p1), color, thickness, cv2.LINE_AA)
    d = p1 - p0
    length = float(np.hypot(*d))
    if length > 0:
        mid = (p0 + p1) / 2
        normal = np.array([-d[1], d[0]]) / length
        tip = mid + normal * min(30.0 * _scale(image), length / 2)
        cv2.arrowedLine(image, _px(mid), _px(tip), color, thickness, cv2.LINE_AA, tipLength=0.3)
    text = label if counts is None else line_label(label, counts)
    if text.strip():
        draw_label(image, text.strip(), _px(p0), color)
    return image


def draw_zone(
    image: Image,
    polygon: Sequence[Point],
    *,
    label: str = "",
    color: Color = ZONE_COLOR,
    alpha: float = 0.2,
) -> Image:
    """A translucent polygon with its outline, so what is inside stays visible."""
    points = np.round(np.asarray(polygon, dtype=np.float64)).astype(np.int32).reshape(-1, 1, 2)
    if alpha > 0:
        overlay = image.copy()
        cv2.fillPoly(overlay, [points], color)
        cv2.addWeighted(overlay, alpha, image, 1 - alpha, 0, dst=image)
    cv2.polylines(image, [points], True, color, max(1, round(2 * _scale(image))), cv2.LINE_AA)
    if label:
        top = points[:, 0, :][np.argmin(points[:, 0, 1])]
        draw_label(image, label, (int(top[0]), int(top[1])), color)
    return image


def _px(point: npt.NDArray[np.float64]) -> tuple[int, int]:
    return round(float(point[0])), round(float(point[1]))


# --- a camera's counters with their counts -------------------------------------------------


def counts_by_counter(totals: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Count rows (``count --json``'s) summed over classes: counter -> direction -> n.
    A picture has room for one number per direction, not one per class."""
    counts: dict[str, dict[str, int]] = {}
    for row in totals:
        per = counts.setdefault(str(row["counter_id"]), {})
        per[str(row["direction"])] = per.get(str(row["direction"]), 0) + int(row["count"])
    return counts


def line_label(line_id: str, counts: Mapping[str, int]) -> str:
    """``door in 3 out 1``: both directions always, so the label does not
    jump in size, and a zero reads as counted nothing yet."""
    rest = " ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k not in ("in", "out"))
    text = f"{line_id} in {counts.get('in', 0)} out {counts.get('out', 0)}"
    return f"{text} {rest}" if rest else text


def zone_label(zone_id: str, counts: Mapping[str, int], occupancy: int | None = None) -> str:
    """``queue inside 2 enter 5 exit 3`` (``inside`` only where known)."""
    inside = f" inside {occupancy}" if occupancy is not None else ""
    return f"{zone_id}{inside} enter {counts.get('enter', 0)} exit {counts.get('exit', 0)}"


def draw_counted(
    image: Image,
    camera: CameraConfig,
    tracks: Detections,
    class_names: Sequence[str],
    totals: Iterable[Mapping[str, Any]],
    occupancy: Mapping[str, int] | None = None,
    frame_size: tuple[int, int] | None = None,
) -> Image:
    """A frame as its camera counted it: zones, lines, the tracks with their
    ids, and each counter's counts so far (each zone's occupancy where
    given). Shapes in the camera's coordinates are mapped to ``frame_size``
    (the source's) and then scaled to ``image``, so a preview made smaller
    draws them where they belong; ``tracks`` are in ``image``'s pixels. The
    counts are drawn last, so a box passing by never hides them."""
    h, w = image.shape[:2]
    src_w, src_h = frame_size or (w, h)
    sx, sy = w / src_w, h / src_h
    normalized = camera.coordinates == "normalized"

    def px(points: Sequence[Sequence[float]]) -> list[Point]:
        return [(x * sx, y * sy) for x, y in to_pixels(points, (src_w, src_h), normalized)]

    counts = counts_by_counter(totals)
    labels: list[tuple[str, tuple[int, int], Color]] = []
    for zone in camera.zones:
        polygon = px(zone.polygon)
        draw_zone(image, polygon)
        inside = None if occupancy is None else occupancy.get(zone.id, 0)
        top = min(polygon, key=lambda p: p[1])
        labels.append(
            (zone_label(zone.id, counts.get(zone.id, {}), inside), _px(np.asarray(top)), ZONE_COLOR)
        )
    for line in camera.lines:
        start, end = px(line.points)
        draw_line(image, start, end)
        labels.append(
            (line_label(line.id, counts.get(line.id, {})), _px(np.asarray(start)), LINE_COLOR)
        )
    draw_detections(image, tracks, class_names, scores=False)
    for text, origin, color in labels:
        draw_label(image, text, origin, color)
    return image


# --- writing annotated output -------------------------------------------------------------


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in _IMAGE_SUFFIXES


def is_video_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in _VIDEO_CODECS


def video_suffixes() -> tuple[str, ...]:
    return tuple(_VIDEO_CODECS)


def write_image(path: str | Path, image: Image) -> Path:
    out = Path(path)
    if not is_image_path(out):
        raise SourceError(str(out), f"not an image file name: use one of {_IMAGE_SUFFIXES}")
    _make_folder(out)
    if not cv2.imwrite(str(out), image):
        raise SourceError(str(out), "OpenCV could not write it")
    return out


def _make_folder(out: Path) -> None:
    """The folder an output goes in, made if missing; one that cannot be
    (a file in the way, no permission) is told as the output's problem."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SourceError(str(out), f"cannot make its folder {out.parent}: {reason}") from None


class VideoWriter:
    """An OpenCV writer that fails when opened, not silently on every frame.

    ``cv2.VideoWriter`` with an unknown codec or an unwritable path returns
    an object that drops every frame; this checks ``isOpened`` once.
    """

    def __init__(self, path: str | Path, fps: float, frame_size: tuple[int, int]) -> None:
        self.path = Path(path)
        codec = _VIDEO_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise SourceError(
                str(self.path), f"not a video file name: use one of {', '.join(_VIDEO_CODECS)}"
            )
        if fps <= 0:
            raise SourceError(str(self.path), f"fps must be > 0, got {fps}")
        _make_folder(self.path)
        self.frame_size = frame_size
        self._writer = cv2.VideoWriter(
            str(self.path), cv2.VideoWriter.fourcc(*codec), fps, frame_size
        )
        if not self._writer.isOpened():
            raise SourceError(str(self.path), f"OpenCV cannot write {codec} video here")
        self.frames = 0

    def write(self, image: Image) -> None:
        if (image.shape[1], image.shape[0]) != self.frame_size:
            raise SourceError(
                str(self.path),
                f"frame {self.frames} is {image.shape[1]}x{image.shape[0]}, "
                f"the video is {self.frame_size[0]}x{self.frame_size[1]}",
            )
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file; one that got no frame is removed and refused
        (an ``EmptyOutputError``): players and OpenCV cannot open it."""
        self.release()
        if self.frames == 0:
            raise EmptyOutputError(str(self.path), "no frame to write: nothing was written")

    def release(self) -> None:
        """Finish the file as it is, removing it if no frame was written."""
        self._writer.release()
        if self.frames == 0:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:  # the error on its way out says more than "empty"
            self.release()
