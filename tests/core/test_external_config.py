"""The ``external:`` section: sources, their MQTT subscriptions, and the
groups they join beside cameras."""

from __future__ import annotations

import pytest

from camcount.config import parse_config
from camcount.errors import ConfigError

BASE = """
cameras:
  - id: lobby
    source: lobby.mp4
    lines: [{id: door, points: [[0, 0], [10, 0]]}]
groups:
  - id: site
    members: [{camera: lobby, counter: door}]
  - id: doors_only
"""


def test_sources_join_groups_with_the_cameras() -> None:
    cfg = parse_config(
        BASE
        + """
external:
  sources:
    - id: doors
      site: north
      counters: [main, side]
      mqtt: {port: 1884, topics: ["site/north/doors/#"]}
      joins: [{group: site, counter: main}, {group: doors_only, counter: side}]
"""
    )
    src = cfg.external.source("doors")
    assert src.mqtt is not None and src.mqtt.topics == ("site/north/doors/#",)
    assert src.mqtt.qos == 1 and src.api
    assert dict(cfg.group_members()) == {
        "site": [("lobby", "door"), ("doors", "main")],
        "doors_only": [("doors", "side")],
    }


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # one namespace with cameras: both count under their id
        ("{id: lobby, counters: [main]}", "has the id of a camera"),
        ("{id: doors, counters: [main], joins: [{group: sight, counter: main}]}", "did you mean"),
        ("{id: doors, counters: [main], joins: [{group: site, counter: back}]}", "does not have"),
        ("{id: doors, counters: []}", "external.sources.0.counters"),
        ("{id: doors, counters: [main], mqtt: {topics: []}}", "mqtt.topics"),
        ("{id: doors, counters: [main], mqtt: {topics: [a], qos: 3}}", "mqtt.qos"),
    ],
)
def test_a_bad_source_is_named(source: str, message: str) -> None:
    text = BASE + f"external:\n  sources:\n    - {source}\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(text, "cfg.yaml")


def test_a_group_nothing_feeds_is_refused() -> None:
    with pytest.raises(ConfigError, match="'doors_only' has no members"):
        parse_config(BASE, "cfg.yaml")
