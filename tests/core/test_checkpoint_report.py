"""What operators see of checkpoints (``camcount checkpoints``), and the
live sequence blocks a restarted hub numbers on from."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from camcount.checkpoints import CheckpointStore, Manifest
from camcount.checkpoints.sequence import SequenceBlocks
from camcount.checkpoints.states import CAMERA_STATE_VERSION, CameraState
from camcount.cli import main
from camcount.errors import StateError
from camcount.events import Crossing, Direction
from camcount.stream.aggregation import Aggregator
from camcount.stream.channels import Progress, Sender
from camcount.stream.livefeed import UpdateBuffer
from camcount.vision.video import SourcePosition


def write_checkpoint(store: CheckpointStore, n: int, frame: int) -> None:
    agg = Aggregator([10], allowed_lateness_s=0)
    agg.register("gate", "gate#0")
    crossing = Crossing("gate", "door", 1, frame, 3.0, "person", Direction.IN, 0.9, 0, 0)
    agg.accept(Sender("gate#0").envelope([crossing], [Progress(3.0)]))
    camera = CameraState(
        CAMERA_STATE_VERSION,
        "gate",
        None,
        SourcePosition(frame + 1, frame, frame / 10),
        frame,
        1,
        3.0,
    )
    parts = (
        store.write_part(n, "cameras", "gate", camera),
        store.write_part(n, "shards", "0", agg.snapshot()),
    )
    store.complete(Manifest(n, 1_800_000_000.0 + n, parts, {"shards": 1}))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "camcount.yaml"
    path.write_text(f"storage:\n  root: file://{tmp_path / 'store'}\n")
    store = CheckpointStore(f"file://{tmp_path / 'store'}")
    for n, frame in ((1, 10), (2, 20), (3, 30)):
        write_checkpoint(store, n, frame)
    return path


def test_list_and_show_say_where_each_camera_resumes(config: Path, capsys):
    assert main(["checkpoints", "list", str(config), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["checkpoint_id"] for r in rows] == [3, 2, 1] and all(r["complete"] for r in rows)
    assert main(["checkpoints", "show", str(config), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["checkpoint_id"] == 3
    assert shown["cameras"][0]["resumes_at_frame"] == 31
    assert shown["shards"][0]["inputs"] == ["gate"] and shown["shards"][0]["open_windows"] == 1
    assert main(["checkpoints", "show", str(config), "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cameras"][0]["resumes_at_frame"] == 11


def test_restore_goes_back_only_when_told_to(config: Path, capsys):
    assert main(["checkpoints", "restore", str(config), "2"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["checkpoints", "restore", str(config), "2", "--yes"]) == 0
    assert main(["checkpoints", "show", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checkpoint_id"] == 2
    assert main(["checkpoints", "restore", str(config), "7", "--yes"]) == 2  # no such checkpoint


def test_an_empty_store_says_the_next_run_starts_over(tmp_path: Path, capsys):
    path = tmp_path / "camcount.yaml"
    path.write_text(f"storage:\n  root: file://{tmp_path / 'empty'}\n")
    assert main(["checkpoints", "list", str(path)]) == 0
    assert "starts every source from its beginning" in capsys.readouterr().err
    assert main(["checkpoints", "show", str(path)]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_a_restarted_hub_numbers_after_every_number_the_last_one_could_use(tmp_path: Path):
    root = f"file://{tmp_path}"
    first = SequenceBlocks(root, block=100)
    assert first.start() == 0
    buffer = UpdateBuffer(10, last_seq=0)
    for i in range(250):  # reserve before use, as the hub does
        first.reserve(buffer.last_seq + 1)
        buffer.publish("crossing", "gate", {"i": i})
    second = SequenceBlocks(root, block=100)
    last = second.start()
    assert last >= 250  # never a number the first may have sent
    resumed = UpdateBuffer(10, last_seq=last)
    assert resumed.publish("crossing", "gate", {}).seq == last + 1
    # A client that saw 240 learns of the gap instead of getting reused numbers.
    assert resumed.since(240).gap
    assert len(list((tmp_path / "live").iterdir())) == 1  # older blocks are deleted


def test_a_v1_camera_state_is_read_with_class_name_totals(tmp_path: Path) -> None:
    """Checkpoints written before count rows said ``class_name`` still restore."""
    row = {"camera_id": "gate", "counter_id": "door", "class": "person", "direction": "in"}
    old = CameraState(
        1, "gate", None, None, 0, 0, None, "finished", "ended", ({**row, "count": 2},)
    )
    store = CheckpointStore(tmp_path.as_uri())
    store.write_part(1, "cameras", "gate", old)
    stored = store.read_part(1, "cameras", "gate")
    assert isinstance(stored, CameraState)
    read = stored.check("gate")
    assert read.format_version == CAMERA_STATE_VERSION
    assert read.totals == (
        {
            "camera_id": "gate",
            "counter_id": "door",
            "class_name": "person",
            "direction": "in",
            "count": 2,
        },
    )
    with pytest.raises(StateError, match="v0"):
        replace(old, format_version=0).check("gate")
