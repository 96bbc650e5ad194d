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
   grows over the run. Every camera loads its model before any starts its
   clock. K doubles (from 1 for today's path, from today's K for the
   others) until a run falls behind, then bisects; cameras per core is the
   largest K that keeps up over the machine's cores, and each path's ratio
   to today's is printed beside it. The pipeline shares one batched
   detector between cameras, which this does not; the ratio between paths
   is the figure to read, the absolute one is a lower bound. A path is a
   ``Way`` in ``PATHS``: its model and which frames go to it.

    python bench/capacity.py                  # both parts
    python bench/capacity.py --part calls     # part 1 only
    python bench/capacity.py --part cameras --paths today,int8   # ~10 min, quiet machine

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
#: Most cameras tried at once (each is a process holding its own model).
MAX_CAMERAS = 128


@dataclass(frozen=True)
class Way:
    """One path a camera's frames take: the model, and what decides which
    frames go to it."""

    model: str
    gate: bool = False
    # A path that runs the detector only every so often sets its interval
    # here and in ``detects`` below.


#: The paths compared.
PATHS = {
    "today": Way("ssdlite-person"),
    "gate": Way("ssdlite-person", gate=True),
    "int8": Way("int8"),
    "both": Way("int8", gate=True),
    # The float model on ONNX Runtime, as `int8` runs: which of int8's gain
    # is the runtime's and which the quantization's.
    "onnx": Way("onnx"),
}
#: Paths whose model is an ONNX file made for the run (by ``models``).
ONNX_MODELS = ("int8", "onnx")


def detector(model: str, files: dict[str, str], threads: int | None = None):
    """``files``: the ONNX file of each of ``ONNX_MODELS`` this run uses."""
    options = {"threads": threads} if threads and model in ONNX_MODELS else {}
    settings = DetectorSettings(device="cpu", options=options)
    if model in ONNX_MODELS:
        return build_detector(f"onnx:{files[model]}", settings)
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


def calls(files: dict[str, str], names: list[str]) -> list[dict[str, object]]:
    """``names``: the paths counted (today's always, first: the others are
    compared with it)."""
    truth = load_truth_file(TRUTH)
    rows = []
    for clip in truth.clips:
        video = DATA / clip.video
        if not video.is_file() or clip.unmeasurable(("person",)):
            continue
        base = clip.camera(video)
        row: dict[str, object] = {"clip": video.name, "true": clip_total(clip)}
        today: list | None = None
        for name in ["today", *(n for n in names if n != "today")]:
            way = PATHS[name]
            camera = with_gate(base, way.gate)
            config = AppConfig(cameras=(camera,))
            t0 = time.perf_counter()
            result = count_video(config, camera, detector(way.model, files))
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
    wall_s: float


def camera_loop(
    index: int, video: str, way: Way, files: dict[str, str], seconds: float, ready, go, out
) -> None:
    """One camera: its clip looped, sampled at FPS, paced, counted. It loads
    its model first and starts its clock only when every camera has, so no
    camera's lag holds another's loading."""
    from camcount.config import TrackerConfig
    from camcount.detectors import FrameMeta
    from camcount.detectors.detections import Detections
    from camcount.vision.gating import DetectorGate
    from camcount.vision.processor import CameraProcessor
    from camcount.vision.video import VideoFile

    camera = with_gate(CameraConfig(id=f"cam{index}", source=video), way.gate, FPS)
    det = detector(way.model, files, threads=1)
    gate = DetectorGate(camera.motion.settings())
    processor: CameraProcessor | None = None

    def tracks() -> int:
        return processor.tracker.track_count if processor is not None else 0

    def detects(image, frame_time: float) -> bool:
        """Whether this frame goes to the detector on this path."""
        return gate.decide(image, frame_time, tracks, 0) != "skipped"

    with VideoFile(video, FPS) as clip:  # the first call allocates: not in the lag
        opening = next(iter(clip))
        det.detect([det.prepare(opening.image)], [FrameMeta(camera.id, 0, clip.frame_size)])
    ready.release()
    go.wait()
    lags: list[tuple[float, float]] = []
    start = time.monotonic()
    frames = 0
    while time.monotonic() - start < seconds:
        with VideoFile(video, FPS) as clip:
            if processor is None:
                processor = CameraProcessor(
                    camera, TrackerConfig(), det.class_names, clip.frame_size, FPS
                )
            for frame in clip:
                due = start + frames / FPS
                now = time.monotonic()
                if now < due:
                    time.sleep(due - now)
                lags.append((due - start, time.monotonic() - due))
                if detects(frame.image, frames / FPS):
                    meta = [FrameMeta(camera.id, frame.index, clip.frame_size)]
                    dets = det.detect([det.prepare(frame.image)], meta)[0]
                else:
                    dets = Detections.empty()
                processor.process(dets, frames, start + frames / FPS)
                frames += 1
                if time.monotonic() - start >= seconds:
                    break
    half = [lag for t, lag in lags if t >= seconds / 2]
    first = [lag for t, lag in lags if t < seconds / 2]
    out.put(
        (
            # Once settled: a camera that catches up after the first calls keeps up.
            max(half, default=0.0),
            (sum(half) / len(half) if half else 0.0) - (sum(first) / len(first) if first else 0.0),
            gate.skipped / max(frames, 1),
        )
    )


