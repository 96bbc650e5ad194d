"""The command line, run as a user would: a real process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from camcount.cli import main
from camcount.scenes.synthetic import generate_scene, load_truth, truth_path, write_scene
from camcount.vision.annotate import LINE_COLOR, draw_label, label_box, line_label


def camcount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camcount.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    video, _, _ = write_scene(generate_scene(3), tmp_path_factory.mktemp("cli") / "s3.mp4")
    return video


def test_count_json_matches_the_truth(scene: Path):
    out = camcount("count", str(scene), "--config", str(scene.with_suffix(".yaml")), "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    truth = json.loads(scene.with_name("s3.truth.json").read_text())["expected"]
    got = {
        (r["class_name"], r["direction"]): r["count"]
        for r in rows
        if r["counter_id"] == "line-main"
    }
    want = {
        (c, d): n for c, dirs in truth["lines"]["line-main"].items() for d, n in dirs.items() if n
    }
    assert got == want
    assert set(rows[0]) == {"camera_id", "counter_id", "class_name", "direction", "count"}


def test_count_with_the_motion_gate_counts_the_same_and_says_what_it_skipped(scene: Path):
    args = ("count", str(scene), "--config", str(scene.with_suffix(".yaml")), "--json")
    plain, gated = camcount(*args), camcount(*args, "--motion")
    assert plain.returncode == gated.returncode == 0, gated.stderr
    assert json.loads(gated.stdout) == json.loads(plain.stdout)
    assert re.search(r"motion gate: \d+ of \d+ frames skipped the detector", gated.stderr)
    assert "motion gate" not in plain.stderr


def test_count_with_a_line_on_the_command_line(scene: Path):
    out = camcount(
        "count",
        str(scene),
        "--line",
        "40,180,400,180",
        "--band-px",
        "15",
        "--model",
        "oracle",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert {r["counter_id"] for r in json.loads(out.stdout)} == {"line-1"}


def test_count_with_slicing_counts_each_object_once(scene: Path):
    """Objects cut by the tiles' borders are merged back: with the oracle's
    exact boxes the sliced count is the truth, as without slicing."""
    config = str(scene.with_suffix(".yaml"))
    plain = camcount("count", str(scene), "--config", config, "--json")
    sliced = camcount("count", str(scene), "--config", config, "--slice", "3,2", "--json")
    assert sliced.returncode == 0, sliced.stderr
    assert json.loads(sliced.stdout) == json.loads(plain.stdout)


def frames_of(video: Path) -> list[npt.NDArray[np.uint8]]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        frames.append(image)


def test_count_out_writes_the_video_as_counted(scene: Path, tmp_path: Path):
    out = tmp_path / "counted.mp4"
    config = str(scene.with_suffix(".yaml"))
    run = camcount("count", str(scene), "--config", config, "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stderr
    drawn, plain = frames_of(out), frames_of(scene)
    assert len(drawn) == len(plain) == load_truth(truth_path(scene))["layout"]["frames"]
    assert drawn[0].shape == plain[0].shape

    # The line (horizontal in a synthetic scene) in its colour on every frame;
    # the source has no line there.
    (x0, y0), (x1, _) = load_truth(truth_path(scene))["line"]["points"]
    xs = np.linspace(x0 + (x1 - x0) * 0.3, x1, 40).round().astype(int)

    def off_line_colour(image: npt.NDArray[np.uint8]) -> float:
        pixels = image[y0, xs].astype(int)
        return float(np.median(np.abs(pixels - np.array(LINE_COLOR)).max(axis=1)))

    assert all(off_line_colour(f) < 40 for f in drawn)
    assert off_line_colour(plain[0]) > 80

    # The line's label: "line-main in 0 out 0" at first, its final counts at
    # the end, as the same drawing function renders them on the source frame.
    rows = json.loads(run.stdout)
    final = {
        d: sum(r["count"] for r in rows if r["counter_id"] == "line-main" and r["direction"] == d)
        for d in ("in", "out")
    }
    assert final["in"] + final["out"] > 0
    texts = {"start": line_label("line-main", {}), "end": line_label("line-main", final)}

    def distance(drawn_frame: npt.NDArray[np.uint8], plain_frame: npt.NDArray[np.uint8], text: str):
        x1, y1, x2, y2 = label_box(plain_frame, texts["end"], (x0, y0))
        expected = draw_label(plain_frame.copy(), text, (x0, y0), LINE_COLOR)
        region = np.s_[y1 : y2 + 1, x1 : x2 + 1]
        return float(np.abs(drawn_frame[region].astype(int) - expected[region].astype(int)).mean())

    first, last = (drawn[0], plain[0]), (drawn[-1], plain[-1])
    assert distance(*first, texts["start"]) < distance(*first, texts["end"])
    assert distance(*last, texts["end"]) < distance(*last, texts["start"])
    assert distance(*last, texts["end"]) < 10  # a label at all: a white box reads far off


@pytest.mark.parametrize(("fps", "rate"), [("5", 5.0), ("40", 10.0)])
def test_count_out_keeps_the_sampled_frames_at_their_rate(
    fps: str, rate: float, scene: Path, tmp_path: Path
):
    """``--fps`` above the source's own rate keeps every frame, at its rate."""
    out = tmp_path / "sampled.avi"
    config = str(scene.with_suffix(".yaml"))
    run = camcount("count", str(scene), "--config", config, "--fps", fps, "--out", str(out))
    assert run.returncode == 0, run.stderr
    source = load_truth(truth_path(scene))["layout"]
    written = cv2.VideoCapture(str(out))
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(rate)
    assert len(frames_of(out)) == source["frames"] * rate / source["fps"]


