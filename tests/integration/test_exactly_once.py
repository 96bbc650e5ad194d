"""Exactly-once counts under failure: SIGKILL one part of a running replay
at a seeded moment, and the warehouse ends identical to the fault-free run.

A replay of the same synthetic cameras on a real local Ray cluster with
Serve and chDB, checkpointing every half second, is run once per target
(camera, shard, sink, hub, detector replica, controller), and that target
is killed at each of several moments in turn: the number of frames one
camera has counted when the kill comes, so the first falls before any
checkpoint and the later ones between checkpoints, while the part is
still recovering from the one before or long after. Five moments for six
targets make 30 kill points. The outcome compares what an analyst reads
(window rows, crossings) and the replay's totals with the fault-free run:
rows lost, rows doubled or changed, crossings lost or extra. The table of
target x moment x outcome is printed at the end.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import ray

from camcount.config import (
    AppConfig,
    DetectorConfig,
    PipelineConfig,
    StorageConfig,
    WarehouseConfig,
    WindowsConfig,
    load_config,
)
from camcount.scenes.synthetic import SceneLayout
from serve_app.app import DETECTOR_APP, Pipeline, start_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("serve_kept_up")]

# cam31 and cam32 share a shard (a region of two cameras), cam34 has the other.
SEEDS = (31, 32, 34)
SHARDS = 2
CHECKPOINT_INTERVAL_S = 0.5
#: The camera whose progress times each kill.
CLOCK_CAMERA = "cam31"
TARGETS = ("camera", "shard", "sink", "hub", "detector", "controller")
#: 400 frames at 50 fps, read at their own pace: 8 s a camera, so the kills
#: land while the cameras run; frames counted by the clock camera when
#: each kill comes.
LAYOUT = SceneLayout(fps=50.0, frames=400)
MOMENTS = (30, 110, 190, 270, 350)
#: Windows of 1 s close 2 s behind the slowest camera of a shard, so rows
#: leave the shards between checkpoints while the cameras run.
ALLOWED_LATENESS_S = 2.0
#: Cameras per camera process in these runs: the config's default unless
#: set (``CAMCOUNT_TEST_CAMERAS_PER_PROCESS=1``: a process each; with more
#: than one, a camera's kill takes its neighbours in the process too).
CAMERAS_PER_PROCESS = os.environ.get("CAMCOUNT_TEST_CAMERAS_PER_PROCESS")


@dataclass(frozen=True)
class Outcome:
    target: str
    moment: int
    killed_at_frame: int | None
    lost: int
    doubled: int
    changed: int
    crossings_lost: int
    crossings_extra: int
    totals_equal: bool
    seconds: float
    #: Every camera's frames applied once each, none skipped, as many as
    #: in the fault-free run (the shards' frame ledgers).
    frames_ok: bool = True

    @property
    def ok(self) -> bool:
        return (
            self.killed_at_frame is not None
            and self.lost == self.doubled == self.changed == 0
            and self.crossings_lost == self.crossings_extra == 0
            and self.totals_equal
            and self.frames_ok
        )


def config_for(scenes: list[Path], run: Path, model: str = "oracle") -> AppConfig:
    cameras = tuple(
        load_config(v.with_suffix(".yaml")).cameras[0].model_copy(update={"realtime": True})
        for v in scenes
    )
    return AppConfig(
        cameras=cameras,
        # Windows close while the cameras run, between checkpoints.
        windows=WindowsConfig(sizes_s=(1, 5, 60), allowed_lateness_s=ALLOWED_LATENESS_S),
        detector=DetectorConfig(model=model, max_batch_size=8, options={"seed": 5}),
        warehouse=WarehouseConfig(url=f"chdb://{run / 'chdb'}"),
        storage=StorageConfig(
            root=f"file://{run / 'store'}", checkpoint_interval_s=CHECKPOINT_INTERVAL_S
        ),
        pipeline=PipelineConfig(cameras_per_process=int(CAMERAS_PER_PROCESS))
        if CAMERAS_PER_PROCESS
        else PipelineConfig(),
    )


def warehouse_rows(pipeline: Pipeline) -> tuple[dict[tuple[Any, ...], list[int]], set[int]]:
    """Window rows by identity (every row the table holds for it, FINAL
    collapses repeats of one identity) and the crossings' event ids."""
    windows = ray.get(
        pipeline.sink.sql.remote(
            "SELECT camera_id, counter_id, class_name, direction, window_size_s, "
            "toUInt64(window_start) AS ws, count FROM window_counts FINAL"
        )
    ).to_pylist()
    rows: dict[tuple[Any, ...], list[int]] = {}
    for r in windows:
        key = (
            r["camera_id"],
            r["counter_id"],
            r["class_name"],
            r["direction"],
            r["window_size_s"],
            r["ws"],
        )
        rows.setdefault(key, []).append(int(r["count"]))
    crossings = ray.get(
        pipeline.sink.sql.remote("SELECT event_id FROM crossings FINAL")
    ).to_pylist()
    return rows, {int(r["event_id"]) for r in crossings}


