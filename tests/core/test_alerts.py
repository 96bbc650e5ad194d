"""Alert rules as scenarios: what a shop, a station and an operator expect
to be told, once per event, the same on a replay and after a restore."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import TypeAdapter, ValidationError

from camcount.alerts.engine import FIRING, RESOLVED, AlertEngine
from camcount.alerts.rules import AlertRule, AlertsConfig
from camcount.events import Alert, Forecast, WindowRow, ZoneSample

FPS = 5
T0 = 1_767_571_200.0
rule_of = TypeAdapter(AlertRule).validate_python


def samples(levels: list[tuple[float, int]], zone: str = "floor") -> Iterator[ZoneSample]:
    """(seconds, occupancy) steps, sampled at FPS from T0."""
    frame = 0
    for seconds, level in levels:
        for _ in range(int(seconds * FPS)):
            yield ZoneSample("shop", zone, frame, T0 + frame / FPS, level, ("person",), (level,))
            frame += 1


def jittering_occupancy() -> list[tuple[float, int]]:
    # Below the limit, then hovering on it (a person at the door) for 20 s,
    # then well below.
    return [(10, 3)] + [(0.4, 6), (0.4, 5)] * 25 + [(20, 2)]


def feed(engine: AlertEngine, items: list[ZoneSample]) -> list[Alert]:
    return [a for s in items for a in engine.on_samples([s])]


def test_occupancy_hovering_on_the_limit_opens_one_alert_and_resolves_it_once() -> None:
    rule = rule_of(
        {
            "kind": "occupancy",
            "id": "fire-limit",
            "camera": "shop",
            "zone": "floor",
            "above": 5,
            "clear": 3,
            "hold_s": 0,
            "severity": "critical",
            "labels": {"site": "a"},
        }
    )
    alerts = feed(AlertEngine([rule]), list(samples(jittering_occupancy())))
    assert [a.state for a in alerts] == [FIRING, RESOLVED]
    opened, resolved = alerts
    assert opened.alert_id == resolved.alert_id
    assert opened.event_time == pytest.approx(T0 + 10)  # the first 6
    assert resolved.event_time == pytest.approx(T0 + 30)  # first at the clear level, not at 5
    assert (opened.severity, opened.labels, opened.target) == (
        "critical",
        ("site=a",),
        "shop/floor",
    )
    assert opened.value == 6 and opened.threshold == 5


def test_without_hysteresis_a_hold_time_still_keeps_it_from_flapping() -> None:
    rule = rule_of({"kind": "occupancy", "id": "r", "camera": "shop", "above": 5, "hold_s": 1.0})
    alerts = feed(AlertEngine([rule]), list(samples(jittering_occupancy())))
    assert alerts == []  # never above 5 for a whole second
    steady = feed(AlertEngine([rule]), list(samples([(5, 3), (5, 7), (5, 2)])))
    assert [a.state for a in steady] == [FIRING, RESOLVED]


def test_a_camera_occupancy_adds_its_zones_and_a_class_filter_counts_one_class() -> None:
    rule = rule_of({"kind": "occupancy", "id": "r", "camera": "shop", "above": 5, "hold_s": 0})
    engine = AlertEngine([rule])
    a = ZoneSample("shop", "left", 0, T0, 3, ("person",), (3,))
    b = ZoneSample("shop", "right", 0, T0, 3, ("person", "dog"), (2, 1))
    assert engine.on_samples([a]) == []
    fired = engine.on_samples([b])
    assert [x.value for x in fired] == [6.0]
    dogs = rule_of(
        {
            "kind": "occupancy",
            "id": "d",
            "camera": "shop",
            "class_name": "dog",
            "above": 0,
            "hold_s": 0,
        }
    )
    assert [x.value for x in AlertEngine([dogs]).on_samples([a, b])] == [1.0]


def test_a_stalled_camera_opens_and_recovers() -> None:
    rule = rule_of({"kind": "camera", "id": "dark", "state": "stalled", "hold_s": 20})
    engine = AlertEngine([rule])
    states = ["running"] * 3 + ["stalled"] * 8 + ["running"] * 6
    alerts = [
        a for i, st in enumerate(states) for a in engine.on_camera_state("gate", st, T0 + 5 * i)
    ]
    assert [(a.state, a.target) for a in alerts] == [(FIRING, "gate"), (RESOLVED, "gate")]
    assert alerts[0].event_time == T0 + 5 * (3 + 4)  # stalled from 15 s, held 20 s
    assert engine.open_alerts() == []
    # Another camera's state is its own alert.
    engine.on_camera_state("door", "stalled", T0)
    assert engine.on_camera_state("door", "stalled", T0 + 25)[0].target == "door"


def flow_rows(counts: list[int], size: int = 60) -> list[WindowRow]:
    return [
        WindowRow("gate", "line", "person", "in", size, T0 + i * size, n)
        for i, n in enumerate(counts)
        if n > 0
    ]


def run_windows(engine: AlertEngine, rows: list[WindowRow], windows: int, size: int = 60):
    """Rows of each window as its window closes, then the watermark."""
    out = []
    for i in range(windows):
        start = T0 + i * size
        engine.on_rows([r for r in rows if r.window_start == start])
        out += engine.advance(start + size)
    return out


def test_flow_below_normal_counts_empty_windows_as_zero() -> None:
    rule = rule_of(
        {
            "kind": "flow",
            "id": "quiet-gate",
            "camera": "gate",
            "counter": "line",
            "direction": "in",
            "below": 2,
            "clear": 4,
            "window_s": 60,
        }
    )
    counts = [5, 6, 5, 0, 0, 1, 3, 5, 6]  # windows 3-5 have no or one crossing
    alerts = run_windows(AlertEngine([rule]), flow_rows(counts), len(counts))
    assert [(a.state, a.value, a.event_time) for a in alerts] == [
        (FIRING, 0.0, T0 + 4 * 60),
        (RESOLVED, 5.0, T0 + 8 * 60),  # 3 is not yet back to 4
    ]


def test_flow_adds_classes_and_ignores_other_sizes_and_counters() -> None:
    rule = rule_of(
        {
            "kind": "flow",
            "id": "busy",
            "camera": "gate",
            "counter": "line",
            "above": 5,
            "window_s": 60,
        }
    )
    rows = [
        WindowRow("gate", "line", "person", "in", 60, T0, 4),
        WindowRow("gate", "line", "bicycle", "out", 60, T0, 3),
        WindowRow("gate", "line", "person", "in", 10, T0, 50),
        WindowRow("gate", "other", "person", "in", 60, T0, 50),
    ]
    engine = AlertEngine([rule])
    engine.on_rows(rows)
    assert engine.advance(T0 + 59) == []  # the window is still open
    assert [a.value for a in engine.advance(T0 + 60)] == [7.0]


def test_a_group_occupancy_is_its_running_net() -> None:
    rule = rule_of(
        {
            "kind": "occupancy",
            "id": "site-full",
            "group": "site",
            "above": 10,
            "clear": 8,
            "window_s": 10,
            "hold_s": 0,
        }
    )
    engine = AlertEngine([rule])
    nets = [4, 4, 3, -1, -2, 0, -5]  # running: 4 8 11 10 8 8 3
    alerts = []
    for i, n in enumerate(nets):
        start = T0 + 10 * i
        engine.on_rows(
            [
                WindowRow("group:site", "doors", "person", "net", 10, start, n),
                WindowRow("group:site", "doors", "person", "in", 10, start, 99),
            ]
        )
        alerts += engine.advance(start + 10)
    assert [(a.state, a.value) for a in alerts] == [(FIRING, 11.0), (RESOLVED, 8.0)]


def test_a_window_far_from_its_forecast_opens_and_one_within_the_band_resolves() -> None:
    rule = rule_of(
        {
            "kind": "forecast",
            "id": "unusual",
            "camera": "gate",
            "counter": "line",
            "class_name": "person",
            "direction": "in",
            "window_s": 300,
        }
    )
    engine = AlertEngine([rule])
    actual = [10, 11, 30, 9]
    alerts = []
    for i, n in enumerate(actual):
        start = T0 + 300 * i
        engine.on_forecasts(
            [Forecast("gate", "line", "person", "in", 300, start, start, 10.0, 6.0, 14.0)]
        )
        engine.on_rows([WindowRow("gate", "line", "person", "in", 300, start, n)])
        alerts += engine.advance(start + 300)
    assert [(a.state, a.value, a.threshold) for a in alerts] == [
        (FIRING, 30.0, 14.0),
        (RESOLVED, 9.0, 6.0),
    ]


Step = tuple[str, object]


def scenario_steps() -> list[Step]:
    """Occupancy samples at FPS and, every 10 s of event time, the closed
    10 s flow windows' rows and the watermark, as a shard produces them."""
    rows = flow_rows([1, 0, 7, 8, 1, 0, 9, 2, 8, 8, 0, 0, 6], size=10)
    steps: list[Step] = []
    for s in samples([*jittering_occupancy(), (5, 9), (5, 1)]):
        steps.append(("sample", s))
        if s.frame_index and s.frame_index % (10 * FPS) == 0:
            start = s.event_time - 10
            steps.append(("rows", [r for r in rows if r.window_start == start]))
            steps.append(("watermark", s.event_time))
    return steps


