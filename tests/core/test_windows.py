"""Event-time windows and watermarks, with properties over random streams."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camcount.errors import WatermarkRegression
from camcount.events import Crossing, Direction
from camcount.stream.windows import WatermarkClock, WindowCounts, window_start

SIZES = (10, 60, 900)


def crossing(
    t: float, counter: str = "l1", cls: str = "person", direction: Direction = Direction.IN
) -> Crossing:
    return Crossing("cam", counter, 1, int(t * 10), t, cls, direction, 0.9, 0.0, 0.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_window_start_is_floor_of_size():
    assert window_start(59.9, 60) == 0
    assert window_start(60.0, 60) == 60
    assert window_start(-0.5, 10) == -10


def test_rows_close_only_when_the_watermark_passes_their_end():
    w = WindowCounts([10])
    w.add([crossing(1), crossing(2), crossing(12)])
    assert w.advance(9.9) == []
    rows = w.advance(10)
    assert [(r.window_start, r.count) for r in rows] == [(0, 2)]
    assert [(r.window_start, r.count) for r in w.flush()] == [(10, 1)]


def test_late_events_are_reported_and_never_change_a_closed_row():
    w = WindowCounts([10, 60])
    w.add([crossing(1)])
    closed = w.advance(15)
    late = w.add([crossing(3)])
    assert [(x.window_size_s, x.window_start) for x in late] == [(10, 0)]
    assert [(r.window_size_s, r.count) for r in closed] == [(10, 1)]
    assert [(r.window_size_s, r.count) for r in w.flush()] == [(60, 2)]


def test_watermark_never_goes_back():
    w = WindowCounts([10])
    w.advance(20)
    with pytest.raises(WatermarkRegression) as exc:
        w.advance(19)
    assert exc.value.previous == 20 and exc.value.proposed == 19


def test_clock_is_the_minimum_over_inputs_minus_lateness():
    clock = WatermarkClock(allowed_lateness_s=2)
    clock.observe("a", 100)
    clock.observe("b", 50)
    assert clock.watermark == 48
    clock.observe("b", 120)
    assert clock.watermark == 98


def test_an_idle_input_stops_holding_the_watermark_back():
    now = FakeClock()
    clock = WatermarkClock(allowed_lateness_s=0, idle_timeout_s=30, now=now)
    clock.observe("a", 10)
    clock.observe("b", 100)
    assert clock.watermark == 10
    now.now = 20
    clock.observe("b", 120)
    now.now = 31  # a silent for 31 s
    assert clock.watermark == 120
    clock.observe("a", 11)  # a wakes up with old times: the watermark stays
    assert clock.watermark == 120


def test_a_registered_silent_input_holds_until_idle():
    now = FakeClock()
    clock = WatermarkClock(allowed_lateness_s=0, idle_timeout_s=5, now=now)
    clock.register("quiet")
    clock.observe("a", 50)
    assert clock.watermark == -math.inf
    now.now = 6
    clock.observe("a", 51)
    assert clock.watermark == 51


def test_finished_inputs_release_everything():
    clock = WatermarkClock(allowed_lateness_s=5)
    clock.observe("a", 10)
    clock.finish("a")
    assert clock.watermark == math.inf


def test_clock_snapshot_restore():
    clock = WatermarkClock(allowed_lateness_s=1)
    clock.observe("a", 10)
    clock.observe("b", 20)
    other = WatermarkClock(allowed_lateness_s=1)
    other.restore(clock.snapshot())
    assert other.watermark == clock.watermark == 9


def test_thousands_of_inputs_in_turn_keep_the_minimum():
    # A shard's clock: an input per camera, each sending in turn, read on
    # every batch; the lowest camera is always the one about to send.
    cameras = [f"cam{i:04d}" for i in range(3000)]
    clock = WatermarkClock(allowed_lateness_s=1)
    for c in cameras:
        clock.register(c)
    for second in range(1, 3):
        for i, c in enumerate(cameras):
            clock.observe(c, float(second))
            held_back_by = second - 1 if i + 1 < len(cameras) else second
            assert clock.watermark == (held_back_by - 1 if held_back_by else -math.inf)


class NaiveClock:
    """The clock's definition read literally: the minimum over every live
    input on every read."""

    def __init__(self, lateness: float, idle: float, now: FakeClock) -> None:
        self.lateness, self.idle, self.now = lateness, idle, now
        self.seen: dict[str, float] = {}
        self.active: dict[str, float] = {}
        self.finished: set[str] = set()
        self.mark = -math.inf

    def register(self, i: str) -> None:
        self.seen.setdefault(i, -math.inf)
        self.active.setdefault(i, self.now())

    def observe(self, i: str, t: float) -> None:
        self.register(i)
        self.finished.discard(i)
        self.seen[i] = max(self.seen[i], t)
        self.active[i] = self.now()

    def finish(self, i: str) -> None:
        self.register(i)
        self.finished.add(i)

    def remove(self, i: str) -> None:
        self.seen.pop(i, None)
        self.active.pop(i, None)
        self.finished.discard(i)

    def watermark(self) -> float:
        live = [
            s - self.lateness
            for i, s in self.seen.items()
            if i not in self.finished and self.now() - self.active[i] <= self.idle
        ]
        if live:
            candidate = min(live)
        elif self.seen and self.finished == set(self.seen):
            candidate = math.inf
        else:
            candidate = self.mark
        self.mark = max(self.mark, candidate)
        return self.mark


clock_steps = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), st.sampled_from("abcde"), st.integers(0, 50)),
        st.tuples(st.sampled_from(["register", "finish", "remove"]), st.sampled_from("abcde")),
        st.tuples(st.just("wait"), st.integers(0, 8)),
        st.tuples(st.just("restore")),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(clock_steps)
def test_the_clock_reads_as_the_minimum_over_live_inputs(steps):
    now = FakeClock()
    clock = WatermarkClock(allowed_lateness_s=2, idle_timeout_s=10, now=now)
    naive = NaiveClock(2, 10, now)
    for step in steps:
        match step:
            case ("wait", seconds):
                now.now += seconds
            case ("restore",):
                # A restored clock starts every input as active now.
                clock.restore(clock.snapshot())
                naive.active = dict.fromkeys(naive.seen, now())
            case ("observe", i, t):
                clock.observe(i, float(t))
                naive.observe(i, float(t))
            case (op, i):
                getattr(clock, op)(i)
                getattr(naive, op)(i)
        assert clock.watermark == naive.watermark()


# ------------------------------------------------------------------ properties

event_times = st.lists(
    st.floats(min_value=0, max_value=4000, allow_nan=False), min_size=0, max_size=80
)
keys = st.sampled_from(
    [("l1", "person", Direction.IN), ("l1", "car", Direction.OUT), ("z", "person", Direction.ENTER)]
)


@st.composite
def streams(draw):
    """Events in batches, with a watermark advance after each batch."""
    n = draw(st.integers(1, 8))
    batches, watermarks = [], []
    wm = -1.0
    for _ in range(n):
        times = draw(event_times)
        batch = [crossing(t, *draw(keys)) for t in times]
        batches.append(batch)
        wm = max(wm, draw(st.floats(min_value=0, max_value=4000)))
        watermarks.append(wm)
    return batches, watermarks


def replay(batches, watermarks, restore_at: int | None = None):
    w = WindowCounts(SIZES)
    rows, late = [], []
    for i, (batch, wm) in enumerate(zip(batches, watermarks, strict=True)):
        if i == restore_at:
            fresh = WindowCounts(SIZES)
            fresh.restore(w.snapshot())
            w = fresh
        late.extend(w.add(batch))
        rows.extend(w.advance(wm))
    rows.extend(w.flush())
    return rows, late


@settings(max_examples=200, deadline=None)
@given(streams())
def test_every_event_lands_in_exactly_one_window_per_size(stream):
    batches, watermarks = stream
    rows, late = replay(batches, watermarks)
    total = sum(len(b) for b in batches)
    late_per_size = Counter(x.window_size_s for x in late)
    for size in SIZES:
        counted = sum(r.count for r in rows if r.window_size_s == size)
        assert counted + late_per_size[size] == total
    ids = [r.event_id for r in rows]
    assert len(ids) == len(set(ids)), "a window row was emitted twice"


@settings(max_examples=200, deadline=None)
@given(streams(), st.data())
def test_save_and_restore_at_any_point_gives_the_same_rows(stream, data):
    batches, watermarks = stream
    at = data.draw(st.integers(0, len(batches)))
    assert replay(batches, watermarks, restore_at=at) == replay(batches, watermarks)
