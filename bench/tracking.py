"""Tracking benchmark: our tracker and line counter against ByteTrack + LineZone.

What it measures, in one run over the SAME seeded noisy detections:

- ours: ``camcount.vision.tracking.Tracker`` + one ``camcount.vision.counting.LineCounter``
  per counting line;
- the peer most users would pick: ``trackers.ByteTrackTracker`` (roboflow's
  ``trackers`` package, where ByteTrack moved from supervision 0.31) + one
  ``supervision.LineZone`` per line.

Scenes are dense synthetic fields of 10, 100 and 1,000 objects per frame
(persons and cars moving at constant speed, 3-7 px/frame, on separated
vertical lanes; each lane crosses one horizontal counting segment downward or
upward, or passes beyond a segment's end). Objects are born and die during
the sequence. True counts come from the construction, not from a counter.
Detections are the truth degraded by the model of the ``noisy`` detector
(``camcount.detectors.synthetic.NoisyDetector`` itself is used: 10% misses,
5 px Gaussian jitter on every box edge, 2% false boxes per true box,
confidences U(0.55, 0.95) for true and U(0.3, 0.7) for false boxes, seeded
by (seed, source, frame index)).

Per size it reports:

- frames/s of tracker + line counting only (detections are generated, and
  converted to each side's input type, before the timed section), and the
  ratio ours/peer; best of 3 runs (ours and peer alternating) for up to
  100 objects, best of 2 above;
- count error: sum over (line, direction) of |counted - true|, divided by
  the total true count;
- MOTA, IDF1 and ID switches from ``motmetrics`` (IoU distance, max 0.5,
  tracker outputs vs the truth boxes of the visible objects).

Run (``make bench-deps`` installs the peer: ``trackers`` with --no-deps,
supervision, motmetrics, psutil)::

    python bench/tracking.py                      # sizes 10,100,1000; 300 frames
    python bench/tracking.py --sizes 10,100 --frames 300 --seed 0 --json
    python bench/tracking.py --check-truth        # both sides on exact boxes: 0 error
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from camcount.detectors.base import DetectorSettings, FrameMeta
from camcount.detectors.detections import Detections
from camcount.detectors.synthetic import NoisyDetector
from camcount.geometry import Anchor, Segment
from camcount.scenes.synthetic import CLASS_NAMES
from camcount.vision.counting import LineCounter
from camcount.vision.tracking import Tracker, TrackerSettings

FloatArray = npt.NDArray[np.float64]

FPS = 10.0
BAND_PX = 8.0  # the config default of a line's hysteresis band
LOST_BUFFER_S = 3.0

# Ours: the product defaults (TrackerSettings), at the scene's frame rate.
OURS_SETTINGS = TrackerSettings(fps=FPS, lost_track_buffer_s=LOST_BUFFER_S)
# The peer, set to match ours wherever a setting corresponds.
PEER_SETTINGS: dict[str, Any] = {
    "frame_rate": FPS,
    # In frames *of 30 fps*: 90 -> ceil(10 / 30 * 90) = 30 frames = 3 s at 10 fps.
    "lost_track_buffer": round(LOST_BUFFER_S * 30),
    "track_activation_threshold": OURS_SETTINGS.new_track_threshold,  # 0.6
    "minimum_consecutive_frames": OURS_SETTINGS.min_hits,  # 2
    "high_conf_det_threshold": OURS_SETTINGS.high_threshold,  # 0.5
    # One IoU gate for both stages; ours gates the first (main) stage at 0.2.
    "minimum_iou_threshold": OURS_SETTINGS.match_iou,  # 0.2
}

# ------------------------------------------------------------ dense field

LANE_W = 120  # px between lane centres; a car is at most 96 px wide
TRAVEL = 480  # px an anchor travels along its lane; the line is half way
TOP_PAD = 80  # px above a row's first anchor position (room for the box)
ROW_GAP = 320  # px between rows: a coasting lost track never reaches the next row
X_PAD = 60
EDGE_FRAMES = 15  # no true crossing this close to the first or last frame
CLASS_MIX = (("person", 0.6), ("car", 0.4))
SIZES: dict[str, tuple[int, int, int, int]] = {  # min w, max w, min h, max h (px)
    "person": (20, 28, 52, 68),
    "car": (70, 96, 40, 54),
}


@dataclass(frozen=True)
class CountLine:
    line_id: str
    y: float
    x0: float
    x1: float


@dataclass(frozen=True)
class LaneObject:
    obj_id: int
    class_id: int
    w: int
    h: int
    x: float  # anchor (bottom centre) x
    y_from: float  # anchor y where it appears
    step: float  # signed px per frame along y
    first: int  # first visible frame (may be < 0 for objects already present)
    last: int

    def anchor_y(self, frame: npt.NDArray[np.int64]) -> FloatArray:
        return np.asarray(self.y_from + self.step * (frame - self.first), dtype=np.float64)


@dataclass
class DenseField:
    n_target: int
    width: int
    height: int
    frames: int
    lines: list[CountLine]
    objects: list[LaneObject]
    truth: dict[tuple[str, str], int]  # (line id, "in"|"out") -> true count
    boxes: list[npt.NDArray[np.float64]] = field(default_factory=list)  # per frame (k, 6)

    @property
    def mean_visible(self) -> float:
        return sum(len(b) for b in self.boxes) / max(1, self.frames)

    @property
    def true_total(self) -> int:
        return sum(self.truth.values())


@dataclass(frozen=True)
class _Lane:
    speed: float  # px per frame
    objects: list[tuple[int, int, int, float, float]]  # class, w, h, s (start progress), t_cross


def _make_lane(rng: np.random.Generator, frames: int) -> _Lane:
    """One lane as a conveyor: object k is at progress ``speed * t - s_k``
    (0..TRAVEL) along the lane at frame t; gaps keep boxes clear of each other."""
    speed = float(rng.uniform(3.0, 7.0))
    names = [c for c, _ in CLASS_MIX]
    probs = [p for _, p in CLASS_MIX]
    objs: list[tuple[int, int, int, float, float]] = []
    s = -TRAVEL * float(rng.uniform(0.6, 1.0))
    prev_h = 0
    while s < speed * (frames - 1):
        name = str(rng.choice(names, p=probs))
        lo_w, hi_w, lo_h, hi_h = SIZES[name]
        w, h = int(rng.integers(lo_w, hi_w + 1)), int(rng.integers(lo_h, hi_h + 1))
        s += max(h, prev_h) + float(rng.uniform(50, 150))
        prev_h = h
        t_cross = (s + TRAVEL / 2) / speed
        # An object crossing right at the start or end of the sequence is
        # ambiguous (did it cross "in" the sequence?): leave a hole instead.
        if abs(t_cross) <= EDGE_FRAMES or abs(t_cross - (frames - 1)) <= EDGE_FRAMES:
            continue
        objs.append((CLASS_NAMES.index(name), w, h, s, t_cross))
    return _Lane(speed, objs)


def make_field(n_target: int, frames: int, seed: int) -> DenseField:
    """A large virtual frame with about ``n_target`` objects visible per frame.

    Lanes are added until the mean visible count reaches ``n_target``, then
    laid out in up to four rows; each row has one horizontal counting line
    over most of its lanes, and the remaining lanes (on a random side) pass
    beyond the line's end and must not count.
    """
    rng = np.random.default_rng([seed, n_target, 20240])
    lanes: list[_Lane] = []
    visible = 0.0
    while visible < n_target:
        lane = _make_lane(rng, frames)
        lanes.append(lane)
        for _, _, _, s, _ in lane.objects:
            t0 = max(0, math.ceil(s / lane.speed))
            t1 = min(frames - 1, math.floor((s + TRAVEL) / lane.speed))
            visible += max(0, t1 - t0 + 1) / frames

    n_rows = min(4, max(2, math.ceil(len(lanes) / 3)))
    per_row = math.ceil(len(lanes) / n_rows)
    row_h = TOP_PAD + TRAVEL + ROW_GAP
    width = 2 * X_PAD + per_row * LANE_W
    height = n_rows * row_h
    lines: list[CountLine] = []
    objects: list[LaneObject] = []
    truth: dict[tuple[str, str], int] = {}
    obj_id = 0
    for r in range(n_rows):
        row = lanes[r * per_row : (r + 1) * per_row]
        if not row:
            continue
        y_top = r * row_h + TOP_PAD
        y_line = y_top + TRAVEL / 2
        n_beyond = max(1, round(0.2 * len(row))) if len(row) > 1 else 0
        covered = list(range(len(row) - n_beyond))
        if rng.random() < 0.5:  # beyond lanes on the left instead
            covered = list(range(n_beyond, len(row)))
        xs = [X_PAD + LANE_W * (i + 0.5) for i in range(len(row))]
        line = CountLine(
            f"line-{r}", y_line, xs[covered[0]] - LANE_W / 2, xs[covered[-1]] + LANE_W / 2
        )
        lines.append(line)
        truth[(line.line_id, "in")] = 0
        truth[(line.line_id, "out")] = 0
        for i, lane in enumerate(row):
            down = bool(rng.random() < 0.5)
            step = lane.speed if down else -lane.speed
            y_start = y_top if down else y_top + TRAVEL
            for class_id, w, h, s, t_cross in lane.objects:
                first = math.ceil(s / lane.speed)
                last = math.floor((s + TRAVEL) / lane.speed)
                if last < 0 or first > frames - 1:
                    continue
                y_from = y_start + step * (first - s / lane.speed)
                objects.append(LaneObject(obj_id, class_id, w, h, xs[i], y_from, step, first, last))
                obj_id += 1
                if i in covered and 0 <= t_cross <= frames - 1:
                    truth[(line.line_id, "in" if down else "out")] += 1
    fld = DenseField(n_target, width, height, frames, lines, objects, truth)
    fld.boxes = _truth_boxes(fld)
    return fld


def _truth_boxes(fld: DenseField) -> list[npt.NDArray[np.float64]]:
    """Per frame, rows of (obj_id, class_id, x0, y0, x1, y1) of visible objects."""
    per_frame: list[list[npt.NDArray[np.float64]]] = [[] for _ in range(fld.frames)]
    for o in fld.objects:
        f = np.arange(max(0, o.first), min(fld.frames - 1, o.last) + 1)
        y = o.anchor_y(f)
        rows = np.empty((len(f), 6))
        rows[:, 0] = o.obj_id
        rows[:, 1] = o.class_id
        rows[:, 2] = o.x - o.w / 2
        rows[:, 3] = y - o.h
        rows[:, 4] = o.x + o.w / 2
        rows[:, 5] = y
        for k, fi in enumerate(f):
            per_frame[fi].append(rows[k])
    return [np.round(np.array(r).reshape(-1, 6), 2) for r in per_frame]


class _FieldNoisy(NoisyDetector):
    """The ``noisy`` detector itself, reading the field's truth from memory."""

    def __init__(self, fld: DenseField, seed: int) -> None:
        super().__init__(DetectorSettings(options={"seed": seed}))
        self._rows = [b.tolist() for b in fld.boxes]

    def _frames_of(self, source: str) -> list[Any]:
        return self._rows


