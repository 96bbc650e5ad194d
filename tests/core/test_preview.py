"""Previews: drawn only while watched, at a capped rate."""

from __future__ import annotations

import cv2
import numpy as np

from camcount.config import CameraConfig
from camcount.detectors.detections import Detections
from camcount.vision.preview import (
    MAX_PREVIEW_FPS,
    PreviewFrame,
    PreviewGate,
    confirmed_tracks,
    render,
)
from camcount.vision.tracking import Tracker, TrackerSettings


def test_no_frame_is_kept_until_someone_asks() -> None:
    gate = PreviewGate(watch_s=5)
    assert not any(gate.keep_frame(t / 10) for t in range(100))


def test_frames_are_kept_at_the_asked_rate_while_watched_then_stop() -> None:
    gate = PreviewGate(watch_s=5)
    gate.requested(0.0, max_fps=2)
    kept = [t / 100 for t in range(0, 1000) if gate.keep_frame(t / 100)]  # 100 fps for 10 s
    assert kept == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]


def test_the_rate_is_capped_whatever_is_asked() -> None:
    gate = PreviewGate()
    gate.requested(0.0, max_fps=1000)
    kept = sum(gate.keep_frame(t / 1000) for t in range(1000))
    assert kept <= MAX_PREVIEW_FPS


def test_render_draws_tracks_lines_and_zones_into_a_jpeg() -> None:
    tracker = Tracker(TrackerSettings(min_hits=1, fps=10))
    dets = Detections.from_arrays([[100, 100, 160, 220]], [0.9], [0])
    for i in range(3):
        tracker.update(dets, i, i / 10)
    tracks = confirmed_tracks(tracker.snapshot())
    assert len(tracks) == 1 and tracks.tracker_id[0] == 1
    np.testing.assert_allclose(tracks.xyxy[0], [100, 100, 160, 220], atol=1)
    camera = CameraConfig.model_validate(
        {
            "id": "cam",
            "source": "x.mp4",
            "lines": [{"id": "door", "points": [[0, 300], [1280, 300]]}],
            "zones": [{"id": "desk", "polygon": [[500, 100], [900, 100], [900, 600]]}],
        }
    )
    image = np.zeros((720, 1280, 3), np.uint8)
    totals = (
        {
            "camera_id": "cam",
            "counter_id": "door",
            "class_name": "person",
            "direction": "in",
            "count": 3,
        },
    )
    jpeg = render(PreviewFrame(2, 0.2, image, tracks, totals), camera, ["person"])
    out = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == (360, 640, 3)  # scaled to the preview width
    assert out[150, 320].max() > 100  # the line, drawn at y = 300 / 2
    assert image.max() == 0  # the camera's frame is never drawn on
