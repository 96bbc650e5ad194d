"""What ``make demo`` shows: real counts on a synthetic scene whose truth is
known, and on a real video from ``../shared/data`` when that folder exists.

Everything runs in this process with the core (the reference path of
``camcount count``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from camcount.config import (
    AppConfig,
    CameraConfig,
    DetectorConfig,
    LineConfig,
    TrackerConfig,
    ZoneConfig,
    load_config,
)
from camcount.detectors import DetectorSettings, build_detector
from camcount.events import CountRow
from camcount.reference import CountResult, count_video
from camcount.scenes.synthetic import expected_rows, generate_scene, truth_path, write_scene

DEMO_SEED = 1
REAL_VIDEO = "videos/intel_one-by-one-person-detection.mp4"
PAVEMENT_VIDEO = "videos/ahmetozlu_pedestrian_survaillance.mp4"
INTEL_CREDIT = (
    "Sample videos by Intel IoT Developer Kit (github.com/intel-iot-devkit/sample-videos), "
    "licensed under Creative Commons Attribution 4.0 International."
)


def shared_data_dir() -> Path | None:
    """``CAMCOUNT_SHARED_DATA``, else ``../shared/data`` beside the project."""
    env = os.environ.get("CAMCOUNT_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path.cwd().parent / "shared" / "data")
    return next((p for p in candidates if p.is_dir()), None)


def _table(
    title: str, result: CountResult, expected: dict[tuple[str, str, str], int] | None
) -> Table:
    table = Table(title=title)
    for col in ("counter_id", "class_name", "direction", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    if expected is not None:
        table.add_column("expected", justify="right")
    got = {(r["counter_id"], r["class_name"], r["direction"]): r["count"] for r in result.totals}
    for key in sorted(set(got) | set(expected or {})):
        cells = [*key, str(got.get(key, 0))]
        if expected is not None:
            want = expected.get(key, 0)
            mark = "" if want == got.get(key, 0) else " [red]✗[/red]"
            cells.append(f"{want}{mark}")
        table.add_row(*cells)
    return table


def run_synthetic(out_dir: Path, console: Console) -> None:
    """Counts on a synthetic scene beside its exact truth, in this process."""
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "scene.mp4"
    if not truth_path(video).exists():
        console.print(f"rendering a synthetic scene (seed {DEMO_SEED}) to {video}")
        write_scene(generate_scene(DEMO_SEED), video)
    config = load_config(video.with_suffix(".yaml"))
    expected = expected_rows(json.loads(truth_path(video).read_text())["expected"])
    for model in ("oracle", "noisy"):
        result = count_video(
            config,
            config.cameras[0],
            build_detector(model, DetectorSettings(options={"seed": DEMO_SEED})),
        )
        console.print(
            _table(
                f"synthetic scene, {model} detector, {result.frames_processed} frames",
                result,
                expected,
            )
        )


def real_video_config(data: Path) -> AppConfig:
    """Two real clips for the pipeline: visits to the table in the Intel
    one-by-one clip, and people crossing a line on a pavement."""
    return AppConfig(
        cameras=(
            CameraConfig(
                id="one-by-one",
                source=str(data / REAL_VIDEO),
                zones=(
                    ZoneConfig(
                        id="table", polygon=((300, 280), (620, 280), (620, 431), (300, 431))
                    ),
                ),
                # The person detector misses people seen from behind for
                # seconds at a time: keep their tracks longer.
                tracker=TrackerConfig(lost_track_buffer_s=12.0),
            ),
            CameraConfig(
                id="pavement",
                source=str(data / PAVEMENT_VIDEO),
                lines=(LineConfig(id="crossing", points=((313, 90), (313, 350)), band_px=10),),
            ),
        ),
        detector=DetectorConfig(model="ssdlite-person", score_threshold=0.4),
    )


def totals_table(title: str, totals: list[CountRow]) -> Table:
    table = Table(title=title)
    for col in ("camera_id", "counter_id", "class_name", "direction", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for r in totals:
        table.add_row(
            r["camera_id"], r["counter_id"], r["class_name"], r["direction"], str(r["count"])
        )
    return table


REAL_VIDEO_NOTE = (
    "ground truth by eye for one-by-one: 6 visits to the table; the person detector sees "
    "almost nothing of the fifth, so 5 is what it can count. The pavement clip has no "
    "counted truth: it shows a line on a second camera sharing the same detector."
)
