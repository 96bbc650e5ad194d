"""The node's model-core registry as Ray processes see it (camcount.detectors.affinity).

Each node has its own registry, in the node's temporary directory under its
Ray node id, so replicas and cameras meet there only when they share a node
and a new cluster never reads a dead one's reservations.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import ray

from camcount.detectors.affinity import CoreRegistry, Cores, keep_off, supported


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