def exact_detections(fld: DenseField) -> list[Detections]:
    """The truth as detections (confidence 0.9), for ``--check-truth``."""
    return [Detections.from_arrays(b[:, 2:6], np.full(len(b), 0.9), b[:, 1]) for b in fld.boxes]


def noisy_detections(fld: DenseField, seed: int) -> list[Detections]:
    det = _FieldNoisy(fld, seed)
    source = f"dense-field-{fld.n_target}.mp4"
    size = (fld.width, fld.height)
    return [det.truth(FrameMeta(source, i, size)) for i in range(fld.frames)]


# ------------------------------------------------------------ the two sides


@dataclass
class RunOutput:
    seconds: float
    counts: dict[tuple[str, str], int]
    tracks: list[tuple[FloatArray, npt.NDArray[np.int64]]]  # per frame (xyxy, ids)
    raw: list[Any] = field(default_factory=list)  # the peer's own outputs, per frame


def run_ours(fld: DenseField, dets: Sequence[Detections]) -> RunOutput:
    tracker = Tracker(OURS_SETTINGS)
    counters = [
        LineCounter(
            "bench",
            ln.line_id,
            Segment((ln.x0, ln.y), (ln.x1, ln.y), band_px=BAND_PX),
            CLASS_NAMES,
            anchor=Anchor.BOTTOM_CENTER,
            frame_size=(fld.width, fld.height),
        )
        for ln in fld.lines
    ]
    frames_out = []
    gc.collect()
    t0 = time.perf_counter()
    for i, d in enumerate(dets):
        tf = tracker.update(d, i, i / FPS)
        for c in counters:
            c.update(tf)
        frames_out.append(tf.detections)
    seconds = time.perf_counter() - t0
    counts = {}
    for ln, c in zip(fld.lines, counters, strict=True):
        for direction in ("in", "out"):
            counts[(ln.line_id, direction)] = sum(
                n for (_, d), n in c.totals.items() if d == direction
            )
    tracks = [(o.xyxy.astype(np.float64), o.tracker_id) for o in frames_out]
    return RunOutput(seconds, counts, tracks)


