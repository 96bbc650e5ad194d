"""Hand-built track frames for counter tests: a box per (track id, anchor)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from camcount.detectors.detections import Detections
from camcount.vision.tracking import TrackFrame

CLASSES = ("person", "car")


def track_frame(
    index: int,
    tracks: Iterable[tuple[int, float, float]] | Iterable[tuple[int, float, float, int]],
    removed: Sequence[int] = (),
    lost: Sequence[int] = (),
    fps: float = 10.0,
) -> TrackFrame:
    """Tracks given as (id, x, y[, class id]) with (x, y) the bottom centre."""
    rows = [tuple(t) for t in tracks]
    boxes = [[x - 10, y - 40, x + 10, y] for _, x, y, *_ in rows]
    classes = [r[3] if len(r) > 3 else 0 for r in rows]
    dets = Detections.from_arrays(
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.full(len(rows), 0.9),
        classes,
        [r[0] for r in rows],
    )
    return TrackFrame(
        index, index / fps, dets, np.array(lost, dtype=np.int64), np.array(removed, dtype=np.int64)
    )


def path_frames(
    points: Sequence[tuple[float, float] | None], track_id: int = 1, cls: int = 0
) -> list[TrackFrame]:
    """One track along ``points``; ``None`` is a frame where it is unseen."""
    return [
        track_frame(
            i, [] if p is None else [(track_id, p[0], p[1], cls)], lost=[] if p else [track_id]
        )
        for i, p in enumerate(points)
    ]


def clipped_box(
    centre: tuple[float, float], size: tuple[float, float], frame: tuple[int, int]
) -> list[float]:
    """The box a detector reports for an object of ``size`` centred at
    ``centre``: cut to the frame, as detectors cut theirs."""
    (cx, cy), (w, h), (fw, fh) = centre, size, frame
    return [max(0.0, cx - w / 2), max(0.0, cy - h / 2), min(fw, cx + w / 2), min(fh, cy + h / 2)]


def detections_along(
    centres: Sequence[tuple[float, float]],
    size: tuple[float, float],
    frame: tuple[int, int],
    min_visible_px: float,
) -> list[Detections]:
    """One object's detections frame by frame; unseen (an empty frame) once
    the frame cuts it to less than ``min_visible_px`` wide or high, or when
    it is wholly outside."""
    out = []
    for c in centres:
        x1, y1, x2, y2 = clipped_box(c, size, frame)
        if min(x2 - x1, y2 - y1) < min_visible_px:
            out.append(Detections.empty())
        else:
            out.append(Detections.from_arrays(np.array([[x1, y1, x2, y2]]), [0.9], [0]))
    return out
