"""Decoding in a background thread: files, loops, pacing, live failures."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from camcount.capture import Capture, EndOfSource, SourceState
from camcount.synthetic import SceneLayout, generate_scene, write_scene
from camcount.video import DecodedFrame


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    layout = SceneLayout(frames=30)
    return write_scene(generate_scene(2, layout), tmp_path_factory.mktemp("cap") / "c.mp4")[0]


def drain(cap: Capture, limit: int = 10_000) -> tuple[list[DecodedFrame], EndOfSource | None]:
    frames: list[DecodedFrame] = []
    while len(frames) < limit:
        item = cap.get(5)
        if item is None or isinstance(item, EndOfSource):
            return frames, item
        frames.append(item)
    return frames, None


def test_a_file_is_read_whole_through_a_small_queue(clip: Path):
    cap = Capture(str(clip), queue_size=2)
    cap.open()
    frames, end = drain(cap)
    assert len(frames) == 30 and [f.index for f in frames] == list(range(30))
    assert end is not None and end.state is SourceState.FINISHED
    assert cap.stats().dropped == 0


def test_looping_keeps_event_time_growing(clip: Path):
    cap = Capture(str(clip), loop=True)
    cap.open()
    frames, _ = drain(cap, limit=75)
    cap.stop()
    times = [f.time for f in frames]
    assert len(frames) == 75 and all(b > a for a, b in itertools.pairwise(times))
    assert [f.index for f in frames[28:32]] == [28, 29, 0, 1]


def test_realtime_paces_a_file_at_its_own_speed(clip: Path):
    cap = Capture(str(clip), realtime=True)  # 10 fps
    started = time.monotonic()
    cap.open()
    frames, _ = drain(cap, limit=11)
    cap.stop()
    assert len(frames) == 11
    assert time.monotonic() - started >= 0.9


def test_a_refused_live_source_reports_and_gives_up_when_told():
    cap = Capture("http://127.0.0.1:9/stream.mjpg", max_reconnects=1, reconnect_initial_s=0.05)
    cap.open()
    _, end = drain(cap)
    assert end is not None and end.state is SourceState.FAILED
    assert "no connection after 2 attempts" in end.reason