def _sv_line(ln: CountLine, minimum_crossing_threshold: int = 1) -> Any:
    """A LineZone whose "in" is moving down, like ours (start -> end with side A
    on the left). supervision calls "in" the other side, hence end -> start."""
    import supervision as sv

    return sv.LineZone(
        start=sv.Point(ln.x1, ln.y),
        end=sv.Point(ln.x0, ln.y),
        triggering_anchors=(sv.Position.BOTTOM_CENTER,),
        minimum_crossing_threshold=minimum_crossing_threshold,
    )


def check_peer_direction() -> None:
    """Make sure the peer's "in" is a downward crossing, as in the truth."""
    import supervision as sv

    zone = _sv_line(CountLine("probe", 100.0, 0.0, 200.0))
    for y in (50.0, 150.0):
        zone.trigger(
            sv.Detections(xyxy=np.array([[90.0, y - 40, 110.0, y]]), tracker_id=np.array([1]))
        )
    if (zone.in_count, zone.out_count) != (1, 0):
        raise RuntimeError(f"LineZone direction probe: {zone.in_count=} {zone.out_count=}")


def to_sv(dets: Sequence[Detections]) -> list[Any]:
    import supervision as sv

    return [
        sv.Detections(
            xyxy=d.xyxy.copy(), confidence=d.confidence.copy(), class_id=d.class_id.copy()
        )
        for d in dets
    ]


