"""Memory per camera at 1, 8 and 32 cameras per process, side by side.

A camera process costs ~190 MB resident before its first camera (Python,
OpenCV, Ray's worker, Serve's client), so how many cameras share one
(``pipeline.cameras_per_process``) decides the memory a thousand cameras
need. For each K of ``--per-process``, this runs K cameras in one camera
process (``camcount`` pipeline on a local Ray cluster, ``start_pipeline``)
on one synthetic scene, each camera playing it at its own pace
(``realtime``, looped) with the oracle detector, so the detector costs next
to nothing and every camera is asked for the same frames/s. After a
warm-up it measures, over ``--seconds``:

- frames/s per camera (frames counted over the window, the slowest and
  the mean): whether K cameras in one process keep the pace of one;
- the camera processes' memory (psutil): RSS (which also counts shared
  libraries and the object-store pages the cameras wrote their requests
  into), PSS (shared pages split between the processes that map them) and
  USS (what the process alone holds: freed when it ends), divided by the
  cameras it holds. The largest value sampled during the window.

Run::

    python bench/memory.py                          # K = 1, 8, 32
    python bench/memory.py --per-process 1,4 --seconds 10 --json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import ray

from camcount.config import (
    AppConfig,
    DetectorConfig,
    PipelineConfig,
    StorageConfig,
    WarehouseConfig,
    load_config,
)
from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene


def scene(folder: Path, fps: float, frames: int) -> AppConfig:
    video = write_scene(
        generate_scene(7, SceneLayout(fps=fps, frames=frames)), folder / "scene.mp4"
    )[0]
    return load_config(video.with_suffix(".yaml"))


def camera_pids(pipeline: Any, camera_ids: list[str]) -> set[int]:
    controller = pipeline.controller
    pids = set()
    for camera_id in camera_ids:
        link = ray.get(controller.camera_handle.remote(camera_id))
        pids.add(int(ray.get(link.__ray_call__.remote(lambda self: os.getpid()))))
    return pids


def memory_mb(pids: set[int]) -> dict[str, float]:
    """The processes' memory together, in MB."""
    total = {"rss": 0.0, "pss": 0.0, "uss": 0.0}
    for pid in pids:
        info = psutil.Process(pid).memory_full_info()
        for key in total:
            total[key] += getattr(info, key) / 2**20
    return total


def run(base: AppConfig, per_process: int, warmup_s: float, seconds: float, root: Path) -> dict:
    from serve_app.app import start_pipeline

    template = base.cameras[0].model_copy(update={"realtime": True, "loop": True})
    cameras = tuple(template.model_copy(update={"id": f"cam{i}"}) for i in range(per_process))
    config = AppConfig(
        cameras=cameras,
        detector=DetectorConfig(model="oracle"),
        warehouse=WarehouseConfig(enabled=False),
        storage=StorageConfig(
            root=f"file://{root / f'store{per_process}'}",
            checkpoint_interval_s=5,
            spare_camera=False,
        ),
        pipeline=PipelineConfig(cameras_per_process=per_process),
    )
    t0 = time.monotonic()
    pipeline = start_pipeline(config, api=False)
    started = time.monotonic() - t0
    ids = [c.id for c in cameras]
    try:
        pids = camera_pids(pipeline, ids)
        time.sleep(warmup_s)
        first = {c["camera_id"]: c["frames_processed"] for c in pipeline.status()["cameras"]}
        start = time.monotonic()
        peak = {"rss": 0.0, "pss": 0.0, "uss": 0.0}
        while time.monotonic() - start < seconds:
            for key, value in memory_mb(pids).items():
                peak[key] = max(peak[key], value)
            time.sleep(0.5)
        status = pipeline.status()["cameras"]
        took = time.monotonic() - start
    finally:
        pipeline.stop(checkpoint=False)
    fps = [(c["frames_processed"] - first[c["camera_id"]]) / took for c in status]
    return {
        "cameras_per_process": per_process,
        "processes": len(pids),
        "start_s": round(started, 1),
        "fps_min": round(min(fps), 2),
        "fps_mean": round(sum(fps) / len(fps), 2),
        "rss_per_camera_mb": round(peak["rss"] / per_process, 1),
        "pss_per_camera_mb": round(peak["pss"] / per_process, 1),
        "uss_per_camera_mb": round(peak["uss"] / per_process, 1),
        "process_rss_mb": round(peak["rss"], 1),
        "process_uss_mb": round(peak["uss"], 1),
    }


def measure(
    counts: list[int], fps: float = 10.0, warmup_s: float = 8.0, seconds: float = 15.0
) -> list[dict]:
    """One ``run`` per K of ``counts``, on a local Ray cluster started here
    and shut down after (bench/scale.py calls this too)."""
    from serve_app.app import connect_ray

    connect_ray(None, log_to_driver=False, cameras=max(counts))
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="camcount-memory-") as tmp:
            root = Path(tmp)
            base = scene(root, fps, frames=int(fps * 30))
            for k in counts:
                results.append(run(base, k, warmup_s, seconds, root))
    finally:
        ray.shutdown()
    return results


def table(results: list[dict], fps: float, seconds: float) -> str:
    """The figures as bench/RESULTS.md shows them."""
    lines = [
        f"# {dt.date.today()} {platform.node()} ({os.cpu_count()} cores), "
        f"{fps:g} fps a camera, {seconds:g} s window",
        "| cameras per process | frames/s per camera (min / mean) | RSS per camera | "
        "PSS per camera | USS per camera | process RSS | process USS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['cameras_per_process']} | {r['fps_min']} / {r['fps_mean']} | "
            f"{r['rss_per_camera_mb']} MB | {r['pss_per_camera_mb']} MB | "
            f"{r['uss_per_camera_mb']} MB | {r['process_rss_mb']} MB | "
            f"{r['process_uss_mb']} MB |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-process", default="1,8,32")
    parser.add_argument("--fps", type=float, default=10.0, help="each camera's pace")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(k) for k in args.per_process.split(",")]
    results = measure(counts, args.fps, args.warmup, args.seconds)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(table(results, args.fps, args.seconds))


if __name__ == "__main__":
    main()
