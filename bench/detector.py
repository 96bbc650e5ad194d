"""Detector benchmark: the person SSDLite bare, through Ray Serve, and on onnxruntime.

What it measures, in one process invocation, on the same real frames
(``intel_one-by-one-person-detection.mp4``, every 10th frame, prepared to
300x300 RGB by ``Detector.prepare`` exactly as a camera does):

- bare: images/s of ``SSDLitePerson.detect`` in this process, at batch
  sizes 1, 4 and 8;
- serve: images/s through ``serve_app.detector.detector_app`` (one replica,
  ``max_batch_size`` = the batch size) with 2 x batch-size concurrent async
  callers in this process, so full batches can form; the batch sizes the
  replica saw come from its ``stats``. Frames travel by value, as a
  camera's do, so their serialisation is part of the cost;
- the ratio serve / bare (target: at least 0.9 at batch 8 on CPU);
- onnxruntime: the same network exported by ``camcount models export``
  (``camcount.detectors.onnx``) against eager torch, same batch sizes,
  same thread count; and their agreement on the reference image.

With ``--slicing``, only this (no Ray, about a minute): the cost per frame
of slicing (camcount.detectors.slicing) for the person SSDLite in this process, on
every 10th frame of the busy street clip ``ahmetozlu_cutl.mp4`` (854x480),
side by side with the whole frame alone: ms and frames/s per frame, from the
decoded frame to merged detections (resizing and cropping included, batches
of ``--frames-per-batch`` frames and model calls of as many inputs, as
``camcount count`` forms them), model
inputs per frame, and the people found per frame at the score threshold and
at the tracker's stages (0.5 is matched first, a track started at 0.6
confirms soonest). Each
batch of frames is timed in every setting back to back, and the cost is the
median over batches of the ratio to the whole frame on the same batch (see
``bench_slicing``), so a shared machine's passing load touches both sides.

Both torch sides and onnxruntime use the same thread count (``--threads``,
default 1), passed as the detector option ``torch_threads`` and as
``threads`` for onnxruntime. One thread is what Ray gives the replica by
itself (``OMP_NUM_THREADS`` = its ``num_cpus``, 1), and it leaves a core to
the callers' serialisation; with as many torch threads as cores, any other
runnable process makes torch's OpenMP barriers collapse throughput, which
on a shared machine measures the neighbours rather than Serve (see
``bench/RESULTS.md``). Ray runs its workers, the replica included, at nice
15; ``RAY_worker_niceness=0`` and ``OMP_WAIT_POLICY`` in the environment
reach the replica and are recorded in the JSON.

Timing: for each batch size the sides alternate in ``--rounds`` rounds of
``--seconds`` each, after a warm-up, and the best round of each side is
reported (the machine may be shared: the best round is the one least
disturbed; the median per-round ratio is printed beside it). With a CUDA
device, bare and serve are repeated on it in fp16.

Run::

    python bench/detector.py            # about 3-4 minutes on 2 cores
    python bench/detector.py --threads 2 --skip-onnx
    python bench/detector.py --json     # the table on stderr, one JSON object on stdout
    python bench/detector.py --slicing  # slicing's cost per frame only, no Ray

Video: "Sample videos by Intel IoT Developer Kit
(github.com/intel-iot-devkit/sample-videos), licensed under Creative Commons
Attribution 4.0 International."
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camcount.detectors import DetectorSettings, FrameMeta, build_detector
from camcount.detectors.base import Detector, Frame
from camcount.detectors.detections import Detections
from camcount.detectors.slicing import SliceSettings, detect_sliced, plan_regions
from camcount.vision.tracking import TrackerSettings
from camcount.vision.video import VideoFile

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VIDEO = DATA / "videos" / "intel_one-by-one-person-detection.mp4"
STREET = DATA / "videos" / "ahmetozlu_cutl.mp4"
IMAGE = DATA / "images" / "ssdlite_example.jpg"
MODEL = "ssdlite-person"
BATCH_WAIT_TIMEOUT_S = 0.02


@dataclass
class Row:
    """One batch size on one device: best images/s of each side over the rounds."""

    device: str
    batch: int
    bare: list[float] = field(default_factory=list)
    serve: list[float] = field(default_factory=list)
    serve_batches: Counter[int] = field(default_factory=Counter)
    torch_cpu: list[float] = field(default_factory=list)
    onnx: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"device": self.device, "batch": self.batch}
        for name in ("bare", "serve", "torch_cpu", "onnx"):
            values = getattr(self, name)
            if values:
                out[f"{name}_images_per_s"] = round(max(values), 2)
                out[f"{name}_rounds"] = [round(v, 2) for v in values]
        if self.bare and self.serve:
            out["serve_over_bare"] = round(max(self.serve) / max(self.bare), 3)
            out["serve_over_bare_median_round"] = round(
                statistics.median(s / b for s, b in zip(self.serve, self.bare, strict=True)), 3
            )
            out["serve_batch_sizes"] = dict(sorted(self.serve_batches.items()))
        if self.torch_cpu and self.onnx:
            out["onnx_over_torch"] = round(max(self.onnx) / max(self.torch_cpu), 3)
            out["onnx_over_torch_median_round"] = round(
                statistics.median(o / t for o, t in zip(self.onnx, self.torch_cpu, strict=True)), 3
            )
        return out


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_frames(detector: Detector, count: int, step: int) -> tuple[list[Frame], tuple[int, int]]:
    frames: list[Frame] = []
    with VideoFile(VIDEO) as video:
        for decoded in video:
            if decoded.index % step == 0:
                frames.append(detector.prepare(decoded.image))
            if len(frames) == count:
                break
        return frames, video.frame_size


def time_bare(
    detector: Detector, frames: Sequence[Frame], metas: Sequence[FrameMeta], batch: int, s: float
) -> float:
    """Images/s of back-to-back ``detect`` calls on batches cycling through the frames."""
    done, i = 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < s:
        chunk = [(i + k) % len(frames) for k in range(batch)]
        detector.detect([frames[k] for k in chunk], [metas[k] for k in chunk])
        done += batch
        i += batch
    return done / (time.perf_counter() - started)


async def _callers(
    handle: Any, frames: Sequence[Frame], metas: Sequence[FrameMeta], callers: int, s: float
) -> float:
    """``callers`` loops, each awaiting one frame at a time, as cameras with one
    request in flight each; images/s over all of them."""
    done = 0
    deadline = time.perf_counter() + s

    async def loop(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            k = i % len(frames)
            await handle.detect.remote(frames[k], metas[k])
            done += 1
            i += callers

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in range(callers)))
    return done / (time.perf_counter() - started)


def time_serve(
    handle: Any, frames: Sequence[Frame], metas: Sequence[FrameMeta], batch: int, s: float
) -> tuple[float, Counter[int]]:
    before = Counter(handle.stats.remote().result()["batch_sizes"])
    rate = asyncio.run(_callers(handle, frames, metas, 2 * batch, s))
    after = Counter(handle.stats.remote().result()["batch_sizes"])
    return rate, after - before


def deploy(batch: int, device: str, options: dict[str, Any], access_log: bool) -> Any:
    from ray import serve

    from camcount.config import DetectorConfig
    from serve_app.detector import detector_app

    config = DetectorConfig(
        model=MODEL,
        device=device,  # type: ignore[arg-type]
        max_batch_size=batch,
        batch_wait_timeout_s=BATCH_WAIT_TIMEOUT_S,
        num_gpus=1.0 if device == "cuda" else 0.0,
        options=options,
    )
    # Serve writes one access-log line per request by default: at tens of frames/s
    # that is CPU taken from the model, so the bench runs as an operator would.
    logging = {"enable_access_log": access_log, "log_level": "INFO" if access_log else "WARNING"}
    return serve.run(
        detector_app(config), name="bench-detector", route_prefix=None, logging_config=logging
    )


def bench_bare_and_serve(
    rows: list[Row],
    device: str,
    batches: Sequence[int],
    frames: Sequence[Frame],
    metas: Sequence[FrameMeta],
    options: dict[str, Any],
    args: argparse.Namespace,
) -> None:
    from ray import serve

    bare = build_detector(MODEL, DetectorSettings(device=device, options=options))
    for batch in batches:
        row = Row(device, batch)
        rows.append(row)
        handle = deploy(batch, device, options, args.access_log)
        time_bare(bare, frames, metas, batch, args.warmup)
        time_serve(handle, frames, metas, batch, args.warmup)
        for r in range(args.rounds):
            row.bare.append(time_bare(bare, frames, metas, batch, args.seconds))
            time.sleep(0.3)  # let spinning OpenMP threads of one side go idle
            rate, sizes = time_serve(handle, frames, metas, batch, args.seconds)
            row.serve.append(rate)
            row.serve_batches.update(sizes)
            time.sleep(0.3)
            say(
                f"  {device} batch {batch} round {r + 1}: bare {row.bare[-1]:.1f} img/s, "
                f"serve {rate:.1f} img/s, batches {dict(sorted(sizes.items()))}"
            )
        serve.delete("bench-detector")


def bench_onnx(
    rows: list[Row],
    batches: Sequence[int],
    frames: Sequence[Frame],
    metas: Sequence[FrameMeta],
    threads: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    from camcount.detectors.onnx import export_ssdlite

    with tempfile.TemporaryDirectory(prefix="camcount-bench-") as tmp:
        path = Path(tmp) / "ssdlite_person.onnx"
        started = time.perf_counter()
        export_ssdlite(path)
        export_s = time.perf_counter() - started
        say(f"  exported {path.name} in {export_s:.1f} s")
        eager = build_detector(
            MODEL, DetectorSettings(device="cpu", options={"torch_threads": threads})
        )
        onnx = build_detector(
            f"onnx:{path}", DetectorSettings(device="cpu", options={"threads": threads})
        )
        agreement = compare_on_reference(eager, onnx)
        for batch in batches:
            row = next(r for r in rows if r.device == "cpu" and r.batch == batch)
            time_bare(eager, frames, metas, batch, args.warmup)
            time_bare(onnx, frames, metas, batch, args.warmup)
            for r in range(args.rounds):
                row.torch_cpu.append(time_bare(eager, frames, metas, batch, args.seconds))
                time.sleep(0.3)
                row.onnx.append(time_bare(onnx, frames, metas, batch, args.seconds))
                time.sleep(0.3)
                say(
                    f"  cpu batch {batch} round {r + 1}: torch {row.torch_cpu[-1]:.1f} img/s, "
                    f"onnxruntime {row.onnx[-1]:.1f} img/s"
                )
    return {"export_s": round(export_s, 1), **agreement}


def compare_on_reference(eager: Detector, onnx: Detector) -> dict[str, Any]:
    """Largest box and score difference between the two on the reference image."""
    image = cv2.imread(str(IMAGE))
    meta = [FrameMeta(str(IMAGE), 0, (image.shape[1], image.shape[0]))]
    a = eager.detect([eager.prepare(image)], meta)[0]
    b = onnx.detect([onnx.prepare(image)], meta)[0]
    same = len(a) == len(b)
    return {
        "reference_boxes": [len(a), len(b)],
        "max_box_diff_px": float(np.abs(a.xyxy - b.xyxy).max()) if same and len(a) else None,
        "max_score_diff": float(np.abs(a.confidence - b.confidence).max())
        if same and len(a)
        else None,
    }


def table(rows: Sequence[Row]) -> str:
    head = (
        "| device | batch | bare img/s | serve img/s | serve/bare (median round) | "
        "serve batch sizes | torch img/s | onnxruntime img/s | onnx/torch (median round) |"
    )
    lines = [head, "|" + "---|" * 9]
    for row in rows:
        s = row.summary()

        def cell(key: str, s: dict[str, Any] = s) -> str:
            return f"{s[key]:.1f}" if key in s else "-"

        def ratio(key: str, s: dict[str, Any] = s) -> str:
            return f"{s[key]:.2f} ({s[key + '_median_round']:.2f})" if key in s else "-"

        sizes = ", ".join(f"{k}: {v}" for k, v in s.get("serve_batch_sizes", {}).items())
        lines.append(
            f"| {row.device} | {row.batch} | {cell('bare_images_per_s')} | "
            f"{cell('serve_images_per_s')} | {ratio('serve_over_bare')} | {sizes or '-'} | "
            f"{cell('torch_cpu_images_per_s')} | {cell('onnx_images_per_s')} | "
            f"{ratio('onnx_over_torch')} |"
        )
    return "\n".join(lines)


#: The tracker's score stages (its defaults): a detection at ``high`` or more
#: is matched first and may start a track, one below it only keeps a track
#: going, and a track started at ``new_track`` or more confirms soonest.
TRACKER_STAGES = {
    "high": TrackerSettings().high_threshold,
    "new_track": TrackerSettings().new_track_threshold,
}
#: (name, settings): the whole frame alone, then slicings an operator would try.
SLICINGS: tuple[tuple[str, SliceSettings | None], ...] = (
    ("whole frame", None),
    ("grid 2x2", SliceSettings(grid=(2, 2))),
    ("grid 3x2", SliceSettings(grid=(3, 2))),
    ("tiles 300x300 (the model's input)", SliceSettings(tile_px=(300, 300))),
)


def detect_frames(
    detector: Detector,
    frames: Sequence[Frame],
    metas: Sequence[FrameMeta],
    slicing: SliceSettings | None,
    batch: int,
) -> list[Detections]:
    """Decoded BGR frames to one frame's detections each, as ``camcount count`` runs them."""
    out: list[Detections] = []
    for start in range(0, len(frames), batch):
        chunk, chunk_metas = frames[start : start + batch], metas[start : start + batch]
        if slicing is None:
            out.extend(detector.detect([detector.prepare(f) for f in chunk], chunk_metas))
        else:
            out.extend(detect_sliced(detector, chunk, chunk_metas, slicing, batch))
    return out