def run_peer(fld: DenseField, sv_dets: Sequence[Any]) -> RunOutput:
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(**PEER_SETTINGS)
    zones = [_sv_line(ln) for ln in fld.lines]
    frames_out = []
    gc.collect()
    t0 = time.perf_counter()
    for d in sv_dets:
        res = tracker.update(d)
        for z in zones:
            z.trigger(res)
        frames_out.append(res)
    seconds = time.perf_counter() - t0
    counts = _zone_counts(fld, zones)
    tracks = []
    for r in frames_out:
        ids = np.asarray(r.tracker_id, dtype=np.int64)
        ok = ids >= 0  # -1: detections of unconfirmed tracks
        tracks.append((np.asarray(r.xyxy, dtype=np.float64)[ok], ids[ok]))
    return RunOutput(seconds, counts, tracks, frames_out)


def _zone_counts(fld: DenseField, zones: Sequence[Any]) -> dict[tuple[str, str], int]:
    counts = {}
    for ln, z in zip(fld.lines, zones, strict=True):
        counts[(ln.line_id, "in")] = int(z.in_count)
        counts[(ln.line_id, "out")] = int(z.out_count)
    return counts


def recount_peer(
    fld: DenseField, raw: Sequence[Any], minimum_crossing_threshold: int
) -> dict[tuple[str, str], int]:
    """The peer's counts again from its stored tracker outputs, with LineZone's
    own anti-flicker setting (not timed; shows how much of its count error is
    the line test rather than the tracker)."""
    zones = [_sv_line(ln, minimum_crossing_threshold) for ln in fld.lines]
    for res in raw:
        for z in zones:
            z.trigger(res)
    return _zone_counts(fld, zones)


# ------------------------------------------------------------ metrics


def count_error(truth: dict[tuple[str, str], int], counts: dict[tuple[str, str], int]) -> float:
    err = sum(abs(counts.get(k, 0) - v) for k, v in truth.items())
    return err / max(1, sum(truth.values()))


def iou_distance(a: FloatArray, b: FloatArray, max_iou: float = 0.5) -> FloatArray:
    """1 - IoU of xyxy boxes, NaN beyond ``max_iou`` (motmetrics' convention).

    motmetrics 1.4.0's own ``iou_matrix`` calls ``np.asfarray``, removed in
    numpy 2, so the distance is computed here.
    """
    if len(a) == 0 or len(b) == 0:
        return np.empty((len(a), len(b)))
    ix = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    iy = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    dist = 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.where(dist > max_iou, np.nan, dist)


