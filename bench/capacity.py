"""Cameras per core: how many cameras at 5 fps this machine counts in real
time, with the motion gate and the int8 model against today's path.

Two parts, in one run:

1. *Detector calls and counts* on every clip with counted truth
   (tests/data/truth.yaml, read from ../shared/data where they lie): each
   clip counted by the reference run (``count_video``) with the float model
   and the gate off (today's path), the gate on, int8, and both; printed:
   frames sent to the detector, counts, and whether the counts are the same
   as today's (for the gate they must be; for int8 the difference is shown
   against the truth).
2. *Cameras per core*: K camera loops in K processes, each counting a shared
   clip (a mix, looped) sampled at 5 fps and paced in real time (a frame is
   not read before its time), with its own detector on one thread. A run
   keeps up when no camera's lag (wall clock minus the frame's due time)
   grows over the run. K doubles until a run falls behind, then bisects;
   cameras per core is the largest K that keeps up over the machine's
   cores. The pipeline shares one batched detector between cameras, which
   this does not; the ratio between paths is the figure to read, the
   absolute one is a lower bound.

    python bench/capacity.py                  # both parts
    python bench/capacity.py --part calls     # part 1 only
    python bench/capacity.py --part cameras --seconds 20 --paths today,both

The int8 model is built into a temporary folder from the shared clips
(``models export --int8``'s code) unless ``--int8 FILE`` names one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camcount.config import AppConfig, CameraConfig
from camcount.detectors import DetectorSettings, build_detector
from camcount.reference import CountResult, count_video
from camcount.scenes.truth import load_truth_file

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TRUTH = ROOT / "tests" / "data" / "truth.yaml"
FPS = 5.0
#: The paths compared: (model, gate on).
PATHS = {
    "today": ("ssdlite-person", False),
    "gate": ("ssdlite-person", True),
    "int8": ("int8", False),
    "both": ("int8", True),
}


def detector(model: str, int8: Path, threads: int | None = None):
    options = {"threads": threads} if threads and model == "int8" else {}
    settings = DetectorSettings(device="cpu", options=options)
    if model == "int8":
        return build_detector(f"onnx:{int8}", settings)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return build_detector(model, settings)


def with_gate(camera: CameraConfig, on: bool, fps: float | None = None) -> CameraConfig:
    update: dict[str, object] = {"motion": camera.motion.model_copy(update={"enabled": on})}
    if fps is not None:
        update["fps"] = fps
    return camera.model_copy(update=update)


# ------------------------------------------------------------ part 1: calls


def calls(int8: Path) -> list[dict[str, object]]:
    truth = load_truth_file(TRUTH)
    rows = []
    for clip in truth.clips:
        video = DATA / clip.video
        if not video.is_file() or clip.unmeasurable(("person",)):
            continue
        base = clip.camera(video)
        row: dict[str, object] = {"clip": video.name, "true": clip_total(clip)}
        today: list | None = None
        for name, (model, gate) in PATHS.items():
            camera = with_gate(base, gate)
            config = AppConfig(cameras=(camera,))
            t0 = time.perf_counter()
            result = count_video(config, camera, detector(model, int8))
            seconds = time.perf_counter() - t0
            totals = counted(result)
            today = totals if name == "today" else today
            row[name] = {
                "detected": result.frames_detected,
                "frames": result.frames_processed,
                "counted": sum(totals.values()),
                "same_as_today": totals == today,
                "seconds": round(seconds, 1),
            }
        rows.append(row)
    return rows


def clip_total(clip) -> int:
    return sum(line.total("in") + line.total("out") for line in clip.lines)


def counted(result: CountResult) -> dict[tuple[str, str, str], int]:
    return {(r["counter_id"], r["class_name"], r["direction"]): r["count"] for r in result.totals}


# --------------------------------------------------------- part 2: cameras


@dataclass(frozen=True)
class Trial:
    cameras: int
    keeps_up: bool
    worst_lag_s: float
    lag_growth_s: float
    skipped: float


def camera_loop(
    index: int, video: str, model: str, gate: bool, int8: str, seconds: float, out
) -> None:
    """One camera: its clip looped, sampled at FPS, paced, counted."""
    from camcount.detectors.detections import Detections
    from camcount.vision.gating import DetectorGate
    from camcount.vision.processor import CameraProcessor
    from camcount.vision.video import VideoFile

    camera = with_gate(CameraConfig(id=f"cam{index}", source=video), gate, FPS)
    det = detector(model, Path(int8), threads=1)
    gate_ = DetectorGate(camera.motion.settings())
    lags: list[tuple[float, float]] = []
    start = time.monotonic()
    due = start
    frames = 0
    processor: CameraProcessor | None = None

    def tracks() -> int:
        return processor.tracker.track_count if processor is not None else 0

    while time.monotonic() - start < seconds:
        with VideoFile(video, FPS) as clip:
            if processor is None:
                from camcount.config import TrackerConfig

                processor = CameraProcessor(
                    camera, TrackerConfig(), det.class_names, clip.frame_size, FPS
                )
            for frame in clip:
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                lags.append((due - start, time.monotonic() - due))
                if gate_.decide(frame.image, frame.time, tracks, 0) == "skipped":
                    dets = Detections.empty()
                else:
                    from camcount.detectors import FrameMeta

                    meta = [FrameMeta(camera.id, frame.index, clip.frame_size)]
                    dets = det.detect([det.prepare(frame.image)], meta)[0]
                processor.process(dets, frames, start + frames / FPS)
                frames += 1
                due = start + frames / FPS
                if time.monotonic() - start >= seconds:
                    break
    half = [lag for t, lag in lags if t >= seconds / 2]
    first = [lag for t, lag in lags if t < seconds / 2]
    out.put(
        (
            max((lag for _, lag in lags), default=0.0),
            (sum(half) / len(half) if half else 0.0) - (sum(first) / len(first) if first else 0.0),
            gate_.skipped / max(frames, 1),
        )
    )


def trial(k: int, model: str, gate: bool, int8: Path, videos: list[Path], seconds: float) -> Trial:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=camera_loop,
            args=(i, str(videos[i % len(videos)]), model, gate, str(int8), seconds, out),
        )
        for i in range(k)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds * 6 + 120) for _ in procs]
    for p in procs:
        p.join()
    worst = max(r[0] for r in results)
    growth = max(r[1] for r in results)
    skipped = sum(r[2] for r in results) / len(results)
    # Keeping up: the lag neither grows by more than a frame over the run
    # nor ends above a second.
    return Trial(k, growth < 1 / FPS and worst < 1.0 + seconds / 10, worst, growth, skipped)


def most_cameras(
    model: str, gate: bool, int8: Path, videos: list[Path], seconds: float, log
) -> tuple[int, list[Trial]]:
    trials: list[Trial] = []
    good, bad = 0, None
    k = 1
    while bad is None and k <= 256:
        t = trial(k, model, gate, int8, videos, seconds)
        trials.append(t)
        log(t)
        if t.keeps_up:
            good, k = k, k * 2
        else:
            bad = k
    while bad is not None and bad - good > 1:
        k = (good + bad) // 2
        t = trial(k, model, gate, int8, videos, seconds)
        trials.append(t)
        log(t)
        good, bad = (k, bad) if t.keeps_up else (good, k)
    return good, trials


def build_int8(folder: Path) -> Path:
    from camcount.detectors.quantize import export_int8

    videos = sorted((DATA / "videos").glob("*"))
    return export_int8(
        folder / "int8.onnx", videos, progress=lambda m: print(f"  {m}", file=sys.stderr)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("calls", "cameras", "both"), default="both")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"of {', '.join(PATHS)}")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each real-time run")
    ap.add_argument("--int8", type=Path, help="an int8 model file (default: built from the clips)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        ap.error(f"unknown paths {unknown}: choose from {list(PATHS)}")
    if not DATA.is_dir():
        ap.error(f"the shared clips are not at {DATA}")
    report: dict[str, object] = {"cores": os.cpu_count(), "fps": FPS}
    with tempfile.TemporaryDirectory() as tmp:
        int8 = args.int8 or build_int8(Path(tmp))
        if args.part in ("calls", "both"):
            report["calls"] = calls(int8)
            if not args.json:
                print_calls(report["calls"])  # type: ignore[arg-type]
        if args.part in ("cameras", "both"):
            videos = sorted((DATA / "videos").glob("*"))
            found = {}
            for name in paths:
                model, gate = PATHS[name]
                k, trials = most_cameras(
                    model,
                    gate,
                    int8,
                    videos,
                    args.seconds,
                    lambda t, n=name: print(f"  {n}: {t}", file=sys.stderr),
                )
                found[name] = {
                    "cameras": k,
                    "per_core": k / (os.cpu_count() or 1),
                    "trials": [t.__dict__ for t in trials],
                }
            report["cameras"] = found
            if not args.json:
                base = found.get("today", {}).get("cameras") or None
                print(f"\ncameras at {FPS:g} fps kept in real time on {os.cpu_count()} cores:")
                for name, r in found.items():
                    ratio = f"  {r['cameras'] / base:.2f}x today" if base else ""
                    print(f"  {name:6} {r['cameras']:4d} ({r['per_core']:.1f} per core){ratio}")
    if args.json:
        print(json.dumps(report, indent=2, default=str))


def print_calls(rows: list[dict[str, object]]) -> None:
    print(f"{'clip':44} {'path':6} {'detected':>9} {'frames':>7} {'counted':>8} {'true':>5} same")
    for row in rows:
        for name in PATHS:
            r = row[name]  # type: ignore[index]
            print(
                f"{row['clip']:44} {name:6} {r['detected']:9d} {r['frames']:7d} "
                f"{r['counted']:8d} {row['true']:5} {'yes' if r['same_as_today'] else 'NO'}"
            )


if __name__ == "__main__":
    main()
