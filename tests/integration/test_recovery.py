"""Recovery as users meet it: the two sink crash points (docs/checkpoints.md), a restore
on another number of shards, Ctrl-C of ``camcount run`` and a run again, and
``camcount replay`` surviving SIGKILLs sent from outside to a camera, a shard
and the controller in turn, as an operator's ``kill -9`` would.

Every run is compared with one fault-free replay of the same cameras: the
window rows and crossings in the warehouse, and the totals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml
from ray import serve

from camcount.config import AppConfig
from serve_app.app import DETECTOR_APP, start_pipeline
from tests.integration.conftest import free_port
from tests.integration.test_exactly_once import clock_frames, config_for, warehouse_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("serve_kept_up")]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scenes(replay_scenes: list[Path]) -> list[Path]:
    """The exactly-once replay's cameras (written once per session)."""
    return replay_scenes


@pytest.fixture(scope="module")
def base(fault_free_replay: dict[str, Any]) -> dict[str, Any]:
    """Their fault-free replay (run once per session)."""
    assert fault_free_replay["rows"] and fault_free_replay["crossings"]
    return fault_free_replay


def same_as(base: dict[str, Any], rows: dict, crossings: set[int]) -> None:
    assert {k: v[:1] for k, v in rows.items()} == {k: v[:1] for k, v in base["rows"].items()}
    assert all(len(v) == 1 for v in rows.values()), "a window row is doubled"
    assert crossings == base["crossings"]


def wait_for_frames(pipeline: Any, frames: int) -> None:
    deadline = time.monotonic() + 120
    while clock_frames(pipeline) < frames:
        assert time.monotonic() < deadline, "the cameras made no progress"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("point", "victim"),
    [
        # State stored, rows not yet acknowledged by the sink: the sink dies.
        ("state_written", "sink"),
        # Rows acknowledged, manifest not yet written: the controller dies.
        ("rows_flushed", "controller"),
    ],
)
def test_the_two_sink_crash_points(ray_cluster, scenes, base, tmp_path, point, victim):
    pipeline = start_pipeline(config_for(scenes, tmp_path), shards=1, api=False)
    try:
        wait_for_frames(pipeline, 150)
        (shard,) = ray.get(pipeline.controller.shard_handles.remote())
        ray.get(shard.hold_at.remote(point))
        deadline = time.monotonic() + 30
        while point not in ray.get(shard.held_at.remote()):
            assert time.monotonic() < deadline, f"no checkpoint reached {point}"
            time.sleep(0.02)
        handle = pipeline.sink if victim == "sink" else pipeline.controller
        pid = ray.get(handle.__ray_call__.remote(lambda self: os.getpid()))
        os.kill(pid, signal.SIGKILL)
        if victim == "sink":
            shard.let_go.remote(point)
        pipeline.wait_files()
        rows, crossings = warehouse_rows(pipeline)
        totals = pipeline.totals()
        status = pipeline.status()
    finally:
        pipeline.stop(checkpoint=False)
    same_as(base, rows, crossings)
    assert totals == base["totals"]
    if victim == "sink":
        assert any(r["part"] == "sink" for r in status["recoveries"])


@pytest.mark.parametrize(("before", "after"), [(3, 1), (1, 3)])
def test_a_stopped_run_resumes_on_another_number_of_shards(
    ray_cluster, scenes, base, tmp_path, before, after
):
    config = config_for(scenes, tmp_path)
    first = start_pipeline(config, shards=before, api=False)
    try:
        wait_for_frames(first, 180)
    finally:
        outcome = first.stop()  # a stop: the final checkpoint
    assert outcome["final_checkpoint"] is not None
    second = start_pipeline(config, shards=after, api=False, fresh=False)
    try:
        status = second.status()
        assert status["checkpoints"]["resumed_from"] == outcome["final_checkpoint"]
        second.wait_files()
        rows, crossings = warehouse_rows(second)
        totals = second.totals()
    finally:
        second.stop(checkpoint=False)
    same_as(base, rows, crossings)
    assert totals == base["totals"]


# ----------------------------------------------------------- the CLI, as users run it