def bench_slicing(args: argparse.Namespace) -> dict[str, Any]:
    """Every setting on one batch of frames, back to back, batch after batch
    and round after round; see the module's ``--slicing``.

    A shared machine's load comes and goes in seconds, so a setting timed
    alone over all frames (a sliced pass takes many times a whole one) meets
    other load than the whole frame's pass. Here each batch is timed in every
    setting within a second or two, in an order that turns each round, and
    the cost against the whole frame is the median over batches of the
    ratio on the same batch."""
    detector = build_detector(
        MODEL,
        DetectorSettings(
            score_threshold=args.threshold, device="cpu", options={"torch_threads": args.threads}
        ),
    )
    with VideoFile(STREET) as video:
        frames = [f.image for f in video if f.index % 10 == 0]
        size = video.frame_size
    metas = [FrameMeta(str(STREET), i, size) for i in range(len(frames))]
    say(f"{len(frames)} frames of {STREET.name} ({size[0]}x{size[1]}), {args.threads} threads")
    step = args.frames_per_batch
    batches = [(s, min(s + step, len(frames))) for s in range(0, len(frames), step)]
    per_frame_s: dict[str, list[float]] = {name: [] for name, _ in SLICINGS}
    ratios: dict[str, list[float]] = {name: [] for name, _ in SLICINGS}
    found: dict[str, list[Detections]] = {name: [] for name, _ in SLICINGS}
    for _, slicing in SLICINGS:  # warm-up: first calls allocate
        detect_frames(detector, frames[:step], metas[:step], slicing, step)
    for r in range(args.rounds):
        for b, (lo, hi) in enumerate(batches):
            taken: dict[str, float] = {}
            turn = (r + b) % len(SLICINGS)
            for name, slicing in SLICINGS[turn:] + SLICINGS[:turn]:
                started = time.perf_counter()
                out = detect_frames(detector, frames[lo:hi], metas[lo:hi], slicing, step)
                taken[name] = time.perf_counter() - started
                per_frame_s[name].append(taken[name] / (hi - lo))
                if r == 0:
                    found[name].extend(out)
            for name in taken:
                ratios[name].append(taken[name] / taken[SLICINGS[0][0]])
        medians = ", ".join(
            f"{n} {statistics.median(v) * 1000:.0f} ms" for n, v in per_frame_s.items()
        )
        say(f"  after round {r + 1}, median per frame: {medians}")
    rows = []
    for name, slicing in SLICINGS:
        median = statistics.median(per_frame_s[name])
        people = found[name]
        rows.append(
            {
                "setting": name,
                "inputs_per_frame": len(plan_regions(size, slicing)) if slicing else 1,
                "ms_per_frame": round(median * 1000, 1),
                "frames_per_s": round(1 / median, 2),
                "cost_over_whole": round(statistics.median(ratios[name]), 2),
                "cost_over_whole_quartiles": [
                    round(q, 2) for q in statistics.quantiles(ratios[name], n=4)
                ],
                "ms_per_frame_best": round(min(per_frame_s[name]) * 1000, 1),
                "people_per_frame": round(sum(len(d) for d in people) / len(frames), 2),
                **{
                    f"people_per_frame_at_{stage}": round(
                        sum(int((d.confidence >= score).sum()) for d in people) / len(frames), 2
                    )
                    for stage, score in TRACKER_STAGES.items()
                },
            }
        )
    return {
        "video": STREET.name,
        "frames": len(frames),
        "frame_size": list(size),
        "score_threshold": args.threshold,
        "frames_per_batch": step,
        "timed_batches_per_setting": len(batches) * args.rounds,
        "rows": rows,
    }