def feed_steps(e: AlertEngine, steps: list[Step]) -> list[Alert]:
    out: list[Alert] = []
    for what, item in steps:
        if what == "sample":
            out += e.on_samples([item])  # type: ignore[list-item]
        elif what == "rows":
            e.on_rows(item)  # type: ignore[arg-type]
        else:
            out += e.advance(item)  # type: ignore[arg-type]
    return out


RULES = [
    {"kind": "occupancy", "id": "limit", "camera": "shop", "above": 5, "clear": 3, "hold_s": 0},
    {
        "kind": "flow",
        "id": "busy",
        "camera": "gate",
        "counter": "line",
        "above": 5,
        "clear": 2,
        "window_s": 10,
    },
]


def engine() -> AlertEngine:
    return AlertEngine([rule_of(r) for r in RULES])


def test_a_replay_raises_identical_alerts() -> None:
    steps = scenario_steps()
    first, second = feed_steps(engine(), steps), feed_steps(engine(), steps)
    assert first == second
    assert {(a.rule_id, a.state) for a in first} == {
        ("limit", FIRING),
        ("limit", RESOLVED),
        ("busy", FIRING),
        ("busy", RESOLVED),
    }


@pytest.mark.parametrize("cut", [0.1, 0.3, 0.5, 0.8])
def test_a_restore_mid_alert_neither_repeats_nor_loses_it(cut: float) -> None:
    steps = scenario_steps()
    whole = feed_steps(engine(), steps)
    stop = int(len(steps) * cut)
    before = engine()
    head = feed_steps(before, steps[:stop])
    resumed = engine()
    resumed.restore(before.snapshot())
    assert resumed.open_alerts() == before.open_alerts()
    assert head + feed_steps(resumed, steps[stop:]) == whole


