"""Which camera process (a *host*) holds which camera.

A camera process costs ~190 MB before its first camera (Python, OpenCV,
Ray's worker, Serve's client), so several cameras share one
(``pipeline.cameras_per_process``). The plan is the controller's book of
that sharing, kept apart from Ray so its rules are tested alone:

- a camera is in at most one host, a host holds at most ``capacity``;
- the cameras of one host share a placement key (``placement_key``: the
  camera's site and the nodes its placement allows): a host runs on one
  node, so only cameras that may run on the same nodes share one;
- a new camera goes to the fullest open host of its key with room, so
  processes fill before a new one starts;
- a host is *closed* once it is lost or a camera in it stops answering:
  it takes no new camera, its cameras leave it one by one as they are
  renewed elsewhere, and it ends when the last has gone.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field

from camcount.config import CameraConfig
from camcount.errors import CamcountError


class PlacementError(CamcountError, ValueError):
    """A camera placed twice, or into a host that is full, closed or of
    another placement key."""


@dataclass
class _Host:
    key: str
    order: int
    cameras: set[str] = field(default_factory=set)
    closed: bool = False


def placement_key(camera: CameraConfig) -> str:
    """Cameras that may share a process share this: their site (which the
    shards group by and a deployment places by) and their placement's
    resources and labels, since the process runs on one node and that node
    must be one every camera in it is allowed on."""
    if not camera.placement.constrained:
        return camera.site
    nodes = {"resources": camera.placement.resources, "labels": camera.placement.labels}
    return f"{camera.site} {json.dumps(nodes, sort_keys=True)}"


class HostPlan:
    """The hosts of a run and their cameras (module docstring)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise PlacementError(f"a host holds at least one camera, got capacity {capacity}")
        self.capacity = capacity
        self._hosts: dict[str, _Host] = {}
        self._where: dict[str, str] = {}
        self._made = 0

    def place(self, camera_id: str, key: str, avoid: Collection[str] = ()) -> tuple[str, bool]:
        """The host ``camera_id`` goes to, and whether it is a new one (the
        caller starts its process). Hosts in ``avoid`` are passed over: those
        on the node a lost camera ran on, which may be gone with it."""
        if camera_id in self._where:
            raise PlacementError(f"camera {camera_id!r} is in host {self._where[camera_id]!r}")
        room = [
            (len(h.cameras), -h.order, host_id)
            for host_id, h in self._hosts.items()
            if h.key == key
            and not h.closed
            and len(h.cameras) < self.capacity
            and host_id not in avoid
        ]
        if room:
            host_id, new = max(room)[2], False
        else:
            host_id, new = self.new_host(key), True
        self.take(host_id, camera_id, key)
        return host_id, new

    def new_host(self, key: str) -> str:
        """An empty host of ``key`` (a process about to start)."""
        self._made += 1
        host_id = f"host{self._made}"
        self._hosts[host_id] = _Host(key, self._made)
        return host_id

    def take(self, host_id: str, camera_id: str, key: str) -> None:
        """``camera_id`` is in ``host_id`` from now on: a placed camera, the
        spare taking one over (its key becomes the camera's), or a camera
        found running in a host after a restart of the controller."""
        if camera_id in self._where:
            raise PlacementError(f"camera {camera_id!r} is in host {self._where[camera_id]!r}")
        host = self._hosts.get(host_id)
        if host is None:
            self._made += 1
            host = self._hosts[host_id] = _Host(key, self._made)
        if not host.cameras:
            host.key = key
        if host.closed or host.key != key or len(host.cameras) >= self.capacity:
            raise PlacementError(
                f"host {host_id!r} (key {host.key!r}, {len(host.cameras)} of {self.capacity}, "
                f"{'closed' if host.closed else 'open'}) cannot take camera {camera_id!r} "
                f"(key {key!r})"
            )
        host.cameras.add(camera_id)
        self._where[camera_id] = host_id

    def found(self, camera_ids: list[str], key: str) -> str:
        """A host found running with ``camera_ids`` (a restarted controller
        adopting what outlived it), entered as it is. A host found fuller
        than ``capacity`` is closed, as it cannot take more."""
        taken = [c for c in camera_ids if c in self._where]
        if taken:
            raise PlacementError(f"cameras {taken} are in other hosts already")
        host_id = self.new_host(key)
        host = self._hosts[host_id]
        host.cameras.update(camera_ids)
        host.closed = len(camera_ids) > self.capacity
        for camera_id in camera_ids:
            self._where[camera_id] = host_id
        return host_id

    def host_of(self, camera_id: str) -> str | None:
        return self._where.get(camera_id)

    def cameras_of(self, host_id: str) -> frozenset[str]:
        host = self._hosts.get(host_id)
        return frozenset(host.cameras) if host is not None else frozenset()

    def release(self, camera_id: str) -> str | None:
        """``camera_id`` leaves its host; returns the host when that left it
        empty (the caller ends its process), else None."""
        host_id = self._where.pop(camera_id, None)
        if host_id is None:
            return None
        host = self._hosts[host_id]
        host.cameras.discard(camera_id)
        if host.cameras:
            return None
        del self._hosts[host_id]
        return host_id

    def close(self, host_id: str) -> None:
        """No new camera goes to ``host_id`` (lost, or not answering)."""
        host = self._hosts.get(host_id)
        if host is not None:
            host.closed = True

    def is_closed(self, host_id: str) -> bool:
        host = self._hosts.get(host_id)
        return host is None or host.closed

    def hosts(self) -> dict[str, frozenset[str]]:
        """Every host with its cameras."""
        return {host_id: frozenset(h.cameras) for host_id, h in self._hosts.items()}
