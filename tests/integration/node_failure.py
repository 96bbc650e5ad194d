"""Several nodes, on a cluster of their own: a head and two worker raylets
(``ray.cluster_utils.Cluster``) on this machine.

Run by ``test_node_failure.py`` in a process of its own (a process joins
one Ray cluster, and the suite's shares one). The head has one CPU; the
"GPU" worker declares the ``detector`` resource (two replicas' worth) and
the site resource one camera names; the plain worker has neither.

One replay of three cameras:

1. once checkpoints complete, each camera process is where placement
   says (the site camera alone on the site node; the two others, of one
   site and no placement, in one process on the least loaded node), the
   shards on two nodes, the detector's replicas only on the GPU worker;
2. the plain worker is then removed (its raylet and every process on it
   killed): its cameras are placed again on the nodes left;
3. the detector went from one replica to two under the cameras' load, and
   back to one once they are idle;
4. the warehouse holds, row for row, the windows and crossings the core
   counts for each file alone (what ``camcount count`` counts), and the
   replay's totals are ``camcount count``'s.

Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.cluster_utils import Cluster

from camcount.config import AppConfig, AutoscalingConfig, CameraPlacement
from camcount.detectors import DetectorSettings, build_detector
from camcount.events import row_order
from camcount.reference import CountResult, count_video
from serve_app.app import DETECTOR_APP, Pipeline, start_pipeline
from tests.integration.test_exactly_once import clock_frames, config_for, warehouse_rows

DETECTOR_RESOURCE = "detector"
SITE_RESOURCE = "site-a"
#: The camera bound to the site node.
SITE_CAMERA = "cam31"
#: Short delays, so the replicas follow the load within a replay of seconds.
AUTOSCALING = AutoscalingConfig(
    min_replicas=1,
    max_replicas=2,
    target_ongoing_requests=1,
    upscale_delay_s=0.5,
    downscale_delay_s=2.0,
    metrics_interval_s=0.5,
    look_back_period_s=1.0,
)
SCALE_DOWN_TIMEOUT_S = 30.0


def main(scenes: list[Path], work: Path) -> dict[str, Any]:
    config = configured(scenes, work / "run")
    reference = [count_video(config, cam, oracle()) for cam in config.cameras]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    gpu = cluster.add_node(num_cpus=4, resources={DETECTOR_RESOURCE: 2, SITE_RESOURCE: 10})
    plain = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, namespace="camcount", logging_level="ERROR")
    cluster.wait_for_nodes()
    names = {cluster.head_node.node_id: "head", gpu.node_id: "gpu", plain.node_id: "plain"}
    try:
        got = run(config, names, cluster, plain)
    finally:
        ray.shutdown()
        cluster.shutdown()
    want = expected_rows(reference)
    rows = {k: v for k, v in got["rows"].items() if ":" not in k[0]}  # cameras' own rows
    totals = sorted((r for c in reference for r in c.totals), key=row_order)
    return {
        "placed": got["placed"],
        "placed_after_loss": got["placed_end"],
        "replica_nodes": got["replica_nodes"],
        "replicas_max": got["replicas_max"],
        "replicas_idle": got["replicas_idle"],
        "scaled_down_after_s": got["scaled_down_after_s"],
        "removed_node_actors": got["victims"],
        "rows": len(want),
        "lost": sum(k not in rows or rows[k][0] < n for k, n in want.items()),
        "doubled": sum(k in rows and rows[k][0] > n for k, n in want.items()),
        "extra": sum(k not in want for k in rows),
        "crossings_equal": got["crossings"] == {e.event_id for c in reference for e in c.crossings},
        "totals_equal_count": got["totals"] == totals != [],
        "late_in_reference": sum(c.late for c in reference),
        "recoveries": got["recoveries"],
        "seconds": got["seconds"],
    }


def oracle() -> Any:
    return build_detector("oracle", DetectorSettings(options={"seed": 5}))


def expected_rows(reference: list[CountResult]) -> dict[tuple[Any, ...], int]:
    """Each file's windows as the core closes them, keyed as
    ``warehouse_rows`` keys the warehouse's."""
    return {
        (
            w.camera_id,
            w.counter_id,
            w.class_name,
            w.direction,
            w.window_size_s,
            int(w.window_start),
        ): w.count
        for c in reference
        for w in c.windows
    }


