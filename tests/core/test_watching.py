"""Alerts and forecasts inside a shard: decided on the rows the shard
closes and the zone samples it receives, checkpointed with its windows, so
a restore mid-alert (onto the same or another number of shards) neither
raises an alert again nor loses it."""

from __future__ import annotations

from pydantic import TypeAdapter

from camcount.alerts.rules import AlertRule
from camcount.events import Alert, Crossing, Direction, Forecast, ZoneSample
from camcount.forecast.book import ForecastSettings
from camcount.stream.aggregation import Aggregator, resplit, shard_router
from camcount.stream.channels import EndOfStream, Progress, Sender

rule = TypeAdapter(AlertRule).validate_python
RULES = [
    rule(
        {
            "kind": "occupancy",
            "id": "full",
            "camera": "shop",
            "zone": "floor",
            "above": 4,
            "clear": 2,
            "hold_s": 0,
        }
    ),
    rule(
        {
            "kind": "flow",
            "id": "busy",
            "camera": "gate",
            "counter": "door",
            "direction": "in",
            "above": 3,
            "clear": 1,
            "window_s": 60,
        }
    ),
]


def shard(rules=RULES) -> Aggregator:
    agg = Aggregator(
        [60, 300],
        allowed_lateness_s=0,
        alert_rules=rules,
        forecast=ForecastSettings(window_sizes_s=(300,), horizon_s=900),
    )
    return agg


def crossing(t: float, track: int) -> Crossing:
    return Crossing("gate", "door", track, int(t * 10), t, "person", Direction.IN, 0.9, 0, 0)


def sample(t: float, n: int) -> ZoneSample:
    return ZoneSample("shop", "floor", int(t), t, n, ("person",), (n,))


def steps() -> list[tuple[str, list, float]]:
    """(camera, events, progress) batches over 20 minutes: a busy spell at
    the gate in minutes 5-8, the shop full in minutes 6-9."""
    out = []
    track = 0
    for minute in range(20):
        for second in range(0, 60, 10):
            t = minute * 60 + second
            events = []
            if 5 <= minute < 8 or second == 0:
                track += 1
                events.append(crossing(t + 1, track))
            out.append(("gate", events, t + 5))
            out.append(("shop", [sample(t + 2, 5 if 6 <= minute < 9 else 1)], t + 5))
    return out


def run(agg: Aggregator, batches, senders) -> list[object]:
    made: list[object] = []
    for camera, events, progress in batches:
        out = agg.accept(senders[camera].envelope(events, [Progress(progress)]))
        made += [e for e in out.events if isinstance(e, Alert | Forecast)]
    return made


def registered(agg: Aggregator, incarnation: int = 0) -> dict[str, Sender]:
    senders = {}
    for cam in ("gate", "shop"):
        agg.register(cam, f"{cam}#{incarnation}")
        senders[cam] = Sender(f"{cam}#{incarnation}")
    return senders


def alerts(made: list[object]) -> list[tuple[str, str, float]]:
    return [(a.rule_id, a.state, a.event_time) for a in made if isinstance(a, Alert)]


def test_a_shard_raises_alerts_and_forecasts_from_what_it_counts() -> None:
    agg = shard()
    made = run(agg, steps(), registered(agg))
    assert sorted(alerts(made)) == sorted(
        [
            ("busy", "firing", 6 * 60),  # minute 5's window closed with 6 crossings
            ("busy", "resolved", 9 * 60),
            ("full", "firing", 6 * 60 + 2),
            ("full", "resolved", 9 * 60 + 2),
        ]
    )
    forecasts = [f for f in made if isinstance(f, Forecast)]
    assert forecasts and {f.window_size_s for f in forecasts} == {300}
    assert {f.steps_ahead for f in forecasts} == {1, 2, 3}


