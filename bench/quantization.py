"""What int8 changes: the person SSDLite quantized per setting against the
float model, in detections and in counts, on the shared clips.

Two parts:

1. ``trace``: one clip counted by the reference run (``count_video``) with
   two models, frame by frame. Prints the crossings of each (track, frame,
   line, direction) and, for every crossing the other model does not make
   (same line and direction within ``--window`` frames), the track's
   history in the frames before it: its box and anchor against the line,
   the detection it matched with its score, and the other model's nearest
   detection (IoU, score) and the track that took it there.
2. ``settings``: each quantization setting (``SETTINGS``) built from the
   shared clips and compared with the float model (``ssdlite-person``, the
   path cameras run today): on the reference image (threshold 0.5) and on
   the frames of every clip (threshold 0.3, the default), the mean IoU of
   matched boxes, the mean and largest score difference, and the boxes only
   one of them finds; counts (line totals by key, zone visits) on every
   clip with counted truth; speed on one thread, as a ratio to the float
   ONNX graph timed frame for frame alternately in the same loop (shared
   machines give no absolute figure).

    python bench/quantization.py trace --clip ahmetozlu_cutl --against int8:current
    python bench/quantization.py settings                     # every setting
    python bench/quantization.py settings --only current,conv-only --json

Calibration frames are the shared clips (16 spread over each, as
``models export --int8`` takes them), so the counts here are in-sample for
the ranges; the reference image is not among them.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camcount.config import AppConfig, CameraConfig, ZoneConfig
from camcount.detectors import Detector, DetectorSettings, FrameMeta, build_detector
from camcount.detectors.base import Frame
from camcount.detectors.detections import Detections
from camcount.detectors.quantize import (
    FRAMES_PER_VIDEO,
    QuantSettings,
    calibration_frames,
    quantize_onnx,
)
from camcount.reference import count_video
from camcount.scenes.truth import load_truth_file
from camcount.vision.processor import CameraProcessor
from camcount.vision.video import DecodedFrame

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TRUTH = ROOT / "tests" / "data" / "truth.yaml"
IMAGE = DATA / "images" / "ssdlite_example.jpg"
#: Detections are recorded down to this score, so the trace shows boxes
#: just under the counting threshold; the counters get only those at or
#: above the detector's default threshold, as they do without recording.
RECORD_SCORE = 0.1
COUNT_SCORE = DetectorSettings().score_threshold
#: Frames per clip compared in detections where the clip has no truth.
SPREAD_FRAMES = 40

#: The settings compared: (settings, calibration frames per video, how the
#: calibration frames were resized: "prepare" as the detector does, or
#: "linear", as the first int8 export did).
#: Every operator onnxruntime quantizes, as the first export did.
WHOLE = QuantSettings(float_tail=False, float_heads=False)
TAIL = replace(WHOLE, float_tail=True)
SETTINGS: dict[str, tuple[QuantSettings, int, str]] = {
    "first": (WHOLE, FRAMES_PER_VIDEO, "linear"),
    "prepared": (WHOLE, FRAMES_PER_VIDEO, "prepare"),
    "float-tail": (TAIL, FRAMES_PER_VIDEO, "prepare"),
    "float-heads": (replace(WHOLE, float_heads=True), FRAMES_PER_VIDEO, "prepare"),
    "conv-only": (replace(WHOLE, op_types=("Conv",)), FRAMES_PER_VIDEO, "prepare"),
    "percentile": (replace(TAIL, calibration="percentile"), FRAMES_PER_VIDEO, "prepare"),
    "more-frames": (TAIL, 64, "prepare"),
    "symmetric": (replace(TAIL, symmetric_activations=True), FRAMES_PER_VIDEO, "prepare"),
    "per-tensor": (replace(TAIL, per_channel=False), FRAMES_PER_VIDEO, "prepare"),
    "qoperator": (replace(TAIL, qdq=False), FRAMES_PER_VIDEO, "prepare"),
    "default": (QuantSettings(), FRAMES_PER_VIDEO, "prepare"),
}


class Recorder(Detector):
    """A detector that keeps what another returns (down to RECORD_SCORE)
    per frame and passes on only what passes the counting threshold."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.name = inner.name
        self.class_names = inner.class_names
        self.input_size = inner.input_size
        self.color_order = inner.color_order
        super().__init__(DetectorSettings(score_threshold=COUNT_SCORE))
        self.frames: dict[int, Detections] = {}

    def infer(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        raise NotImplementedError  # detect is overridden whole

    def detect(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        found = self.inner.detect(frames, metas)
        for meta, dets in zip(metas, found, strict=True):
            self.frames[meta.frame_index] = dets
        return [d[d.confidence >= COUNT_SCORE] for d in found]

    def prepare(self, frame_bgr: Frame) -> Frame:
        return self.inner.prepare(frame_bgr)


@dataclass
class Run:
    """One model over one clip: what it detected, tracked and counted."""

    detections: dict[int, Detections]
    tracks: dict[int, Detections] = field(default_factory=dict)
    crossings: list[tuple[int, int, str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    visits: int = 0


def model(spec: str, cache: Path) -> Detector:
    """``ssdlite-person``, ``onnx:float`` or ``int8:SETTING``."""
    settings = DetectorSettings(device="cpu", score_threshold=RECORD_SCORE)
    if spec == "onnx:float":
        return build_detector(f"onnx:{float_onnx(cache)}", settings)
    if spec.startswith("int8:"):
        return build_detector(f"onnx:{int8_file(spec[5:], cache)}", settings)
    return build_detector(spec, settings)


def float_onnx(cache: Path) -> Path:
    from camcount.detectors.onnx import export_ssdlite

    path = cache / "float.onnx"
    if not path.is_file():
        export_ssdlite(path)
    return path


def int8_file(name: str, cache: Path) -> Path:
    path = cache / f"int8-{name}.onnx"
    if not path.is_file():
        settings, per_video, resize = SETTINGS[name]
        videos = sorted((DATA / "videos").glob("*"))
        frames = calibration_frames(videos, per_video)
        if resize == "linear":
            frames = [linear(f) for f in spread_all(videos, per_video)]
        t0 = time.perf_counter()
        quantize_onnx(float_onnx(cache), path, frames, settings=settings)
        log(f"built {name} from {len(frames)} frames in {time.perf_counter() - t0:.0f} s")
    return path


def spread_all(videos: list[Path], per_video: int) -> list[np.ndarray]:
    return [f for v in videos for _, f in spread_frames(v, per_video)]


def linear(bgr: np.ndarray) -> np.ndarray:
    """A calibration frame as the first export resized it (bilinear, where
    cameras resize by area)."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.asarray(cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR))


def cached_run(spec: str, clip: str, camera: CameraConfig, cache: Path) -> Run:
    """``run`` once per model and clip; kept in the cache folder."""
    path = cache / f"run-{spec.replace(':', '-')}-{clip}.pkl"
    if path.is_file():
        with path.open("rb") as f:
            got: Run = pickle.load(f)
            return got
    result = run(camera, model(spec, cache))
    with path.open("wb") as f:
        pickle.dump(result, f)
    return result


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def truth_cameras() -> dict[str, CameraConfig]:
    """Every clip with counted truth of people: lines as the truth draws
    them, zones likewise."""
    cameras = {}
    for clip in load_truth_file(TRUTH).clips:
        video = DATA / clip.video
        if clip.class_ != "person" or not video.is_file():
            continue
        camera = clip.camera(video)
        if clip.zones:
            zones = [ZoneConfig(id=z.id, polygon=z.polygon) for z in clip.zones]
            camera = camera.model_copy(update={"zones": tuple(zones)})
        cameras[video.stem] = camera
    return cameras


def run(camera: CameraConfig, detector: Detector) -> Run:
    recorder = Recorder(detector)
    tracks: dict[int, Detections] = {}

    def keep(frame: DecodedFrame, processor: CameraProcessor) -> None:
        tracks[frame.index] = processor.tracks

    result = count_video(AppConfig(cameras=(camera,)), camera, recorder, on_frame=keep)
    return Run(
        recorder.frames,
        tracks,
        [(c.track_id, c.frame_index, c.counter_id, c.direction.value) for c in result.crossings],
        {f"{r['counter_id']}/{r['direction']}": r["count"] for r in result.totals},
        len(result.visits),
    )


# ------------------------------------------------------------ comparing boxes


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b``."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter))


@dataclass
class BoxDiff:
    matched: int = 0
    only_float: int = 0
    only_int8: int = 0
    ious: list[float] = field(default_factory=list)
    score_diffs: list[float] = field(default_factory=list)

    def add(self, want: Detections, got: Detections, threshold: float) -> None:
        """Greedy one-to-one matching at IoU 0.5, best pairs first."""
        want = want[want.confidence >= threshold]
        got = got[got.confidence >= threshold]
        m = iou(want.xyxy, got.xyxy)
        used_w: set[int] = set()
        used_g: set[int] = set()
        for flat in np.argsort(-m, axis=None):
            i, j = np.unravel_index(flat, m.shape)
            if m[i, j] < 0.5:
                break
            if i in used_w or j in used_g:
                continue
            used_w.add(int(i))
            used_g.add(int(j))
            self.ious.append(float(m[i, j]))
            self.score_diffs.append(float(got.confidence[j] - want.confidence[i]))
        self.matched += len(used_w)
        self.only_float += len(want) - len(used_w)
        self.only_int8 += len(got) - len(used_g)

    def summary(self) -> dict[str, float]:
        diffs = np.abs(self.score_diffs) if self.score_diffs else np.zeros(1)
        return {
            "matched": self.matched,
            "only_float": self.only_float,
            "only_int8": self.only_int8,
            "mean_iou": round(float(np.mean(self.ious)), 4) if self.ious else 0.0,
            "min_iou": round(float(np.min(self.ious)), 4) if self.ious else 0.0,
            "mean_abs_score_diff": round(float(diffs.mean()), 4),
            "max_abs_score_diff": round(float(diffs.max()), 4),
        }


def spread_frames(video: Path, n: int) -> list[tuple[int, np.ndarray]]:
    cap = cv2.VideoCapture(str(video))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        out = []
        for index in np.linspace(0, total - 1, min(n, total)).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = cap.read()
            if ok:
                out.append((int(index), frame))
        return out
    finally:
        cap.release()


def detect_frames(detector: Detector, frames: list[tuple[int, np.ndarray]]) -> list[Detections]:
    out = []
    for index, image in frames:
        size = (image.shape[1], image.shape[0])
        out.extend(detector.detect([detector.prepare(image)], [FrameMeta("x", index, size)]))
    return out


# ------------------------------------------------------------ part 1: trace


def trace(clip: str, base_spec: str, other_spec: str, cache: Path, window: int) -> None:
    camera = truth_cameras()[clip]
    line = camera.lines[0]
    (x0, y0), (x1, y1) = line.points
    runs = {}
    for spec in (base_spec, other_spec):
        runs[spec] = cached_run(spec, clip, camera, cache)
        r = runs[spec]
        print(f"\n{spec}: counts {r.counts}")
        for c in sorted(r.crossings, key=lambda c: c[1]):
            print(f"  track {c[0]:3d} frame {c[1]:4d} {c[2]} {c[3]}")
    print(f"\nline {line.id} from ({x0}, {y0}) to ({x1}, {y1}); anchor bottom centre")
    for spec, other in ((base_spec, other_spec), (other_spec, base_spec)):
        a, b = runs[spec], runs[other]
        free = list(b.crossings)  # each crossing is the twin of one at most
        for track, frame, counter, direction in sorted(a.crossings, key=lambda c: c[1]):
            twin = [
                c for c in free if c[2:] == (counter, direction) and abs(c[1] - frame) <= window
            ]
            if twin:
                free.remove(min(twin, key=lambda c: abs(c[1] - frame)))
                continue
            print(f"\n== {spec} only: track {track} frame {frame} {counter} {direction}")
            history(a, b, track, frame, window)


def history(a: Run, b: Run, track: int, frame: int, window: int) -> None:
    """The track's frames before and after its crossing, each with the
    other model's view of the same place."""
    for f in range(frame - window, frame + 4):
        if f not in a.tracks:
            continue
        t = a.tracks[f]
        rows = np.flatnonzero(t.tracker_id == track) if t.tracker_id is not None else []
        if len(rows) == 0:
            print(f"  {f:4d} track {track} not matched")
            continue
        box = t.xyxy[rows[0]]
        own = a.detections.get(f, Detections.empty())
        theirs = b.detections.get(f, Detections.empty())
        own_m = iou(box[None], own.xyxy)[0] if len(own) else np.zeros(0)
        their_m = iou(box[None], theirs.xyxy)[0] if len(theirs) else np.zeros(0)
        o = int(own_m.argmax()) if len(own_m) else -1
        w = int(their_m.argmax()) if len(their_m) else -1
        other_track = "-"
        bt = b.tracks.get(f)
        if w >= 0 and bt is not None and len(bt) and bt.tracker_id is not None:
            m = iou(theirs.xyxy[w][None], bt.xyxy)[0]
            if m.max() > 0.5:
                other_track = str(int(bt.tracker_id[m.argmax()]))
        mid = (box[0] + box[2]) / 2
        print(
            f"  {f:4d} box ({box[0]:.0f},{box[1]:.0f})-({box[2]:.0f},{box[3]:.0f})"
            f" anchor ({mid:.0f},{box[3]:.0f})"
            + (f" own det {own.confidence[o]:.3f} iou {own_m[o]:.2f}" if o >= 0 else " own det -")
            + (
                f" | other det {theirs.confidence[w]:.3f} iou {their_m[w]:.2f}"
                f" box ({theirs.xyxy[w][0]:.0f},{theirs.xyxy[w][1]:.0f})-"
                f"({theirs.xyxy[w][2]:.0f},{theirs.xyxy[w][3]:.0f}) track {other_track}"
                if w >= 0 and their_m[w] > 0
                else " | other det none"
            )
        )


# ------------------------------------------------------------ part 2: settings


def speed_ratio(int8: Path, floatp: Path, frames: list[np.ndarray], rounds: int) -> float:
    """int8 time over float time on one thread, timed alternately frame by frame."""
    one = DetectorSettings(device="cpu", options={"threads": 1})
    q = build_detector(f"onnx:{int8}", one)
    f = build_detector(f"onnx:{floatp}", one)
    tq: list[float] = []
    tf: list[float] = []
    size = (frames[0].shape[1], frames[0].shape[0])
    for _ in range(rounds):
        for i, image in enumerate(frames):
            for det, times in ((q, tq), (f, tf)):
                meta = [FrameMeta("x", i, size)]
                t0 = time.perf_counter()
                det.detect([image], meta)
                times.append(time.perf_counter() - t0)
    return statistics.median(tq) / statistics.median(tf)


def compare(
    names: list[str], cache: Path, rounds: int, base_spec: str, clips: list[str] | None
) -> dict[str, Any]:
    cameras = {k: v for k, v in truth_cameras().items() if not clips or k in clips}
    others = [
        p
        for p in sorted((DATA / "videos").glob("*"))
        if p.stem not in truth_cameras() and p.is_file()
    ]
    spread = {p.stem: spread_frames(p, SPREAD_FRAMES) for p in others}
    read = cv2.imread(str(IMAGE))
    if read is None:
        raise SystemExit(f"the reference image is not at {IMAGE}")
    image = np.asarray(read, dtype=np.uint8)
    image_meta = [FrameMeta("image", 0, (image.shape[1], image.shape[0]))]
    speed_frames = [
        cv2.cvtColor(cv2.resize(f, (300, 300), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        for _, f in spread_frames(DATA / "videos" / "ahmetozlu_cutl.mp4", 20)
    ]

    def evaluate(spec: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        runs = {name: cached_run(spec, name, cam, cache) for name, cam in cameras.items()}
        det = model(spec, cache)
        extra = {name: detect_frames(det, frames) for name, frames in spread.items()}
        ref = det.detect([det.prepare(image)], image_meta)[0]
        log(f"{spec}: evaluated in {time.perf_counter() - t0:.0f} s")
        return {"runs": runs, "extra": extra, "image": ref}

    base = evaluate(base_spec)
    report: dict[str, Any] = {base_spec: summarise(base, base)}
    for name in names:
        got = evaluate(name)
        row = summarise(base, got)
        if name.startswith("int8:"):
            row["speed_vs_float_onnx"] = round(
                speed_ratio(int8_file(name[5:], cache), float_onnx(cache), speed_frames, rounds),
                3,
            )
        report[name] = row
        log(f"{name}: {json.dumps(row)}")
        (cache / "report.json").write_text(json.dumps(report, indent=2))
    return report


def summarise(base: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    image = BoxDiff()
    image.add(base["image"], got["image"], 0.5)
    frames = BoxDiff()
    for name, r in got["runs"].items():
        for index, dets in r.detections.items():
            frames.add(base["runs"][name].detections.get(index, Detections.empty()), dets, 0.3)
    for name, dets in got["extra"].items():
        for want, have in zip(base["extra"][name], dets, strict=True):
            frames.add(want, have, 0.3)
    counts = {}
    same = True
    for name, r in got["runs"].items():
        b = base["runs"][name]
        counts[name] = {"counts": r.counts, "visits": r.visits} if r.visits else r.counts
        same &= r.counts == b.counts and r.visits == b.visits
    return {
        "image": image.summary(),
        "frames": frames.summary(),
        "counts": counts,
        "same_counts": same,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="part", required=True)
    t = sub.add_parser("trace")
    t.add_argument("--clip", default="ahmetozlu_cutl")
    t.add_argument("--base", default="ssdlite-person")
    t.add_argument(
        "--against", default="int8:current", help="ssdlite-person, onnx:float, int8:NAME"
    )
    t.add_argument("--window", type=int, default=12, help="frames either side")
    s = sub.add_parser("settings")
    s.add_argument("--only", help=f"of {', '.join(SETTINGS)}")
    s.add_argument(
        "--base",
        default="onnx:float",
        help="the float model compared with: onnx:float or "
        "ssdlite-person (the same network in torch, slower)",
    )
    s.add_argument("--clips", help="clips with truth counted (default: all)")
    s.add_argument("--rounds", type=int, default=3, help="timing passes over 20 frames")
    s.add_argument("--json", action="store_true")
    for p in (t, s):
        p.add_argument("--cache", type=Path, help="keep built models here (default: temporary)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        if args.part == "trace":
            trace(args.clip, args.base, args.against, cache, args.window)
            return
        names = args.only.split(",") if args.only else list(SETTINGS)
        unknown = sorted(set(names) - set(SETTINGS))
        if unknown:
            ap.error(f"unknown settings {unknown}: choose from {list(SETTINGS)}")
        clips = args.clips.split(",") if args.clips else None
        report = compare([f"int8:{n}" for n in names], cache, args.rounds, args.base, clips)
        if args.json:
            print(json.dumps(report, indent=2, default=str))
            return
        for name, row in report.items():
            fr, im = row["frames"], row["image"]
            print(
                f"{name:22} image {im['matched']}/{im['only_float']}/{im['only_int8']}"
                f" iou {im['min_iou']:.3f}  frames matched {fr['matched']}"
                f" only float {fr['only_float']} only other {fr['only_int8']}"
                f" iou {fr['mean_iou']:.3f} |ds| {fr['mean_abs_score_diff']:.3f}"
                f" max {fr['max_abs_score_diff']:.3f}  same counts {row['same_counts']}"
                f"  speed {row.get('speed_vs_float_onnx', '-')}"
            )
            print(f"{'':22} {row['counts']}")


if __name__ == "__main__":
    main()
