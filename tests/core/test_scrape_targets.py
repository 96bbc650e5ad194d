"""The Prometheus target file a run writes for its cluster's nodes."""

from __future__ import annotations

import json

import pytest

from camcount.config import parse_config
from camcount.errors import ConfigError
from camcount.scrape_targets import MetricsAddress, file_sd, write_targets


def test_every_node_is_one_target_in_prometheus_file_sd_form(tmp_path):
    path = tmp_path / "prometheus" / "targets.json"
    nodes = [
        MetricsAddress("10.0.0.7", 8080),
        MetricsAddress("10.0.0.5", 8080),
        MetricsAddress("10.0.0.7", 8080),  # a node listed twice is scraped once
        MetricsAddress("fd00::3", 9100),
    ]
    write_targets(path, nodes)
    assert json.loads(path.read_text()) == [
        {
            "targets": ["10.0.0.5:8080", "10.0.0.7:8080", "[fd00::3]:9100"],
            "labels": {"job": "ray"},
        }
    ]
    assert [p.name for p in path.parent.iterdir()] == ["targets.json"]  # no partial left


def test_a_rewrite_replaces_the_nodes_that_left(tmp_path):
    path = tmp_path / "targets.json"
    write_targets(path, [MetricsAddress("10.0.0.5", 8080), MetricsAddress("10.0.0.6", 8080)])
    write_targets(path, [MetricsAddress("10.0.0.6", 8080)])
    assert json.loads(path.read_text())[0]["targets"] == ["10.0.0.6:8080"]


def test_no_node_is_an_empty_group_prometheus_accepts():
    assert file_sd([]) == [{"targets": [], "labels": {"job": "ray"}}]


def test_the_metrics_settings_are_checked_where_the_file_is_read():
    config = parse_config("metrics: {export_port: 8080, targets_file: null}\n")
    assert (config.metrics.export_port, config.metrics.targets_file) == (8080, None)
    assert parse_config("{}\n").metrics.export_port == 0
    with pytest.raises(ConfigError, match=r"metrics\.export_port"):
        parse_config("metrics: {export_port: 70000}\n", source="c.yaml")
