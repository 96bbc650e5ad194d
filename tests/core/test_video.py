from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from camcount.errors import SourceError
from camcount.video import VideoFile


def test_reads_every_frame_of_a_real_file(shared_data: Path):
    path = shared_data / "videos" / "intel_car-detection.mp4"
    with VideoFile(path, start_time=1000.0) as video:
        frames = list(video)
    assert video.frame_size == (768, 432)
    assert len(frames) == 377
    assert frames[0].time == pytest.approx(1000.0)
    assert frames[1].time - frames[0].time == pytest.approx(0.08)
    assert [f.index for f in frames] == list(range(377))


def test_sampling_keeps_one_frame_per_slot(shared_data: Path):
    path = shared_data / "videos" / "ahmetozlu_pedestrian_survaillance.mp4"  # 30 fps
    with VideoFile(path, fps=10) as video:
        frames = list(video)
    assert abs(len(frames) - 242 / 3) <= 1
    gaps = {round(b.time - a.time, 3) for a, b in itertools.pairwise(frames)}
    assert gaps <= {0.1, 0.133, 0.067}


def test_resuming_from_a_position_gives_the_same_frames(shared_data: Path):
    path = shared_data / "videos" / "bgslibrary_video02.avi"
    with VideoFile(path, fps=10) as video:
        all_frames = [(f.index, f.time) for f in video]
    with VideoFile(path, fps=10) as first:
        it = iter(first)
        head = [next(it) for _ in range(20)]
        pos = first.position
    with VideoFile(path, fps=10) as second:
        second.seek(pos)
        tail = [(f.index, f.time) for f in second]
    resumed = [(f.index, f.time) for f in head] + tail
    assert [i for i, _ in resumed] == [i for i, _ in all_frames]
    assert [t for _, t in resumed] == pytest.approx([t for _, t in all_frames])


def test_missing_and_broken_files_are_source_errors(tmp_path: Path):
    with pytest.raises(SourceError, match="no such file"):
        VideoFile(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        VideoFile(junk)