def trial(k: int, way: Way, files: dict[str, str], videos: list[Path], seconds: float) -> Trial:
    t0 = time.monotonic()
    ctx = mp.get_context("spawn")
    out, ready, go = ctx.Queue(), ctx.Semaphore(0), ctx.Event()
    procs = [
        ctx.Process(
            target=camera_loop,
            args=(i, str(videos[i % len(videos)]), way, files, seconds, ready, go, out),
            daemon=True,
        )
        for i in range(k)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        if not ready.acquire(timeout=300):
            raise RuntimeError(f"a camera of {k} did not load its model in 5 minutes")
    go.set()
    results = [out.get(timeout=seconds * 6 + 120) for _ in procs]
    for p in procs:
        p.join()
    worst = max(r[0] for r in results)
    growth = max(r[1] for r in results)
    skipped = sum(r[2] for r in results) / len(results)
    # Keeping up: the lag neither grows by more than a frame over the run
    # nor, in its second half, goes above a second (plus a tenth of the run).
    keeps_up = growth < 1 / FPS and worst < 1.0 + seconds / 10
    return Trial(k, keeps_up, worst, growth, skipped, time.monotonic() - t0)


def most_cameras(
    way: Way, files: dict[str, str], videos: list[Path], seconds: float, log, start: int = 1
) -> tuple[int, list[Trial]]:
    """Doubling from ``start`` until a run falls behind, then bisecting."""
    trials: list[Trial] = []
    good, bad = 0, None
    k = max(1, start)
    while bad is None and k <= MAX_CAMERAS:
        t = trial(k, way, files, videos, seconds)
        trials.append(t)
        log(t)
        if t.keeps_up:
            good, k = k, k * 2
        elif k > 1 and good == 0:
            bad, k = k, k // 2  # the start was too high: go down first
            while k >= 1 and good == 0:
                t = trial(k, way, files, videos, seconds)
                trials.append(t)
                log(t)
                if t.keeps_up:
                    good = k
                else:
                    bad, k = k, k // 2
        else:
            bad = k
    while bad is not None and bad - good > 1:
        k = (good + bad) // 2
        t = trial(k, way, files, videos, seconds)
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


def models(tmp: Path, args: argparse.Namespace, paths: list[str]) -> dict[str, str]:
    """The ONNX files the paths run need (part 1 runs every path)."""
    used = {PATHS[p].model for p in paths}
    files: dict[str, str] = {}
    if "int8" in used:
        files["int8"] = str(args.int8 or build_int8(tmp))
    if "onnx" in used:
        from camcount.detectors.onnx import export_ssdlite

        files["onnx"] = str(export_ssdlite(tmp / "float.onnx"))
    return files


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
        files = models(Path(tmp), args, paths)
        if args.part in ("calls", "both"):
            report["calls"] = calls(files, paths)
            if not args.json:
                print_calls(report["calls"])  # type: ignore[arg-type]
        if args.part in ("cameras", "both"):
            videos = sorted((DATA / "videos").glob("*"))
            found: dict[str, dict[str, object]] = {}
            t0 = time.monotonic()
            # Today's path first: every other path starts its search at
            # today's count, which it should not fall below.
            for name in sorted(paths, key=lambda n: n != "today"):
                k, trials = most_cameras(
                    PATHS[name],
                    files,
                    videos,
                    args.seconds,
                    lambda t, n=name: print(f"  {n}: {t}", file=sys.stderr, flush=True),
                    start=int(found.get("today", {}).get("cameras", 1) or 1),  # type: ignore[call-overload]
                )
                found[name] = {
                    "cameras": k,
                    "per_core": k / (os.cpu_count() or 1),
                    "trials": [t.__dict__ for t in trials],
                }
            report["cameras"] = found
            report["cameras_wall_s"] = round(time.monotonic() - t0, 1)
            if not args.json:
                base = found.get("today", {}).get("cameras") or None
                print(f"\ncameras at {FPS:g} fps kept in real time on {os.cpu_count()} cores:")
                for name, r in found.items():
                    ratio = f"  {r['cameras'] / base:.2f}x today" if base else ""  # type: ignore[operator]
                    print(f"  {name:6} {r['cameras']:4d} ({r['per_core']:.2f} per core){ratio}")
                print(f"  ({report['cameras_wall_s']} s)")
    if args.json:
        print(json.dumps(report, indent=2, default=str))


def print_calls(rows: list[dict[str, object]]) -> None:
    print(f"{'clip':44} {'path':6} {'detected':>9} {'frames':>7} {'counted':>8} {'true':>5} same")
    for row in rows:
        for name in (n for n in PATHS if n in row):
            r = row[name]  # type: ignore[index]
            print(
                f"{row['clip']:44} {name:6} {r['detected']:9d} {r['frames']:7d} "
                f"{r['counted']:8d} {row['true']:5} {'yes' if r['same_as_today'] else 'NO'}"
            )


if __name__ == "__main__":
    main()
