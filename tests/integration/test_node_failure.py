"""A whole worker node lost in the middle of a replay (its raylet and every
process on it killed): the cameras and shards it held are restored on the
other nodes, and the warehouse ends as without the failure. The cluster is
a head and two worker raylets of its own, in a process of its own
(tests/integration/node_failure.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from camcount.scenes.synthetic import generate_scene, write_scene
from tests.integration.test_exactly_once import LAYOUT, SEEDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_a_lost_worker_node_loses_and_doubles_nothing(tmp_path: Path):
    scenes = [write_scene(generate_scene(s, LAYOUT), tmp_path / f"cam{s}.mp4")[0] for s in SEEDS]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": ""}
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.node_failure", str(tmp_path), *map(str, scenes)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)
    assert result["removed_node_actors"], "the removed node held no camera or shard"
    assert result["rows"] > 0
    assert result["lost"] == result["doubled"] == result["changed"] == 0
    assert result["crossings_equal"] and result["totals_equal"]
