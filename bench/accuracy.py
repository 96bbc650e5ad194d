"""Accuracy benchmark on real clips: our counting against the peer loop.

For every clip in ``tests/data/truth.yaml`` whose truth is line crossings of
a class the detector sees (the person SSDLite: people only), the detector
runs once over the clip and its detections are cached; then, on those SAME
detections:

- ours: ``CameraProcessor`` (our tracker and line counters) fed frame by
  frame, exactly as ``camcount count VIDEO --line ...`` does (the config's
  defaults: detector threshold 0.3, tracker settings, 8 px band, bottom
  centre anchor); a timed ``count_video`` run must give the same totals;
- the peer loop most users would write: ``trackers.ByteTrackTracker``
  (roboflow's ``trackers`` package; supervision 0.31 has no ByteTrack) and one
  ``supervision.LineZone`` per line with the bottom-centre anchor, once with
  settings matched to ours wherever one corresponds, once with its own
  defaults (only the frame rate given).

Per clip it prints the truth, both sides' counts and their count error
(sum over directions of |counted - true|), the true crossings each side
missed and the crossings it counted that match none (by line, direction
and the truth's frames), then totals, and frames/s of our
whole counting path (decode, detect, track, count: ``count_video``) with and
without slicing (small people found in tiles of the frame), where this code
base has slicing. Frames/s of tracking and counting alone, both sides, are
printed beside it.

Check: our count error is no worse than the peer's (matched settings) on
every clip, and lower in total; the exit status is 1 when it is not.

Run (``make bench-deps`` installs the peer; the weights come from
``camcount models fetch``)::

    python bench/accuracy.py                       # cache under /tmp/camcount-accuracy
    python bench/accuracy.py --cache DIR --slice-grid 2,2 --json
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from camcount.config import AppConfig, CameraConfig
from camcount.detectors import Detector
from camcount.detectors.detections import Detections
from camcount.events import Crossing
from camcount.reference import batches, detect_batch
from camcount.scenes.truth import ClipTruth, CountedCrossing, LineTruth, load_truth_file
from camcount.vision.processor import CameraProcessor
from camcount.vision.video import VideoFile

ROOT = Path(__file__).resolve().parents[1]
TRUTH = ROOT / "tests" / "data" / "truth.yaml"
DATA = ROOT.parent / "shared" / "data"
CACHE = Path("/tmp/camcount-accuracy")
CACHE_FORMAT = 1
BATCH_SIZE = 8  # camcount count's default
DIRECTIONS: tuple[Literal["in", "out"], ...] = ("in", "out")

Counts = dict[tuple[str, str], int]  # (line id, direction) -> count
Counted = list[CountedCrossing]

# ------------------------------------------------------------ detections


@dataclass(frozen=True)
class ClipDetections:
    """One clip's detections, frame by frame, as the detector gave them."""

    frame_size: tuple[int, int]
    fps: float
    index: npt.NDArray[np.int64]
    time: npt.NDArray[np.float64]
    offsets: npt.NDArray[np.int64]  # frame k's boxes are rows offsets[k]:offsets[k+1]
    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int64]
    detect_s: float  # seconds the detection pass took when it ran

    def __len__(self) -> int:
        return len(self.index)

    def frames(self) -> Iterator[tuple[int, float, Detections]]:
        for k in range(len(self.index)):
            a, b = int(self.offsets[k]), int(self.offsets[k + 1])
            dets = Detections.from_arrays(self.xyxy[a:b], self.confidence[a:b], self.class_id[a:b])
            yield int(self.index[k]), float(self.time[k]), dets

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            format=CACHE_FORMAT,
            frame_size=np.array(self.frame_size),
            fps=self.fps,
            index=self.index,
            time=self.time,
            offsets=self.offsets,
            xyxy=self.xyxy,
            confidence=self.confidence,
            class_id=self.class_id,
            detect_s=self.detect_s,
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> ClipDetections | None:
        try:
            z = np.load(path)
        except (OSError, ValueError):
            return None
        if int(z["format"]) != CACHE_FORMAT:
            return None
        w, h = (int(v) for v in z["frame_size"])
        return cls(
            (w, h),
            float(z["fps"]),
            z["index"],
            z["time"],
            z["offsets"],
            z["xyxy"],
            z["confidence"],
            z["class_id"],
            float(z["detect_s"]),
        )


