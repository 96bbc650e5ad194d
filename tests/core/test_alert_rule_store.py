"""Alert rules set through the API, kept beside the checkpoints
(camcount/alerts/store.py), and checked against the pipeline's config."""

from __future__ import annotations

import pickle
from pathlib import Path

from camcount.alerts.rules import AlertsConfig
from camcount.alerts.store import KEEP_VERSIONS, RULES_DIR, RuleStore
from camcount.config import AppConfig
from camcount.errors import AlertRulesRefused

FLOW = {"kind": "flow", "id": "quiet", "camera": "gate", "counter": "door", "below": 2}
DARK = {"kind": "camera", "id": "dark", "state": "stalled"}


def rules(*raw: dict) -> AlertsConfig:
    return AlertsConfig.model_validate({"rules": list(raw)})


def test_the_newest_rules_saved_are_loaded_and_a_fresh_start_clears_them(
    tmp_path: Path,
) -> None:
    store = RuleStore(f"file://{tmp_path}")
    assert store.load() is None  # none set: the config's are in force
    versions = [store.save(rules(FLOW)), store.save(rules(FLOW, DARK)), store.save(rules(DARK))]
    assert versions == [1, 2, 3]
    # Another process (a restarted controller) reads what this one wrote.
    assert RuleStore(f"file://{tmp_path}").load() == rules(DARK)
    for _ in range(KEEP_VERSIONS):
        store.save(rules())
    assert len(list((tmp_path / RULES_DIR).iterdir())) == KEEP_VERSIONS
    assert store.load() == rules()  # no rules at all is a setting too
    store.clear()
    assert store.load() is None


def test_the_document_reads_back_as_it_was_given() -> None:
    given = rules(FLOW, {**DARK, "labels": {"team": "ops"}})
    doc = given.document()
    assert doc["rules"][0] == {
        "kind": "flow",
        "id": "quiet",
        "camera": "gate",
        "counter": "door",
        "below": 2.0,
        "window_s": 60,
        "hold_s": 0.0,
        "severity": "warning",
        "labels": {},
    }
    assert AlertsConfig.model_validate(doc) == given


def test_rules_are_held_to_the_pipelines_windows_and_groups() -> None:
    config = AppConfig.model_validate(
        {"cameras": [{"id": "gate", "source": "gate.mp4"}], "windows": {"sizes_s": [60]}}
    )
    bad = rules(
        {**FLOW, "window_s": 30},
        {"kind": "occupancy", "id": "full", "group": "north", "window_s": 60, "above": 9},
    )
    problems = config.rule_problems(bad)
    assert len(problems) == 2
    assert "'quiet': window_s 30 is not one of windows.sizes_s [60]" in problems[0]
    assert "'full' names group 'north'" in problems[1]
    assert config.rule_problems(rules(FLOW, DARK)) == []


def test_a_refusal_crosses_processes_with_its_problems() -> None:
    exc = AlertRulesRefused([(1, "alert rule 'x': window_s 30 is not counted")])
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, ValueError)
    assert back.problems == exc.problems and str(back) == str(exc)