def test_a_restore_mid_alert_neither_repeats_nor_loses_it() -> None:
    batches = steps()
    agg = shard()
    whole = run(agg, batches, registered(agg))
    cut = len(batches) * 7 // 20  # inside both alerts
    first = shard()
    head = run(first, batches[:cut], registered(first))
    assert first.alerts.open_alerts()
    state = first.snapshot()
    resumed = shard()
    resumed.restore(state)
    tail = run(resumed, batches[cut:], registered(resumed, 1))
    assert alerts(head + tail) == alerts(whole)
    assert [f for f in head + tail if isinstance(f, Forecast)] == [
        f for f in whole if isinstance(f, Forecast)
    ]


def test_open_alerts_follow_their_camera_onto_another_number_of_shards() -> None:
    batches = steps()
    cut = len(batches) * 7 // 20
    first = shard()
    head = run(first, batches[:cut], registered(first))
    route = shard_router(2, {}, [])
    parts = resplit([first.snapshot()], 2, route)
    shards = [shard(), shard()]
    for agg, st in zip(shards, parts, strict=True):
        agg.restore(st)
    tail: list[object] = []
    by_camera = {cam: shards[route(cam)] for cam in ("gate", "shop")}
    senders = {}
    for cam, agg in by_camera.items():
        agg.register(cam, f"{cam}#1")
        senders[cam] = Sender(f"{cam}#1")
    for camera, events, progress in batches[cut:]:
        out = by_camera[camera].accept(senders[camera].envelope(events, [Progress(progress)]))
        tail += [e for e in out.events if isinstance(e, Alert)]
    agg = shard()
    whole = run(agg, batches, registered(agg))
    assert sorted(alerts(head + tail)) == sorted(alerts(whole))


DARK = rule({"kind": "camera", "id": "dark", "state": "stalled", "hold_s": 10})


