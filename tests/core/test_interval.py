"""The detector interval carries tracks between detector calls and never
changes a count: each rule on hand-made tracks, walkers on open ground
(detector calls saved), the seeded synthetic scenes through ``count_video``,
and the real clips with counted truth through the person SSDLite."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from camcount.cli import main
from camcount.config import AppConfig, CameraConfig, TrackerConfig, load_config, parse_config
from camcount.detectors import Detector, DetectorSettings, build_detector
from camcount.detectors.detections import Detections
from camcount.errors import ConfigError, DetectorError
from camcount.events import CountRow, ZoneVisit
from camcount.geometry import Segment
from camcount.reference import CountResult, batches, count_video, detect_batch
from camcount.scenes.synthetic import generate_scene, write_scene
from camcount.scenes.truth import ClipTruth, load_truth_file
from camcount.vision.gating import DetectorGate, GateSettings
from camcount.vision.interval import IntervalSettings, interval_reason
from camcount.vision.motion import Motion
from camcount.vision.processor import CameraEvent, CameraProcessor
from camcount.vision.video import VideoFile

FRAME = (640, 360)
FPS = 10.0
CLASSES = ("person", "car")
Box = tuple[float, float, float, float]


def camera() -> CameraConfig:
    """A line across the lower middle and a zone in the top right corner."""
    return CameraConfig.model_validate(
        {
            "id": "cam",
            "source": "none.mp4",
            "lines": [{"id": "door", "points": [[100, 250], [500, 250]]}],
            "zones": [{"id": "corner", "polygon": [[520, 20], [630, 20], [630, 120], [520, 120]]}],
        }
    )


def person(x: float, y: float) -> Box:
    """A 30x80 person box with feet at (x, y)."""
    return (x - 15, y - 80, x + 15, y)


def dets(boxes: Sequence[Box]) -> Detections:
    return Detections.from_arrays(
        np.array(boxes, dtype=np.float32).reshape(-1, 4),
        np.full(len(boxes), 0.9, dtype=np.float32),
        np.zeros(len(boxes), dtype=np.int64),
    )


def moving(*boxes: Box) -> Motion:
    return Motion(bool(boxes), 0.01, tuple(boxes))


def walked(path: Callable[[int], Sequence[Box]], frames: int) -> CameraProcessor:
    """A processor that detected ``path`` on frames 0 .. frames - 1."""
    processor = CameraProcessor(camera(), TrackerConfig(), CLASSES, FRAME, FPS)
    for i in range(frames):
        processor.process(dets(path(i)), i, i / FPS)
    return processor


SETTINGS = IntervalSettings(max_interval=5)


# ------------------------------------------------------------ the rules


def test_segment_distance_reaches_the_ends() -> None:
    line = Segment((0.0, 0.0), (10.0, 0.0))
    got = line.distance(np.array([[5.0, 3.0], [-4.0, 3.0], [13.0, -4.0], [10.0, 0.0]]))
    assert got.tolist() == [3.0, 5.0, 5.0, 0.0]


def test_a_forecast_leaves_the_tracker_as_it_was() -> None:
    processor = walked(lambda i: [person(100 + 5 * i, 100)], 4)
    before = processor.tracker.snapshot()
    forecast = processor.tracker.forecast(10 / FPS)
    after = processor.tracker.snapshot()
    assert np.array_equal(before.mean, after.mean) and np.array_equal(before.cov, after.cov)
    # Seven frames after the last detection (centre x 115), on the filter's
    # velocity (still learning the 5 px a frame): further right, less sure.
    centre = (forecast.xyxy[0, 0] + forecast.xyxy[0, 2]) / 2
    x, vx = after.mean[0, 0], after.mean[0, 4]
    assert 3 < vx < 5
    assert centre == pytest.approx(x + 7 * vx)
    assert forecast.frames_unseen[0] == pytest.approx(7)
    assert forecast.spread_px[0] > processor.tracker.forecast(3 / FPS).spread_px[0]


def far(i: int) -> list[Box]:
    """A walker on open ground, 150 px above the line, heading right."""
    return [person(100 + 5 * i, 100)]


# (what the tracker saw, the motion, frames since the detector ran, reason)
RULES: list[tuple[str, Callable[[int], Sequence[Box]], int, Motion | None, int | None, str]] = [
    # A confirmed track far from everything, moving where it is: carried.
    ("carried", far, 4, None, 1, "carried"),
    # The same, but nothing was detected yet (a restart): the detector runs.
    ("first frame", far, 4, None, None, "interval"),
    # The same, at the last frame the interval allows.
    ("interval reached", far, 4, None, 4, "interval"),
    # Seen once: tentative, it needs its next sighting.
    ("tentative", far, 1, None, 1, "tentative"),
    # Unseen in the last detected frame while in the picture: lost.
    ("lost", lambda i: far(i) if i < 4 else [], 5, None, 1, "lost"),
    # Motion away from every track: a newcomer.
    ("newcomer", far, 4, moving(person(400, 300)), 1, "newcomer"),
    # Walking down towards the line, feet 30 px above it.
    ("near the line", lambda i: [person(300, 196 + 6 * i)], 4, None, 1, "line"),
    # Feet 20 px beyond the line's end, along its extension.
    ("beyond the end", lambda i: [person(80, 250)], 4, None, 1, "line"),
    # Walking right along the top, 24 px short of the zone's left border.
    ("near the zone", lambda i: [person(472 + 6 * i, 80)], 4, None, 1, "zone"),
    # 80 px beyond the end: the segment counts, not the infinite line.
    ("far beyond the end", lambda i: [person(20, 250)], 4, None, 1, "carried"),
]


@pytest.mark.parametrize(
    ("path", "seen", "motion", "since", "reason"),
    [pytest.param(*r[1:], id=r[0]) for r in RULES],
)
def test_each_rule_sends_the_frame_to_the_detector(
    path: Callable[[int], Sequence[Box]],
    seen: int,
    motion: Motion | None,
    since: int | None,
    reason: str,
) -> None:
    processor = walked(path, seen)
    t = seen / FPS
    if motion is None:  # the tracks' own motion, where they are predicted
        forecast = processor.tracker.forecast(t)
        motion = moving(*(tuple(float(v) for v in b) for b in forecast.xyxy))
    assert interval_reason(SETTINGS, motion, t, processor, since) == reason


def test_a_lost_track_that_left_the_picture_is_not_waited_for() -> None:
    # Walking out at the left edge at 20 px a frame, lost once out of sight.
    processor = walked(lambda i: [person(60 - 20 * i, 100)] if i < 3 else [], 4)
    t = 8 / FPS  # predicted far left of the frame by then
    assert processor.tracker.forecast(t).status.tolist() == [2]
    assert interval_reason(SETTINGS, moving(), t, processor, 1) == "carried"


def test_the_interval_is_off_by_default_and_checks_its_settings() -> None:
    assert not IntervalSettings().enabled
    assert DetectorGate(GateSettings()).interval is None
    with pytest.raises(ValueError, match="max_interval"):
        IntervalSettings(max_interval=0)
    with pytest.raises(ValueError, match="margin_px"):
        IntervalSettings(max_interval=2, margin_px=-1)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--interval", "0"], ["--interval", "at least 1"]),
        (["--interval", "31"], ["--interval", "at most 30"]),
        (["--interval", "2.5"], ["--interval", "whole number"]),
    ],
)
def test_a_bad_interval_ends_in_one_line(
    args: list[str], names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["count", "v.mp4", "--line", "0,0,9,9", *args])
    except SystemExit as exc:  # argparse's way out
        code = int(exc.code or 0)
    stderr = capsys.readouterr().err
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert all(n in stderr for n in names), stderr


def test_a_bad_interval_in_a_config_names_the_field_and_line() -> None:
    text = "cameras:\n  - id: a\n    source: a.mp4\n    interval:\n      max_interval: 0\n"
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "cfg.yaml")
    assert "cameras.0.interval.max_interval" in str(exc.value)
    assert "cfg.yaml" in str(exc.value)


# ------------------------------------------------------------ walkers, frame by frame


def run(
    camera_config: CameraConfig,
    frames: Sequence[tuple[Detections, Motion]],
    settings: IntervalSettings,
    frame_size: tuple[int, int],
    class_names: Sequence[str],
    fps: float,
) -> tuple[list[CountRow], list[ZoneVisit], DetectorGate]:
    """Every frame's detections (made beforehand) through a processor, the
    gate deciding which of them the processor is given."""
    processor = CameraProcessor(camera_config, TrackerConfig(), class_names, frame_size, fps)
    gate = DetectorGate(GateSettings(), settings)
    events: list[CameraEvent] = []
    for i, (found, motion) in enumerate(frames):
        t = i / fps
        if gate.interval is None:
            events += processor.process(found, i, t)
            continue
        reason = gate.choose(motion, t, processor.tracker.track_count, 0, processor)
        events += processor.process(None if reason == "carried" else found, i, t)
    events += processor.finish()
    return processor.totals(), [e for e in events if isinstance(e, ZoneVisit)], gate


def test_walkers_on_open_ground_save_detector_calls_and_count_the_same() -> None:
    """Two people cross the frame far from the line and the zone while a
    third walks down through the line: the frames between detector calls
    are carried, and the crossing is counted as with every frame detected."""

    def boxes(i: int) -> list[Box]:
        out = [person(50 + 4 * i, 90), person(450 - 3 * i, 170)]
        if i >= 20:  # walks down through the line at frame 37, then stands
            out.append(person(200, min(180 + 4 * (i - 20), 340)))
        return out

    frames = [(dets(boxes(i)), moving(*boxes(i))) for i in range(100)]
    off = run(camera(), frames, IntervalSettings(), FRAME, CLASSES, FPS)
    on = run(camera(), frames, IntervalSettings(max_interval=5), FRAME, CLASSES, FPS)
    assert off[0] == on[0]
    assert [r["count"] for r in on[0] if r["counter_id"] == "door"] == [1]
    detected = 100 - on[2].skipped
    assert on[2].decisions["carried"] > 40, on[2].decisions
    assert detected < 60, on[2].decisions
    assert on[2].decisions["line"] > 0


# ------------------------------------------------------------ synthetic scenes

SEEDS = range(5)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("interval")
    return [write_scene(generate_scene(seed), root / f"scene{seed:02d}.mp4")[0] for seed in SEEDS]


def with_interval(config: AppConfig, max_interval: int) -> AppConfig:
    cam = config.cameras[0]
    interval = cam.interval.model_copy(update={"max_interval": max_interval})
    return config.model_copy(update={"cameras": (cam.model_copy(update={"interval": interval}),)})


def count(video: Path, model: str, seed: int, max_interval: int) -> CountResult:
    config = with_interval(load_config(video.with_suffix(".yaml")), max_interval)
    detector = build_detector(model, DetectorSettings(options={"seed": seed}))
    return count_video(config, config.cameras[0], detector)


@pytest.mark.parametrize("model", ["oracle", "noisy"])
def test_counts_are_the_same_with_the_interval_on_and_off(scenes: list[Path], model: str) -> None:
    saved = frames = 0
    for seed, video in zip(SEEDS, scenes, strict=True):
        off, on = count(video, model, seed, 1), count(video, model, seed, 5)
        assert on.totals == off.totals, f"seed {seed}"
        assert len(on.visits) == len(off.visits), f"seed {seed}"
        assert on.frames_processed == off.frames_processed == off.frames_detected
        assert on.frames_detected + on.gate["carried"] == on.frames_processed
        saved += on.gate["carried"]
        frames += on.frames_processed
    print(f"\n{model}: the interval carried {saved} of {frames} frames")
    assert saved > 0


# ------------------------------------------------------------ real clips

TRUTH = Path(__file__).resolve().parents[1] / "data" / "truth.yaml"
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CLIPS = load_truth_file(TRUTH).clips
#: The model takes most of a second a frame on a loaded 2-core machine: each
#: clip's first frames only, which hold every crossing of the two street
#: clips and the first visits of the zone clip.
CLIP_FRAMES = 250


@dataclass(frozen=True)
class Clip:
    camera: CameraConfig
    frames: list[tuple[Detections, Motion]]
    frame_size: tuple[int, int]
    fps: float


@pytest.fixture(scope="module")
def ssdlite() -> Detector:
    from camcount.cli import build_detector_from
    from camcount.detectors.fetch import fetch_ssdlite

    try:
        fetch_ssdlite()
    except DetectorError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"SSDLite weights unavailable under CI: {exc}")
        pytest.skip(f"SSDLite weights unavailable: {exc}")
    return build_detector_from(AppConfig())


def detected_clip(clip: ClipTruth, detector: Detector) -> Clip:
    """Every frame's detections and motion, made once: the runs with the
    interval on and off are then given the same detector output."""
    video = DATA / clip.video
    if clip.class_ not in detector.class_names:
        pytest.skip(f"{clip.video}: the detector sees no {clip.class_}s")
    if not video.is_file():
        pytest.skip(f"{video} not found (the shared real data, ../shared/data)")
    cam = CameraConfig.model_validate(
        {
            "id": video.stem,
            "source": str(video),
            "lines": [{"id": line.id, "points": line.points} for line in clip.lines],
            "zones": [{"id": zone.id, "polygon": zone.polygon} for zone in clip.zones],
        }
    )
    gate = DetectorGate(GateSettings(), IntervalSettings(max_interval=2))
    frames: list[tuple[Detections, Motion]] = []
    with VideoFile(cam.source) as video_file:
        head = itertools.islice(video_file, CLIP_FRAMES)
        for batch in batches(head, 8):
            found = detect_batch(detector, cam, batch, video_file.frame_size)
            frames += [(d, gate.measure(f.image)) for f, d in zip(batch, found, strict=True)]
        return Clip(cam, frames, video_file.frame_size, video_file.native_fps)


@pytest.mark.slow
@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: Path(c.video).stem)
def test_real_clips_count_the_same_with_the_interval(clip: ClipTruth, ssdlite: Detector) -> None:
    seen = detected_clip(clip, ssdlite)
    args = (seen.frame_size, ssdlite.class_names, seen.fps)
    off = run(seen.camera, seen.frames, IntervalSettings(), *args)
    on = run(seen.camera, seen.frames, IntervalSettings(max_interval=5), *args)
    print(f"\n{Path(clip.video).stem}: {on[2].decisions}")
    assert on[0] == off[0]
    assert len(on[1]) == len(off[1])
