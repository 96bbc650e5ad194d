"""The motion gate changes which frames the detector sees, never the counts:
seeded synthetic scenes, rendered to real video, counted with the gate on
and off by the same reference run."""

from __future__ import annotations

from pathlib import Path

import pytest

from camcount.config import AppConfig, load_config
from camcount.detectors import DetectorSettings, build_detector
from camcount.reference import CountResult, count_video
from camcount.scenes.synthetic import generate_scene, write_scene

SEEDS = range(5)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("gated")
    return [write_scene(generate_scene(seed), root / f"scene{seed:02d}.mp4")[0] for seed in SEEDS]


def gated(config: AppConfig, on: bool) -> AppConfig:
    camera = config.cameras[0]
    motion = camera.motion.model_copy(update={"enabled": on})
    return config.model_copy(update={"cameras": (camera.model_copy(update={"motion": motion}),)})


def count(video: Path, model: str, seed: int, on: bool) -> CountResult:
    config = gated(load_config(video.with_suffix(".yaml")), on)
    detector = build_detector(model, DetectorSettings(options={"seed": seed}))
    return count_video(config, config.cameras[0], detector)


def keys(result: CountResult) -> list[tuple[object, ...]]:
    return [(c.event_id, c.class_name, c.direction, c.event_time) for c in result.crossings]


@pytest.mark.parametrize("model", ["oracle", "noisy"])
def test_counts_are_the_same_with_the_gate_on_and_off(scenes: list[Path], model: str) -> None:
    saved = detected = 0
    for seed, video in zip(SEEDS, scenes, strict=True):
        off, on = count(video, model, seed, False), count(video, model, seed, True)
        assert on.totals == off.totals, f"seed {seed}"
        # The same crossings (anchors may differ in the last float digits:
        # the detector's batches are made of other frames).
        assert keys(on) == keys(off), f"seed {seed}"
        assert on.windows == off.windows, f"seed {seed}"
        assert on.frames_processed == off.frames_processed == off.frames_detected
        assert on.frames_detected + on.gate["skipped"] == on.frames_processed
        saved += on.gate["skipped"]
        detected += off.frames_detected
    print(f"\n{model}: the gate skipped {saved} of {detected} detector frames")


def test_the_gate_is_off_unless_asked_and_says_why_frames_ran(scenes: list[Path]) -> None:
    off = count(scenes[0], "oracle", 0, False)
    assert off.gate == {**dict.fromkeys(off.gate, 0), "off": off.frames_processed}
    on = count(scenes[0], "oracle", 0, True)
    assert on.gate["off"] == 0
    assert on.gate["motion"] + on.gate["tracks"] + on.gate["pending"] > 0
