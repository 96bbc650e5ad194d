"""Counting accuracy on seeded synthetic scenes, rendered to real video files.

The expected counts come from each object's scripted scenario, not from the
counter. The figures are printed (run with -s to see them).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from camcount.config import load_config
from camcount.detectors import DetectorSettings, build_detector
from camcount.reference import count_video
from camcount.scenes.synthetic import CLASS_NAMES, expected_rows, generate_scene, write_scene

N_SCENES = 50


@pytest.fixture(scope="session")
def scenes(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("scenes")
    paths = []
    for seed in range(N_SCENES):
        video, _, _ = write_scene(generate_scene(seed), root / f"scene{seed:02d}.mp4")
        paths.append(video)
    return paths


def count_errors(scenes: list[Path], model: str) -> tuple[int, int, list[str]]:
    errors, total, details = 0, 0, []
    for seed, video in enumerate(scenes):
        config = load_config(video.with_suffix(".yaml"))
        truth = json.loads(video.with_name(video.stem + ".truth.json").read_text())
        want = expected_rows(truth["expected"])
        detector = build_detector(model, DetectorSettings(options={"seed": seed}))
        result = count_video(config, config.cameras[0], detector)
        got = {
            (r["counter_id"], r["class_name"], r["direction"]): r["count"] for r in result.totals
        }
        err = sum(abs(got.get(k, 0) - want.get(k, 0)) for k in set(got) | set(want))
        if err:
            details.append(f"seed {seed}: {err} off")
        errors += err
        total += sum(want.values())
    return errors, total, details


def test_scenes_are_real_videos_with_consistent_truth(scenes):
    video = scenes[0]
    truth = json.loads(video.with_name(video.stem + ".truth.json").read_text())
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == truth["layout"]["frames"] == len(truth["frames"])
    w, h = truth["layout"]["width"], truth["layout"]["height"]
    for boxes in truth["frames"]:
        for _, cls, x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h and 0 <= cls < len(CLASS_NAMES)
    scenarios = {
        o["scenario"]
        for t in scenes[:10]
        for o in json.loads(t.with_name(t.stem + ".truth.json").read_text())["objects"]
    }
    assert {"turn_back", "stop_and_go", "beyond_end", "occluded_cross", "zone_visit"} <= scenarios


def test_same_seed_same_scene():
    a, b = generate_scene(7), generate_scene(7)
    assert [o.keyframes for o in a.objects] == [o.keyframes for o in b.objects]
    assert [o.keyframes for o in generate_scene(8).objects] != [o.keyframes for o in a.objects]


def test_oracle_counts_are_exact_on_every_scene(scenes):
    errors, total, details = count_errors(scenes, "oracle")
    print(
        f"\noracle detector on {len(scenes)} scenes: {errors} of {total} counts off "
        f"({errors / total:.2%})"
    )
    assert errors == 0, details


def test_noisy_detector_count_error_is_at_most_two_percent(scenes):
    errors, total, details = count_errors(scenes, "noisy")
    print(
        f"\nnoisy detector (10% misses, 5 px jitter, 2% false positives) on {len(scenes)} "
        f"scenes: total absolute count error {errors} of {total} ({errors / total:.2%})"
    )
    assert errors / total <= 0.02, details