def pid_of(handle: Callable[[], Any]) -> int:
    """The process of the actor ``handle()`` returns, asked again while it
    is being replaced after an earlier kill."""
    deadline = time.monotonic() + 60
    while True:
        try:
            actor = handle()
            return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def detector_pid() -> int:
    from ray import serve

    handle = serve.get_deployment_handle("Detector", app_name=DETECTOR_APP)
    deadline = time.monotonic() + 60
    while True:
        try:
            return int(handle.stats.remote().result(timeout_s=30)["pid"])
        except Exception:  # the replica that was killed before: Serve replaces it
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def victim(pipeline: Pipeline, target: str) -> Callable[[], int]:
    """How to find the process of ``target`` at kill time."""
    controller = pipeline.controller
    if target == "camera":
        return lambda: pid_of(lambda: ray.get(controller.camera_handle.remote(CLOCK_CAMERA)))
    if target == "shard":
        return lambda: pid_of(lambda: ray.get(controller.shard_handle.remote(CLOCK_CAMERA)))
    if target == "sink":
        return lambda: pid_of(lambda: pipeline.sink)
    if target == "hub":
        return lambda: pid_of(lambda: ray.get(controller.hub_handle.remote()))
    if target == "detector":
        return detector_pid
    if target == "controller":
        return lambda: pid_of(lambda: controller)
    raise ValueError(target)


def clock_status(pipeline: Pipeline) -> dict[str, Any]:
    for cam in pipeline.status()["cameras"]:
        if cam.get("camera_id") == CLOCK_CAMERA:
            return dict(cam)
    return {}


def clock_frames(pipeline: Pipeline) -> int:
    return int(clock_status(pipeline).get("frames_processed") or 0)


def replay(
    config: AppConfig, target: str | None = None, moments: tuple[int, ...] = ()
) -> dict[str, Any]:
    """The replay as ``camcount replay`` runs it, killing ``target`` when the
    clock camera reaches each of ``moments``; ``killed_at`` says at which
    frame each kill came (None: the replay ended first)."""
    kills = [(target, m) for m in moments] if target is not None else []
    return replay_with_kills(config, kills)


def replay_with_kills(config: AppConfig, kills: list[tuple[str, int]]) -> dict[str, Any]:
    """The replay, killing each (target, moment) of ``kills`` in turn."""
    t0 = time.monotonic()
    pipeline = start_pipeline(config, shards=SHARDS, api=False)
    killed_at: list[int | None] = []
    try:
        for target, moment in kills:
            find = victim(pipeline, target)
            killed_at.append(None)
            ended = 0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                clock = clock_status(pipeline)
                frames = int(clock.get("frames_processed") or 0)
                if frames >= moment:
                    os.kill(find(), signal.SIGKILL)
                    killed_at[-1] = frames
                    break
                ended = ended + 1 if clock.get("state") in ("finished", "failed") else 0
                if ended >= 10:
                    break  # the clock camera's file ended before this moment
                time.sleep(0.02)
        pipeline.wait_files()
        rows, crossings = warehouse_rows(pipeline)
        totals = pipeline.totals()
        status = pipeline.status()
        ledgers = ray.get(pipeline.controller.frame_ledgers.remote())
        # From the warehouse: the shards' and controller's own lists of dead
        # letters are lost with them.
        late = ray.get(
            pipeline.sink.sql.remote(
                "SELECT source, detail FROM dead_letters FINAL WHERE reason = 'late'"
            )
        ).to_pylist()
        restarts = ray.get(
            pipeline.sink.sql.remote(
                "SELECT payload_kind AS kind, count() AS n FROM dead_letters FINAL "
                "WHERE reason = 'restart' GROUP BY payload_kind"
            )
        ).to_pylist()
    finally:
        pipeline.stop(checkpoint=False)
    return {
        "rows": rows,
        "crossings": crossings,
        "totals": totals,
        "status": status,
        "frames": ledger_frames(ledgers),
        # Events that came after their window closed: none in a replay.
        "late": len(late),
        "late_detail": [f"{d['source']}: {d['detail']}" for d in late][:5],
        "killed_at": killed_at,
        # Rows of the warehouse's dead letters: every restart is one.
        "restarts": {r["kind"]: int(r["n"]) for r in restarts},
        "seconds": time.monotonic() - t0,
    }


