from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from camcount.errors import SourceError
from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
from camcount.vision.video import DAMAGED, VideoFile, end_tolerance_frames
from tests.core.test_capture import damage


def test_reads_every_frame_of_a_real_file(shared_data: Path):
    path = shared_data / "videos" / "intel_car-detection.mp4"
    with VideoFile(path, start_time=1000.0) as video:
        frames = list(video)
    assert video.frame_size == (768, 432)
    assert len(frames) == 377
    assert frames[0].time == pytest.approx(1000.0)
    assert frames[1].time - frames[0].time == pytest.approx(0.08)
    assert [f.index for f in frames] == list(range(377))
    assert video.damage() is None and video.jumps == 0


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


def test_no_real_video_is_called_damaged(shared_data: Path):
    # Every clip in the shared data, as it lies; grab() decodes without
    # converting, so this reads them all in a few seconds. Two AVIs count
    # one or two frames that hold no picture: within the tolerance.
    videos = sorted((shared_data / "videos").iterdir())
    assert len(videos) >= 7
    for path in videos:
        with VideoFile(path) as video:
            assert video.scan() is None, path.name
            assert video.decoded >= video.frame_count - end_tolerance_frames(video.frame_count)


def test_a_damaged_real_clip_stops_where_reading_stops(shared_data: Path, tmp_path: Path):
    # H.264 in MP4: OpenCV stops at the first packet it cannot decode;
    # grab() (scan) and read() (iteration) stop at the same frame.
    broken = damage(shared_data / "videos" / "intel_car-detection.mp4", tmp_path / "car.mp4")
    with VideoFile(broken) as scanned:
        reason = scanned.scan()
    with VideoFile(broken) as read:
        frames = list(read)
    assert 0 < len(frames) < 377
    assert reason == read.damage() == f"{DAMAGED}: decoding stopped at frame {len(frames)} of 377"


def _write_mkv(path: Path, frames: int = 300) -> Path:
    """A Matroska file (MPEG-4 part 2): its demuxer resynchronises past damage."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (320, 240))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write Matroska")
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    try:
        for f in range(frames):
            image = np.roll(base, 4 * f, axis=1)
            writer.write(image)
    finally:
        writer.release()
    return path


def test_a_skip_over_damage_is_found_by_its_timestamp_jump(tmp_path: Path):
    good = _write_mkv(tmp_path / "good.mkv")
    with VideoFile(good) as video:
        assert video.scan() is None and video.decoded == 300 and video.jumps == 0
    broken = damage(good, tmp_path / "broken.mkv", n_bytes=200_000)
    with VideoFile(broken) as video:
        frames = list(video)
        reason = video.damage()
    # Decoding went on to the end of the file, with frames missing in between.
    assert frames[-1].time == pytest.approx(29.9) and len(frames) < 300
    jump = video.first_jump
    assert jump is not None and jump.to_s - jump.from_s > 0.3
    assert reason == (
        f"{DAMAGED}: decoding skipped from {jump.from_s:.2f} s to {jump.to_s:.2f} s "
        f"after frame {jump.after_index} and stopped at frame {len(frames)} of 300"
    )


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layout = SceneLayout(frames=30)
    return write_scene(generate_scene(2, layout), tmp_path_factory.mktemp("v") / "c.mp4")[0]


def test_the_end_tolerance_is_a_few_frames_or_half_a_percent():
    assert [end_tolerance_frames(n) for n in (30, 600, 601, 2000, 90_000)] == [3, 3, 4, 10, 450]


@pytest.mark.parametrize(
    ("frame_count", "native_fps", "damaged"),
    [
        (30, 10.0, False),  # every frame came out
        (33, 10.0, False),  # 3 short: within the tolerance for estimated counts
        (34, 10.0, True),  # 4 short, and the timestamps stop 0.4 s early
        (300, 10.0, True),  # stopped a tenth of the way through
        (40, 40 / 3, False),  # 10 short, but the timestamps ran to the end: a wrong fps
        (0, 10.0, False),  # no frame count: nothing to compare with
    ],
)
def test_damage_needs_frames_and_time_short_of_the_end(
    short_clip: Path, frame_count: int, native_fps: float, damaged: bool
):
    with VideoFile(short_clip) as video:
        assert video.scan() is None and video.decoded == 30
        video.frame_count, video.native_fps = frame_count, native_fps
        reason = video.damage()
    if damaged:
        assert reason == f"{DAMAGED}: decoding stopped at frame 30 of {frame_count}"
    else:
        assert reason is None


@pytest.mark.parametrize("fps", [None, 7.0])
def test_each_frame_carries_the_position_to_resume_after_it(tmp_path: Path, fps):
    """A checkpoint saves the position of the last frame counted (the
    decoder runs ahead); resuming there gives exactly the frames after it,
    with the same indices and the same event times, bit for bit."""
    from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene

    video_path = write_scene(generate_scene(3, SceneLayout(frames=60)), tmp_path / "s.mp4")[0]
    with VideoFile(video_path, fps=fps, start_time=1000.0) as video:
        frames = list(video)
    for cut in (0, 17, len(frames) - 2):
        with VideoFile(video_path, fps=fps, start_time=1000.0) as resumed:
            resumed.seek(frames[cut].position)
            rest = [(f.index, f.time) for f in resumed]
        assert rest == [(f.index, f.time) for f in frames[cut + 1 :]]


def test_a_looping_pass_resumes_with_its_own_start_time(tmp_path: Path):
    from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
    from camcount.vision.capture import Capture, EndOfSource

    video_path = write_scene(generate_scene(4, SceneLayout(frames=20)), tmp_path / "s.mp4")[0]
    cap = Capture(str(video_path), start_time=50.0, loop=True, queue_size=64)
    cap.open()
    got = []
    while len(got) < 30:
        item = cap.get(5.0)
        assert item is not None and not isinstance(item, EndOfSource)
        got.append(item)
    cap.stop()
    second_pass = got[25]  # a frame of the second pass
    again = Capture(str(video_path), start_time=50.0, loop=False, queue_size=64)
    again.open(second_pass.position)
    nxt = again.get(5.0)
    again.stop()
    assert isinstance(nxt, type(second_pass))
    assert (nxt.index, nxt.time) == (got[26].index, got[26].time)
