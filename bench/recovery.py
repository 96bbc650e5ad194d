"""Recovery benchmark: what checkpoints cost, and how fast a killed part
counts again.

For N cameras (seeded synthetic scenes, the oracle detector so that the
pipeline and not the model is measured; chDB warehouse; ``file://`` store;
``--shards`` aggregator shards), in one run:

1. Throughput with checkpoints every second against none (a checkpoint
   interval longer than the run): ``camcount replay`` of the N files as
   fast as they go, frames counted per second of wall time while every
   camera runs. The two are run alternately ``--repeats`` times and the
   medians compared: the ratio (target at least 0.95).
2. What a checkpoint is: its duration (median and worst over the run, from
   asking the cameras to the manifest written) and its bytes per camera and
   per shard (from the newest manifest).
3. Time from a SIGKILL to the part counting again, for every part kind:
   camera, shard, sink, hub, detector replica, controller, killed one after
   the other in one run whose cameras read their files at their own pace.
   "Counting again" is the moment the killed part's work shows again: for a
   camera, shard, sink or controller, the first frame counted by the clock
   camera (of the region that was rolled back) after its restore; for the
   detector, the first frame counted after Serve's new replica answers; for
   the hub, the first update it numbers after its restart. Target: under
   5 s on this machine for every part. The detector is killed once more
   with two replicas serving (``detector x2``): the lost requests go to
   the other one.

Run::

    python bench/recovery.py                     # N = 1, 8, 32
    python bench/recovery.py --cameras 8 --repeats 1 --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import ray

from camcount.checkpoints import CheckpointStore
from camcount.config import (
    AppConfig,
    DetectorConfig,
    StorageConfig,
    WarehouseConfig,
    WindowsConfig,
    load_config,
)
from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
from serve_app.app import DETECTOR_APP, Pipeline, connect_ray, start_pipeline

NO_CHECKPOINTS_S = 1e6
PARTS = ("camera", "shard", "sink", "hub", "detector", "controller")
#: The detector killed again with a second replica serving: the cameras'
#: resends go to the survivor instead of waiting for Serve's replacement.
REPLICATED = "detector x2"


def scenes(root: Path, n: int, layout: SceneLayout) -> list[Path]:
    out = []
    for seed in range(100, 100 + n):
        path = root / f"cam{seed}.mp4"
        if not path.exists():
            write_scene(generate_scene(seed, layout), path)
        out.append(path)
    return out


def config(
    videos: list[Path], run: Path, interval_s: float, realtime: bool, replicas: int = 1
) -> AppConfig:
    cameras = tuple(
        load_config(v.with_suffix(".yaml")).cameras[0].model_copy(update={"realtime": realtime})
        for v in videos
    )
    return AppConfig(
        cameras=cameras,
        detector=DetectorConfig(model="oracle", max_batch_size=16, num_replicas=replicas),
        windows=WindowsConfig(sizes_s=(1, 10, 60), allowed_lateness_s=0.5),
        warehouse=WarehouseConfig(url=f"chdb://{run / 'chdb'}"),
        storage=StorageConfig(root=f"file://{run / 'store'}", checkpoint_interval_s=interval_s),
    )


def frames_per_s(pipeline: Pipeline, n_cameras: int) -> float:
    """Frames counted per second while every camera runs (sampled every
    0.2 s; the first and last samples with a camera not yet running or
    already finished are left out)."""
    samples: list[tuple[float, int]] = []
    while True:
        cameras = pipeline.status()["cameras"]
        now = time.monotonic()
        states = [c.get("state") for c in cameras]
        if len(cameras) == n_cameras and all(s == "streaming" for s in states):
            samples.append((now, sum(int(c.get("frames_processed") or 0) for c in cameras)))
        if cameras and all(s in ("finished", "failed") for s in states):
            break
        time.sleep(0.2)
    pipeline.wait_files()
    if len(samples) < 2:
        return float("nan")
    (t0, f0), (t1, f1) = samples[0], samples[-1]
    return (f1 - f0) / (t1 - t0)


def throughput(videos: list[Path], root: Path, n: int, shards: int, repeats: int) -> dict:
    rates: dict[str, list[float]] = {"none": [], "1s": []}
    checkpoint: dict[str, Any] = {}
    for r in range(repeats):
        for name, interval in (("none", NO_CHECKPOINTS_S), ("1s", 1.0)):
            run = root / f"tp-{n}-{name}-{r}"
            cfg = config(videos, run, interval, realtime=False)
            pipeline = start_pipeline(cfg, shards=shards, api=False)
            try:
                rates[name].append(frames_per_s(pipeline, n))
                if name == "1s":
                    checkpoint = checkpoint_figures(pipeline, cfg, n, shards)
            finally:
                pipeline.stop(checkpoint=False)
    none, one = statistics.median(rates["none"]), statistics.median(rates["1s"])
    return {
        "fps_no_checkpoints": round(none, 1),
        "fps_1s_checkpoints": round(one, 1),
        "ratio": round(one / none, 3),
        "runs": rates,
        **checkpoint,
    }


def checkpoint_figures(pipeline: Pipeline, cfg: AppConfig, n: int, shards: int) -> dict:
    status = pipeline.status()["checkpoints"]
    store = CheckpointStore(cfg.storage.root)
    manifest = store.latest()
    by_kind: dict[str, list[int]] = {}
    if manifest is not None:
        for part in manifest.parts:
            by_kind.setdefault(part.kind, []).append(part.bytes)
    durations = status.get("durations_s") or []
    return {
        "checkpoints_completed": status["completed"],
        "checkpoints_failed": status["failed"],
        "duration_median_s": round(statistics.median(durations), 3) if durations else None,
        "duration_max_s": round(max(durations), 3) if durations else None,
        "bytes_per_camera": round(statistics.mean(by_kind.get("cameras", [0]))),
        "bytes_per_shard": round(statistics.mean(by_kind.get("shards", [0]))),
        "bytes_total": sum(sum(v) for v in by_kind.values()),
    }


# ----------------------------------------------------------- kill to counting again


def _pid(handle: Any) -> int:
    deadline = time.monotonic() + 60
    while True:
        try:
            return int(ray.get(handle().__ray_call__.remote(lambda self: os.getpid()), timeout=30))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _detector_pid() -> int:
    from ray import serve

    handle = serve.get_deployment_handle("Detector", app_name=DETECTOR_APP)
    deadline = time.monotonic() + 60
    while True:
        try:
            return int(handle.stats.remote().result(timeout_s=10)["pid"])
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _clock(pipeline: Pipeline, camera: str) -> dict[str, Any]:
    for c in pipeline.status()["cameras"]:
        if c.get("camera_id") == camera:
            return c
    return {}


def kill_and_time(pipeline: Pipeline, part: str, camera: str) -> float:
    """Seconds from the SIGKILL to the part's work showing again."""
    controller = pipeline.controller
    recoveries = len(pipeline.status()["recoveries"])
    hub_before = ray.get(ray.get(controller.hub_handle.remote()).last_seq.remote())
    pids = {
        "camera": lambda: _pid(lambda: ray.get(controller.camera_handle.remote(camera))),
        "shard": lambda: _pid(lambda: ray.get(controller.shard_handle.remote(camera))),
        "sink": lambda: _pid(lambda: pipeline.sink),
        "hub": lambda: _pid(lambda: ray.get(controller.hub_handle.remote())),
        "detector": _detector_pid,
        "controller": lambda: _pid(lambda: controller),
    }
    pid = pids[part]()
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    if part == "hub":
        while True:
            try:
                hub = ray.get(controller.hub_handle.remote())
                if ray.get(hub.last_seq.remote(), timeout=5) > hub_before:
                    return time.monotonic() - t0
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
            time.sleep(0.05)
    if part == "detector":
        while _detector_pid() == pid:
            time.sleep(0.05)
    elif part in ("camera", "shard", "sink"):
        while len(pipeline.status()["recoveries"]) <= recoveries:
            time.sleep(0.05)
    # The controller's status answers only once it has restored the run.
    prev = int(_clock(pipeline, camera).get("frames_processed") or 0)
    while True:
        time.sleep(0.02)
        state = _clock(pipeline, camera)
        frames = int(state.get("frames_processed") or 0)
        if state.get("state") == "streaming" and frames > prev:
            return time.monotonic() - t0
        if state.get("state") in ("finished", "failed"):
            raise RuntimeError(
                f"camera {camera} {state['state']} before it counted again: "
                "give the paced videos more --frames"
            )
        prev = frames