def ledger_frames(ledgers: dict[str, dict[str, Any]]) -> dict[str, int | str]:
    """Per camera, how many frames its shard applied, each exactly once and
    none skipped; or what is wrong with its ledger."""
    out: dict[str, int | str] = {}
    for camera, ledger in ledgers.items():
        runs, repeats = ledger["runs"], ledger["repeats"]
        if repeats or len(runs) != 1 or runs[0][0] != 0:
            out[camera] = f"runs {runs}, {repeats} repeated"
        else:
            out[camera] = runs[0][1] + 1
    return out


def compare(
    base: dict[str, Any], got: dict[str, Any], target: str, moments: tuple[int, ...] = MOMENTS
) -> list[Outcome]:
    """One outcome per kill point of a run (they share the run's result);
    ``target`` may name several, joined by '+', one per moment."""
    want, have = base["rows"], got["rows"]
    lost = sum(1 for k in want if k not in have)
    doubled = sum(1 for v in have.values() if len(v) > 1)
    changed = sum(1 for k, v in have.items() if k in want and v[:1] != want[k][:1])
    extra = sum(1 for k in have if k not in want)
    targets = target.split("+") if "+" in target else [target] * len(moments)
    frames_ok = (
        got["frames"] == base["frames"]
        and all(isinstance(n, int) for n in base["frames"].values())
        and got["late"] == 0
    )
    return [
        Outcome(
            name,
            moment,
            killed,
            lost,
            doubled,
            changed + extra,
            len(base["crossings"] - got["crossings"]),
            len(got["crossings"] - base["crossings"]),
            got["totals"] == base["totals"],
            round(got["seconds"], 1),
            frames_ok,
        )
        for name, moment, killed in zip(targets, moments, got["killed_at"], strict=False)
    ]


