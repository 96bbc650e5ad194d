"""The distributed pipeline on a real local Ray cluster and Serve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from camcount.config import AppConfig, DetectorConfig, WarehouseConfig, load_config
from camcount.detectors import DetectorSettings, build_detector
from camcount.events import row_order
from camcount.reference import count_video
from camcount.scenes.synthetic import generate_scene, write_scene
from serve_app.app import start_pipeline

pytestmark = pytest.mark.integration

SEEDS = (21, 22, 23, 24)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("pipeline")
    return [write_scene(generate_scene(s), root / f"cam{s}.mp4")[0] for s in SEEDS]


def pipeline_config(
    scenes: list[Path], model: str, warehouse: Path, gated: bool = False
) -> AppConfig:
    """With ``gated``, every other camera skips the detector where nothing
    moves (the motion gate), and the first of them also carries its tracks
    between detector calls (the detector interval)."""
    cameras = []
    for i, video in enumerate(scenes):
        cam = load_config(video.with_suffix(".yaml")).cameras[0]
        if gated and i % 2 == 0:
            cam = cam.model_copy(update={"motion": cam.motion.model_copy(update={"enabled": True})})
        if gated and i == 0:
            interval = cam.interval.model_copy(update={"max_interval": 5})
            cam = cam.model_copy(update={"interval": interval})
        cameras.append(cam)
    return AppConfig(
        cameras=tuple(cameras),
        detector=DetectorConfig(model=model, max_batch_size=8, options={"seed": 5}),
        warehouse=WarehouseConfig(url=f"chdb://{warehouse}"),
    )


def warehouse_totals(sink, size_s: int) -> list[dict]:
    """What an analyst reads: the smallest windows of each real camera,
    summed (FINAL: a row written twice counts once)."""
    table = ray.get(
        sink.sql.remote(
            "SELECT camera_id, counter_id, class_name, direction, sum(count) AS n "
            "FROM window_counts FINAL "
            "WHERE window_size_s = {size:UInt32} AND position(camera_id, ':') = 0 "
            "GROUP BY camera_id, counter_id, class_name, direction",
            {"size": size_s},
        )
    )
    rows = [
        {
            "camera_id": r["camera_id"],
            "counter_id": r["counter_id"],
            "class_name": r["class_name"],
            "direction": r["direction"],
            "count": int(r["n"]),
        }
        for r in table.to_pylist()
    ]
    return sorted(rows, key=row_order)


def reference_totals(config: AppConfig, model: str) -> list[dict]:
    """One process, every frame detected (no motion gate, no interval)."""
    rows = []
    for cam in config.cameras:
        cam = cam.model_copy(
            update={
                "motion": cam.motion.model_copy(update={"enabled": False}),
                "interval": cam.interval.model_copy(update={"max_interval": 1}),
            }
        )
        det = build_detector(model, DetectorSettings(options={"seed": 5}))
        rows.extend(count_video(config, cam, det).totals)
    return sorted(rows, key=row_order)


@pytest.mark.parametrize("model", ["oracle", "noisy"])
def test_four_cameras_at_once_agree_with_the_reference(ray_cluster, scenes, model, tmp_path):
    # The oracle run gates half its cameras: the same counts as every
    # frame detected, in the actors as in the reference run.
    config = pipeline_config(scenes, model, tmp_path / "chdb", gated=model == "oracle")
    pipeline = start_pipeline(config, shards=2, api=False)
    try:
        ray.get(pipeline.controller.wait_files.remote(300))
        got = ray.get(pipeline.controller.totals.remote())
        status = pipeline.status()
        # wait_files returns once the sink has flushed: the warehouse
        # already holds every closed window.
        stored = warehouse_totals(pipeline.sink, min(config.windows.sizes_s))
        cameras = (
            ray.get(
                pipeline.sink.sql.remote(
                    "SELECT DISTINCT camera_id FROM cameras ORDER BY camera_id"
                )
            )
            .column("camera_id")
            .to_pylist()
        )
    finally:
        pipeline.stop()
    assert {c["state"] for c in status["cameras"]} == {"finished"}
    # Camera processes stay light: no torch, pyarrow, pandas or scipy.optimize.
    assert [c["heavy_imports"] for c in status["cameras"]] == [[]] * len(scenes)
    assert got == reference_totals(config, model)
    assert stored == got
    by_id = {c["camera_id"]: c for c in status["cameras"]}
    for cfg in config.cameras:
        cam = by_id[cfg.id]
        if cfg.interval.max_interval > 1:
            gate = cam["gate"]
            assert sum(gate.values()) == cam["frames_processed"]
            assert gate["carried"] > 0, gate  # frames the detector did not see, same counts
        elif cfg.motion.enabled:
            gate = cam["gate"]
            assert sum(gate.values()) == cam["frames_processed"]
            assert gate["motion"] + gate["tracks"] + gate["pending"] > 0
        else:
            assert cam["gate"] is None
    assert cameras == sorted(c.id for c in config.cameras)
    if model == "oracle":
        for video in scenes:
            truth = json.loads(video.with_name(video.stem + ".truth.json").read_text())["expected"]
            cam = video.stem
            want = {
                (cls, d): n
                for cls, dirs in truth["lines"]["line-main"].items()
                for d, n in dirs.items()
                if n
            }
            have = {
                (r["class_name"], r["direction"]): r["count"]
                for r in got
                if r["camera_id"] == cam and r["counter_id"] == "line-main"
            }
            assert have == want, cam


def test_camcount_replay_json_prints_what_count_json_prints(ray_cluster, scenes, tmp_path):
    """The command as a user runs it, joining the session's cluster."""
    import subprocess
    import sys

    video = scenes[0]
    config = video.with_name("replay.yaml")  # beside the video: sources are relative
    config.write_text(  # the scene's config already names the oracle detector
        video.with_suffix(".yaml").read_text() + f"warehouse: {{url: 'chdb://{tmp_path}/chdb'}}\n"
        f"storage: {{root: 'file://{tmp_path}/store'}}\n"
    )
    address = ray.get_runtime_context().gcs_address
    cli = [sys.executable, "-m", "camcount.cli"]
    replay = subprocess.run(
        [*cli, "replay", str(config), "--address", address, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert replay.returncode == 0, replay.stderr[-2000:]
    count = subprocess.run(
        [*cli, "count", str(video), "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert count.returncode == 0, count.stderr[-2000:]
    assert json.loads(replay.stdout) == json.loads(count.stdout) != []
    assert f"rows are in the warehouse chdb://{tmp_path}/chdb" in replay.stderr
