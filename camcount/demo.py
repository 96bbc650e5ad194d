"""What ``make demo`` shows: real counts on a synthetic scene whose truth is
known, and on a real video from ``../shared/data`` when that folder exists.

Everything runs in this process with the core (the reference path of
``camcount count``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from camcount.config import CameraConfig, LineConfig, ZoneConfig, load_config
from camcount.detectors import DetectorSettings, build_detector
from camcount.errors import CamcountError
from camcount.reference import CountResult, count_video
from camcount.synthetic import generate_scene, truth_path, write_scene

DEMO_SEED = 1
REAL_VIDEO = "videos/intel_one-by-one-person-detection.mp4"
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
    for col in ("counter", "class", "direction", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    if expected is not None:
        table.add_column("expected", justify="right")
    got = {(r["counter_id"], r["class"], r["direction"]): r["count"] for r in result.totals}
    for key in sorted(set(got) | set(expected or {})):
        cells = [*key, str(got.get(key, 0))]
        if expected is not None:
            want = expected.get(key, 0)
            mark = "" if want == got.get(key, 0) else " [red]✗[/red]"
            cells.append(f"{want}{mark}")
        table.add_row(*cells)
    return table


def _expected(truth: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    rows: dict[tuple[str, str, str], int] = {}
    for counter, per_class in truth["lines"].items():
        for cls, dirs in per_class.items():
            for direction, n in dirs.items():
                if n:
                    rows[(counter, cls, direction)] = n
    for zone, data in truth["zones"].items():
        for cls, n in data["visits"].items():
            rows[(zone, cls, "enter")] = n
            rows[(zone, cls, "exit")] = n
    return rows


def run_demo(out_dir: Path, console: Console) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    video = out_dir / "scene.mp4"
    if not truth_path(video).exists():
        console.print(f"rendering a synthetic scene (seed {DEMO_SEED}) to {video}")
        write_scene(generate_scene(DEMO_SEED), video)
    config = load_config(video.with_suffix(".yaml"))
    expected = _expected(json.loads(truth_path(video).read_text())["expected"])
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

    data = shared_data_dir()
    if data is None:
        console.print("no ../shared/data here: the real-video part of the demo is skipped")
        return
    real = data / REAL_VIDEO
    camera = CameraConfig(
        id="one-by-one",
        source=str(real),
        lines=(LineConfig(id="entrance", points=((200, 400), (700, 400)), band_px=10),),
        zones=(ZoneConfig(id="table", polygon=((300, 280), (620, 280), (620, 431), (300, 431))),),
    )
    try:
        detector = build_detector("ssdlite-person", DetectorSettings(score_threshold=0.5))
    except CamcountError as exc:
        console.print(f"[yellow]real-video part skipped:[/yellow] {exc}")
        return
    config = config.model_copy(
        update={"tracker": config.tracker.model_copy(update={"lost_track_buffer_s": 8.0})}
    )
    console.print(f"counting {real.name} with the person SSDLite detector (CPU)…")
    result = count_video(config, camera, detector)
    console.print(_table(f"{real.name}: {result.frames_processed} frames", result, None))
    console.print(
        "ground truth by eye: 6 visits to the table, people entering and leaving from the bottom"
    )
    console.print(f"[dim]{INTEL_CREDIT}[/dim]")
