"""``camcount detect``, run as a user would: a real process on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from camcount.scenes.synthetic import (
    CLASS_NAMES,
    generate_scene,
    load_truth,
    truth_path,
    write_scene,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
IMAGE = DATA / "images" / "ssdlite_example.jpg"


def camcount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camcount.cli", *args], capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    video, _, _ = write_scene(generate_scene(4), tmp_path_factory.mktemp("detect") / "s4.mp4")
    return video


def test_a_video_gives_one_json_line_per_frame_and_an_annotated_copy(scene: Path, tmp_path):
    out = tmp_path / "boxes.avi"
    run = camcount("detect", str(scene), "--model", "oracle", "--json", "--out", str(out))
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    truth = load_truth(truth_path(str(scene)))["frames"]
    assert [line["frame"] for line in lines] == list(range(len(truth)))
    busiest = max(range(len(truth)), key=lambda i: len(truth[i]))
    detections = lines[busiest]["detections"]
    assert len(detections) == len(truth[busiest]) > 0
    assert set(detections[0]) == {"box", "score", "class_name"}
    assert {d["class_name"] for line in lines for d in line["detections"]} <= set(CLASS_NAMES)
    # The annotated copy: every frame, same size, and boxes drawn where the objects are.
    written = cv2.VideoCapture(str(out))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == len(truth)
    original = cv2.VideoCapture(str(scene))
    for _ in range(busiest + 1):
        ok_a, drawn = written.read()
        ok_b, plain = original.read()
    assert ok_a and ok_b and drawn.shape == plain.shape
    x1, y1, x2, _ = (round(v) for v in detections[0]["box"])
    edge = np.abs(drawn[y1, x1:x2].astype(int) - plain[y1, x1:x2].astype(int)).mean()
    assert edge > 20, "no box drawn along the top edge of a detection"


def test_video_sampling_and_readable_output(scene: Path):
    run = camcount("detect", str(scene), "--model", "oracle", "--fps", "5", "--batch-size", "3")
    assert run.returncode == 0, run.stderr
    frames = [int(line.split(":")[0].split()[1]) for line in run.stdout.splitlines()]
    assert frames and all(f % 2 == 0 for f in frames)  # 10 fps sampled at 5: every other frame
    assert "frame(s):" in run.stderr and "detected by oracle" in run.stderr


@pytest.mark.skipif(not IMAGE.is_file(), reason=f"reference image not at {IMAGE}")
def test_the_person_model_on_the_reference_image(tmp_path: Path):
    from camcount.detectors.fetch import fetch_ssdlite

    fetch_ssdlite()  # the subprocess reads the same cache
    out = tmp_path / "annotated.png"
    run = camcount("detect", str(IMAGE), "--threshold", "0.6", "--json", "--out", str(out))
    assert run.returncode == 0, run.stderr
    (line,) = [json.loads(x) for x in run.stdout.splitlines()]
    assert line["frame"] == 0
    # data/README.md at threshold 0.6: three people.
    assert [d["class_name"] for d in line["detections"]] == ["person"] * 3
    np.testing.assert_allclose(
        [d["score"] for d in line["detections"]], [0.977, 0.836, 0.673], atol=0.01
    )
    np.testing.assert_allclose(line["detections"][0]["box"], [267, 62, 343, 270], atol=1.5)
    drawn, plain = cv2.imread(str(out)), cv2.imread(str(IMAGE))
    assert drawn.shape == plain.shape and not np.array_equal(drawn, plain)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.mp4"], "no such file"),
        (["{junk}"], "cannot read it as an image"),
        (["{scene}", "--model", "yolo"], "unknown detector"),
        (["{scene}", "--model", "oracle", "--threshold", "1.5"], "score_threshold"),
        (["{scene}", "--model", "oracle", "--out", "{tmp}/boxes.gif"], "not a video file name"),
        (["{scene}", "--model", "oracle", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(scene, tmp_path, args, message):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg")
    values = {"junk": str(junk), "scene": str(scene), "tmp": str(tmp_path)}
    run = camcount("detect", *(a.format(**values) for a in args))
    assert run.returncode == 2, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
