"""Where parts run: which node a camera, a shard or a model thread goes to.

Nodes. The controller puts each camera process (a host of several cameras,
actors/camera_host.py) on the least loaded node its first camera's
placement allows (camcount.placement has the rule), counting every camera
a node's processes hold, and pins it there
with a soft node affinity: should that node be gone by the time Ray
schedules the process, Ray puts it elsewhere rather than never.
Aggregator shards are spread over the nodes by Ray (``SPREAD``), so one
lost node takes as few regions with it as it can. Detector replicas go to
the nodes with the detector's resources (serve_app/detector.py).
docs/capacity.md, Placement, is the operator's view.

Cores. Each node's model-core registry as Ray processes see it
(camcount.detectors.affinity): in the node's temporary directory under its
Ray node id, so replicas and cameras meet there only when they share a node
and a new cluster never reads a dead one's reservations.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import (
    In,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
)

from camcount.config import CameraPlacement, PlacementConfig
from camcount.detectors.affinity import CoreRegistry, Cores, keep_off, supported
from camcount.placement import CameraLoad, Node

#: How long the node table read for placing cameras is used again.
NODES_TTL_S = 1.0


def alive_nodes() -> list[Node]:
    """The cluster's alive nodes, from Ray's node table."""
    return [
        Node(n["NodeID"], dict(n.get("Resources") or {}), dict(n.get("Labels") or {}))
        for n in ray.nodes()
        if n.get("Alive")
    ]


def camera_options(
    placement: CameraPlacement, node_id: str | None, policy: PlacementConfig
) -> dict[str, Any]:
    """Ray options for a camera's process placed on ``node_id``. With no
    node chosen (none alive qualifies yet, or Ray decides), the camera's
    resources and labels still bind it: Ray holds it until a node that
    has them joins. Ray checks the resources on a node it falls back to,
    not the labels (docs/capacity.md, Placement)."""
    options: dict[str, Any] = {}
    if placement.resources:
        options["resources"] = dict(placement.resources)
    if node_id is not None and policy.cameras == "least_loaded":
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=True)
    elif placement.labels:
        options["scheduling_strategy"] = NodeLabelSchedulingStrategy(
            hard={k: In(v) for k, v in placement.labels.items()}
        )
    return options


def _node_id(actor: Any) -> str:
    return str(ray.get_runtime_context().get_node_id())


def shard_options(policy: PlacementConfig) -> dict[str, Any]:
    """Ray options for an aggregator shard."""
    return {"scheduling_strategy": "SPREAD"} if policy.shards == "spread" else {}


class CameraNodes:
    """The controller's placement of cameras: the load it has put on each
    node, and the Ray options that put the next camera on the least loaded."""

    def __init__(self, policy: PlacementConfig, nodes_ttl_s: float = NODES_TTL_S) -> None:
        self._policy = policy
        self._load = CameraLoad()
        self._nodes_ttl_s = nodes_ttl_s
        self._nodes: list[Node] = []
        self._nodes_at = -math.inf

    def _alive(self) -> list[Node]:
        """The node table, read again at most every ``nodes_ttl_s``: a start
        of a thousand cameras asks Ray once, not a thousand times."""
        now = time.monotonic()
        if now - self._nodes_at > self._nodes_ttl_s:
            self._nodes, self._nodes_at = alive_nodes(), now
        return self._nodes

    def place(
        self, camera_id: str, placement: CameraPlacement, lost: bool = False
    ) -> dict[str, Any]:
        """Ray options for ``camera_id``'s next process; ``lost``: its last
        process was lost (maybe with its node)."""
        node_id = None
        if self._policy.cameras == "least_loaded":
            node_id = self._load.place(camera_id, placement, self._alive(), lost)
        return camera_options(placement, node_id, self._policy)

    async def found_on(self, camera_id: str, actor: Any) -> None:
        """Record where a process that was not placed here runs (a spare
        that took the camera over, one that outlived a controller restart),
        so the next camera placed counts it."""
        try:
            node_id = await asyncio.wait_for(actor.__ray_call__.remote(_node_id), 10)
        except Exception:  # lost meanwhile: its watcher restores it
            node_id = None
        self._load.record(camera_id, node_id)

    def join(self, camera_id: str, peer_id: str) -> None:
        """``camera_id`` joined the process of ``peer_id``: it runs on the
        same node, and counts there."""
        self._load.record(camera_id, self._load.node_of(peer_id))

    def passed_over(self, camera_id: str, placement: CameraPlacement) -> str | None:
        """The node a lost camera should not go back to: its last, when
        another alive node allows it (else None: it may only go back)."""
        last = self._load.node_of(camera_id)
        if last is None:
            return None
        others = (n for n in self._alive() if n.node_id != last and n.cpus > 0)
        return last if any(n.allows(placement) for n in others) else None

    def node_of(self, camera_id: str) -> str | None:
        return self._load.node_of(camera_id)

    def forget(self, camera_id: str) -> None:
        self._load.forget(camera_id)

    def placed(self) -> dict[str, str]:
        return self._load.placed()


def node_registry() -> CoreRegistry:
    node = ray.get_runtime_context().get_node_id()
    return CoreRegistry(Path(tempfile.gettempdir()) / "camcount-cores" / node)


class ModelCoreAvoider:
    """Keeps this process off the cores its node's replicas reserved.

    Looked up again at most every ``every_s``: replicas start and stop while
    cameras run (autoscaling, a restart), and a lookup is a directory listing.
    """

    def __init__(self, every_s: float = 10.0) -> None:
        self._every_s = every_s
        self._registry = node_registry() if supported() else None
        self._next = 0.0
        self._avoided: Cores | None = None

    def __call__(self) -> None:
        now = time.monotonic()
        if self._registry is None or now < self._next:
            return
        self._next = now + self._every_s
        reserved = self._registry.reserved()
        if reserved != self._avoided:
            keep_off(reserved)
            self._avoided = reserved

    def release(self) -> None:
        """Back on every core (a driver whose pipeline has stopped)."""
        if self._registry is not None and self._avoided:
            keep_off(frozenset())
        self._avoided = None
        self._next = 0.0