def detect_clip(detector: Detector, camera: CameraConfig) -> ClipDetections:
    index: list[int] = []
    times: list[float] = []
    per_frame: list[Detections] = []
    started = time.perf_counter()
    with VideoFile(camera.source, camera.fps, camera.start_timestamp) as video:
        size = video.frame_size
        fps = camera.fps or video.native_fps
        for batch in batches(video, BATCH_SIZE):
            found = detect_batch(detector, camera, batch, size, BATCH_SIZE)
            for f, d in zip(batch, found, strict=True):
                index.append(f.index)
                times.append(f.time)
                per_frame.append(d)
    seconds = time.perf_counter() - started
    offsets = np.cumsum([0, *(len(d) for d in per_frame)]).astype(np.int64)

    def stack(arrays: list[Any], shape: tuple[int, ...], dtype: Any) -> Any:
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(shape, dtype)

    return ClipDetections(
        size,
        float(fps),
        np.array(index, dtype=np.int64),
        np.array(times, dtype=np.float64),
        offsets,
        stack([d.xyxy for d in per_frame], (0, 4), np.float32),
        stack([d.confidence for d in per_frame], (0,), np.float32),
        stack([d.class_id for d in per_frame], (0,), np.int64),
        seconds,
    )


def cache_path(cache: Path, video: Path, config: AppConfig, camera: CameraConfig) -> Path:
    """Keyed by what changes the detections: the file, the detector and its
    settings, and the slicing."""
    stat = video.stat()
    slicing = getattr(camera, "slicing", None)
    key = json.dumps(
        [
            str(video),
            stat.st_size,
            int(stat.st_mtime),
            config.detector.model_dump(mode="json"),
            slicing.model_dump(mode="json") if slicing is not None else None,
            camera.fps,
        ],
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache / f"{video.stem}-{'sliced-' if slicing is not None else ''}{digest}.npz"


def cached_detections(
    cache: Path, config: AppConfig, camera: CameraConfig, detector: Detector, log: Any
) -> ClipDetections:
    path = cache_path(cache, Path(camera.source), config, camera)
    found = ClipDetections.load(path) if path.exists() else None
    if found is not None:
        log(f"  detections from {path}")
        return found
    what = "sliced " if getattr(camera, "slicing", None) is not None else ""
    log(f"  detecting {what}{Path(camera.source).name} once (cached in {path})")
    found = detect_clip(detector, camera)
    found.save(path)
    return found


# ------------------------------------------------------------ the two sides


def run_ours(
    config: AppConfig, camera: CameraConfig, class_names: Sequence[str], dets: ClipDetections
) -> tuple[Counts, Counted, float]:
    """Our tracker and counters on cached detections, as ``count_video``
    feeds them (same processor, same frame indices and event times)."""
    processor = CameraProcessor(camera, config.tracker, class_names, dets.frame_size, dets.fps)
    frames = list(dets.frames())
    events = []
    gc.collect()
    started = time.perf_counter()
    for index, frame_time, d in frames:
        events.extend(processor.process(d, index, frame_time))
    seconds = time.perf_counter() - started
    counted = [
        CountedCrossing(e.counter_id, str(e.direction), e.frame_index)
        for e in events
        if isinstance(e, Crossing)
    ]
    return _row_counts(processor.totals()), counted, seconds


def _row_counts(rows: Sequence[Any]) -> Counts:
    counts: Counts = {}
    for row in rows:
        key = (str(row["counter_id"]), str(row["direction"]))
        counts[key] = counts.get(key, 0) + int(row["count"])
    return counts


def peer_settings(config: AppConfig, fps: float, matched: bool) -> dict[str, Any]:
    """The peer set as ours wherever a setting corresponds, or its defaults."""
    if not matched:
        return {"frame_rate": fps}
    t = config.tracker
    return {
        "frame_rate": fps,
        # In frames of 30 fps, scaled by the tracker to frame_rate.
        "lost_track_buffer": round(t.lost_track_buffer_s * 30),
        "track_activation_threshold": t.new_track_threshold,
        "minimum_consecutive_frames": t.min_hits,
        "high_conf_det_threshold": t.high_threshold,
        # One IoU gate for both stages; ours gates its first (main) stage here.
        "minimum_iou_threshold": t.match_iou,
    }


def _line_zone(line: LineTruth) -> Any:
    """A LineZone on the same segment whose ``in`` is our ``in``, checked by
    walking a box's bottom centre across it from our side A to side B."""
    import supervision as sv

    from camcount.geometry import Segment

    segment = Segment(line.points[0], line.points[1])
    (x0, y0), (x1, y1) = line.points
    mid = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    normal = np.array([-(y1 - y0), x1 - x0]) / segment.length  # points to side B
    side_a, side_b = mid - 30 * normal, mid + 30 * normal
    if segment.signed_distance(side_a)[0] >= 0:  # pragma: no cover - geometry changed
        raise RuntimeError("side A probe is not on side A")
    for start, end in (((x0, y0), (x1, y1)), ((x1, y1), (x0, y0))):
        probe = _sv_zone(start, end)
        for anchor in (side_a, side_b):
            box = np.array([[anchor[0] - 5, anchor[1] - 40, anchor[0] + 5, anchor[1]]])
            probe.trigger(sv.Detections(xyxy=box, tracker_id=np.array([1])))
        if (probe.in_count, probe.out_count) == (1, 0):
            return _sv_zone(start, end)
    raise RuntimeError(f"no LineZone on {line.points} counts our side A to B as in")


def _sv_zone(start: tuple[float, float], end: tuple[float, float]) -> Any:
    import supervision as sv

    return sv.LineZone(
        start=sv.Point(*start), end=sv.Point(*end), triggering_anchors=(sv.Position.BOTTOM_CENTER,)
    )


def run_peer(
    lines: Sequence[LineTruth], dets: ClipDetections, settings: dict[str, Any]
) -> tuple[Counts, Counted, float]:
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(**settings)
    zones = [_line_zone(line) for line in lines]
    frames = [
        sv.Detections(xyxy=d.xyxy.astype(np.float64), confidence=d.confidence, class_id=d.class_id)
        for _, _, d in dets.frames()
    ]
    crossed: list[list[tuple[Any, Any]]] = []
    gc.collect()
    started = time.perf_counter()
    for d in frames:
        tracked = tracker.update(d)
        crossed.append([zone.trigger(tracked) for zone in zones])
    seconds = time.perf_counter() - started
    counts: Counts = {}
    for line, zone in zip(lines, zones, strict=True):
        counts[(line.id, "in")] = int(zone.in_count)
        counts[(line.id, "out")] = int(zone.out_count)
    counted: Counted = []
    for index, per_zone in zip(dets.index, crossed, strict=True):
        for line, (went_in, went_out) in zip(lines, per_zone, strict=True):
            counted += [CountedCrossing(line.id, "in", int(index))] * int(np.count_nonzero(went_in))
            counted += [CountedCrossing(line.id, "out", int(index))] * int(
                np.count_nonzero(went_out)
            )
    return counts, counted, seconds


# ------------------------------------------------------------ per clip


@dataclass
class Side:
    counts: dict[str, int]  # "line/direction" -> count
    error: int
    missed: int  # true crossings no counted crossing matches
    extra: int  # counted crossings that match no true crossing
    track_count_fps: float | None = None


@dataclass
class Variant:
    """One detection setting (whole frame, or sliced) on one clip."""

    name: str
    detections_per_frame: float
    ours: Side
    peer: Side
    peer_defaults: Side
    path_fps: float | None = None  # our whole counting path, count_video
    path_totals_match: bool | None = None
    detect_fps: float | None = None


@dataclass
class ClipResult:
    video: str
    frames: int
    fps: float
    truth: dict[str, int]
    crossings: int
    variants: list[Variant] = field(default_factory=list)


def count_error(truth: Counts, counts: Counts) -> int:
    return sum(abs(counts.get(k, 0) - v) for k, v in truth.items())


def _missed_extra_of(clip: ClipTruth, counted: Counted) -> tuple[int, int]:
    match = clip.match(counted)
    return match.missed, len(match.false)


def truth_counts(clip: ClipTruth) -> Counts:
    return {(line.id, d): line.total(d) for line in clip.lines for d in DIRECTIONS}


def _flat(counts: Counts) -> dict[str, int]:
    return {f"{line}/{d}": n for (line, d), n in sorted(counts.items())}


def run_variant(
    name: str,
    clip: ClipTruth,
    config: AppConfig,
    camera: CameraConfig,
    detector: Detector,
    cache: Path,
    timed: bool,
    log: Any,
) -> Variant:
    from camcount.reference import count_video

    truth = truth_counts(clip)
    dets = cached_detections(cache, config, camera, detector, log)
    ours, ours_seen, ours_s = run_ours(config, camera, detector.class_names, dets)
    peer, peer_seen, peer_s = run_peer(
        clip.lines, dets, peer_settings(config, dets.fps, matched=True)
    )
    plain, plain_seen, _ = run_peer(
        clip.lines, dets, peer_settings(config, dets.fps, matched=False)
    )
    variant = Variant(
        name,
        round(len(dets.xyxy) / max(1, len(dets)), 2),
        Side(
            _flat(ours),
            count_error(truth, ours),
            *_missed_extra_of(clip, ours_seen),
            len(dets) / ours_s,
        ),
        Side(
            _flat(peer),
            count_error(truth, peer),
            *_missed_extra_of(clip, peer_seen),
            len(dets) / peer_s,
        ),
        Side(_flat(plain), count_error(truth, plain), *_missed_extra_of(clip, plain_seen)),
        detect_fps=len(dets) / dets.detect_s,
    )
    if timed:
        gc.collect()
        started = time.perf_counter()
        result = count_video(config, camera, detector, batch_size=BATCH_SIZE)
        seconds = time.perf_counter() - started
        variant.path_fps = result.frames_processed / seconds
        variant.path_totals_match = _row_counts(result.totals) == {
            k: v for k, v in ours.items() if v
        }
        if not variant.path_totals_match:
            log(f"  WARNING: count_video totals {result.totals} differ from the replay {ours}")
    return variant


# ------------------------------------------------------------ driver


def _skip_reason(clip: ClipTruth, video: Path, class_names: Sequence[str]) -> str | None:
    reason = clip.unmeasurable(class_names)
    if reason is not None:
        return reason
    if not video.is_file():
        return f"{video} not found"
    return None


def _print_report(results: Sequence[ClipResult], stderr: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=230, stderr=stderr)
    for name in dict.fromkeys(v.name for r in results for v in r.variants):
        acc = Table(
            title=f"Line counts on real clips, {name} detections (error = sum |counted - true|)"
        )
        for col in ("clip", "true in/out", "ours in/out", "peer in/out", "err ours", "err peer",
                    "missed/extra ours", "missed/extra peer", "peer defaults in/out",
                    "err peer defaults", "missed/extra peer defaults"):  # fmt: skip
            acc.add_column(col, justify="left" if col == "clip" else "right")
        truth_total = 0
        sides: dict[str, list[Side]] = {"ours": [], "peer": [], "plain": []}
        for r in results:
            v = next((v for v in r.variants if v.name == name), None)
            if v is None:
                continue
            truth_total += r.crossings
            for key, side in (("ours", v.ours), ("peer", v.peer), ("plain", v.peer_defaults)):
                sides[key].append(side)
            acc.add_row(
                Path(r.video).name,
                _in_out(r.truth),
                _in_out(v.ours.counts),
                _in_out(v.peer.counts),
                str(v.ours.error),
                str(v.peer.error),
                f"{v.ours.missed}/{v.ours.extra}",
                f"{v.peer.missed}/{v.peer.extra}",
                _in_out(v.peer_defaults.counts),
                str(v.peer_defaults.error),
                f"{v.peer_defaults.missed}/{v.peer_defaults.extra}",
            )

        acc.add_row(
            "total", str(truth_total), "", "",
            _error(sides["ours"], truth_total), _error(sides["peer"], truth_total),
            _missed_extra(sides["ours"]), _missed_extra(sides["peer"]), "",
            _error(sides["plain"], truth_total), _missed_extra(sides["plain"]),
        )  # fmt: skip
        console.print(acc)
    speed = Table(title="Frames/s: our counting path (decode, detect, track, count) and parts")
    for col in ("clip", "detections", "dets/frame", "count_video fps", "same totals",
                "detect fps (cache pass)", "track+count fps ours",
                "track+count fps peer"):  # fmt: skip
        speed.add_column(col, justify="left" if col in ("clip", "detections") else "right")
    for r in results:
        for v in r.variants:
            speed.add_row(
                Path(r.video).name,
                v.name,
                f"{v.detections_per_frame:.1f}",
                f"{v.path_fps:.1f}" if v.path_fps else "-",
                {True: "yes", False: "NO", None: "-"}[v.path_totals_match],
                f"{v.detect_fps:.1f}" if v.detect_fps else "-",
                f"{v.ours.track_count_fps:.0f}" if v.ours.track_count_fps else "-",
                f"{v.peer.track_count_fps:.0f}" if v.peer.track_count_fps else "-",
            )
    console.print(speed)


def _error(sides: Sequence[Side], truth_total: int) -> str:
    n = sum(side.error for side in sides)
    return f"{n} ({n / max(1, truth_total):.0%})"


def _missed_extra(sides: Sequence[Side]) -> str:
    return f"{sum(s.missed for s in sides)}/{sum(s.extra for s in sides)}"


def _in_out(counts: dict[str, int]) -> str:
    return "/".join(
        str(sum(n for k, n in counts.items() if k.endswith("/" + d))) for d in DIRECTIONS
    )


def check(results: Sequence[ClipResult]) -> tuple[bool, str]:
    """Ours no worse than the peer on every clip, and lower in total, on
    whole-frame detections (and on sliced ones where they were run)."""
    lines = []
    ok = True
    for name in dict.fromkeys(v.name for r in results for v in r.variants):
        pairs = [
            (Path(r.video).name, v.ours.error, v.peer.error)
            for r in results
            for v in r.variants
            if v.name == name
        ]
        worse = [f"{clip} ({o} > {p})" for clip, o, p in pairs if o > p]
        ours, peer = sum(o for _, o, _ in pairs), sum(p for _, _, p in pairs)
        passed = not worse and ours < peer
        ok &= passed
        lines.append(
            f"{name}: ours {ours}, peer {peer} in total"
            + (f"; ours worse on {', '.join(worse)}" if worse else "; ours no worse on every clip")
            + (" - PASS" if passed else " - FAIL")
        )
    return ok, "\n".join(lines)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
    except ImportError:
        pass
    return info


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("camcount", "trackers", "supervision", "numpy", "torch", "opencv-python-headless"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def _grid(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COLS,ROWS, got {text!r}") from None
    if cols < 1 or rows < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers from 1, got {text!r}")
    return cols, rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--truth", type=Path, default=TRUTH, help="counted truth (YAML)")
    p.add_argument("--data", type=Path, default=DATA, help="folder the truth's videos are in")
    p.add_argument("--cache", type=Path, default=CACHE, help="where detections are cached")
    p.add_argument(
        "--slice-grid",
        type=_grid,
        default=(2, 2),
        help="COLS,ROWS of the slicing grid for the sliced run, where slicing exists (2,2)",
    )
    p.add_argument(
        "--no-timing", action="store_true", help="skip the timed count_video runs (frames/s)"
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout (tables to stderr)")
    args = p.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        import supervision  # noqa: F401
        import trackers  # noqa: F401
    except ImportError as exc:
        log(f"skipped: the peer loop is not installed ({exc}); run `make bench-deps`")
        return 0
    from camcount.cli import build_detector_from
    from camcount.detectors.weights import ssdlite_weights_path
    from camcount.errors import CamcountError

    config = AppConfig()
    if config.detector.model == "ssdlite-person" and not ssdlite_weights_path().exists():
        log(
            f"skipped: no detector weights at {ssdlite_weights_path()}; run `camcount models fetch`"
        )
        return 0
    try:
        truth = load_truth_file(args.truth)
        detector = build_detector_from(config)
    except CamcountError as exc:
        log(f"accuracy: {exc}")
        return 2
    machine = _machine()
    started = time.perf_counter()
    results: list[ClipResult] = []
    for clip in truth.clips:
        video = (args.data / clip.video).resolve()
        reason = _skip_reason(clip, video, detector.class_names)
        if reason is not None:
            log(f"{clip.video}: skipped, {reason}")
            continue
        log(f"{clip.video}: {sum(len(line.crossings) for line in clip.lines)} crossings")
        result = ClipResult(
            clip.video,
            clip.frames,
            clip.fps,
            _flat(truth_counts(clip)),
            sum(len(line.crossings) for line in clip.lines),
        )
        variants = [("whole frame", None), ("sliced", args.slice_grid)]
        for name, grid in variants:
            camera = clip.camera(video, grid)
            result.variants.append(
                run_variant(
                    name, clip, config, camera, detector, args.cache, not args.no_timing, log
                )
            )
        results.append(result)
    passed, verdict = check(results)
    _print_report(results, stderr=args.json)
    if args.json:
        doc = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine,
            "versions": _versions(),
            "seconds": round(time.perf_counter() - started, 1),
            "detector": config.detector.model_dump(mode="json"),
            "tracker": config.tracker.model_dump(mode="json"),
            "slicing": {"grid": list(args.slice_grid)},
            "peer_matched": peer_settings(config, 0.0, matched=True) | {"frame_rate": "clip fps"},
            "results": [asdict(r) for r in results],
            "check": {"passed": passed, "verdict": verdict},
        }
        print(json.dumps(doc, indent=2, default=str))
    log(verdict)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
