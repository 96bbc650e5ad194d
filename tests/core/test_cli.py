"""The command line, run as a user would: a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from camcount.synthetic import generate_scene, write_scene


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
    got = {(r["class"], r["direction"]): r["count"] for r in rows if r["counter_id"] == "line-main"}
    want = {
        (c, d): n for c, dirs in truth["lines"]["line-main"].items() for d, n in dirs.items() if n
    }
    assert got == want
    assert set(rows[0]) == {"camera_id", "counter_id", "class", "direction", "count"}


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


def test_synth_writes_video_truth_and_config(tmp_path: Path):
    out = camcount("synth", str(tmp_path / "x.mp4"), "--seed", "5", "--frames", "40", "--json")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "x.mp4").stat().st_size > 0
    assert (tmp_path / "x.truth.json").exists() and (tmp_path / "x.yaml").exists()
    assert "lines" in json.loads(out.stdout)


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
    from camcount.spill import SpillStore

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

    only = camcount("warehouse", "dead-letters", str(config), "--replay", "--reason", "rejected")
    assert only.returncode == 0, only.stderr
    assert "replayed 1 rows" in only.stderr
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