def configured(scenes: list[Path], run_dir: Path) -> AppConfig:
    """The exactly-once replay's config, with the detector on the GPU node
    and autoscaled, and one camera bound to the site node."""
    config = config_for(scenes, run_dir)
    detector = config.detector.model_copy(
        update={"resources": {DETECTOR_RESOURCE: 1}, "autoscaling": AUTOSCALING}
    )
    site = CameraPlacement(resources={SITE_RESOURCE: 1})
    cameras = tuple(
        c.model_copy(update={"placement": site}) if c.id == SITE_CAMERA else c
        for c in config.cameras
    )
    return config.model_copy(update={"detector": detector, "cameras": cameras})


class ReplicaWatch:
    """The detector's running replicas, sampled in the background: the
    most seen, and on which nodes."""

    def __init__(self) -> None:
        self.most = 0
        self.nodes: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            self.most = max(self.most, running_replicas())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def running_replicas() -> int:
    try:
        app = serve.status().applications[DETECTOR_APP]
        states = app.deployments["Detector"].replica_states
        return sum(n for state, n in states.items() if state == "RUNNING")
    except Exception:  # not deployed (yet, or any more)
        return 0


def replica_nodes(names: dict[str, str]) -> list[str]:
    """The nodes of the detector's replicas (Serve spreads calls over them)."""
    handle = serve.get_deployment_handle("Detector", app_name=DETECTOR_APP)
    calls = [handle.stats.remote() for _ in range(16)]
    return sorted({names.get(n, n) for n in (c.result(timeout_s=30)["node_id"] for c in calls)})


def actor_nodes(pipeline: Pipeline, names: dict[str, str]) -> dict[str, str]:
    """Where each camera and shard process runs, by part name."""
    out: dict[str, str] = {}
    for name, handle in camcount_actors(pipeline):
        node_id = ray.get(
            handle.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()),
            timeout=60,
        )
        out[name] = names.get(node_id, node_id)
    return out


def run(config: AppConfig, names: dict[str, str], cluster: Cluster, victim: Any) -> dict[str, Any]:
    started = time.monotonic()
    pipeline = start_pipeline(config, shards=2, api=False)
    watch = ReplicaWatch()
    victims: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while pipeline.status()["checkpoints"]["completed"] < 2 or clock_frames(pipeline) < 120:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.1)
        placed = actor_nodes(pipeline, names)
        nodes_seen = replica_nodes(names)
        victims = sorted(k for k, v in placed.items() if v == "plain")
        cluster.remove_node(victim, allow_graceful=False)
        pipeline.wait_files()
        watch.stop()
        rows, crossings = warehouse_rows(pipeline)
        totals = pipeline.totals()
        status = pipeline.status()
        recoveries = [r["part"] for r in status["recoveries"]]
        placed_end = {f"camera {c}": names.get(n, n) for c, n in status["camera_nodes"].items()}
        # Idle now: the replicas go back to min_replicas.
        t0 = time.monotonic()
        while running_replicas() > AUTOSCALING.min_replicas:
            if time.monotonic() - t0 > SCALE_DOWN_TIMEOUT_S:
                break
            time.sleep(0.25)
        idle = running_replicas()
        scaled_down_after_s = round(time.monotonic() - t0, 1)
    finally:
        watch.stop()
        pipeline.stop(checkpoint=False)
    return {
        "rows": rows,
        "crossings": crossings,
        "totals": totals,
        "victims": victims,
        "recoveries": recoveries,
        "placed": placed,
        "placed_end": placed_end,
        "replica_nodes": nodes_seen,
        "replicas_max": watch.most,
        "replicas_idle": idle,
        "scaled_down_after_s": scaled_down_after_s,
        "seconds": round(time.monotonic() - started, 1),
    }


def camcount_actors(pipeline: Pipeline) -> list[tuple[str, Any]]:
    controller = pipeline.controller
    out: list[tuple[str, Any]] = []
    for cam in pipeline.status()["cameras"]:
        camera_id = cam["camera_id"]
        out.append((f"camera {camera_id}", ray.get(controller.camera_handle.remote(camera_id))))
    for i, shard in enumerate(ray.get(controller.shard_handles.remote())):
        out.append((f"shard {i}", shard))
    return out


if __name__ == "__main__":
    videos = [Path(p) for p in sys.argv[2:]]
    print(json.dumps(main(videos, Path(sys.argv[1]))))
