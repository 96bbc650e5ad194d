"""The motion measure: what must not count as motion (noise, light, a
clock overlay) and what must, from its first frame (a person coming in)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from camcount.vision.motion import MotionDetector, MotionSettings

H, W = 360, 640
CORNER = ((0.75, 0.0), (1.0, 0.0), (1.0, 0.08), (0.75, 0.08))


def scene(seed: int = 0) -> np.ndarray:
    """A textured street: blurred noise in mid greys, with some structure."""
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 160, (H // 8, W // 8), np.uint8)
    img = cv2.resize(base, (W, H), interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(img, (100, 200), (300, 260), 70, -1)
    cv2.line(img, (0, 300), (W, 280), 150, 3)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


_NOISE = [np.random.default_rng(s).normal(0, 3.0, (H, W, 3)).astype(np.float32) for s in range(7)]


def noisy(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise (3 grey levels), drawn from a small pool: fresh noise
    for every frame costs more than the measure under test."""
    noise = _NOISE[int(rng.integers(len(_NOISE)))]
    return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def frames(n: int, seed: int = 1) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = scene()
    for _i in range(n):
        yield noisy(base, rng)


def settled(detector: MotionDetector, n: int = 5) -> MotionDetector:
    for f in frames(n):
        detector(f)
    return detector


def test_the_first_frame_counts_as_motion_and_a_still_noisy_scene_does_not() -> None:
    d = MotionDetector()
    results = [d(f) for f in frames(60)]
    assert results[0].moving
    assert not any(r.moving for r in results[1:])


@pytest.mark.parametrize("gain", [0.7, 1.35])
def test_a_sudden_light_change_is_not_motion(gain: float) -> None:
    d = settled(MotionDetector())
    rng = np.random.default_rng(5)
    base = scene().astype(np.float32)
    for _ in range(10):
        lit = np.clip(base * gain, 0, 255).astype(np.uint8)
        assert not d(noisy(lit, rng)).moving


def test_a_slow_light_change_is_learnt() -> None:
    d = settled(MotionDetector())
    rng = np.random.default_rng(6)
    base = scene().astype(np.float32)
    for i in range(200):  # 40 s at 5 fps: dusk, plus a warm cast creeping in
        lit = base * (1 - 0.002 * i) + 0.1 * i
        assert not d(noisy(np.clip(lit, 0, 255).astype(np.uint8), rng)).moving, i


def with_clock(frame: np.ndarray, second: int) -> np.ndarray:
    out = frame.copy()
    text = f"10:{second // 60:02d}:{second % 60:02d}"
    # A camera's on-screen clock: bold white digits, seconds ticking.
    at = (int(W * 0.77), 24)
    cv2.putText(out, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return out


def test_a_masked_timestamp_overlay_is_not_motion_and_unmasked_it_is() -> None:
    masked = MotionDetector(MotionSettings(masks=(CORNER,)))
    bare = MotionDetector()
    rng = np.random.default_rng(7)
    base = scene()
    seen_bare = []
    for second in range(30):
        frame = with_clock(noisy(base, rng), second)
        m = masked(frame)
        b = bare(frame)
        if second:
            assert not m.moving
            seen_bare.append(b.moving)
    assert any(seen_bare)  # the mask, not luck, keeps the clock out


def person(frame: np.ndarray, x: int, y: int = 180, w: int = 26, h: int = 64) -> np.ndarray:
    out = frame.copy()
    cv2.rectangle(out, (x, y), (x + w, y + h), (30, 40, 60), -1)
    cv2.circle(out, (x + w // 2, y - 8), 8, (90, 120, 170), -1)
    return out


@pytest.mark.parametrize(("w", "h"), [(26, 64), (12, 28)])
def test_a_person_entering_is_motion_from_the_first_frame(w: int, h: int) -> None:
    d = settled(MotionDetector())
    rng = np.random.default_rng(8)
    base = scene()
    # Steps in from the left edge, a third of the body visible at first.
    first = d(noisy(person(base, -2 * w // 3, w=w, h=h), rng))
    assert first.moving
    x1, y1, _x2, y2 = first.regions[0]
    assert x1 <= w // 3 and y1 <= 180 + h and y2 >= 180
    for step in range(1, 20):
        x = -2 * w // 3 + 4 * step
        m = d(noisy(person(base, x, w=w, h=h), rng))
        assert m.moving, step
        assert any(r[0] <= x + w and r[2] >= x for r in m.regions)


def test_a_person_who_stops_is_still_seen_for_a_while() -> None:
    d = settled(MotionDetector())
    rng = np.random.default_rng(9)
    base = scene()
    for step in range(10):
        d(noisy(person(base, 200 + 4 * step), rng))
    still = [d(noisy(person(base, 236), rng)).moving for _ in range(10)]
    assert all(still)  # not learnt into the background within 2 s


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        MotionSettings(threshold=0)
    with pytest.raises(ValueError, match="width"):
        MotionSettings(width=4)
