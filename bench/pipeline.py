"""Pipeline benchmark: camcount replay against the loop its peers' users run.

In one run, on the same frames (real person videos from ``../shared/data``,
each cut to its first ``--frames`` frames into a temporary folder) and the
same detector (the person SSDLite, CPU; by default exported once to ONNX and
run by onnxruntime, the CPU backend camcount recommends, ``--model
ssdlite-person`` for eager torch):

(a) bare model: ``Detector.detect`` in one process at batch 8 on frames
    decoded and resized beforehand: the ceiling for any pipeline;
(b) the peer as its users run it: one process, the videos one after the
    other, decode -> detect (batch 1) -> ``trackers.ByteTrackTracker`` ->
    ``supervision.LineZone``;
(c) ``camcount replay`` of the same N videos at once: camera actors, the
    batched Serve detector, aggregator shards, and the warehouse sink
    writing to an embedded chDB (``start_pipeline``, as the command does;
    the clock stops once the warehouse holds every row). Its frames/s are
    taken while every camera runs, from status sampled every 0.25 s from
    before the pipeline starts (cameras start together but each waits for
    its worker process; short clips end first). ``--reserve-cores 0`` runs
    it without the model's reserved core (``detector.reserve_cores``), for
    an A/B against the default ``auto``.

It prints frames/s for each, (c)/(a) (pipeline efficiency; target at least
0.8 on CPU) and (c)/(b) (target above 1.0 on CPU), for N = 1, 4, 8, and the
resident memory of the camera actors (target under 200 MB each; a camera
actor never imports torch): all of it (RSS, which also counts shared
libraries and the object-store pages a camera writes its requests into)
and its private part (anonymous memory, what each further camera adds),
the most any camera reached while all of them ran (higher than at the end,
when a finished camera has let its decoder and frames go).

Run (``make bench-deps`` first, for the peer)::

    python bench/pipeline.py                    # N = 1,4,8; 150 frames per video
    python bench/pipeline.py --cameras 1,4 --frames 100 --json
    python bench/pipeline.py --cameras 8 --frames 300 --reserve-cores 0
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from camcount.config import AppConfig, CameraConfig, DetectorConfig, LineConfig
from camcount.detectors import DetectorSettings, FrameMeta, build_detector

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
VIDEOS = (
    "intel_one-by-one-person-detection.mp4",
    "ahmetozlu_pedestrian_survaillance.mp4",
    "ahmetozlu_cutl.mp4",
)
THRESHOLD = 0.5


def cut_videos(n: int, frames: int, into: Path) -> list[Path]:
    """N short clips (the sample videos in turn), re-encoded once so that
    every path reads exactly the same files."""
    out = []
    for i in range(n):
        src = SHARED / VIDEOS[i % len(VIDEOS)]
        dst = into / f"cam{i}.avi"
        if not dst.exists():
            cap = cv2.VideoCapture(str(src))
            fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
            size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            writer = cv2.VideoWriter(str(dst), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
            for _ in range(frames):
                ok, img = cap.read()
                if not ok:
                    break
                writer.write(img)
            writer.release()
            cap.release()
        out.append(dst)
    return out


def line_for(video: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    cap = cv2.VideoCapture(str(video))
    w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
    cap.release()
    return ((0.05 * w, 0.6 * h), (0.95 * w, 0.6 * h))


def decode_all(video: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames


def settings(model: str) -> DetectorSettings:
    """One thread per detector process: what a Serve replica gets on CPU."""
    key = "threads" if model.startswith("onnx:") else "torch_threads"
    return DetectorSettings(score_threshold=THRESHOLD, options={key: 1})


def bare(videos: list[Path], model: str) -> tuple[float, int]:
    det = build_detector(model, settings(model))
    prepared, metas = [], []
    for v in videos:
        for i, img in enumerate(decode_all(v)):
            prepared.append(det.prepare(img))
            metas.append(FrameMeta(str(v), i, (img.shape[1], img.shape[0])))
    det.detect(prepared[:8], metas[:8])  # warm up
    t0 = time.perf_counter()
    for k in range(0, len(prepared), 8):
        det.detect(prepared[k : k + 8], metas[k : k + 8])
    return len(prepared) / (time.perf_counter() - t0), len(prepared)


def peer(videos: list[Path], model: str) -> tuple[float, int]:
    import supervision as sv
    from trackers import ByteTrackTracker

    det = build_detector(model, settings(model))
    n = 0
    t0 = time.perf_counter()
    for v in videos:
        (x0, y), (x1, _) = line_for(v)
        tracker = ByteTrackTracker(frame_rate=10, lost_track_buffer=90)
        zone = sv.LineZone(start=sv.Point(x1, y), end=sv.Point(x0, y))
        cap = cv2.VideoCapture(str(v))
        i = 0
        while True:
            ok, img = cap.read()
            if not ok:
                break
            d = det.detect(
                [det.prepare(img)], [FrameMeta(str(v), i, (img.shape[1], img.shape[0]))]
            )[0]
            tracked = tracker.update(
                sv.Detections(xyxy=d.xyxy, confidence=d.confidence, class_id=d.class_id)
            )
            zone.trigger(tracked)
            i += 1
        cap.release()
        n += i
    return n / (time.perf_counter() - t0), n


def detector_config(model: str, reserve_cores: str) -> DetectorConfig:
    reserve: int | Literal["auto"] = "auto" if reserve_cores == "auto" else int(reserve_cores)
    return DetectorConfig(
        model=model,
        score_threshold=THRESHOLD,
        max_batch_size=8,
        batch_wait_timeout_s=0.02,
        options=dict(settings(model).options),
        reserve_cores=reserve,
    )


def camcount_replay(
    videos: list[Path], detector: DetectorConfig, tmp: Path
) -> tuple[float, int, dict[str, float], bool]:
    import ray

    from camcount.config import StorageConfig, WarehouseConfig
    from serve_app.app import CONTROLLER_NAME, NAMESPACE, start_pipeline

    cameras = tuple(
        CameraConfig(
            id=f"cam{i}",
            source=str(v),
            lines=(LineConfig(id="line", points=line_for(v)),),
        )
        for i, v in enumerate(videos)
    )
    run = tmp / f"run{len(videos)}"
    config = AppConfig(
        cameras=cameras,
        detector=detector,
        warehouse=WarehouseConfig(url=f"chdb://{run}/chdb"),
        storage=StorageConfig(root=f"file://{run}/store"),
    )
    samples: list[tuple[float, int, bool]] = []
    peak = {"rss": 0.0, "private": 0.0}
    stop = threading.Event()

    def sample(cameras: list[dict[str, Any]]) -> None:
        """Steady state is while every camera runs: cameras start at
        different moments (each waits for its worker process) and the short
        clips end at different times. Memory is taken then too: a camera
        whose file has ended has let its decoder and frames go."""
        # A camera still starting has no counts yet ("unreachable" to the
        # controller while its worker process comes up).
        counted = [c.get("frames_processed", 0) for c in cameras]
        running = len(cameras) == len(videos) and all(
            n > 0 and c["state"] not in ("finished", "failed", "stopped")
            for n, c in zip(counted, cameras, strict=True)
        )
        samples.append((time.perf_counter(), sum(counted), running))
        if running:
            peak["rss"] = max(peak["rss"], *(c["rss_mb"] for c in cameras))
            peak["private"] = max(peak["private"], *(c["private_mb"] for c in cameras))

    def watch() -> None:
        """From before the pipeline starts: cameras count frames while the
        others are still starting, and that is part of the run."""
        controller = None
        while not stop.wait(0.25):
            try:
                controller = controller or ray.get_actor(CONTROLLER_NAME, namespace=NAMESPACE)
                sample(ray.get(controller.status.remote())["cameras"])
            except (ValueError, ray.exceptions.RayError):
                controller = None  # not created yet, or gone

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    pipeline = start_pipeline(config, api=False)
    try:
        started = time.perf_counter() - t0
        status = pipeline.wait_files()
        stop.set()
        watcher.join()
        stored = (
            ray.get(pipeline.sink.sql.remote("SELECT count() AS n FROM crossings FINAL"))
            .column("n")[0]
            .as_py()
        )
    finally:
        pipeline.stop()
    frames = sum(c["frames_processed"] for c in status["cameras"])
    crossings = sum(
        t["count"]
        for c in status["cameras"]
        for t in c["totals"]
        if t["direction"] in ("in", "out")
    )
    if stored != crossings:
        raise SystemExit(f"the warehouse holds {stored} crossings, the cameras counted {crossings}")
    for c in status["cameras"]:
        peak["rss"] = max(peak["rss"], c["rss_mb"])
        peak["private"] = max(peak["private"], c["private_mb"])
    torch_loaded = any(c["torch_loaded"] for c in status["cameras"])
    steady = [s for s in samples if s[2]]
    moving = [s for s in samples if s[1] > 0] or [(0.0, 0, False)]
    first, last = moving[0], moving[-1]
    overall = (last[1] - first[1]) / max(last[0] - first[0], 1e-9)
    fps = overall
    if len(steady) >= 2 and steady[-1][0] - steady[0][0] >= 2.0:
        fps = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0])
    print(
        f"  (c) N={len(videos)}: start_pipeline took {started:.1f} s; {overall:.1f} frames/s "
        f"from the first frame counted to the last, {fps:.1f}/s while all cameras ran; "
        f"{crossings} crossings stored"
    )
    return fps, frames, peak, torch_loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cameras", default="1,4,8")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument(
        "--model",
        default="onnx",
        help="onnx (the person SSDLite exported to ONNX, onnxruntime) or ssdlite-person (torch)",
    )
    parser.add_argument(
        "--reserve-cores",
        default="auto",
        help="detector.reserve_cores for (c): auto (the default config: one core for the "
        "model on CPU) or a number; 0 leaves every process where the kernel puts it",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"needs the sample videos in {SHARED}")
    import ray

    from serve_app.app import connect_ray

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model == "onnx":
            from camcount.detectors.onnx import export_ssdlite

            path = Path(tmp) / "ssdlite_person.onnx"
            export_ssdlite(path)
            model = f"onnx:{path}"
        detector = detector_config(model, args.reserve_cores)
        # The cluster `camcount replay` starts, without the workers' logs.
        connect_ray(None, log_to_driver=False)
        for n in [int(x) for x in args.cameras.split(",")]:
            videos = cut_videos(n, args.frames, Path(tmp))
            a, frames = bare(videos, model)
            b, _ = peer(videos, model)
            c, c_frames, peak, torch_loaded = camcount_replay(videos, detector, Path(tmp))
            rows.append(
                {
                    "cameras": n,
                    "model": args.model,
                    "reserve_cores": args.reserve_cores,
                    "frames": frames,
                    "bare_fps": round(a, 1),
                    "peer_fps": round(b, 1),
                    "camcount_fps": round(c, 1),
                    "camcount_frames": c_frames,
                    "efficiency_c_over_a": round(c / a, 2),
                    "speedup_c_over_b": round(c / b, 2),
                    "camera_rss_mb_max": peak["rss"],
                    "camera_private_mb_max": peak["private"],
                    "camera_imports_torch": torch_loaded,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    if args.json:
        print(
            json.dumps(
                {"date": dt.date.today().isoformat(), "machine": platform.machine(), "rows": rows}
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pipeline frames/s (person SSDLite, CPU)")
    for col in (
        "N",
        "frames",
        "(a) bare",
        "(b) peer",
        "(c) camcount",
        "c/a",
        "c/b",
        "camera RSS MB",
        "private MB",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            *(
                str(r[k])
                for k in (
                    "cameras",
                    "frames",
                    "bare_fps",
                    "peer_fps",
                    "camcount_fps",
                    "efficiency_c_over_a",
                    "speedup_c_over_b",
                    "camera_rss_mb_max",
                    "camera_private_mb_max",
                )
            )
        )
    Console().print(table)


if __name__ == "__main__":
    main()