@dataclass(frozen=True)
class MotScores:
    mota: float
    idf1: float
    id_switches: int


def mot_metrics(
    fld: DenseField, tracks: Sequence[tuple[FloatArray, npt.NDArray[np.int64]]]
) -> MotScores:
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for truth, (hyp, hyp_ids) in zip(fld.boxes, tracks, strict=True):
        acc.update(truth[:, 0].astype(np.int64), hyp_ids, iou_distance(truth[:, 2:6], hyp))
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"], name="run")
    row = summary.iloc[0]
    return MotScores(float(row["mota"]), float(row["idf1"]), int(row["num_switches"]))


# ------------------------------------------------------------ driver


@dataclass
class SideResult:
    fps: float
    runs_s: list[float]
    count_error: float
    counts_in: int
    counts_out: int
    mota: float
    idf1: float
    id_switches: int
    count_error_mct2: float | None = None  # peer only: LineZone minimum_crossing_threshold=2


@dataclass
class SizeResult:
    n_target: int
    mean_objects: float
    mean_detections: float
    lines: int
    frame_size: tuple[int, int]
    frames: int
    true_in: int
    true_out: int
    ours: SideResult
    peer: SideResult

    @property
    def ratio(self) -> float:
        return self.ours.fps / self.peer.fps


def _interleaved(
    runs: Sequence[Callable[[], RunOutput]], repeats: int
) -> list[tuple[RunOutput, list[float]]]:
    """Each side ``repeats`` times, alternating, so a burst of load elsewhere on
    the machine hits both sides alike; keeps each side's fastest run."""
    outs: list[list[RunOutput]] = [[] for _ in runs]
    for _ in range(repeats):
        for side, run in zip(outs, runs, strict=True):
            side.append(run())
    best = []
    for side in outs:
        times = [o.seconds for o in side]
        best.append((side[int(np.argmin(times))], times))
    return best


def _side(fld: DenseField, out: RunOutput, times: list[float]) -> SideResult:
    m = mot_metrics(fld, out.tracks)
    return SideResult(
        fps=fld.frames / min(times),
        runs_s=[round(t, 4) for t in times],
        count_error=count_error(fld.truth, out.counts),
        counts_in=sum(v for (_, d), v in out.counts.items() if d == "in"),
        counts_out=sum(v for (_, d), v in out.counts.items() if d == "out"),
        mota=m.mota,
        idf1=m.idf1,
        id_switches=m.id_switches,
    )


def bench_size(
    n: int, frames: int, seed: int, repeats: int | None, log: Callable[[str], None]
) -> SizeResult:
    t = time.perf_counter()
    fld = make_field(n, frames, seed)
    dets = noisy_detections(fld, seed)
    sv_dets = to_sv(dets)
    log(
        f"N={n}: {len(fld.objects)} objects, {fld.mean_visible:.1f}/frame, "
        f"{len(fld.lines)} lines, frame {fld.width}x{fld.height}, "
        f"generated in {time.perf_counter() - t:.1f}s"
    )
    reps = repeats if repeats is not None else (3 if n <= 100 else 2)
    (ours_out, ours_t), (peer_out, peer_t) = _interleaved(
        [lambda: run_ours(fld, dets), lambda: run_peer(fld, sv_dets)], reps
    )
    log(f"  ours: {[round(x, 3) for x in ours_t]} s, peer: {[round(x, 3) for x in peer_t]} s")
    t = time.perf_counter()
    ours = _side(fld, ours_out, ours_t)
    peer = _side(fld, peer_out, peer_t)
    peer.count_error_mct2 = count_error(fld.truth, recount_peer(fld, peer_out.raw, 2))
    log(f"  metrics in {time.perf_counter() - t:.1f}s")
    return SizeResult(
        n_target=n,
        mean_objects=round(fld.mean_visible, 1),
        mean_detections=round(sum(len(d) for d in dets) / frames, 1),
        lines=len(fld.lines),
        frame_size=(fld.width, fld.height),
        frames=frames,
        true_in=sum(v for (_, d), v in fld.truth.items() if d == "in"),
        true_out=sum(v for (_, d), v in fld.truth.items() if d == "out"),
        ours=ours,
        peer=peer,
    )


