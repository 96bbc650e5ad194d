"""A worker node going away, on a cluster of its own: a head and two worker
raylets (``ray.cluster_utils.Cluster``) on this machine.

Run by ``test_node_failure.py`` in a process of its own (a process joins
one Ray cluster, and the suite's shares one). The head has one CPU, so the
cameras and shards spill over to the workers; once checkpoints complete,
the worker that holds the most camcount actors is removed (its raylet and
every worker process on it are killed), and the replay must end with the
warehouse of a run without the failure. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from serve_app.app import start_pipeline
from tests.integration.test_exactly_once import clock_frames, config_for, warehouse_rows


def main(scenes: list[Path], work: Path) -> dict:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    workers = [cluster.add_node(num_cpus=4) for _ in range(2)]
    ray.init(address=cluster.address, namespace="camcount", logging_level="ERROR")
    cluster.wait_for_nodes()
    try:
        base = run(scenes, work / "base", None, workers)
        got = run(scenes, work / "node", cluster, workers)
    finally:
        ray.shutdown()
        cluster.shutdown()
    lost = [k for k in base["rows"] if k not in got["rows"]]
    doubled = [k for k, v in got["rows"].items() if len(v) > 1]
    changed = [k for k, v in got["rows"].items() if base["rows"].get(k, [None])[:1] != v[:1]]
    return {
        "removed_node_actors": got["victims"],
        "rows": len(base["rows"]),
        "lost": len(lost),
        "doubled": len(doubled),
        "changed": len(changed),
        "crossings_equal": base["crossings"] == got["crossings"],
        "totals_equal": base["totals"] == got["totals"],
        "recoveries": got["recoveries"],
    }


def run(scenes: list[Path], run_dir: Path, cluster: Cluster | None, workers: list) -> dict:
    pipeline = start_pipeline(config_for(scenes, run_dir), shards=2, api=False)
    victims: list[str] = []
    try:
        if cluster is not None:
            deadline = time.monotonic() + 120
            while pipeline.status()["checkpoints"]["completed"] < 2 or clock_frames(pipeline) < 120:
                assert time.monotonic() < deadline, "no progress before the node failure"
                time.sleep(0.1)
            by_node: dict[str, list[str]] = {}
            for name, handle in camcount_actors(pipeline):
                node_id = ray.get(
                    handle.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
                )
                by_node.setdefault(node_id, []).append(name)
            node = max(workers, key=lambda w: len(by_node.get(w.node_id, [])))
            victims = sorted(by_node.get(node.node_id, []))
            cluster.remove_node(node, allow_graceful=False)
        pipeline.wait_files()
        rows, crossings = warehouse_rows(pipeline)
        totals = pipeline.totals()
        recoveries = [r["part"] for r in pipeline.status()["recoveries"]]
    finally:
        pipeline.stop(checkpoint=False)
    return {
        "rows": rows,
        "crossings": crossings,
        "totals": totals,
        "victims": victims,
        "recoveries": recoveries,
    }


def camcount_actors(pipeline: object) -> list[tuple[str, object]]:
    controller = pipeline.controller  # type: ignore[attr-defined]
    out: list[tuple[str, object]] = []
    for cam in pipeline.status()["cameras"]:  # type: ignore[attr-defined]
        camera_id = cam["camera_id"]
        out.append((f"camera {camera_id}", ray.get(controller.camera_handle.remote(camera_id))))
    for i, shard in enumerate(ray.get(controller.shard_handles.remote())):
        out.append((f"shard {i}", shard))
    return out


if __name__ == "__main__":
    videos = [Path(p) for p in sys.argv[2:]]
    print(json.dumps(main(videos, Path(sys.argv[1]))))
