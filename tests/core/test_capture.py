"""Decoding in a background thread: files, loops, pacing, damaged files,
live failures."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
from camcount.vision.capture import END_OF_FILE, Capture, EndOfSource, SourceState, host_not_found
from camcount.vision.video import DAMAGED, DecodedFrame, SourcePosition


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    layout = SceneLayout(frames=30)
    return write_scene(generate_scene(2, layout), tmp_path_factory.mktemp("cap") / "c.mp4")[0]


def damage(src: Path, dst: Path, n_bytes: int = 200_000, seed: int = 0) -> Path:
    """A copy of ``src`` with ``n_bytes`` in the middle overwritten with
    random bytes: what a bad disk sector or a broken upload leaves."""
    data = bytearray(src.read_bytes())
    at = len(data) // 2 - n_bytes // 2
    data[at : at + n_bytes] = np.random.default_rng(seed).bytes(n_bytes)
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def damaged_clip(tmp_path_factory) -> Path:
    """300 frames (about 900 kB) with 200 kB of noise in the middle."""
    folder = tmp_path_factory.mktemp("damaged")
    good = write_scene(generate_scene(5), folder / "good.mp4")[0]
    return damage(good, folder / "damaged.mp4")


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
    assert end == EndOfSource(SourceState.FINISHED, END_OF_FILE)
    assert END_OF_FILE == "end of file"
    assert cap.stats().dropped == 0 and cap.stats().state is SourceState.FINISHED


def test_a_damaged_file_fails_and_names_the_frame_it_reached(damaged_clip: Path):
    cap = Capture(str(damaged_clip), queue_size=4)
    cap.open()
    frames, end = drain(cap)
    # OpenCV stops at the damage (it does not skip it): the frames before it
    # come out in order, then the source fails instead of finishing quietly.
    assert 0 < len(frames) < 300 and [f.index for f in frames] == list(range(len(frames)))
    assert end is not None and end.state is SourceState.FAILED
    assert end.reason == f"{DAMAGED}: decoding stopped at frame {len(frames)} of 300"
    assert end.reason.startswith("damaged or truncated: decoding stopped at frame ")
    assert (cap.stats().state, cap.stats().detail) == (end.state, end.reason)


def test_a_damaged_file_fails_once_instead_of_looping_over_its_first_half(damaged_clip: Path):
    cap = Capture(str(damaged_clip), loop=True)
    cap.open()
    frames, end = drain(cap, limit=1000)
    assert end is not None and end.state is SourceState.FAILED
    assert f"stopped at frame {len(frames)} of 300" in end.reason


def test_a_damaged_file_resumed_past_its_start_still_fails(damaged_clip: Path):
    cap = Capture(str(damaged_clip), fps=5)  # sampled: fewer frames out than decoded
    cap.open(SourcePosition(next_index=20, last_slot=None, last_pts=1.9))
    frames, end = drain(cap)
    assert frames and frames[0].index == 20
    assert end is not None and end.state is SourceState.FAILED
    assert "decoding stopped at frame" in end.reason and end.reason.endswith(" of 300")


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


@pytest.mark.parametrize(
    "source", ["rtsp://nosuchhost.invalid/stream", "http://viewer:pw@nosuchhost.invalid:8080/x"]
)
def test_an_unresolvable_host_is_named_as_such_not_as_a_refused_connection(source: str):
    cap = Capture(source, reconnect_initial_s=0.05)
    cap.open()
    try:
        deadline = time.monotonic() + 10
        while "retrying" not in cap.stats().detail and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = cap.stats()
    finally:
        cap.stop()
    assert stats.state is SourceState.CONNECTING
    assert stats.detail.startswith("host not found: nosuchhost.invalid;"), stats.detail
    assert "pw" not in stats.detail


def test_a_source_that_gives_up_on_an_unresolvable_host_says_why():
    cap = Capture("rtsp://nosuchhost.invalid/s", max_reconnects=0, reconnect_initial_s=0.01)
    cap.open()
    _, end = drain(cap)
    assert end is not None and end.state is SourceState.FAILED
    assert end.reason == "no connection after 1 attempts (host not found: nosuchhost.invalid)"


@pytest.mark.parametrize(
    "source", ["http://127.0.0.1:9/x", "rtsp://[::1]:9/x", "0", "clip.mp4", "rtsp:///nohost"]
)
def test_addresses_paths_and_webcams_need_no_lookup(source: str):
    assert host_not_found(source) is None
