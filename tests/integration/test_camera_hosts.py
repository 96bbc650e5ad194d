"""Several cameras in one process (``pipeline.cameras_per_process``), each
on its own: a source that cannot be decoded and one that never answers
share the process with good cameras, which count what ``camcount count``
counts; every camera's state is checkpointed apart; and the process killed
with SIGKILL brings each of its cameras back from its own snapshot."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import ray

from camcount.checkpoints import CheckpointStore
from camcount.config import (
    AppConfig,
    CameraConfig,
    DetectorConfig,
    PipelineConfig,
    StorageConfig,
    WarehouseConfig,
    load_config,
)
from camcount.detectors import DetectorSettings, build_detector
from camcount.events import row_order
from camcount.reference import count_video
from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
from serve_app.app import start_pipeline

pytestmark = pytest.mark.integration

GOOD = (51, 52, 53)
#: 4 s a camera at its own pace: the kill lands while they count.
LAYOUT = SceneLayout(fps=50.0, frames=200)


@pytest.fixture
def silent_camera() -> Iterator[str]:
    """An HTTP camera that takes the connection and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/stream.mjpg"
    finally:
        server.close()
        for conn in held:
            conn.close()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_cameras_sharing_a_process_fail_alone_and_come_back_alone(
    ray_cluster, tmp_path, silent_camera
):
    good = [
        load_config(
            write_scene(generate_scene(s, LAYOUT), tmp_path / f"cam{s}.mp4")[0].with_suffix(".yaml")
        )
        .cameras[0]
        .model_copy(update={"realtime": True})
        for s in GOOD
    ]
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 1000)
    config = AppConfig(
        cameras=(
            *good,
            CameraConfig(id="garbage", source=str(garbage)),
            CameraConfig(id="silent", source=silent_camera),
        ),
        detector=DetectorConfig(model="oracle"),
        warehouse=WarehouseConfig(enabled=False),
        storage=StorageConfig(root=f"file://{tmp_path / 'store'}", checkpoint_interval_s=60),
        pipeline=PipelineConfig(cameras_per_process=8),
    )
    pipeline = start_pipeline(config, api=False)
    controller = pipeline.controller

    def pid(camera_id: str) -> int:
        link = ray.get(controller.camera_handle.remote(camera_id))
        return int(ray.get(link.__ray_call__.remote(lambda self: os.getpid()), timeout=30))

    def cameras() -> dict[str, dict]:
        return {c["camera_id"]: c for c in pipeline.status()["cameras"]}

    try:
        wait_for(
            lambda: all(cameras()[c.id].get("frames_processed", 0) >= 40 for c in good),
            60,
            "the good cameras to count",
        )
        pids = {c.id: pid(c.id) for c in config.cameras}
        taken = pipeline.checkpoint()
        assert taken["ok"], taken
        saved = CheckpointStore(config.storage.root).part_ids(taken["last_id"], "cameras")
        os.kill(pids["cam51"], signal.SIGKILL)
        wait_for(
            lambda: all(cameras()[c.id].get("state") == "finished" for c in good),
            90,
            "the good cameras to finish after the kill",
        )
        after = cameras()
        got = [r for r in pipeline.totals() if r["camera_id"] != "garbage"]
        letters = ray.get(controller.dead_letters.remote())
        new_pid = pid("cam51")
    finally:
        pipeline.stop(checkpoint=False)
    # One process held them all, and each camera was checkpointed on its own.
    assert len(set(pids.values())) == 1
    assert sorted(saved) == sorted(c.id for c in config.cameras)
    assert new_pid != pids["cam51"]
    assert all(after[c.id]["restored"] for c in good)
    assert after["garbage"]["state"] == "failed"
    assert after["silent"]["state"] in ("connecting", "stalled")
    assert any(d.source == "garbage" and d.reason == "source" for d in letters)
    detector = build_detector("oracle", DetectorSettings())
    want = sorted(
        (row for cam in good for row in count_video(config, cam, detector).totals), key=row_order
    )
    assert got == want != []