def slicing_table(result: dict[str, Any]) -> str:
    stages = " | ".join(f"people/frame >= {v} ({k})" for k, v in TRACKER_STAGES.items())
    lines = [
        f"| setting | model inputs/frame | ms/frame (median) | frames/s | "
        f"cost vs whole (median ratio per batch) | "
        f"people/frame >= {result['score_threshold']} | {stages} |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(TRACKER_STAGES),
    ]
    for r in result["rows"]:
        found = " | ".join(f"{r[f'people_per_frame_at_{k}']:.1f}" for k in TRACKER_STAGES)
        lines.append(
            f"| {r['setting']} | {r['inputs_per_frame']} | {r['ms_per_frame']:.1f} | "
            f"{r['frames_per_s']:.2f} | {r['cost_over_whole']:.2f}x "
            f"({r['cost_over_whole_quartiles'][0]:.2f}-{r['cost_over_whole_quartiles'][2]:.2f}) | "
            f"{r['people_per_frame']:.1f} | {found} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import onnxruntime
    import ray
    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "ray": ray.__version__,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--batches", default="1,4,8", help="batch sizes, comma separated")
    p.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=4.0, help="length of one timed round")
    p.add_argument("--warmup", type=float, default=1.5, help="untimed seconds per side and size")
    p.add_argument("--frames", type=int, default=64, help="distinct frames to cycle through")
    p.add_argument("--skip-onnx", action="store_true")
    p.add_argument("--access-log", action="store_true", help="keep Serve's per-request log")
    p.add_argument("--json", action="store_true", help="print JSON on stdout (tables to stderr)")
    p.add_argument(
        "--slicing", action="store_true", help="only slicing's cost per frame (no Ray, no onnx)"
    )
    p.add_argument("--threshold", type=float, default=0.3, help="score threshold (--slicing)")
    p.add_argument("--frames-per-batch", type=int, default=8, help="frames per call (--slicing)")
    args = p.parse_args(argv)
    if args.slicing:
        return main_slicing(args, argv)
    batches = [int(b) for b in args.batches.split(",")]
    if not VIDEO.is_file():
        say(f"real data not found at {VIDEO}")
        return 2

    import ray
    import torch
    from ray import serve

    started = time.perf_counter()
    info = machine()
    options: dict[str, Any] = {"torch_threads": args.threads}
    probe = build_detector(MODEL, DetectorSettings(device="cpu"))
    frames, size = load_frames(probe, args.frames, step=10)
    metas = [FrameMeta(str(VIDEO), i, size) for i in range(len(frames))]
    del probe
    say(f"{len(frames)} frames of {VIDEO.name}, {args.threads} threads, {info['cpus']} cores")

    rows: list[Row] = []
    # More logical CPUs than cores: the Serve controller and the replica each hold one,
    # and the replica's real parallelism is set by torch_threads, not by num_cpus.
    ray.init(
        num_cpus=max(4, os.cpu_count() or 1),
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,  # keep stdout for the results
    )
    try:
        serve.start(proxy_location="Disabled")
        bench_bare_and_serve(rows, "cpu", batches, frames, metas, options, args)
        if torch.cuda.is_available():
            bench_bare_and_serve(rows, "cuda", batches, frames, metas, options, args)
    finally:  # ray.shutdown takes Serve down too (serve.shutdown's retries print to stdout)
        ray.shutdown()
    onnx_info: dict[str, Any] = {}
    if not args.skip_onnx:
        onnx_info = bench_onnx(rows, batches, frames, metas, args.threads, args)

    info["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    doc = {
        "benchmark": "detector",
        "date": dt.date.today().isoformat(),
        "command": " ".join(["python", "bench/detector.py", *(argv or sys.argv[1:])]),
        "model": MODEL,
        "threads": args.threads,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "batch_wait_timeout_s": BATCH_WAIT_TIMEOUT_S,
        "serve_access_log": args.access_log,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "ray_worker_niceness": os.environ.get("RAY_worker_niceness", "15 (Ray's default)"),  # noqa: SIM112 (Ray spells it so)
        "machine": info,
        "onnx": onnx_info,
        "rows": [r.summary() for r in rows],
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    out: Callable[[str], None] = say if args.json else print
    out(table(rows))
    if onnx_info:
        out(
            f"onnx agreement on {IMAGE.name}: boxes {onnx_info['reference_boxes']}, "
            f"max box diff {onnx_info['max_box_diff_px']} px, "
            f"max score diff {onnx_info['max_score_diff']}"
        )
    out(f"elapsed {doc['elapsed_s']} s, load average {info['load_average_start']} -> "
        f"{info['load_average_end']}")  # fmt: skip
    if args.json:
        print(json.dumps(doc, indent=2))
    return 0


def main_slicing(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    if not STREET.is_file():
        say(f"real data not found at {STREET}")
        return 2
    started = time.perf_counter()
    info = machine()
    result = bench_slicing(args)
    info["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    doc = {
        "benchmark": "detector-slicing",
        "date": dt.date.today().isoformat(),
        "command": " ".join(["python", "bench/detector.py", *(argv or sys.argv[1:])]),
        "model": MODEL,
        "threads": args.threads,
        "rounds": args.rounds,
        "machine": info,
        **result,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    out: Callable[[str], None] = say if args.json else print
    out(slicing_table(result))
    out(f"elapsed {doc['elapsed_s']} s, load average {info['load_average_start']} -> "
        f"{info['load_average_end']}")  # fmt: skip
    if args.json:
        print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
