"""Forecasts of window counts: accuracy against the two forecasts anyone
can make without a model, on a series generated here with what counting
data has (daily and weekly seasonality, a drifting level, count noise)."""

from __future__ import annotations

import numpy as np
import pytest

from camcount.events import WindowRow
from camcount.forecast.book import ForecastBook, ForecastSettings
from camcount.forecast.seasonal import SeasonalForecaster, SeasonalSettings
from camcount.scenes.series import MONDAY, counting_series

WINDOW_S = 300
DAY = 86_400 // WINDOW_S
WEEK = 7 * DAY
HOUR_STEPS = 3600 // WINDOW_S
T0 = MONDAY


def hour_ahead_errors(y: np.ndarray, skip_weeks: int) -> tuple[float, float, float]:
    """Mean absolute error one hour ahead: the model's, same time last
    week's, and the last value's, over the same windows."""
    model = SeasonalForecaster(SeasonalSettings(WINDOW_S))
    ours, last_week, last_value = [], [], []
    for i, count in enumerate(y):
        target = i + HOUR_STEPS - 1
        if i >= skip_weeks * WEEK and target < len(y):
            predicted = model.forecast(HOUR_STEPS)[-1][1]
            ours.append(abs(predicted - y[target]))
            last_week.append(abs(y[target - WEEK] - y[target]))
            last_value.append(abs(y[i - 1] - y[target]))
        model.observe(T0 + i * WINDOW_S, count)
    return float(np.mean(ours)), float(np.mean(last_week)), float(np.mean(last_value))


@pytest.mark.parametrize("seed", [0, 1])
def test_an_hour_ahead_beats_last_week_and_the_last_value(seed: int) -> None:
    ours, last_week, last_value = hour_ahead_errors(counting_series(6, seed), skip_weeks=2)
    assert ours <= 0.8 * last_week, (ours, last_week)
    assert ours <= 0.7 * last_value, (ours, last_value)


def rows(y: np.ndarray, key: tuple[str, str, str, str] = ("cam", "door", "person", "in")):
    return [WindowRow(*key, WINDOW_S, T0 + i * WINDOW_S, int(n)) for i, n in enumerate(y) if n > 0]


def test_windows_without_a_row_are_zeros() -> None:
    y = counting_series(2, seed=3, mean=1.5)  # many empty windows
    assert (y == 0).sum() > 1000
    book = ForecastBook(ForecastSettings())
    for r in rows(y):
        book.observe([r])
    book.advance(T0 + len(y) * WINDOW_S)
    model = SeasonalForecaster(SeasonalSettings(WINDOW_S))
    for i, n in enumerate(y):
        model.observe(T0 + i * WINDOW_S, n)
    key = ("cam", "door", "person", "in", WINDOW_S)
    assert [f.value for f in book.forecast(key)] == pytest.approx(
        [v for _, v in model.forecast(HOUR_STEPS)]
    )


def test_forecasts_cover_the_next_hour_with_a_band_from_measured_errors() -> None:
    y = counting_series(2, seed=4)
    book = ForecastBook(ForecastSettings())
    issued = []
    for r in rows(y):
        issued = book.observe([r]) or issued
    assert len(issued) == HOUR_STEPS
    starts = [f.window_start for f in issued]
    assert starts == [issued[0].issued_for + h * WINDOW_S for h in range(HOUR_STEPS)]
    assert [f.steps_ahead for f in issued] == list(range(1, HOUR_STEPS + 1))
    errors = book.errors()[("cam", "door", "person", "in", WINDOW_S)]
    assert all(e > 0 for e in errors)
    for f, mae in zip(issued, errors, strict=True):
        assert f.lower <= f.value <= f.upper
        assert f.upper - f.value == pytest.approx(2.5 * mae)
    # Further ahead is no easier than the next window.
    assert errors[-1] >= errors[0] * 0.9


def test_a_restored_book_forecasts_as_the_one_that_never_stopped() -> None:
    y = counting_series(2, seed=5)
    data = rows(y)
    half = len(data) // 2
    whole, first = ForecastBook(ForecastSettings()), ForecastBook(ForecastSettings())
    for r in data[:half]:
        whole.observe([r])
        first.observe([r])
    resumed = ForecastBook(ForecastSettings())
    resumed.restore(first.snapshot())
    rest_whole = [f for r in data[half:] for f in whole.observe([r])]
    rest_resumed = [f for r in data[half:] for f in resumed.observe([r])]
    assert rest_resumed == rest_whole
    assert resumed.errors() == whole.errors()


def test_a_replay_issues_the_same_forecasts() -> None:
    data = rows(counting_series(1, seed=6))
    once = [f for r in data for f in ForecastBook(ForecastSettings()).observe([r])]
    book_a, book_b = ForecastBook(ForecastSettings()), ForecastBook(ForecastSettings())
    a = [f for r in data for f in book_a.observe([r])]
    b = [f for r in data for f in book_b.observe([r])]
    assert a == b and [f.event_id for f in a] == [f.event_id for f in b]
    assert len(once) == len(data) * HOUR_STEPS


def test_old_and_unforecast_rows_change_nothing() -> None:
    book = ForecastBook(ForecastSettings())
    book.observe([WindowRow("cam", "door", "person", "in", WINDOW_S, T0 + 600, 5)])
    before = book.snapshot()
    # An older window, a size not forecast, a net row.
    book.observe([WindowRow("cam", "door", "person", "in", WINDOW_S, T0, 9)])
    book.observe([WindowRow("cam", "door", "person", "in", 60, T0 + 900, 9)])
    book.observe([WindowRow("group:g", "door", "person", "net", WINDOW_S, T0 + 900, -2)])
    assert book.snapshot() == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_sizes_s": (7,)}, "divide a day"),
        ({"window_sizes_s": (3600,), "horizon_s": 600}, "shorter than"),
        ({"profile_smoothing": 0.0}, "profile_smoothing"),
    ],
)
def test_settings_that_cannot_work_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ForecastSettings(**kwargs)