class Ticks:
    """A shard's processing clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def dark_shard(ticks: Ticks, rules=(*RULES, DARK)) -> tuple[Aggregator, dict[str, Sender]]:
    agg = Aggregator([60], allowed_lateness_s=0, now=ticks, alert_rules=rules)
    senders = registered(agg)
    # The cameras' last event time is 100 s when the clock reads 0.
    agg.accept(senders["gate"].envelope([crossing(100.0, 1)], [Progress(100.0)]))
    agg.accept(senders["shop"].envelope([sample(100.0, 1)], [Progress(100.0)]))
    return agg, senders


def changes(agg: Aggregator) -> list[tuple[str, str, float, float]]:
    return [
        (a.rule_id, a.state, a.opened_at, a.event_time)
        for a in agg.take_watched()
        if isinstance(a, Alert)
    ]


def test_a_camera_state_is_dated_by_the_cameras_event_time_and_held() -> None:
    ticks = Ticks()
    agg, _ = dark_shard(ticks)
    # (processing seconds, state reported, expected alerts); the gate sent
    # nothing more, so its time goes on from 100 s with the clock.
    script = [
        (3.0, "stalled", []),  # stalled from 103 s (its event time then)
        (9.0, "stalled", []),  # held 6 s of 10
        (17.0, "stalled", [("dark", "firing", 113.0, 113.0)]),  # at start + hold_s, not 117
        (19.0, "stalled", []),  # a repeat changes nothing
        (25.0, "ok", []),  # clearing from 125 s
        (40.0, "ok", [("dark", "resolved", 113.0, 135.0)]),
        (41.0, "ok", []),
    ]
    for now, state, want in script:
        ticks.now = now
        agg.camera_state("gate", state)
        assert changes(agg) == want, (now, state)


def test_a_camera_alert_leaves_in_the_next_output_of_the_shard() -> None:
    ticks = Ticks()
    agg, senders = dark_shard(ticks)
    agg.camera_state("gate", "stalled")
    ticks.now = 20.0
    agg.camera_state("gate", "stalled")
    out = agg.accept(senders["shop"].envelope([sample(105.0, 1)], [Progress(105.0)]))
    assert [(a.rule_id, a.state) for a in out.events if isinstance(a, Alert)] == [
        ("dark", "firing")
    ]


def test_a_state_reported_again_to_a_restored_shard_is_the_same_alert() -> None:
    ticks = Ticks()
    agg, _ = dark_shard(ticks)
    before = agg.snapshot()  # the checkpoint, before the camera stalled
    ticks.now = 3.0
    since = agg.camera_state("gate", "stalled")
    ticks.now = 20.0
    agg.camera_state("gate", "stalled")
    [first] = [a for a in agg.take_watched() if isinstance(a, Alert)]
    # The shard dies; its successor restores the checkpoint, where the
    # gate's clock restarts from 100 s. The controller reports the state
    # with the start the first shard gave it.
    again = Aggregator([60], allowed_lateness_s=0, now=ticks, alert_rules=(*RULES, DARK))
    again.restore(before)
    registered(again, 1)
    ticks.now = 22.0
    assert again.camera_state("gate", "stalled", since) == since == 103.0
    assert changes(again) == []  # its clock (102 s) is before the state began
    ticks.now = 33.0
    again.camera_state("gate", "stalled", 999.0)  # a repeat: its start stays
    [second] = [a for a in again.take_watched() if isinstance(a, Alert)]
    assert (second.alert_id, second.event_id, second.event_time) == (
        first.alert_id,
        first.event_id,
        113.0,
    )
    # And a shard restored from after it knows it: no second firing.
    after = Aggregator([60], allowed_lateness_s=0, now=ticks, alert_rules=(*RULES, DARK))
    after.restore(agg.snapshot())
    registered(after, 2)
    after.camera_state("gate", "stalled")
    assert changes(after) == []


def test_a_camera_that_never_sent_is_dated_by_the_wall_clock() -> None:
    agg = Aggregator([60], 0, alert_rules=[DARK], wall_clock=lambda: 5000.0)
    agg.register("gate", "gate#0")
    assert agg.camera_state("gate", "stalled") == 5000.0


def test_camera_states_follow_their_camera_onto_another_number_of_shards() -> None:
    ticks = Ticks()
    agg, _ = dark_shard(ticks)
    ticks.now = 3.0
    agg.camera_state("gate", "stalled")
    agg.camera_state("shop", "ok")
    route = shard_router(3, {}, [])
    parts = resplit([agg.snapshot()], 3, route)
    assert {c for p in parts for c, _, _ in p.camera_states} == {"gate", "shop"}
    assert parts[route("gate")].camera_states == (("gate", "stalled", 103.0),)


def test_rules_replaced_mid_run_resolve_and_start_deciding() -> None:
    ticks = Ticks()
    agg, senders = dark_shard(ticks)
    for now in (3.0, 20.0):
        ticks.now = now
        agg.camera_state("gate", "stalled")
    assert [c[:2] for c in changes(agg)] == [("dark", "firing")]
    quiet = rule({"kind": "flow", "id": "quiet", "camera": "gate", "counter": "door", "below": 1})
    agg.set_alert_rules([quiet])
    # The camera rule is gone: its alert resolves at the shard's watermark,
    # or where it opened when the camera's clock ran ahead of it.
    assert changes(agg) == [("dark", "resolved", 113.0, 113.0)]
    # The new rule decides the windows that close from now on: the gate's
    # 60-120 s window had one crossing, 120-180 s none.
    made = run(agg, [("gate", [], 190.0), ("shop", [], 190.0)], senders)
    assert alerts(made) == [("quiet", "firing", 180.0)]
    assert [r.id for r in agg.alerts.rules] == ["quiet"]


def test_ended_inputs_and_a_final_flush_decide_the_last_windows() -> None:
    ended = shard()
    senders = registered(ended)
    made = []
    for cam, events in (("gate", [crossing(t, t) for t in range(1, 6)]), ("shop", [])):
        made += ended.accept(senders[cam].envelope(events, [EndOfStream()])).events
    assert ("busy", "firing") in [(a.rule_id, a.state) for a in made if isinstance(a, Alert)]
    # Stopped without an end of stream: the flush closes the windows, and
    # what they decided waits to be taken.
    stopped = shard()
    senders = registered(stopped)
    stopped.accept(senders["gate"].envelope([crossing(t, t) for t in range(1, 6)], [Progress(30)]))
    stopped.flush()
    left = stopped.take_watched()
    assert ("busy", "firing") in [(a.rule_id, a.state) for a in left if isinstance(a, Alert)]
    assert stopped.take_watched() == []
