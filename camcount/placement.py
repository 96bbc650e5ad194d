"""Which node a camera goes to: the rule, without Ray (actors/placement.py
asks Ray for the nodes and pins the camera there).

1. The nodes a camera may run on are the alive ones that have every custom
   resource and label its ``placement`` names (the nodes of its site's
   network).
2. Of those, it goes to the one with the fewest cameras per CPU, counted
   from the record of where each camera was put; a camera whose process was
   lost passes over its last node when another qualifies (a node that has
   just gone is still reported alive for seconds).
3. Ties go to the node with more CPUs, then the lower id, so a start places
   the same way every time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from camcount.config import CameraPlacement


@dataclass(frozen=True)
class Node:
    """An alive node as placement sees it: what it offers in total, not
    what is free now (a camera may wait for a share of a node it belongs on
    rather than go to one it does not)."""

    node_id: str
    resources: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def cpus(self) -> float:
        return self.resources.get("CPU", 0.0)

    def allows(self, placement: CameraPlacement) -> bool:
        """Step 1."""
        has = all(self.resources.get(k, 0.0) >= v for k, v in placement.resources.items())
        return has and all(self.labels.get(k) == v for k, v in placement.labels.items())


def least_loaded(
    nodes: Iterable[Node],
    placement: CameraPlacement,
    cameras_on: Mapping[str, int],
    avoid: Collection[str] = (),
) -> str | None:
    """Steps 1 to 3: the node for one more camera, or None when no alive
    node qualifies (the camera then waits for one)."""
    allowed = [n for n in nodes if n.allows(placement) and n.cpus > 0]
    preferred = [n for n in allowed if n.node_id not in avoid] or allowed
    if not preferred:
        return None
    best = min(preferred, key=lambda n: (cameras_on.get(n.node_id, 0) / n.cpus, -n.cpus, n.node_id))
    return best.node_id


class CameraLoad:
    """Where each camera was put: the load step 2 counts. A camera placed
    again (restored after a loss) moves; a removed one is forgotten; the
    cameras of a node no longer alive count nowhere."""

    def __init__(self) -> None:
        self._node_of: dict[str, str] = {}

    def place(
        self,
        camera_id: str,
        placement: CameraPlacement,
        nodes: Iterable[Node],
        lost: bool = False,
    ) -> str | None:
        """The node for ``camera_id``'s next process, recorded; ``lost``:
        its last process was lost, so its last node is passed over when
        another qualifies."""
        alive = list(nodes)
        alive_ids = {n.node_id for n in alive}
        previous = self._node_of.pop(camera_id, None)
        load: dict[str, int] = {}
        for node in self._node_of.values():
            if node in alive_ids:
                load[node] = load.get(node, 0) + 1
        avoid = {previous} if lost and previous is not None else set()
        node_id = least_loaded(alive, placement, load, avoid)
        if node_id is not None:
            self._node_of[camera_id] = node_id
        return node_id

    def record(self, camera_id: str, node_id: str | None) -> None:
        """``camera_id`` runs on ``node_id`` though it was not placed here
        (a spare process took it over, or it outlived a restart of the
        controller); None: not known."""
        self._node_of.pop(camera_id, None)
        if node_id is not None:
            self._node_of[camera_id] = node_id

    def forget(self, camera_id: str) -> None:
        self._node_of.pop(camera_id, None)

    def node_of(self, camera_id: str) -> str | None:
        return self._node_of.get(camera_id)

    def placed(self) -> dict[str, str]:
        """Each camera's node, by camera id (those Ray placed on its own
        are not here)."""
        return dict(sorted(self._node_of.items()))
