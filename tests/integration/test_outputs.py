"""The archive output in a running pipeline: what it holds equals the
warehouse's raw tables (read back with pyarrow and with chDB), the
warehouse rebuilt from it answers the documented queries as the original,
and its actor killed mid-replay loses and doubles nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import ray

from camcount.cli import main
from camcount.config import (
    AppConfig,
    DetectorConfig,
    StorageConfig,
    WarehouseConfig,
    WindowsConfig,
    load_config,
)
from camcount.outputs.archive import read_kind
from camcount.outputs.settings import ArchiveOutputConfig
from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
from camcount.warehouse import connect
from camcount.warehouse import queries as q
from camcount.warehouse.backends import Backend
from serve_app.app import Pipeline, start_pipeline

pytestmark = pytest.mark.integration

# Two cameras on two shards: two streams into the archive.
SEEDS = (31, 34)
SHARDS = 2
LAYOUT = SceneLayout(fps=50.0, frames=300)
#: The warehouse table of each kind the shards make.
TABLES = {
    "crossing": "crossings",
    "zone_transition": "zone_transitions",
    "zone_sample": "zone_samples",
    "zone_visit": "zone_visits",
    "window_row": "window_counts",
    "gap": "gaps",
}
ALL_TIME = (0, 4_000_000_000)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("outputs")
    return [write_scene(generate_scene(s, LAYOUT), root / f"cam{s}.mp4")[0] for s in SEEDS]


def config_for(scenes: list[Path], run: Path, realtime: bool) -> AppConfig:
    cameras = tuple(
        load_config(v.with_suffix(".yaml")).cameras[0].model_copy(update={"realtime": realtime})
        for v in scenes
    )
    return AppConfig(
        cameras=cameras,
        windows=WindowsConfig(sizes_s=(1, 60), allowed_lateness_s=2.0),
        detector=DetectorConfig(model="oracle", max_batch_size=8, options={"seed": 5}),
        warehouse=WarehouseConfig(url=f"chdb://{run / 'chdb'}"),
        storage=StorageConfig(root=f"file://{run / 'store'}", checkpoint_interval_s=0.5),
        outputs=(ArchiveOutputConfig(type="archive", uri=f"file://{run / 'archive'}"),),
    )


def warehouse_ids(pipeline: Pipeline) -> dict[str, list[int]]:
    return {
        kind: sorted(
            int(r["event_id"])
            for r in ray.get(
                pipeline.sink.sql.remote(f"SELECT event_id FROM {table} FINAL")
            ).to_pylist()
        )
        for kind, table in TABLES.items()
    }


def archive_ids(uri: str) -> dict[str, list[int]]:
    """Every row's id, duplicates kept: a doubled row shows as a repeat."""
    out = {}
    for kind in TABLES:
        try:
            out[kind] = sorted(read_kind(uri, kind).column("event_id").to_pylist())
        except Exception:  # no file of that kind: the run made none
            out[kind] = []
    return out


def answers(backend: Backend, cameras: list[str]) -> dict[str, object]:
    """Every documented query over all time: what analysts would see."""
    start, end = ALL_TIME
    out: dict[str, object] = {}
    for cam in cameras:
        out[f"{cam}/windows"] = q.window_counts(backend, cam, start, end, 1).to_pylist()
        out[f"{cam}/hourly"] = q.hourly_counts(backend, cam, start, end).to_pylist()
        out[f"{cam}/daily"] = q.daily_counts(backend, cam, start, end, window_size_s=60).to_pylist()
        out[f"{cam}/peak"] = q.peak_hours(backend, cam, start, end).to_pylist()
        out[f"{cam}/occupancy"] = q.occupancy(backend, cam, start, end, bucket_s=10).to_pylist()
        out[f"{cam}/dwell"] = q.dwell_stats(backend, cam, start, end).to_pylist()
        out[f"{cam}/dwell_hist"] = q.dwell_histogram(
            backend, cam, start, end, bucket_s=5
        ).to_pylist()
        out[f"{cam}/crossings"] = q.crossings(backend, cam, start, end).to_pylist()
        out[f"{cam}/seen"] = q.camera_seen(backend, cam)
    out["cameras"] = q.cameras(backend).to_pylist()
    out["camera_counters"] = q.camera_counters(backend).to_pylist()
    out["dead_letters"] = q.dead_letters(backend, start, end).to_pylist()
    out["gaps"] = q.gaps(backend, start, end).to_pylist()
    return out


