"""Forecasts for every counted key, fed by closed window rows.

One ``SeasonalForecaster`` per key (camera or group, counter, class,
direction) at each window size that is forecast. Window rows exist only
for windows that saw something, so a window that closed (the watermark
passed its end) without a row is a zero, and ``advance`` says so.

Every forecast is checked when its window closes: the mean absolute error
at each number of steps ahead is kept per key, and is both the band drawn
around the next forecasts and the figure ``errors()`` reports as it goes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from camcount.events import Forecast, WindowRow
from camcount.forecast.seasonal import SeasonalForecaster, SeasonalSettings, SeasonalState

SeriesKey = tuple[str, str, str, str, int]
#: Directions whose counts are forecast: net rows (in minus out) are a
#: difference of two forecast series, not a count of their own.
FORECAST_DIRECTIONS = frozenset({"in", "out", "enter", "exit", "any"})


@dataclass(frozen=True)
class ForecastSettings:
    window_sizes_s: tuple[int, ...] = (300,)
    horizon_s: int = 3600
    profile_smoothing: float = 0.35
    level_smoothing: float = 0.02
    #: Weight of the newest error in each steps-ahead mean absolute error.
    error_smoothing: float = 0.02
    #: Half-width of the band in mean absolute errors (2.5 MAE is about
    #: two standard deviations of normal errors).
    band_width: float = 2.5

    def __post_init__(self) -> None:
        for size in self.window_sizes_s:
            # Refuses a size that does not divide a day, and bad weights.
            SeasonalSettings(size, self.profile_smoothing, self.level_smoothing)
            if self.horizon_s < size:
                raise ValueError(
                    f"forecast horizon {self.horizon_s} s is shorter than a {size} s window"
                )

    def steps(self, window_s: int) -> int:
        return self.horizon_s // window_s


@dataclass(frozen=True)
class SeriesState:
    key: SeriesKey
    model: SeasonalState
    #: (issued_for, values) of the forecasts still waiting for their windows.
    issued: tuple[tuple[float, tuple[float, ...]], ...]
    mae: tuple[float, ...]
    checked: tuple[int, ...]


@dataclass(frozen=True)
class ForecastBookState:
    series: tuple[SeriesState, ...]


class _Series:
    def __init__(self, key: SeriesKey, settings: ForecastSettings) -> None:
        size = key[4]
        self.key = key
        self.steps = settings.steps(size)
        self.model = SeasonalForecaster(
            SeasonalSettings(size, settings.profile_smoothing, settings.level_smoothing)
        )
        self.issued: deque[tuple[float, tuple[float, ...]]] = deque(maxlen=self.steps)
        self.mae = [0.0] * self.steps
        self.checked = [0] * self.steps


class ForecastBook:
    def __init__(self, settings: ForecastSettings) -> None:
        self.settings = settings
        self._series: dict[SeriesKey, _Series] = {}
        self._sizes = frozenset(settings.window_sizes_s)

    def observe(self, rows: Iterable[WindowRow]) -> list[Forecast]:
        """Closed rows, in window order per key; returns the forecasts
        issued after them."""
        touched: dict[SeriesKey, _Series] = {}
        for r in rows:
            if r.window_size_s not in self._sizes or r.direction not in FORECAST_DIRECTIONS:
                continue
            key = (r.camera_id, r.counter_id, r.class_name, r.direction, r.window_size_s)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(key, self.settings)
            if self._close(series, r.window_start, float(r.count)):
                touched[key] = series
        return [f for s in touched.values() for f in self._issue(s)]

    def advance(self, watermark: float) -> list[Forecast]:
        """Windows that closed by ``watermark`` without a row were zeros."""
        out: list[Forecast] = []
        if not math.isfinite(watermark):
            return out  # inputs that ended: no window after them to call empty
        for series in self._series.values():
            size, moved = series.key[4], False
            while (start := series.model.next_start) is not None and start + size <= watermark:
                self._close(series, start, 0.0)
                moved = True
            if moved:
                out.extend(self._issue(series))
        return out

    def _close(self, series: _Series, window_start: float, count: float) -> bool:
        """False for a window already closed: history is not rewritten."""
        next_start = series.model.next_start
        size = series.key[4]
        if next_start is not None and window_start < next_start:
            return False
        # Zeros for windows skipped since the last row are checked too.
        if next_start is not None:
            while next_start < window_start:
                self._check(series, next_start, 0.0)
                next_start += size
        self._check(series, window_start, count)
        series.model.observe(window_start, count)
        return True

    def _check(self, series: _Series, window_start: float, actual: float) -> None:
        size, a = series.key[4], self.settings.error_smoothing
        for issued_for, values in series.issued:
            h = round((window_start - issued_for) / size)
            if 0 <= h < len(values):
                err = abs(values[h] - actual)
                n = series.checked[h]
                # The first errors average plainly, then smooth: an early
                # band is not one lucky window wide.
                w = max(a, 1.0 / (n + 1))
                series.mae[h] += w * (err - series.mae[h])
                series.checked[h] = n + 1

    def _issue(self, series: _Series) -> list[Forecast]:
        camera, counter, cls, direction, size = series.key
        points = series.model.forecast(series.steps)
        if not points:
            return []
        issued_for = points[0][0]
        series.issued.append((issued_for, tuple(v for _, v in points)))
        out = []
        for h, (start, value) in enumerate(points):
            half = self._half_width(series, h, value)
            out.append(
                Forecast(
                    camera,
                    counter,
                    cls,
                    direction,
                    size,
                    start,
                    issued_for,
                    value,
                    max(0.0, value - half),
                    value + half,
                )
            )
        return out

    def _half_width(self, series: _Series, h: int, value: float) -> float:
        if series.checked[h] >= 12:
            return self.settings.band_width * series.mae[h]
        # Too few checks yet: the spread of a count of that size.
        return 2.0 * max(value, 1.0) ** 0.5

    def errors(self) -> dict[SeriesKey, tuple[float, ...]]:
        """Mean absolute error by steps ahead (1, 2, ...) for every key."""
        return {k: tuple(s.mae) for k, s in self._series.items()}

    def forecast(self, key: SeriesKey) -> list[Forecast]:
        """The newest forecasts of one key (empty before its first row)."""
        series = self._series.get(key)
        if series is None or not series.issued:
            return []
        camera, counter, cls, direction, size = key
        issued_for, values = series.issued[-1]
        return [
            Forecast(
                camera,
                counter,
                cls,
                direction,
                size,
                issued_for + h * size,
                issued_for,
                v,
                max(0.0, v - (half := self._half_width(series, h, v))),
                v + half,
            )
            for h, v in enumerate(values)
        ]

    def keys(self) -> list[SeriesKey]:
        return sorted(self._series)

    # -------------------------------------------------------- checkpoints

    def snapshot(self) -> ForecastBookState:
        return ForecastBookState(
            tuple(
                SeriesState(
                    s.key, s.model.snapshot(), tuple(s.issued), tuple(s.mae), tuple(s.checked)
                )
                for s in self._series.values()
            )
        )

    def restore(self, state: ForecastBookState) -> None:
        self._series = {}
        for st in state.series:
            if st.key[4] not in self._sizes:
                continue  # a size no longer forecast
            series = _Series(st.key, self.settings)
            series.model.restore(st.model)
            series.issued.extend(st.issued)
            if len(st.mae) == series.steps:
                series.mae, series.checked = list(st.mae), list(st.checked)
            self._series[st.key] = series


def split_book(
    states: Sequence[ForecastBookState], shards: int, route: Callable[[str], int]
) -> list[ForecastBookState]:
    """Book states re-cut for ``shards`` shards, each series to the shard
    that owns its camera or group."""
    cut: list[list[SeriesState]] = [[] for _ in range(shards)]
    for st in states:
        for series in st.series:
            cut[route(series.key[0])].append(series)
    return [ForecastBookState(tuple(c)) for c in cut]
