"""A seasonal baseline with exponential smoothing, sized for counting data.

Counts of people and vehicles repeat by the hour of the day and the day of
the week, drift slowly (a season, a new shop next door) and are noisy the
way counts are (Poisson-like: a 5-minute window that averages 20 sees 11 to
29). The model keeps

- a *weekly profile*: the expected count at each window slot of the week,
  in units of the level, smoothed over weeks (``profile_smoothing``) and
  read through a small kernel over neighbouring slots, so one noisy window
  moves the baseline little;
- a *daily profile* of the same kind, which learns seven times faster and
  stands in for the weekly one until a slot has been seen a week back;
- a *level*: recent counts over what the profiles expected for them (before
  seeing them), both smoothed over a few hours (``level_smoothing``) and
  shrunk towards 1, which follows drift (the profiles, learning over weeks,
  lag it) and days that run busier or quieter than usual.

The profiles hold raw counts, not counts over the level: learning them
from counts divided by a level that is itself learned from them lets the
two chase each other, which measured worse than "same time last week".

A forecast h windows ahead is ``level * profile[slot + h]``. "Same time
last week" repeats last week's noise and misses a week of drift; "the last
value" ignores the shape of the day: the tests and bench/forecast.py hold
this model to beating both.

Every number here is plain Python state, so ``snapshot()`` is a frozen
value that checkpoints like any other core state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DAY_S = 86_400
WEEK_S = 7 * DAY_S
#: Neighbouring slots read with the slot itself (weights 1-2-3-2-1): counts
#: move smoothly from one 5-minute window to the next, so two slots either
#: side average out noise and barely blur the shape of the day.
_KERNEL = (1 / 9, 2 / 9, 3 / 9, 2 / 9, 1 / 9)
_HALF = len(_KERNEL) // 2


@dataclass(frozen=True)
class SeasonalSettings:
    window_s: int
    #: Weight of the newest week (daily profile: day) in a slot's profile.
    profile_smoothing: float = 0.35
    #: Weight of the newest window in the level's running sums.
    level_smoothing: float = 0.02
    #: Windows' worth of "as expected" the level starts from and is
    #: shrunk towards.
    level_prior: float = 6.0

    def __post_init__(self) -> None:
        if self.window_s <= 0 or DAY_S % self.window_s:
            raise ValueError(
                f"forecast window must divide a day into whole windows, got {self.window_s} s"
            )
        for name in ("profile_smoothing", "level_smoothing"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {v}")

    @property
    def day_slots(self) -> int:
        return DAY_S // self.window_s

    @property
    def week_slots(self) -> int:
        return WEEK_S // self.window_s


@dataclass(frozen=True)
class SeasonalState:
    """Everything the model knows, as plain values (checkpointed)."""

    window_s: int
    next_start: float | None
    level_sum: float
    base_sum: float
    week: tuple[float, ...]
    week_seen: tuple[int, ...]
    day: tuple[float, ...]
    day_seen: tuple[int, ...]
    observed: int
    mean: float


class SeasonalForecaster:
    """One series (one counter, class and direction at one window size)."""

    def __init__(self, settings: SeasonalSettings) -> None:
        self.settings = settings
        self._next_start: float | None = None
        self._level_sum = 0.0
        self._base_sum = 0.0
        self._week = [0.0] * settings.week_slots
        self._week_seen = [0] * settings.week_slots
        self._day = [0.0] * settings.day_slots
        self._day_seen = [0] * settings.day_slots
        self._observed = 0
        self._mean = 0.0

    # -------------------------------------------------------------- input

    @property
    def next_start(self) -> float | None:
        """Start of the next window the model expects (None before the first)."""
        return self._next_start

    def observe(self, window_start: float, count: float) -> None:
        """One closed window. Windows skipped since the last one are zero
        counts (a window with nothing in it has no row); a window older than
        the last one is ignored: history is not rewritten."""
        w = self.settings.window_s
        if self._next_start is not None:
            if window_start < self._next_start:
                return
            gap = round((window_start - self._next_start) / w)
            # A gap longer than a week teaches the profile only zeros; a
            # source that was off that long starts the week over instead.
            for i in range(min(gap, self.settings.week_slots)):
                self._learn(self._next_start + i * w, 0.0)
        self._learn(window_start, float(count))
        self._next_start = window_start + w

    def _learn(self, start: float, y: float) -> None:
        s = self.settings
        ws, ds = self._week_slot(start), self._day_slot(start)
        # The level compares counts with what the profiles expected for them
        # *before* they were seen: a forecast's own error, never a fit.
        base = self._baseline(ws, ds)
        if base is not None:
            a = s.level_smoothing
            self._level_sum = (1 - a) * self._level_sum + a * y
            self._base_sum = (1 - a) * self._base_sum + a * base
        g = s.profile_smoothing
        self._week[ws] = y if self._week_seen[ws] == 0 else (1 - g) * self._week[ws] + g * y
        self._week_seen[ws] += 1
        # The daily profile sees each slot seven times a week: a weight a
        # seventh as large keeps its memory as long as the weekly one's.
        gd = 1 - (1 - g) ** (1 / 7)
        self._day[ds] = y if self._day_seen[ds] == 0 else (1 - gd) * self._day[ds] + gd * y
        self._day_seen[ds] += 1
        self._mean += (y - self._mean) / min(self._observed + 1, s.day_slots)
        self._observed += 1

    # ------------------------------------------------------------- output

    def level(self) -> float:
        """Recent counts over what the profiles expected for them, shrunk
        towards 1 by ``level_prior`` windows' worth of agreement, so a quiet
        hour of few counts cannot swing it."""
        prior = self.settings.level_prior * max(self._mean, 1e-9) * self.settings.level_smoothing
        return (self._level_sum + prior) / (self._base_sum + prior)

    def forecast(self, steps: int) -> list[tuple[float, float]]:
        """(window_start, expected count) for the next ``steps`` windows."""
        if self._next_start is None:
            return []
        w, level = self.settings.window_s, self.level()
        out = []
        for h in range(steps):
            start = self._next_start + h * w
            base = self._baseline(self._week_slot(start), self._day_slot(start))
            out.append((start, max(level * (self._mean if base is None else base), 0.0)))
        return out

    def _baseline(self, week_slot: int, day_slot: int) -> float | None:
        """The slot's expected count in units of the level, through the
        kernel: the weekly profile where the slot and its neighbours were
        seen a week back, else the daily one, else the prior."""
        week, day = self._week, self._day
        n_w, n_d = len(week), len(day)
        if all(self._week_seen[(week_slot + k) % n_w] for k in range(-_HALF, _HALF + 1)):
            return _smoothed(week, week_slot)
        if all(self._day_seen[(day_slot + k) % n_d] for k in range(-_HALF, _HALF + 1)):
            return _smoothed(day, day_slot)
        return None

    def _week_slot(self, start: float) -> int:
        # Epoch day 0 was a Thursday; the slot only needs to repeat weekly.
        return math.floor(start / self.settings.window_s) % self.settings.week_slots

    def _day_slot(self, start: float) -> int:
        return math.floor(start / self.settings.window_s) % self.settings.day_slots

    # -------------------------------------------------------- checkpoints

    def snapshot(self) -> SeasonalState:
        return SeasonalState(
            window_s=self.settings.window_s,
            next_start=self._next_start,
            level_sum=self._level_sum,
            base_sum=self._base_sum,
            week=tuple(self._week),
            week_seen=tuple(self._week_seen),
            day=tuple(self._day),
            day_seen=tuple(self._day_seen),
            observed=self._observed,
            mean=self._mean,
        )

    def restore(self, state: SeasonalState) -> None:
        if state.window_s != self.settings.window_s:
            raise ValueError(
                f"state is for {state.window_s} s windows, "
                f"this forecaster for {self.settings.window_s} s"
            )
        self._next_start = state.next_start
        self._level_sum, self._base_sum = state.level_sum, state.base_sum
        self._week, self._week_seen = list(state.week), list(state.week_seen)
        self._day, self._day_seen = list(state.day), list(state.day_seen)
        self._observed = state.observed
        self._mean = state.mean


def _smoothed(profile: Sequence[float], slot: int) -> float:
    n = len(profile)
    return sum(w * profile[(slot + k - _HALF) % n] for k, w in enumerate(_KERNEL))