def recovery_times(videos: list[Path], root: Path, n: int, shards: int) -> dict[str, float]:
    cfg = config(videos, root / f"kills-{n}", 1.0, realtime=True)
    pipeline = start_pipeline(cfg, shards=shards, api=False)
    camera = cfg.cameras[0].id
    out: dict[str, float] = {}
    try:
        # Every camera running, a checkpoint complete and the spare camera
        # process started before the first kill.
        while True:
            status = pipeline.status()
            if status["checkpoints"]["completed"] >= 2 and status["spare_camera"] == "ready":
                break
            time.sleep(0.1)
        for part in PARTS:
            out[part] = round(kill_and_time(pipeline, part, camera), 2)
            print(f"    {part:<10} {out[part]:.2f} s", flush=True)
            time.sleep(1.5)  # a checkpoint after the recovery, before the next kill
    finally:
        pipeline.stop(checkpoint=False)
    cfg = config(videos, root / f"kills-{n}-x2", 1.0, realtime=True, replicas=2)
    pipeline = start_pipeline(cfg, shards=shards, api=False)
    try:
        while pipeline.status()["checkpoints"]["completed"] < 2:
            time.sleep(0.1)
        out[REPLICATED] = round(kill_and_time(pipeline, "detector", camera), 2)
        print(f"    {REPLICATED:<10} {out[REPLICATED]:.2f} s", flush=True)
    finally:
        pipeline.stop(checkpoint=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", default="1,8,32", help="comma-separated camera counts")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--frames", type=int, default=400, help="frames per synthetic video")
    parser.add_argument("--repeats", type=int, default=2, help="A/B pairs per camera count")
    parser.add_argument(
        "--kills-only", action="store_true", help="only the kill-to-counting-again times"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(c) for c in args.cameras.split(",")]
    connect_ray(None, log_to_driver=False, cameras=max(counts))
    results = []
    with tempfile.TemporaryDirectory(prefix="camcount-recovery-") as tmp:
        root = Path(tmp)
        fast = (
            []
            if args.kills_only
            else scenes(root / "fast", max(counts), SceneLayout(frames=args.frames))
        )
        paced = scenes(root / "paced", max(counts), SceneLayout(fps=25.0, frames=args.frames))
        for n in counts:
            tp: dict[str, Any] = {}
            if not args.kills_only:
                print(f"N={n}: throughput, 1 s checkpoints against none", flush=True)
                tp = throughput(fast[:n], root, n, args.shards, args.repeats)
                print(f"  {json.dumps(tp)}", flush=True)
            print(f"N={n}: kill to counting again", flush=True)
            kills = recovery_times(paced[:n], root, n, args.shards)
            results.append({"cameras": n, "shards": args.shards, **tp, "recovery_s": kills})
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"\nrecovery bench on {platform.node()} ({os.cpu_count()} cores), shards={args.shards}")
    print(
        "N   fps none  fps 1s  ratio  cp med s  cp max s  B/camera  B/shard  "
        + "  ".join(f"{p[:6]:>6}" for p in (*PARTS, REPLICATED))
    )
    for r in results:
        rec = r["recovery_s"]
        print(
            f"{r['cameras']:<3} {r.get('fps_no_checkpoints', '-')!s:>8}  "
            f"{r.get('fps_1s_checkpoints', '-')!s:>6}  {r.get('ratio', '-')!s:>5}  "
            f"{r.get('duration_median_s', '-')!s:>8}  {r.get('duration_max_s', '-')!s:>8}  "
            f"{r.get('bytes_per_camera', '-')!s:>8}  {r.get('bytes_per_shard', '-')!s:>7}  "
            + "  ".join(f"{rec.get(p, float('nan')):>6}" for p in (*PARTS, REPLICATED))
        )


if __name__ == "__main__":
    main()
