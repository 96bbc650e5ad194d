"""Several nodes: cameras, shards and detector replicas where placement
says, the detector scaled by its load, and a whole worker node lost in the
middle of a replay (its raylet and every process on it killed) with its
cameras and shards restored on the other nodes and the warehouse ending
with what ``camcount count`` counts for each file. The cluster is a head and two worker raylets of
its own, in a process of its own (tests/integration/node_failure.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_placement_autoscaling_and_a_lost_worker_node(replay_scenes: list[Path], tmp_path: Path):
    scenes = replay_scenes  # the exactly-once replay's cameras
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
    placed = result["placed"]
    cameras = {k: v for k, v in placed.items() if k.startswith("camera ")}
    # The site camera on the site node, in a process of its own (its placement
    # differs); the two others share a process, which went to the node with
    # the fewest cameras per CPU (head and plain: none; plain has more CPUs).
    assert cameras["camera cam31"] == "gpu"
    assert cameras["camera cam32"] == cameras["camera cam34"] == "plain"
    # The shards on two nodes (SPREAD), the replicas only where the resource is.
    assert len({v for k, v in placed.items() if k.startswith("shard ")}) == 2
    assert result["replica_nodes"] == ["gpu"]
    # Up under the cameras' load, down once they are idle.
    assert result["replicas_max"] == 2
    assert result["replicas_idle"] == 1
    # The plain node's cameras were placed again on the nodes left (in a
    # new process together, on the least loaded node that is not plain).
    assert any(v.startswith("camera ") for v in result["removed_node_actors"])
    assert "plain" not in result["placed_after_loss"].values()
    after = result["placed_after_loss"]
    # Together again, on a node left (head or gpu: the least loaded by
    # cameras per CPU at that moment, which the replicas' start moves).
    assert after["camera cam32"] == after["camera cam34"] != "plain"
    assert result["placed_after_loss"]["camera cam31"] == "gpu"
    # Row for row what the core counts for each file alone.
    assert result["rows"] > 0 and result["late_in_reference"] == 0
    assert result["lost"] == result["doubled"] == result["extra"] == 0
    assert result["crossings_equal"] and result["totals_equal_count"]
