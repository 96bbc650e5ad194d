"""Forecast benchmark: an hour ahead, against the forecasts anyone can make
without a model, and what an update costs.

Two inputs, side by side in one run:

- *generated*: weeks of 5-minute counts (camcount.scenes.series: daily and
  weekly seasonality, a drifting level, Poisson noise) at several volumes,
  fed straight to the model;
- *replayed*: the same kind of series turned into crossing events at random
  times inside their windows and replayed through the aggregators' own
  window counting (WatermarkClock + WindowCounts), so the forecasts are
  made from closed window rows exactly as a shard makes them (windows with
  no row are zeros).

For each it prints the mean absolute error one hour ahead of the model,
of "same time last week" (seasonal naive) and of "the last value", over the
same windows (from the third week on), and the ratios; then the cost of
one update (a closed row in, the next hour's forecasts out) and of one
alert evaluation.

    python bench/forecast.py               # 6 weeks, seeds 0-2
    python bench/forecast.py --weeks 8 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from camcount.alerts.engine import AlertEngine
from camcount.alerts.rules import OccupancyRule
from camcount.events import Crossing, Direction, WindowRow, ZoneSample
from camcount.forecast.book import ForecastBook, ForecastSettings
from camcount.scenes.series import MONDAY, counting_series
from camcount.stream.windows import WatermarkClock, WindowCounts

WINDOW_S = 300
WEEK = 7 * 86_400 // WINDOW_S
STEPS = 3600 // WINDOW_S
KEY = ("gate", "line", "person", "in", WINDOW_S)


def hour_ahead(rows: list[WindowRow], n: int, skip_weeks: int = 2) -> dict[str, float]:
    """MAE an hour ahead of the book fed ``rows`` (one series, n windows),
    of same-time-last-week and of the last value, over the same windows."""
    y = np.zeros(n)
    for r in rows:
        y[round((r.window_start - MONDAY) / WINDOW_S)] = r.count
    book = ForecastBook(ForecastSettings(window_sizes_s=(WINDOW_S,)))
    by_start = {r.window_start: r for r in rows}
    ours, week, last = [], [], []
    for i in range(n):
        target = i + STEPS - 1
        if i >= skip_weeks * WEEK and target < n:
            f = book.forecast(KEY)
            if f:
                ours.append(abs(f[-1].value - y[target]))
                week.append(abs(y[target - WEEK] - y[target]))
                last.append(abs(y[i - 1] - y[target]))
        start = MONDAY + i * WINDOW_S
        row = by_start.get(start)
        if row is not None:
            book.observe([row])
        book.advance(start + WINDOW_S)
    m, w, v = (float(np.mean(x)) for x in (ours, week, last))
    return {
        "model": m,
        "last_week": w,
        "last_value": v,
        "vs_last_week": m / w,
        "vs_last_value": m / v,
    }


def generated_rows(y: np.ndarray) -> list[WindowRow]:
    return [
        WindowRow(*KEY[:4], WINDOW_S, MONDAY + i * WINDOW_S, int(c)) for i, c in enumerate(y) if c
    ]


def replayed_rows(y: np.ndarray, seed: int) -> list[WindowRow]:
    """Crossings at random times in their windows, through window counting."""
    rng = np.random.default_rng(seed + 1000)
    clock = WatermarkClock(allowed_lateness_s=5.0, idle_timeout_s=3600.0)
    clock.register("gate")
    windows = WindowCounts([WINDOW_S])
    rows: list[WindowRow] = []
    track = 0
    for i, c in enumerate(y):
        start = MONDAY + i * WINDOW_S
        times = np.sort(start + rng.uniform(0, WINDOW_S, int(c)))
        batch = []
        for t in times:
            track += 1
            batch.append(
                Crossing(
                    "gate", "line", track, track, float(t), "person", Direction.IN, 0.9, 0.0, 0.0
                )
            )
            clock.observe("gate", float(t))
        windows.add(batch)
        clock.observe("gate", start + WINDOW_S + 5.0)
        rows.extend(windows.advance(clock.watermark))
    rows.extend(windows.flush())
    return rows


def update_cost_us(rows: list[WindowRow]) -> float:
    book = ForecastBook(ForecastSettings(window_sizes_s=(WINDOW_S,)))
    t0 = time.perf_counter()
    for r in rows:
        book.observe([r])
    return (time.perf_counter() - t0) / len(rows) * 1e6


def alert_cost_us(n: int = 20_000) -> float:
    engine = AlertEngine(
        [OccupancyRule(id="limit", camera="shop", zone="floor", above=5, clear=3, hold_s=1)]
    )
    samples = [
        ZoneSample("shop", "floor", i, MONDAY + i / 5, (i // 50) % 9, ("person",), ((i // 50) % 9,))
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for s in samples:
        engine.on_samples([s])
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weeks", type=int, default=6)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.weeks < 3:
        ap.error("--weeks must be at least 3 (two weeks of history, one measured)")
    seeds = [int(s) for s in args.seeds.split(",")]
    cases = {
        "generated, mean 20/window": dict(mean=20.0),
        "generated, mean 5/window": dict(mean=5.0),
        "generated, mean 100/window": dict(mean=100.0),
        "generated, no drift": dict(mean=20.0, drift=0.0),
    }
    report: dict[str, dict[str, float]] = {}
    for name, kw in cases.items():
        runs = [
            hour_ahead(generated_rows(counting_series(args.weeks, s, **kw)), args.weeks * WEEK)
            for s in seeds
        ]
        report[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    runs = []
    for s in seeds:
        y = counting_series(args.weeks, s)
        runs.append(hour_ahead(replayed_rows(y, s), args.weeks * WEEK))
    report["replayed through window counting, mean 20"] = {
        k: statistics.median(r[k] for r in runs) for k in runs[0]
    }
    y = counting_series(args.weeks, seeds[0])
    costs = {
        "forecast_update_us": update_cost_us(generated_rows(y)),
        "alert_sample_us": alert_cost_us(),
    }
    if args.json:
        print(
            json.dumps(
                {"weeks": args.weeks, "seeds": seeds, "cases": report, "costs": costs}, indent=2
            )
        )
        return
    print(f"one hour ahead, 5-minute windows, {args.weeks} weeks, median of seeds {seeds}")
    print(f"{'series':44} {'model':>7} {'last wk':>7} {'last':>7} {'/last wk':>8} {'/last':>7}")
    for name, r in report.items():
        print(
            f"{name:44} {r['model']:7.2f} {r['last_week']:7.2f} {r['last_value']:7.2f} "
            f"{r['vs_last_week']:8.3f} {r['vs_last_value']:7.3f}"
        )
    print(
        f"cost: {costs['forecast_update_us']:.0f} us per closed row (next hour issued), "
        f"{costs['alert_sample_us']:.1f} us per zone sample through one alert rule"
    )


if __name__ == "__main__":
    main()