def test_the_archive_holds_the_warehouse_s_rows_and_rebuilds_it(
    ray_cluster: None, scenes: list[Path], tmp_path: Path
) -> None:
    config = config_for(scenes, tmp_path, realtime=False)
    archive = config.outputs[0].uri
    pipeline = start_pipeline(config, shards=SHARDS, api=False)
    try:
        pipeline.wait_files()
        in_warehouse = warehouse_ids(pipeline)
        # chDB reads the same files with file(), through the sink's engine.
        by_chdb = ray.get(
            pipeline.sink.sql.remote(
                "SELECT event_id FROM "
                f"file('{tmp_path}/archive/kind=crossing/*/*/*.parquet', Parquet)"
            )
        ).column("event_id")
    finally:
        pipeline.stop(checkpoint=False)
    assert in_warehouse["crossing"] and in_warehouse["window_row"]
    assert archive_ids(archive) == in_warehouse
    assert sorted(by_chdb.to_pylist()) == in_warehouse["crossing"]

    cameras = [c.id for c in config.cameras]
    with connect(config.warehouse.url) as original:
        want = answers(original.backend, cameras)
    rebuilt_yaml = tmp_path / "rebuilt.yaml"
    rebuilt_yaml.write_text(f"warehouse:\n  url: chdb://{tmp_path / 'rebuilt'}\n")
    assert main(["warehouse", "rebuild", str(rebuilt_yaml), "--from-archive", archive]) == 0
    with connect(f"chdb://{tmp_path / 'rebuilt'}") as rebuilt:
        assert answers(rebuilt.backend, cameras) == want


def output_pid(pipeline: Pipeline) -> int:
    """The archive actor's process, asked again while Ray replaces it."""
    deadline = time.monotonic() + 60
    while True:
        try:
            actor: Any = ray.get(pipeline.controller.output_handles.remote())["archive"]
            return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def frames_of(pipeline: Pipeline, camera: str) -> int:
    for cam in pipeline.status()["cameras"]:
        if cam.get("camera_id") == camera:
            return int(cam.get("frames_processed") or 0)
    return 0


@pytest.mark.slow
def test_the_archive_actor_killed_mid_replay_loses_and_doubles_nothing(
    ray_cluster: None, scenes: list[Path], tmp_path: Path
) -> None:
    config = config_for(scenes, tmp_path, realtime=True)
    archive = config.outputs[0].uri
    clock = config.cameras[0].id
    pipeline = start_pipeline(config, shards=SHARDS, api=False)
    killed = []
    try:
        # Once between checkpoints early on, once again later (after the
        # recovery from the first): each kill loses the rows it held.
        for moment in (60, 180):
            deadline = time.monotonic() + 60
            while frames_of(pipeline, clock) < moment and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(output_pid(pipeline), signal.SIGKILL)
            killed.append(frames_of(pipeline, clock))
        pipeline.wait_files()
        in_warehouse = warehouse_ids(pipeline)
        restarts = ray.get(
            pipeline.sink.sql.remote(
                "SELECT count() AS n FROM dead_letters FINAL WHERE reason = 'restart'"
            )
        ).column("n")[0]
    finally:
        pipeline.stop(checkpoint=False)
    assert len(killed) == 2 and restarts.as_py() >= 2, (killed, restarts)
    assert in_warehouse["crossing"]
    assert archive_ids(archive) == in_warehouse