def test_some_cut_falls_while_an_alert_is_open() -> None:
    steps = scenario_steps()
    e = engine()
    feed_steps(e, steps[: int(len(steps) * 0.3)])
    assert e.open_alerts()


def test_removing_a_firing_rule_resolves_its_alert() -> None:
    rule = rule_of({"kind": "occupancy", "id": "r", "camera": "shop", "above": 5, "hold_s": 0})
    e = AlertEngine([rule])
    fired = e.on_samples([ZoneSample("shop", "z", 0, T0, 9, ("person",), (9,))])
    assert [a.state for a in fired] == [FIRING]
    gone = e.set_rules([], at=T0 + 3)
    assert [(a.state, a.alert_id, a.event_time) for a in gone] == [
        (RESOLVED, fired[0].alert_id, T0 + 3)
    ]
    assert e.open_alerts() == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"kind": "occupancy", "id": "r", "camera": "c", "above": 5, "below": 1}, "exactly one"),
        ({"kind": "occupancy", "id": "r", "camera": "c"}, "exactly one"),
        ({"kind": "occupancy", "id": "r", "camera": "c", "above": 5, "clear": 6}, "clear"),
        (
            {"kind": "flow", "id": "r", "camera": "c", "counter": "l", "below": 5, "clear": 4},
            "clear",
        ),
        ({"kind": "occupancy", "id": "r", "above": 5}, "camera"),
        ({"kind": "occupancy", "id": "r", "group": "g", "zone": "z", "above": 5}, "zone"),
        ({"kind": "camera", "id": "r", "state": "asleep"}, "state"),
        ({"kind": "weather", "id": "r"}, "kind"),
    ],
)
def test_rules_that_cannot_work_are_refused_naming_the_problem(rule: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        rule_of(rule)


def test_rule_ids_are_unique() -> None:
    with pytest.raises(ValidationError, match="unique"):
        AlertsConfig.model_validate({"rules": [RULES[0], RULES[0]]})


CONFIG = """
cameras:
  - id: gate
    source: gate.mp4
    lines: [{id: line, points: [[0, 100], [200, 100]]}]
groups:
  - id: site
    members: [{camera: gate, counter: line}]
windows: {sizes_s: [60, 900, 3600]}
alerts:
  rules:
"""


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "{kind: flow, id: f, camera: gate, counter: line, above: 5, window_s: 300}",
            "window_s 300 is not one of windows.sizes_s",
        ),
        (
            "{kind: occupancy, id: o, group: sites, above: 5, window_s: 60}",
            "names group 'sites'.*did you mean 'site'",
        ),
        (
            "{kind: forecast, id: x, camera: gate, counter: line, class_name: person, "
            "direction: in, window_s: 60}",
            "no forecast at window_s 60",
        ),
    ],
)
def test_a_rule_on_windows_or_groups_nobody_counts_is_refused(rule: str, message: str) -> None:
    from camcount.config import parse_config
    from camcount.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        parse_config(CONFIG + f"    - {rule}\n", "cfg.yaml")


def test_forecasts_default_to_the_counted_windows_long_enough_to_show_a_day() -> None:
    from camcount.config import parse_config

    cfg = parse_config(CONFIG + "    []\n", "cfg.yaml")
    assert cfg.forecast.sizes(cfg.windows.sizes_s) == (900, 3600)
    assert cfg.forecast.settings(cfg.windows.sizes_s).steps(900) == 4
