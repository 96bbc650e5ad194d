"""Long series of window counts with what counting data has, for checking
forecasts: a morning and an evening peak, quieter weekends, a slowly
drifting level and count (Poisson) noise. Weeks of 5-minute windows take
milliseconds, where a real camera would take weeks."""

from __future__ import annotations

import numpy as np

DAY_S = 86_400
#: A Monday 00:00 UTC: days and weeks start on window boundaries.
MONDAY = 1_767_571_200.0


def counting_series(
    weeks: int,
    seed: int,
    window_s: int = 300,
    mean: float = 20.0,
    drift: float = 0.3,
    weekend: float = 0.6,
) -> np.ndarray:
    """Counts per window from MONDAY; ``drift`` is the level's rise over
    the whole span, ``weekend`` the weekend's level against a weekday's."""
    rng = np.random.default_rng(seed)
    per_day = DAY_S // window_s
    t = np.arange(weeks * 7 * per_day)
    tod = (t % per_day) / per_day
    dow = (t // per_day) % 7
    morning = np.exp(-(((tod - 0.35) / 0.06) ** 2))
    evening = 0.8 * np.exp(-(((tod - 0.72) / 0.08) ** 2))
    daily = 0.2 + morning + evening
    expected = mean * daily * np.where(dow >= 5, weekend, 1.0) * (1 + drift * t / len(t))
    return rng.poisson(expected).astype(float)