def cli_config(scenes: list[Path], run: Path) -> Path:
    """The YAML a user would write for the same cameras."""
    config: AppConfig = config_for(scenes, run)
    doc = config.model_dump(mode="json", exclude_defaults=True)
    doc["api"] = {"port": free_port()}
    path = run / "camcount.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def camcount(*args: str, **kw: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "camcount.cli", *args],
        cwd=kw.get("cwd", ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def complete_checkpoints(run: Path) -> int:
    """The id of the newest complete checkpoint (older ones are pruned)."""
    ids = [int(p.parent.name) for p in (run / "store" / "checkpoints").glob("*/_COMPLETE")]
    return max(ids, default=0)


def read_warehouse(run: Path) -> tuple[dict, set[int]]:
    """The rows as an analyst reads them, from a process of its own (chDB
    ties one process to one database)."""
    script = (
        "import json, sys\n"
        "from chdb.session import Session\n"
        "s = Session(sys.argv[1])\n"
        "w = s.query('SELECT camera_id, counter_id, class_name, direction, window_size_s, "
        "toUInt64(window_start) AS ws, count FROM camcount.window_counts FINAL', 'JSONEachRow')\n"
        "c = s.query('SELECT event_id FROM camcount.crossings FINAL', 'JSONEachRow')\n"
        "print(json.dumps([str(w).splitlines(), str(c).splitlines()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(run / "chdb")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    windows, crossings = json.loads(out.stdout)
    rows: dict[tuple[Any, ...], list[int]] = {}
    for line in windows:
        r = json.loads(line)
        key = (
            r["camera_id"],
            r["counter_id"],
            r["class_name"],
            r["direction"],
            int(r["window_size_s"]),
            int(r["ws"]),
        )
        rows.setdefault(key, []).append(int(r["count"]))
    return rows, {int(json.loads(line)["event_id"]) for line in crossings}


def wait_until(predicate: Any, timeout_s: float, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(
                f"camcount ended early: {proc.stderr.read() if proc.stderr else ''}"
            )
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_ctrl_c_then_run_again_equals_one_uninterrupted_run(scenes, base, tmp_path):
    config = cli_config(scenes, tmp_path)
    first = camcount("run", str(config))
    wait_until(lambda: complete_checkpoints(tmp_path) >= 4, 180, first)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=180)
    assert first.returncode == 0, stderr
    assert "final checkpoint" in stderr
    second = camcount("run", str(config))
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert "resumed from checkpoint" in stderr
    rows, crossings = read_warehouse(tmp_path)
    same_as(base, rows, crossings)


def process_of(title: str, not_in: set[int] = frozenset()) -> int | None:  # type: ignore[assignment]
    """The pid of a Ray worker whose process title starts with ``title``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in not_in:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmdline.startswith(title):
            return int(entry.name)
    return None


#: The processes an operator kills from outside, in turn, in one replay.
OUTSIDE_KILLS = ("ray::CameraHost", "ray::AggregatorActor", "ray::Controller")


def test_replay_survives_kills_from_outside(scenes, base, tmp_path):
    """Each kind of part killed in turn: the first once two checkpoints
    are complete, each next one once a checkpoint has completed after the
    kill before it (the run is whole again)."""
    config = cli_config(scenes, tmp_path)
    before = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    proc = camcount("replay", "--json", "--shards", "2", str(config))
    reached = 2
    for title in OUTSIDE_KILLS:
        wait_until(lambda n=reached: complete_checkpoints(tmp_path) >= n, 180, proc)
        pid = process_of(title, before)
        assert pid is not None, f"no {title} process"
        os.kill(pid, signal.SIGKILL)
        reached = complete_checkpoints(tmp_path) + 1
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout) == base["totals"]
    rows, crossings = read_warehouse(tmp_path)
    same_as(base, rows, crossings)


def test_a_restarted_live_camera_records_its_gap(ray_cluster, shared_data, tmp_path):
    """A live source resumes from now: the time between its checkpoint and
    its first frame after the restart was never captured, and it is a gap
    in the camera's status, on the live stream and in the warehouse."""
    from camcount.config import CameraConfig, DetectorConfig, StorageConfig, WarehouseConfig
    from tests.integration.mjpeg import MjpegCamera

    stream = MjpegCamera(shared_data / "videos" / "intel_one-by-one-person-detection.mp4")
    stream.start()
    config = AppConfig(
        cameras=(CameraConfig(id="ipcam", source=stream.url, fps=4),),
        detector=DetectorConfig(model="ssdlite-person"),
        warehouse=WarehouseConfig(url=f"chdb://{tmp_path / 'chdb'}"),
        storage=StorageConfig(root=f"file://{tmp_path / 'store'}", checkpoint_interval_s=0.5),
    )
    pipeline = start_pipeline(config, api=False)
    try:
        deadline = time.monotonic() + 120
        while pipeline.status()["cameras"][0].get("frames_processed", 0) < 10:
            assert time.monotonic() < deadline, "no frames counted"
            time.sleep(0.2)
        pipeline.checkpoint()  # one with frames counted in it
        camera = ray.get(pipeline.controller.camera_handle.remote("ipcam"))
        os.kill(ray.get(camera.__ray_call__.remote(lambda self: os.getpid())), signal.SIGKILL)
        deadline = time.monotonic() + 120
        gaps: list[dict] = []
        while not gaps:
            assert time.monotonic() < deadline, "the restarted camera recorded no gap"
            cams = pipeline.status()["cameras"]
            gaps = next((c.get("gaps") or [] for c in cams if c.get("camera_id") == "ipcam"), [])
            time.sleep(0.2)
        pipeline.checkpoint()  # the sink has flushed every row before it
        hub = ray.get(pipeline.controller.hub_handle.remote())
        live = ray.get(hub.updates_since.remote(0, 0.0, 10_000)).updates
        rows = ray.get(
            pipeline.sink.sql.remote(
                "SELECT camera_id, toUnixTimestamp(gap_from) * 1000 + gap_from_ms AS from_ms, "
                "duration_s, reason FROM gaps FINAL"
            )
        ).to_pylist()
    finally:
        pipeline.stop(checkpoint=False)
        stream.cut()
    (gap,) = gaps
    assert gap["reason"] == "restart" and gap["to"] > gap["from"]
    assert [u.kind for u in live].count("gap") == 1
    assert len(rows) == 1 and rows[0]["camera_id"] == "ipcam"
    assert int(rows[0]["from_ms"]) == pytest.approx(gap["from"] * 1000, abs=1)
    assert rows[0]["duration_s"] == pytest.approx(gap["to"] - gap["from"])


def run_parts(pipeline: Any) -> set[str]:
    """The names of the run's parts still on the cluster (actors/lifetime.py)."""
    from actors.lifetime import PREFIX

    controller_id = pipeline.controller._actor_id.hex()
    return {
        name
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if (name := entry["name"]).startswith(f"{PREFIX}{controller_id}-")
    }


def test_the_parts_outlive_a_controller_restart_and_not_the_run(
    ray_cluster, scenes, base, tmp_path
):
    """A controller killed with SIGKILL comes back to the same camera and
    shard processes (they roll back in place, nothing counted twice or
    lost); a controller gone for good (its driver gone, no stop) takes every
    part of its run with it."""
    pipeline = start_pipeline(config_for(scenes, tmp_path), shards=2, api=False)
    controller = pipeline.controller
    try:
        wait_for_frames(pipeline, 100)
        before = part_processes(pipeline)
        assert len(run_parts(pipeline)) >= len(before) + 1  # and the hub, the spare
        os.kill(ray.get(controller.__ray_call__.remote(lambda self: os.getpid())), signal.SIGKILL)
        pipeline.wait_files()
        after = part_processes(pipeline)
        rows, crossings = warehouse_rows(pipeline)
        totals = pipeline.totals()
        status = pipeline.status()
        # Gone for good without a stop, as when its driver ends.
        ray.kill(controller)
        deadline = time.monotonic() + 30
        while left := run_parts(pipeline):
            assert time.monotonic() < deadline, f"left behind: {sorted(left)}"
            time.sleep(0.2)
        assert ray.get(pipeline.sink.epoch.remote())  # the driver's sink is not the run's
    finally:
        ray.kill(controller)
        ray.get(pipeline.sink.close.remote(), timeout=60)
        ray.kill(pipeline.sink)
        serve.delete(DETECTOR_APP)
    same_as(base, rows, crossings)
    assert totals == base["totals"]
    assert after == before, "a part did not outlive the controller"
    assert [r["part"] for r in status["recoveries"]] == ["controller"]


def part_processes(pipeline: Any) -> dict[str, int]:
    """Each camera's and shard's actor id, with its process."""
    controller = pipeline.controller
    handles = [
        ray.get(controller.camera_handle.remote(c.id)) for c in pipeline.config.cameras
    ] + ray.get(controller.shard_handles.remote())
    return {
        h._actor_id.hex(): ray.get(h.__ray_call__.remote(lambda self: os.getpid())) for h in handles
    }


def test_the_controller_and_the_sink_lost_together(ray_cluster, scenes, base, tmp_path):
    """As when the node holding both goes: the restarted controller finds
    the sink itself restarting, waits for it (and tries again if its restore
    fails meanwhile), and the warehouse ends as without the loss."""
    pipeline = start_pipeline(config_for(scenes, tmp_path), shards=2, api=False)
    try:
        wait_for_frames(pipeline, 100)
        pids = [
            ray.get(h.__ray_call__.remote(lambda self: os.getpid()))
            for h in (pipeline.controller, pipeline.sink)
        ]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        pipeline.wait_files()
        rows, crossings = warehouse_rows(pipeline)
        totals = pipeline.totals()
    finally:
        pipeline.stop(checkpoint=False)
    same_as(base, rows, crossings)
    assert totals == base["totals"]
