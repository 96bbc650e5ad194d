"""The counted truth of the real clips (tests/data/truth.yaml) stays whole.

The file is read with the same checks a benchmark relies on, each clip is
compared with its video where the shared data is present, and every way a
truth can contradict itself is refused with one line naming the field.
Intel clips: "Sample videos by Intel IoT Developer Kit
(github.com/intel-iot-devkit/sample-videos), licensed under Creative Commons
Attribution 4.0 International."
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import pytest
import yaml

from camcount.errors import ConfigError
from camcount.scenes.truth import ClipTruth, load_truth_file

TRUTH = Path(__file__).resolve().parents[1] / "data" / "truth.yaml"
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_the_truth_file_loads_and_its_counts_are_its_crossings() -> None:
    truth = load_truth_file(TRUTH)
    by_video = {clip.video: clip for clip in truth.clips}
    # The two clips counted for the accuracy benchmark, and the two before them.
    assert set(by_video) == {
        "videos/ahmetozlu_pedestrian_survaillance.mp4",
        "videos/ahmetozlu_cutl.mp4",
        "videos/intel_car-detection.mp4",
        "videos/intel_one-by-one-person-detection.mp4",
    }
    for clip in truth.clips:
        for line in clip.lines:
            listed = {d: sum(c.direction == d for c in line.crossings) for d in ("in", "out")}
            assert listed == {"in": line.total("in"), "out": line.total("out")}
        for zone in clip.zones:
            assert zone.count == len(zone.visits)


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared real data not found at {DATA}")
@pytest.mark.parametrize("clip", load_truth_file(TRUTH).clips, ids=lambda c: Path(c.video).stem)
def test_each_clip_is_the_video_it_names(clip: ClipTruth) -> None:
    video = cv2.VideoCapture(str(DATA / clip.video))
    try:
        assert video.isOpened(), f"{clip.video} does not open"
        size = (int(video.get(cv2.CAP_PROP_FRAME_WIDTH)), int(video.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        assert size == clip.frame_size
        assert video.get(cv2.CAP_PROP_FPS) == pytest.approx(clip.fps, rel=1e-3)
        assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == clip.frames
    finally:
        video.release()


def _first_line(doc: dict[str, Any]) -> dict[str, Any]:
    line: dict[str, Any] = doc["clips"][0]["lines"][0]
    return line


def _zone_clip(doc: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in doc["clips"] if c.get("zones"))


def _set_counts(d: dict[str, Any]) -> None:
    _first_line(d)["counts"]["in"] += 1


def _line_outside(d: dict[str, Any]) -> None:
    _first_line(d)["points"][1] = [450, 400]


def _late_crossing(d: dict[str, Any]) -> None:
    _first_line(d)["crossings"][0]["frames"] = [230, 242]


def _backwards(d: dict[str, Any]) -> None:
    _first_line(d)["crossings"][0]["frames"] = [40, 26]


def _one_point_line(d: dict[str, Any]) -> None:
    _first_line(d)["points"] = [[450, 85], [450, 85]]


def _zone_count(d: dict[str, Any]) -> None:
    _zone_clip(d)["zones"][0]["count"] = 5


def _zone_outside(d: dict[str, Any]) -> None:
    _zone_clip(d)["zones"][0]["polygon"][2] = [620, 500]


def _twice(d: dict[str, Any]) -> None:
    d["clips"].append(copy.deepcopy(d["clips"][0]))


def _nothing_counted(d: dict[str, Any]) -> None:
    del d["clips"][0]["lines"]


def _unknown_direction(d: dict[str, Any]) -> None:
    _first_line(d)["crossings"][0]["direction"] = "left"


BROKEN: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    # a total that is not the crossings it lists
    ("count", _set_counts, "counts say 5 in, but 4 such crossings are listed"),
    # a line leaving the picture (the frame is 360 px high)
    ("outside", _line_outside, "outside the 626x360 frame"),
    # a crossing after the clip's last frame (242 frames: 0-241)
    ("late", _late_crossing, "the clip's last frame is 241"),
    # a frame range that runs backwards
    ("backwards", _backwards, "frames must run forwards, got 40 to 26"),
    # a line of one point, refused as a config line is
    ("one point", _one_point_line, "the two points of a line must differ"),
    # a zone's visit count that is not its visits
    ("zone count", _zone_count, "count says 5, but 6 visits are listed"),
    ("zone outside", _zone_outside, "outside the 768x432 frame"),
    # one clip listed twice would be counted twice in a total
    ("twice", _twice, "is listed twice"),
    ("nothing", _nothing_counted, "no line or zone to count"),
    ("direction", _unknown_direction, "direction"),
]


@pytest.mark.parametrize(("name", "damage", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_truth_that_contradicts_itself_is_refused_in_one_line(
    tmp_path: Path, name: str, damage: Callable[[dict[str, Any]], None], message: str
) -> None:
    doc = yaml.safe_load(TRUTH.read_text())
    damage(doc)
    path = tmp_path / "truth.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as caught:
        load_truth_file(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