def row_diff(base: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """The window rows that differ, for a failure's message."""
    want, have = base["rows"], got["rows"]
    keys = sorted((k for k in want.keys() | have.keys() if want.get(k) != have.get(k)), key=str)
    return [f"{k}: {want.get(k)} -> {have.get(k)}" for k in keys[:12]]


def print_table(outcomes: list[Outcome]) -> None:
    print(
        "\ntarget      moment  killed@  lost  doubled  changed  x-lost  x-extra  totals  "
        "frames  s     ok"
    )
    for o in outcomes:
        print(
            f"{o.target:<11} {o.moment:>6}  {o.killed_at_frame!s:>7}  {o.lost:>4}  "
            f"{o.doubled:>7}  {o.changed:>7}  {o.crossings_lost:>6}  {o.crossings_extra:>7}  "
            f"{o.totals_equal!s:>6}  {o.frames_ok!s:>6}  {o.seconds:<5} "
            f"{'ok' if o.ok else 'FAIL'}"
        )


def test_kills_of_every_part_leave_the_warehouse_as_without_them(
    ray_cluster, replay_scenes, fault_free_replay, tmp_path
):
    base = fault_free_replay  # the session's one fault-free replay of these cameras
    assert base["rows"] and base["crossings"], "the fault-free run counted nothing"
    assert base["frames"] == {f"cam{s}": LAYOUT.frames for s in SEEDS}  # every frame, once
    assert base["late"] == 0, f"the fault-free run closed windows early: {base['late_detail']}"
    outcomes: list[Outcome] = []
    problems: list[str] = []
    for target in TARGETS:
        got = replay(config_for(replay_scenes, tmp_path / target), target, MOMENTS)
        mine = compare(base, got, target)
        outcomes.extend(mine)
        print_table(mine)
        print("recoveries:", [(r["part"], r["seconds"]) for r in got["status"]["recoveries"]])
        if not all(o.ok for o in mine):
            problems.append(f"{target}: {row_diff(base, got)} frames {got['frames']}")
        # Every recovery is a row of the warehouse (Serve, not camcount,
        # replaces a detector replica). Ray restarts the sink and the hub
        # itself: a kill that lands while one is still restarting is part
        # of the same recovery.
        kills = sum(1 for k in got["killed_at"] if k is not None)
        recovered = sum(1 for r in got["status"]["recoveries"] if r["kind"] == target)
        rows = got["restarts"].get(target, 0)
        wanted = max(recovered, 1) if target in ("sink", "hub") else kills
        if target != "detector" and rows < wanted:
            problems.append(f"{target}: {kills} kills, {recovered} recoveries, {rows} rows")
    print_table(outcomes)
    assert len(outcomes) >= 30
    assert all(o.ok for o in outcomes) and not problems, problems


#: The real clip: people crossing a line on a pavement, 242 frames at 30 fps.
REAL_KILLS = (("camera", 60), ("shard", 120), ("detector", 180))


def test_kills_on_a_real_clip_with_the_person_detector(ray_cluster, shared_data, tmp_path):
    """The same promise on real footage and a real model: the person SSDLite
    gives every frame the same detections however its batch was made up, so
    frames counted again after a restore count the same."""
    from camcount.demo import real_video_config

    camera = next(c for c in real_video_config(shared_data).cameras if c.id == "pavement")

    def config(run: Path) -> AppConfig:
        return AppConfig(
            cameras=(camera.model_copy(update={"id": CLOCK_CAMERA, "realtime": True}),),
            detector=DetectorConfig(model="ssdlite-person", score_threshold=0.4),
            windows=WindowsConfig(sizes_s=(1, 5, 60), allowed_lateness_s=ALLOWED_LATENESS_S),
            warehouse=WarehouseConfig(url=f"chdb://{run / 'chdb'}"),
            storage=StorageConfig(
                root=f"file://{run / 'store'}", checkpoint_interval_s=CHECKPOINT_INTERVAL_S
            ),
        )

    base = replay(config(tmp_path / "base"))
    assert base["crossings"], "the person detector found no crossing"
    decoded = base["status"]["cameras"][0]["frames_decoded"]
    assert base["frames"] == {CLOCK_CAMERA: decoded}, "the fault-free run skipped frames"
    got = replay_with_kills(config(tmp_path / "kills"), list(REAL_KILLS))
    outcomes = compare(
        base, got, "+".join(t for t, _ in REAL_KILLS), tuple(m for _, m in REAL_KILLS)
    )
    print_table(outcomes)
    assert all(o.ok for o in outcomes), (
        outcomes,
        base["frames"],
        got["frames"],
        row_diff(base, got),
    )


#: One replay, every part kind killed in turn (the noisy detector and the
#: 18.16 server runs below).
MIXED_KILLS = (
    ("camera", 40),
    ("shard", 110),
    ("sink", 180),
    ("detector", 250),
    ("controller", 320),
)


def test_kills_with_the_noisy_detector(ray_cluster, replay_scenes, tmp_path):
    """Misses, jitter, false positives and class flips, seeded by frame: a
    frame counted again after a restore gets the same detections."""
    base = replay(config_for(replay_scenes, tmp_path / "base", model="noisy"))
    got = replay_with_kills(
        config_for(replay_scenes, tmp_path / "kills", model="noisy"), list(MIXED_KILLS)
    )
    outcomes = compare(
        base, got, "+".join(t for t, _ in MIXED_KILLS), tuple(m for _, m in MIXED_KILLS)
    )
    print_table(outcomes)
    assert all(o.ok for o in outcomes), ([o for o in outcomes if not o.ok], row_diff(base, got))


def test_kills_with_the_warehouse_on_a_clickhouse_server(
    ray_cluster, clickhouse_server, replay_scenes, tmp_path
):
    """The same promise on Debian's ClickHouse 18.16 over the native
    protocol: no insert deduplication there, rows made again after a
    restore are collapsed by ReplacingMergeTree and read with FINAL."""

    def on_server(run: str) -> AppConfig:
        config = config_for(replay_scenes, tmp_path / run)
        url = clickhouse_server.url(f"eo_{run}")
        return config.model_copy(update={"warehouse": WarehouseConfig(url=url)})

    base = replay(on_server("base"))
    got = replay_with_kills(on_server("kills"), list(MIXED_KILLS))
    outcomes = compare(
        base, got, "+".join(t for t, _ in MIXED_KILLS), tuple(m for _, m in MIXED_KILLS)
    )
    print_table(outcomes)
    assert all(o.ok for o in outcomes), ([o for o in outcomes if not o.ok], row_diff(base, got))
