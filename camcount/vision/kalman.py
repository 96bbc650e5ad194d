"""A constant-velocity Kalman filter on (cx, cy, aspect, height), batched.

Every function works on a stack of T tracks at once. Noise scales with box
height as in SORT/ByteTrack, so the same settings suit near and far objects.
``dt`` is in frames of the nominal sampling rate, which keeps the noise
settings meaningful when a live source drops frames.

Two forms of the same filter:

- ``initiate``/``predict``/``update`` take full covariances (T, 8, 8): the
  textbook matrix form, kept as the reference.
- ``initiate_blocks``/``predict_blocks``/``update_blocks`` are what the
  tracker runs. The initial covariance, the process noise Q and the
  measurement noise R are diagonal, and F only couples each coordinate with
  its own velocity, so the covariance never leaves the form "four
  independent 2x2 blocks, one per measured coordinate". Storing those blocks
  as (T, 3, 4) (position variances, position-velocity covariances, velocity
  variances, one column per coordinate) turns the batched 8x8 products and
  the linear solve into a few elementwise operations. It gives the matrix
  form's numbers up to rounding (a test checks it).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160
_H = np.eye(4, 8)

# Noise standard deviations as ``height * weight + constant``, per coordinate
# (cx, cy, aspect, height): the aspect's noise does not scale with height.
# Written so that each entry is computed exactly as the matrix form does
# (h * w + 0 and h * 0 + c are exact).
_wp, _wv = STD_WEIGHT_POSITION, STD_WEIGHT_VELOCITY
_INIT_W = np.array([[2 * _wp, 2 * _wp, 0.0, 2 * _wp], [10 * _wv, 10 * _wv, 0.0, 10 * _wv]])
_INIT_C = np.array([[0.0, 0.0, 1e-2, 0.0], [0.0, 0.0, 1e-5, 0.0]])
_PROCESS_W = np.array([[_wp, _wp, 0.0, _wp], [_wv, _wv, 0.0, _wv]])
_PROCESS_C = np.array([[0.0, 0.0, 1e-2, 0.0], [0.0, 0.0, 1e-5, 0.0]])
_MEASURE_W = np.array([_wp, _wp, 0.0, _wp])
_MEASURE_C = np.array([0.0, 0.0, 1e-1, 0.0])


# The two box conversions run a few times per frame on a handful of boxes:
# filling a preallocated array costs fewer numpy calls than np.stack.


def xyxy_to_xyah(xyxy: npt.ArrayLike) -> Array:
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    out = np.empty((len(b), 4))
    out[:, 0] = b[:, 0] + w / 2
    out[:, 1] = b[:, 1] + h / 2
    out[:, 2] = w / h
    out[:, 3] = h
    return out


def xyah_to_xyxy(xyah: npt.ArrayLike) -> Array:
    m = np.asarray(xyah, dtype=np.float64).reshape(-1, 4)
    half = np.empty((len(m), 2))  # half width, half height
    half[:, 0] = m[:, 2] * m[:, 3]
    half[:, 1] = m[:, 3]
    half /= 2
    return np.concatenate([m[:, :2] - half, m[:, :2] + half], axis=1)


# ------------------------------------------------------------ matrix form


def initiate(measurements: Array) -> tuple[Array, Array]:
    """New tracks from xyah measurements: zero velocity, wide velocity prior."""
    z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
    n = len(z)
    mean = np.zeros((n, 8))
    mean[:, :4] = z
    h = z[:, 3]
    wp, wv = STD_WEIGHT_POSITION, STD_WEIGHT_VELOCITY
    std = np.stack(
        [
            2 * wp * h,
            2 * wp * h,
            np.full(n, 1e-2),
            2 * wp * h,
            10 * wv * h,
            10 * wv * h,
            np.full(n, 1e-5),
            10 * wv * h,
        ],
        axis=1,
    )
    cov = np.zeros((n, 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std**2
    return mean, cov


def predict(mean: Array, cov: Array, dt: float) -> tuple[Array, Array]:
    if len(mean) == 0:
        return mean, cov
    f = np.eye(8)
    f[np.arange(4), np.arange(4) + 4] = dt
    h = mean[:, 3]
    n = len(mean)
    wp, wv = STD_WEIGHT_POSITION, STD_WEIGHT_VELOCITY
    std = np.stack(
        [wp * h, wp * h, np.full(n, 1e-2), wp * h, wv * h, wv * h, np.full(n, 1e-5), wv * h],
        axis=1,
    )
    q = np.zeros((n, 8, 8))
    idx = np.arange(8)
    q[:, idx, idx] = std**2 * max(dt, 1e-3)
    new_mean = mean @ f.T
    new_cov = f @ cov @ f.T + q
    return new_mean, new_cov


def update(mean: Array, cov: Array, measurements: Array) -> tuple[Array, Array]:
    if len(mean) == 0:
        return mean, cov
    z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
    h = mean[:, 3]
    n = len(mean)
    wp = STD_WEIGHT_POSITION
    std = np.stack([wp * h, wp * h, np.full(n, 1e-1), wp * h], axis=1)
    r = np.zeros((n, 4, 4))
    idx = np.arange(4)
    r[:, idx, idx] = std**2
    proj_mean = mean[:, :4]
    proj_cov = cov[:, :4, :4] + r  # H P H^T + R
    pht = cov[:, :, :4]  # P H^T
    gain = np.linalg.solve(proj_cov, np.transpose(pht, (0, 2, 1)))  # (n, 4, 8) = S^-1 H P
    gain = np.transpose(gain, (0, 2, 1))  # K = P H^T S^-1, (n, 8, 4)
    innovation = z - proj_mean
    new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
    new_cov = cov - gain @ proj_cov @ np.transpose(gain, (0, 2, 1))
    return new_mean, new_cov


# ------------------------------------------------------------ block form


def blocks_to_full(blocks: Array) -> Array:
    """(T, 3, 4) blocks as the (T, 8, 8) covariance they stand for."""
    n = len(blocks)
    cov = np.zeros((n, 8, 8))
    pos, vel = np.arange(4), np.arange(4, 8)
    cov[:, pos, pos] = blocks[:, 0]
    cov[:, pos, vel] = blocks[:, 1]
    cov[:, vel, pos] = blocks[:, 1]
    cov[:, vel, vel] = blocks[:, 2]
    return cov


def full_to_blocks(cov: Array) -> Array:
    """The 2x2 blocks of (T, 8, 8) covariances; other entries are ignored
    (they are zero in every covariance this filter produces)."""
    c = np.asarray(cov, dtype=np.float64).reshape(-1, 8, 8)
    pos, vel = np.arange(4), np.arange(4, 8)
    return np.stack([c[:, pos, pos], c[:, pos, vel], c[:, vel, vel]], axis=1)


def initiate_blocks(measurements: Array) -> tuple[Array, Array]:
    """``initiate`` with (T, 3, 4) block covariances."""
    z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
    mean = np.zeros((len(z), 8))
    mean[:, :4] = z
    std = z[:, 3, None, None] * _INIT_W + _INIT_C  # (T, 2, 4): position, velocity
    blocks = np.zeros((len(z), 3, 4))
    blocks[:, 0::2] = std**2  # variances; the covariances start at zero
    return mean, blocks


def initiate_moving_blocks(
    previous: Array, current: Array, dt: npt.ArrayLike
) -> tuple[Array, Array]:
    """Tracks restarted at ``current`` (xyah) moving at the centre velocity
    from ``previous`` to it over ``dt`` frames.

    For an object first seen twice with boxes that do not overlap, the
    filter's zero-velocity prior would need many frames to learn a speed of
    a box width or more per frame; the two sightings give it at once. Size
    keeps zero velocity: between two sightings its change is mostly the
    detector's noise. The covariance is ``initiate_blocks``'s, whose velocity
    spread (a sixteenth of the height) is about that of a velocity taken from
    two measurements of the filter's own measurement noise.
    """
    mean, blocks = initiate_blocks(current)
    prev = np.asarray(previous, dtype=np.float64).reshape(-1, 4)
    steps = np.asarray(dt, dtype=np.float64).reshape(-1, 1)
    mean[:, 4:6] = (mean[:, :2] - prev[:, :2]) / np.maximum(steps, 1e-3)
    return mean, blocks


def predict_blocks(mean: Array, blocks: Array, dt: float) -> tuple[Array, Array]:
    """``predict`` with block covariances. Per coordinate, with the block
    [[a, b], [b, c]] and F = [[1, dt], [0, 1]], F P F^T is
    [[a + dt b + dt (b + dt c), b + dt c], [b + dt c, c]]."""
    if len(mean) == 0:
        return mean, blocks
    q = (mean[:, 3, None, None] * _PROCESS_W + _PROCESS_C) ** 2 * max(dt, 1e-3)
    new_mean = mean.copy()
    new_mean[:, :4] += dt * mean[:, 4:]
    a, b, c = blocks[:, 0], blocks[:, 1], blocks[:, 2]
    b_next = b + dt * c
    new_blocks = np.empty_like(blocks)
    new_blocks[:, 0] = a + dt * b + dt * b_next + q[:, 0]
    new_blocks[:, 1] = b_next
    new_blocks[:, 2] = c + q[:, 1]
    return new_mean, new_blocks


def update_blocks(mean: Array, blocks: Array, measurements: Array) -> tuple[Array, Array]:
    """``update`` with block covariances. H measures the positions only, so
    per coordinate S = a + r and the gain is (a, b) / S; no solve needed."""
    if len(mean) == 0:
        return mean, blocks
    z = np.asarray(measurements, dtype=np.float64).reshape(-1, 4)
    r = (mean[:, 3, None] * _MEASURE_W + _MEASURE_C) ** 2
    s = blocks[:, 0] + r  # (T, 4)
    gain = blocks[:, :2] / s[:, None]  # (T, 2, 4): position gain, velocity gain
    innovation = z - mean[:, :4]
    new_mean = mean + (gain * innovation[:, None]).reshape(-1, 8)
    # P - K S K^T, per block: [[a - ka S ka, b - ka S kb], [., c - kb S kb]].
    new_blocks = np.empty_like(blocks)
    new_blocks[:, :2] = blocks[:, :2] - (gain[:, 0] * s)[:, None] * gain
    new_blocks[:, 2] = blocks[:, 2] - gain[:, 1] * s * gain[:, 1]
    return new_mean, new_blocks