def check_truth(sizes: Sequence[int], frames: int, seed: int) -> int:
    """Both sides on the exact truth: any count error is a bug in the field."""
    bad = 0
    for n in sizes:
        fld = make_field(n, frames, seed)
        exact = exact_detections(fld)
        ours = count_error(fld.truth, run_ours(fld, exact).counts)
        peer = count_error(fld.truth, run_peer(fld, to_sv(exact)).counts)
        print(
            f"N={n}: {fld.true_total} true crossings, count error ours {ours:.1%}, peer {peer:.1%}"
        )
        bad += ours > 0 or peer > 0
    return 1 if bad else 0


def _print_tables(results: Sequence[SizeResult], stderr: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    speed = Table(title="Tracker + line counting speed (frames/s, detection excluded)")
    for col in ("N (mean objects)", "dets/frame", "lines", "ours fps", "peer fps", "ours/peer"):
        speed.add_column(col, justify="right")
    acc = Table(title="Accuracy (count error = sum |counted - true| / true total)")
    for col in (
        "N",
        "true in/out",
        "ours in/out",
        "peer in/out",
        "count err ours",
        "count err peer",
        "peer err mct=2",
        "MOTA ours",
        "MOTA peer",
        "IDF1 ours",
        "IDF1 peer",
        "IDsw ours",
        "IDsw peer",
    ):
        acc.add_column(col, justify="right")
    for r in results:
        speed.add_row(
            f"{r.n_target} ({r.mean_objects})",
            f"{r.mean_detections}",
            str(r.lines),
            f"{r.ours.fps:.1f}",
            f"{r.peer.fps:.1f}",
            f"{r.ratio:.2f}x",
        )
        acc.add_row(
            str(r.n_target),
            f"{r.true_in}/{r.true_out}",
            f"{r.ours.counts_in}/{r.ours.counts_out}",
            f"{r.peer.counts_in}/{r.peer.counts_out}",
            f"{r.ours.count_error:.1%}",
            f"{r.peer.count_error:.1%}",
            f"{r.peer.count_error_mct2 or 0.0:.1%}",
            f"{r.ours.mota:.3f}",
            f"{r.peer.mota:.3f}",
            f"{r.ours.idf1:.3f}",
            f"{r.peer.idf1:.3f}",
            str(r.ours.id_switches),
            str(r.peer.id_switches),
        )
    console = Console(width=170, stderr=stderr)
    console.print(speed)
    console.print(acc)


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        import psutil

        info["cpus_logical"] = psutil.cpu_count(logical=True)
        info["cpus_usable"] = len(psutil.Process().cpu_affinity() or [])
        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg_1m"] = round(psutil.getloadavg()[0], 2)
    except (ImportError, AttributeError):
        pass
    return info


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("camcount", "trackers", "supervision", "motmetrics", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sizes", default="10,100,1000", help="objects per frame, comma separated")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repeats", type=int, default=None, help="timed runs (default 3 if N<=100, else 2)"
    )
    p.add_argument(
        "--check-truth",
        action="store_true",
        help="run both sides on noise-free detections instead: count errors must be 0",
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout (tables go to stderr)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    try:
        import supervision  # noqa: F401
        import trackers  # noqa: F401
    except ImportError as exc:
        print(f"peer missing ({exc}); run `make bench-deps`", file=sys.stderr)
        return 2
    check_peer_direction()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.check_truth:
        return check_truth(sizes, args.frames, args.seed)
    machine = _machine()  # before the runs: the load average says what else ran
    started = time.perf_counter()
    results = [bench_size(n, args.frames, args.seed, args.repeats, log) for n in sizes]
    log(
        f"total {time.perf_counter() - started:.0f}s "
        f"(1-min load average at start: {machine.get('load_avg_1m')})"
    )
    if args.json:
        doc = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "frames": args.frames,
            "fps": FPS,
            "seed": args.seed,
            "machine": machine,
            "seconds": round(time.perf_counter() - started, 1),
            "versions": _versions(),
            "settings": {
                "ours": asdict(OURS_SETTINGS) | {"band_px": BAND_PX, "anchor": "bottom_center"},
                "peer": PEER_SETTINGS
                | {"line_zone": "BOTTOM_CENTER anchor, minimum_crossing_threshold=1"},
            },
            "results": [asdict(r) | {"ratio": r.ratio} for r in results],
        }
        _print_tables(results, stderr=True)
        print(json.dumps(doc, indent=2))
    else:
        _print_tables(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
