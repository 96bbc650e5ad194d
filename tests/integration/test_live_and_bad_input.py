"""Live sources that stall and come back, and bad inputs beside good cameras."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from camcount.config import (
    AppConfig,
    CameraConfig,
    DetectorConfig,
    TrackerConfig,
    WarehouseConfig,
    ZoneConfig,
    parse_config,
)
from camcount.errors import ConfigError
from camcount.scenes.synthetic import generate_scene, truth_path, write_scene
from serve_app.app import start_pipeline
from tests.core.test_capture import damage
from tests.integration.conftest import free_port
from tests.integration.mjpeg import MjpegCamera

pytestmark = pytest.mark.integration

TABLE_ZONE = ZoneConfig(id="table", polygon=((250, 250), (650, 250), (650, 431), (250, 431)))


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def camera_status(pipeline, camera_id: str) -> dict:
    return next(c for c in pipeline.status()["cameras"] if c["camera_id"] == camera_id)


def entries(status: dict) -> int:
    return sum(t["count"] for t in status["totals"] if t["direction"] == "enter")


@pytest.mark.slow
def test_a_live_stream_cut_off_and_restored_stalls_then_streams_and_keeps_counting(
    ray_cluster, shared_data
):
    video = shared_data / "videos" / "intel_one-by-one-person-detection.mp4"
    stream = MjpegCamera(video, fps=20, start_frame=60)
    stream.start()
    config = AppConfig(
        cameras=(CameraConfig(id="ipcam", source=stream.url, zones=(TABLE_ZONE,)),),
        detector=DetectorConfig(model="ssdlite-person", score_threshold=0.5),
        tracker=TrackerConfig(lost_track_buffer_s=2.0),
        warehouse=WarehouseConfig(enabled=False),  # the live side is what is tested
    )
    pipeline = start_pipeline(config, api=False)
    try:
        wait_for(lambda: camera_status(pipeline, "ipcam")["state"] == "streaming", 60, "streaming")
        wait_for(lambda: entries(camera_status(pipeline, "ipcam")) >= 1, 90, "a first visit")
        before = entries(camera_status(pipeline, "ipcam"))
        stream.cut()
        wait_for(lambda: camera_status(pipeline, "ipcam")["state"] == "stalled", 30, "stalled")
        time.sleep(3)
        stream.restore()
        wait_for(
            lambda: camera_status(pipeline, "ipcam")["state"] == "streaming", 60, "streaming again"
        )
        status = camera_status(pipeline, "ipcam")
        assert status["reconnects"] >= 1
        wait_for(
            lambda: entries(camera_status(pipeline, "ipcam")) > before,
            120,
            "counts after the outage",
        )
    finally:
        pipeline.stop()
        stream.cut()


def test_bad_sources_fail_clearly_and_the_good_camera_keeps_going(ray_cluster, tmp_path: Path):
    good, _, _ = write_scene(generate_scene(31), tmp_path / "good.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    # 200 kB of noise in the middle: OpenCV opens it, decodes half, stops.
    damaged = damage(good, tmp_path / "damaged.mp4")
    truth_path(damaged).write_text(truth_path(good).read_text())  # for the oracle
    good_cam = CameraConfig.model_validate(
        {
            **parse_config(good.with_suffix(".yaml").read_text()).cameras[0].model_dump(),
            "source": str(good),
        }
    )
    refused = f"http://127.0.0.1:{free_port()}/stream.mjpg"
    config = AppConfig(
        cameras=(
            good_cam,
            CameraConfig(id="missing", source=str(tmp_path / "nope.mp4")),
            CameraConfig(id="truncated", source=str(truncated)),
            CameraConfig(id="damaged", source=str(damaged)),
            CameraConfig(id="refused", source=refused),
            CameraConfig(id="unresolvable", source="rtsp://nosuchhost.invalid/stream"),
        ),
        detector=DetectorConfig(model="oracle"),
        warehouse=WarehouseConfig(enabled=False),
    )
    pipeline = start_pipeline(config, api=False)
    try:
        wait_for(
            lambda: camera_status(pipeline, "good")["state"] == "finished", 120, "the good camera"
        )
        states = {c["camera_id"]: c for c in pipeline.status()["cameras"]}
        assert (
            states["missing"]["state"] == "failed" and "no such file" in states["missing"]["detail"]
        )
        wait_for(
            lambda: camera_status(pipeline, "damaged")["state"] in ("failed", "finished"),
            60,
            "the damaged camera's end",
        )
        states = {c["camera_id"]: c for c in pipeline.status()["cameras"]}
        # Cut in half, the MP4 loses its index (written last): it cannot open.
        assert states["truncated"]["state"] == "failed"
        assert "cannot open" in states["truncated"]["detail"]
        # Damaged in the middle, it is read up to the damage and then fails:
        # never "finished" with half of its events silently missing.
        assert states["damaged"]["state"] == "failed", states["damaged"]
        assert states["damaged"]["detail"].startswith(
            "damaged or truncated: decoding stopped at frame "
        )
        assert states["damaged"]["detail"].endswith(" of 300")
        assert states["refused"]["state"] in ("connecting", "stalled")
        assert "refused" in states["refused"]["detail"] or "retrying" in states["refused"]["detail"]
        # a name that does not resolve is told apart from a refused connection
        assert states["unresolvable"]["state"] == "connecting"
        assert states["unresolvable"]["detail"].startswith("host not found: nosuchhost.invalid")
        assert states["good"]["totals"], "the good camera counted nothing"
    finally:
        pipeline.stop()


def test_an_unknown_camera_field_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as exc:
        parse_config("cameras:\n  - id: a\n    source: a.mp4\n    zoom: 3\n", "cams.yaml")
    assert "cameras.0.zoom" in str(exc.value) and "line 4" in str(exc.value)