def test_synth_writes_video_truth_and_config(tmp_path: Path):
    out = camcount("synth", str(tmp_path / "x.mp4"), "--seed", "5", "--frames", "40", "--json")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "x.mp4").stat().st_size > 0
    assert (tmp_path / "x.truth.json").exists() and (tmp_path / "x.yaml").exists()
    summary = json.loads(out.stdout)
    assert summary["video"] == str(tmp_path / "x.mp4") and summary["frames"] == 40
    # The expected counts compare as they are with what a perfect detector counts.
    counted = camcount("count", summary["video"], "--config", summary["config"], "--json")
    assert counted.returncode == 0, counted.stderr
    assert summary["expected"] and summary["expected"] == json.loads(counted.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["count", "/no/such/video.mp4", "--line", "0,0,10,10"], "no such file"),
        (["count", "video.mp4"], "nothing to count"),
        (["count", "v.mp4", "--line", "1,2,3"], "expected 4 numbers"),
        (["count", "v.mp4", "--line", "1,2,3,4", "--model", "yolo-magic"], "unknown detector"),
    ],
)
def test_bad_input_gives_a_clear_error(args, message, tmp_path: Path):
    if args[1] == "v.mp4":
        video, _, _ = write_scene(generate_scene(1), tmp_path / "v.mp4")
        args = [args[0], str(video), *args[2:]]
    out = camcount(*args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``camcount ARGS`` in this process: its exit status and stderr."""
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's way out
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--line", "nan,0,385,360"], ["--line", "finite"]),
        (["--line", "0,0,inf,360"], ["--line", "finite"]),
        (["--line", "100,100,100,100"], ["--line", "must differ"]),
        (["--line", "1,2,3,x"], ["--line", "numbers"]),
        (["--zone", "0,0,10,10,10,0,0,10"], ["--zone", "crosses itself at (5, 5)"]),
        (["--zone", "0,0,-inf,10,10,0"], ["--zone", "finite"]),
        (["--line", "0,0,9,9", "--band-px", "-1"], ["--band-px", "at least 0"]),
        (["--line", "0,0,9,9", "--band-px", "nan"], ["--band-px", "finite"]),
        (["--line", "0,0,9,9", "--fps", "0"], ["--fps", "above 0"]),
        (["--line", "0,0,9,9", "--fps", "inf"], ["--fps", "finite"]),
        (["--line", "0,0,9,9", "--threshold", "nan"], ["--threshold", "finite"]),
        (["--line", "0,0,9,9", "--threshold", "2"], ["score_threshold"]),
        (["--line", "0,0,9,9", "--batch-size", "0"], ["--batch-size", "at least 1"]),
        (["--line", "0,0,9,9", "--seed", "-1"], ["--seed", "at least 0"]),
        (["--line", "0,0,9,9", "--camera", "gate"], ["--camera gate", "--config"]),
        (["--config", "{config}", "--camera", "nope"], ["--camera nope", "its cameras: gate"]),
        (["--config", "{bad_config}"], ["cameras.0.lines.0.points.0.0", "finite"]),
        (["--line", "0,0,9,9", "--slice", "0,2"], ["--slice", "at least 1", "'0,2'"]),
        (["--line", "0,0,9,9", "--slice", "2"], ["--slice", "COLS,ROWS"]),
        (["--line", "0,0,9,9", "--slice", "9,9"], ["--slice", "more than 64 regions"]),
    ],
)
def test_bad_count_arguments_end_in_one_line(args, names, tmp_path: Path, capsys) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("cameras:\n  - id: gate\n    source: v.mp4\n")
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text(
        "cameras:\n  - id: gate\n    source: v.mp4\n    lines:\n"
        "      - id: door\n        points: [[.nan, 0], [9, 9]]\n"
    )
    paths = {"config": str(config), "bad_config": str(bad_config)}
    code, stderr = run_main(["count", "v.mp4", *(a.format(**paths) for a in args)], capsys)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert all(n in stderr for n in names), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["synth", "x.mp4", "--frames", "0"], "--frames"),
        (["synth", "x.mp4", "--fps", "nan"], "--fps"),
        (["synth", "x.mp4", "--seed", "-1"], "--seed"),
        (["synth", "{tmp}/x.mp4", "--width", "10", "--height", "10"], "10x10 frame"),
        (["detect", "x.mp4", "--fps", "nan"], "--fps"),
        (["detect", "x.mp4", "--slice", "2,x"], "--slice"),
        (["replay", "c.yaml", "--shards", "0"], "--shards"),
        (["checkpoints", "show", "c.yaml", "-1"], "id"),
        (["nonsense"], "invalid choice"),
    ],
)
def test_bad_arguments_of_other_commands_end_in_one_line(args, name, tmp_path: Path, capsys):
    code, stderr = run_main([a.format(tmp=tmp_path) for a in args], capsys)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and name in stderr, stderr


@pytest.fixture
def no_frames(tmp_path: Path) -> Path:
    """A video OpenCV opens (it has a frame size) that holds no frame."""
    path = tmp_path / "empty.avi"
    cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48)).release()
    return path


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["count", "{scene}", "--line", "0,9,99,9", "--out", "{tmp}/a.txt"], ["--out", ".mp4"]),
        (["count", "{scene}", "--line", "0,9,99,9", "--out", "{scene}"], ["--out", "the input"]),
        (
            ["count", "{empty}", "--line", "0,24,64,24", "--out", "{tmp}/a.mp4"],
            ["--out", "no frames"],
        ),
        (
            ["detect", "{empty}", "--model", "oracle", "--out", "{tmp}/a.mp4"],
            ["--out", "no frames"],
        ),
        (["detect", "{scene}", "--model", "oracle", "--out", "{tmp}/a.txt"], ["--out", ".mp4"]),
        (["detect", "{scene}", "--model", "oracle", "--out", "{scene}"], ["--out", "the input"]),
        (["synth", "{tmp}/a.txt"], ["OUT", ".mp4"]),
        (["synth", "{scene}/a.mp4"], ["OUT", "cannot make its folder"]),
        (
            ["count", "{scene}", "--line", "0,9,99,9", "--out", "{scene}/a.mp4"],
            ["--out", "cannot make its folder"],
        ),
        (
            ["detect", "{scene}", "--model", "oracle", "--out", "{scene}/a.mp4"],
            ["--out", "cannot make its folder"],
        ),
    ],
)
def test_an_output_is_never_written_empty_or_over_its_input(
    args, names, scene: Path, no_frames: Path, tmp_path: Path
):
    before = scene.stat().st_size
    paths = {"scene": str(scene), "empty": str(no_frames), "tmp": str(tmp_path)}
    out = camcount(*(a.format(**paths) for a in args))
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.splitlines()) == 1, out.stderr  # no bar, no blank line before it
    assert all(n in out.stderr for n in names), out.stderr
    assert not list(tmp_path.glob("a.*")), "a refused output was left behind"
    assert scene.stat().st_size == before


def test_a_scene_without_frames_is_refused_and_leaves_no_file(tmp_path: Path):
    from camcount.errors import EmptyOutputError
    from camcount.scenes.synthetic import SceneLayout

    with pytest.raises(EmptyOutputError, match="no frame"):
        write_scene(generate_scene(1, SceneLayout(frames=0)), tmp_path / "z.mp4")
    assert not (tmp_path / "z.mp4").exists()


@pytest.mark.parametrize(
    ("line", "points"),
    [("700,0,800,10", "(700, 0) to (800, 10)"), ("-50,-50,-10,-20", "(-50, -50) to (-10, -20)")],
)
def test_count_refuses_a_line_outside_the_video_frame(scene: Path, line: str, points: str):
    out = camcount("count", str(scene), f"--line={line}", "--model", "oracle", "--json")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        f"error: camera 's3', line 'line-1' (640x360 frame): the line from {points} "
        "lies wholly outside the frame"
    ]


def test_config_schema_is_json():
    out = camcount("config-schema")
    assert out.returncode == 0
    assert json.loads(out.stdout)["title"] == "AppConfig"


def test_config_check_reports_the_field(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: a\n    source: a.mp4\n    colour: red\n")
    out = camcount("config-check", str(bad))
    assert out.returncode == 2
    assert "line 4" in out.stderr and "cameras.0.colour" in out.stderr


def test_warehouse_dead_letters_lists_and_replays_refused_batches(tmp_path: Path):
    """A batch the warehouse refused waits in storage; once its cause is
    fixed, ``--replay`` inserts it, and a second replay adds nothing."""
    from camcount.events import Crossing, Direction, to_arrow
    from camcount.stream.spill import SpillStore

    config = tmp_path / "camcount.yaml"
    config.write_text(
        f"storage: {{root: 'file://{tmp_path}/store'}}\n"
        f"warehouse: {{url: 'chdb://{tmp_path}/chdb', sink_id: sink-7}}\n"
    )
    rows = [Crossing("gate", "l1", 3, 3, 1_767_225_603.0, "person", Direction.IN, 0.9, 1, 1)]
    store = SpillStore(f"file://{tmp_path}/store", namespace="warehouse/sink-7")
    store.put_dead(
        "crossing", to_arrow(Crossing, rows), "d1", "event", "rejected", "server said no"
    )
    extra = Crossing("gate", "l1", 9, 9, 1_767_225_609.0, "person", Direction.OUT, 0.8, 1, 1)
    store.put_dead("crossing", to_arrow(Crossing, [extra]), "d2", "event", "invalid", "bad value")

    listed = camcount("warehouse", "dead-letters", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    batches = json.loads(listed.stdout)["batches"]
    assert sorted((b["state"], b["reason"], b["rows"]) for b in batches) == [
        ("dead", "invalid", 1),
        ("dead", "rejected", 1),
    ]
    assert json.loads(listed.stdout)["replayed_rows"] is None

    table = camcount("warehouse", "dead-letters", str(config))
    assert "rejected" in table.stdout and "invalid" in table.stdout  # the answer on stdout
    assert "fix the cause, then run again with --replay" in table.stderr
    only = camcount("warehouse", "dead-letters", str(config), "--replay", "--reason", "rejected")
    assert only.returncode == 0, only.stderr
    # one line however long (stderr is a pipe here, as in a log file)
    assert f"replayed 1 rows into chdb://{tmp_path}/chdb\n" in only.stderr
    left = json.loads(camcount("warehouse", "dead-letters", str(config), "--json").stdout)
    assert [b["reason"] for b in left["batches"]] == ["invalid"]
    again = json.loads(
        camcount("warehouse", "dead-letters", str(config), "--replay", "--json").stdout
    )
    assert again["replayed_rows"] == 1 and again["batches"][0]["reason"] == "invalid"

    count = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from camcount.warehouse import connect\n"
            "wh = connect(sys.argv[1])\n"
            "t = wh.sql('SELECT direction, count() AS n FROM crossings FINAL GROUP BY direction')\n"
            "print(sorted((r['direction'], r['n']) for r in t.to_pylist()))",
            f"chdb://{tmp_path}/chdb",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert count.returncode == 0, count.stderr
    assert count.stdout.strip() == "[('in', 1), ('out', 1)]"


def test_warehouse_dead_letters_with_a_bad_config_says_why(tmp_path: Path):
    config = tmp_path / "bad.yaml"
    config.write_text("warehouse: {url: 'postgres://x'}\n")
    out = camcount("warehouse", "dead-letters", str(config), "--replay")
    assert out.returncode == 2
    assert "chdb://" in out.stderr and "Traceback" not in out.stderr


def test_version_and_defaults_in_help():
    from camcount import __version__

    version = camcount("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"camcount {__version__}"
    shown = camcount("replay", "--help").stdout
    assert "aggregator shards (default: 1)" in " ".join(shown.split())
    assert "(default: None)" not in shown
