"""Checkpoints in S3 (moto's server on loopback, spoken to by pyarrow's S3
client): the same kills as with ``file://`` leave the same warehouse, and a
store that is unreachable for 20 s does not stop counting: status says
checkpoints are failing, and they complete again once it is back; a camera
lost while it is down says ``restoring`` until the store is back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from camcount.config import AppConfig, StorageConfig
from camcount.detectors import DetectorSettings, build_detector
from camcount.events import row_order
from camcount.reference import count_video
from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
from serve_app.app import start_pipeline
from tests.integration.s3 import Endpoint, serve_s3
from tests.integration.test_exactly_once import (
    LAYOUT,
    SEEDS,
    compare,
    config_for,
    pid_of,
    print_table,
    replay,
    replay_with_kills,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def s3() -> Iterator[Endpoint]:
    yield from serve_s3()


def on_s3(config: AppConfig, s3: Endpoint, prefix: str) -> AppConfig:
    storage = StorageConfig(
        root=s3.root(prefix), checkpoint_interval_s=config.storage.checkpoint_interval_s
    )
    return config.model_copy(update={"storage": storage})


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("s3")
    return [write_scene(generate_scene(s, LAYOUT), root / f"cam{s}.mp4")[0] for s in SEEDS]


#: One replay, four kills in turn: each part restores from S3.
S3_KILLS = (("camera", 60), ("shard", 150), ("sink", 240), ("controller", 330))


def test_kills_with_checkpoints_in_s3(ray_cluster, s3, scenes, tmp_path):
    base = replay(on_s3(config_for(scenes, tmp_path / "base"), s3, "base"))
    got = replay_with_kills(
        on_s3(config_for(scenes, tmp_path / "kills"), s3, "kills"), list(S3_KILLS)
    )
    outcomes = compare(base, got, "+".join(t for t, _ in S3_KILLS), tuple(m for _, m in S3_KILLS))
    print_table(outcomes)
    assert len(outcomes) == len(S3_KILLS)
    assert all(o.ok for o in outcomes), [o for o in outcomes if not o.ok]


def test_an_unreachable_store_does_not_stop_counting(ray_cluster, s3, tmp_path):
    layout = SceneLayout(fps=50.0, frames=2000)  # 40 s at its own pace
    video = write_scene(generate_scene(41, layout), tmp_path / "cam41.mp4")[0]
    config = on_s3(config_for([video], tmp_path), s3, "outage")
    pipeline = start_pipeline(config, api=False)
    try:
        deadline = time.monotonic() + 60
        while pipeline.status()["checkpoints"]["completed"] < 2:
            assert time.monotonic() < deadline, "no checkpoint before the outage"
            time.sleep(0.2)
        s3.stop()
        stopped = time.monotonic()
        frames_at_stop = pipeline.status()["cameras"][0]["frames_processed"]
        failing_seen = False
        while time.monotonic() - stopped < 20:
            failing_seen = failing_seen or pipeline.status()["checkpoints"]["failing"]
            time.sleep(0.5)
        during = pipeline.status()
        s3.start()
        assert failing_seen, "status never said checkpoints were failing"
        assert during["cameras"][0]["frames_processed"] > frames_at_stop + 500, (
            "counting stopped with the store"
        )
        completed = during["checkpoints"]["completed"]
        deadline = time.monotonic() + 60
        while True:
            cp = pipeline.status()["checkpoints"]
            if cp["completed"] > completed and not cp["failing"]:
                break
            assert time.monotonic() < deadline, f"checkpoints did not resume: {cp}"
            time.sleep(0.2)
        # A camera lost while the store is down cannot be restored until it
        # is back: its status says so meanwhile, and nothing is lost.
        s3.stop()
        os.kill(pid_of(lambda: ray.get(pipeline.controller.camera_handle.remote("cam41"))), 9)
        deadline = time.monotonic() + 30
        while pipeline.status()["cameras"][0]["state"] != "restoring":
            assert time.monotonic() < deadline, pipeline.status()["cameras"]
            time.sleep(0.1)
        time.sleep(3)
        assert pipeline.status()["cameras"][0]["state"] == "restoring"
        s3.start()
        pipeline.wait_files()
        totals = pipeline.totals()
    finally:
        if not s3.running:
            s3.start()
        pipeline.stop(checkpoint=False)
    detector = build_detector("oracle", DetectorSettings(options={"seed": 5}))
    want = sorted(count_video(config, config.cameras[0], detector).totals, key=row_order)
    assert totals == want
