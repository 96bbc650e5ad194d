"""A constant-velocity Kalman filter on (cx, cy, aspect, height), batched.

Every method works on a stack of T tracks at once: means (T, 8) and
covariances (T, 8, 8). Noise scales with box height as in SORT/ByteTrack, so
the same settings suit near and far objects. ``dt`` is in frames of the
nominal sampling rate, which keeps the noise settings meaningful when a
live source drops frames.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

STD_WEIGHT_POSITION = 1.0 / 20
STD_WEIGHT_VELOCITY = 1.0 / 160
_H = np.eye(4, 8)


def xyxy_to_xyah(xyxy: npt.ArrayLike) -> Array:
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    return np.stack([b[:, 0] + w / 2, b[:, 1] + h / 2, w / h, h], axis=1)


def xyah_to_xyxy(xyah: npt.ArrayLike) -> Array:
    m = np.asarray(xyah, dtype=np.float64).reshape(-1, 4)
    h = m[:, 3]
    w = m[:, 2] * h
    return np.stack([m[:, 0] - w / 2, m[:, 1] - h / 2, m[:, 0] + w / 2, m[:, 1] + h / 2], axis=1)


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
