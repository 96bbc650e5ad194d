"""A camera process: one Ray actor holding several cameras.

A process costs ~190 MB resident before its first camera (Python, OpenCV,
Ray's worker, Serve's client); a camera in it costs what its decoder,
frame queue and tracker hold. So cameras share processes, up to
``pipeline.cameras_per_process`` each (camcount/hosts.py keeps the
controller's plan of who is where), and each stays isolated:

- its own ``CameraWorker`` (actors/camera.py): state, snapshot, sender to
  its shard (its own numbered channel), metrics label;
- its own task on the host's event loop and its own thread for what
  blocks, so a source that stalls or fails holds up only itself;
- every call the controller makes names its camera; ``CameraLink`` is the
  handle the controller and the API use like a camera actor's, the camera
  id put in front of every call;
- removing a camera stops it alone; the process ends (killed by the
  controller) when its last camera has gone.

A process that dies takes its cameras with it: each is watched through its
own pending ``alive`` call, and the controller brings every one of them back
from its own snapshot in the newest complete checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from typing import Any

import ray

from actors.camera import CAMERA_CPUS, CameraIdentity, CameraMetrics, CameraWorker, HostServices
from actors.lifetime import end_with
from actors.placement import ModelCoreAvoider
from camcount.checkpoints.states import CameraState
from camcount.config import CameraConfig, TrackerConfig
from camcount.detectors.affinity import current_cores
from camcount.errors import CameraNotHosted

#: How long a call naming a camera not yet added waits for it: the add and
#: the calls after it travel separately, and may arrive in either order.
ARRIVAL_WAIT_S = 30.0
_HEAVY = ("torch", "pyarrow", "pandas", "scipy.optimize")


def _without_pandas() -> None:
    """Keep pandas out of this process.

    Ray Serve imports pandas when it is installed, for features a camera
    never uses: ~70 MB in every camera process. Called in the host's own
    process before Serve is first imported there.
    """
    if "pandas" not in sys.modules and "ray.serve" not in sys.modules:
        sys.modules["pandas"] = None  # type: ignore[assignment]


def process_memory_mb() -> dict[str, float]:
    """This process's resident memory (Linux), for capacity planning: all
    of it (``rss_mb``), and the part no other process shares
    (``private_mb``: RSS less shared libraries and the object store's
    shared pages that the cameras wrote their requests into)."""
    fields = {"VmRSS:": "rss_mb", "RssAnon:": "private_mb"}
    out = {v: 0.0 for v in fields.values()}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                parts = line.split()
                if parts and parts[0] in fields:
                    out[fields[parts[0]]] = round(int(parts[1]) / 1024, 1)
    except OSError:
        pass
    return out


@ray.remote(num_cpus=CAMERA_CPUS, max_restarts=0)
class CameraHost:
    def __init__(
        self,
        detector_app: str = "camcount",
        detector_deployment: str = "Detector",
        owner: Any = None,
        frames_per_batch: int = 8,
        queue_size: int = 4,
    ) -> None:
        """With ``owner`` (its controller) the process ends once the owner
        is gone for good (actors/lifetime.py)."""
        _without_pandas()
        from ray import serve

        detector = serve.get_deployment_handle(detector_deployment, app_name=detector_app)
        self._services = HostServices(
            detector, CameraMetrics(), ModelCoreAvoider(), self._process_status
        )
        self._frames_per_batch = frames_per_batch
        self._queue_size = queue_size
        self._workers: dict[str, CameraWorker] = {}
        self._gone: set[str] = set()
        self._arrived = asyncio.Condition()
        end_with(owner)

    def _process_status(self) -> dict[str, Any]:
        return {
            **process_memory_mb(),
            "cameras_in_process": len(self._workers),
            "torch_loaded": "torch" in sys.modules,
            "cpu_cores": sorted(current_cores()),
            # What a camera process should never carry (camera docs, memory).
            "heavy_imports": [m for m in _HEAVY if sys.modules.get(m) is not None],
        }

    def ready(self) -> list[str]:
        """For the controller: this process has started (a spare is ready
        to take a camera over); the cameras it holds."""
        return sorted(self._workers)

    def identity(self) -> list[CameraIdentity]:
        return [w.identity() for w in self._workers.values()]

    def process(self) -> dict[str, Any]:
        """The process's memory and cameras (bench/memory.py)."""
        return self._process_status()

    async def add(
        self,
        camera: CameraConfig,
        tracker: TrackerConfig,
        aggregator: Any,
        sender_id: str,
        max_in_flight: int = 4,
        restore: CameraState | None = None,
    ) -> None:
        """Camera ``camera`` runs here from now on, as ``sender_id``; it
        sends nothing before ``start``."""
        if camera.id in self._workers:
            raise ValueError(f"camera {camera.id!r} is in this process already")
        self._gone.discard(camera.id)
        self._workers[camera.id] = CameraWorker(
            camera,
            tracker,
            aggregator,
            sender_id,
            self._services,
            max_in_flight=max_in_flight,
            frames_per_batch=self._frames_per_batch,
            queue_size=self._queue_size,
            restore=restore,
        )
        async with self._arrived:
            self._arrived.notify_all()

    async def _worker(self, camera_id: str) -> CameraWorker:
        worker = self._workers.get(camera_id)
        if worker is None and camera_id not in self._gone:
            async with self._arrived:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._arrived.wait_for(lambda: camera_id in self._workers),
                        ARRIVAL_WAIT_S,
                    )
            worker = self._workers.get(camera_id)
        if worker is None:
            raise CameraNotHosted(camera_id)
        return worker

    async def remove(self, camera_id: str) -> dict[str, Any]:
        """Stop camera ``camera_id`` and let it go; the others run on."""
        worker = await self._worker(camera_id)
        self._workers.pop(camera_id, None)
        self._gone.add(camera_id)
        return await worker.close()

    # One method per camera call: the camera's id first (CameraLink).

    async def alive(self, camera_id: str) -> None:
        """Returns once the camera has left this process, else never: the
        controller keeps one call pending per camera to learn at once when
        the process dies."""
        await (await self._worker(camera_id)).gone.wait()

    async def start(self, camera_id: str) -> dict[str, Any]:
        return await (await self._worker(camera_id)).start()

    async def barrier(self, camera_id: str, checkpoint_id: int, final: bool = False) -> Any:
        return await (await self._worker(camera_id)).barrier(checkpoint_id, final)

    async def rewind(
        self,
        camera_id: str,
        aggregator: Any,
        sender_id: str,
        restore: CameraState | None,
        max_in_flight: int | None = None,
    ) -> None:
        worker = await self._worker(camera_id)
        await worker.rewind(aggregator, sender_id, restore, max_in_flight)

    async def status(self, camera_id: str) -> dict[str, Any]:
        return (await self._worker(camera_id)).status()

    async def update(self, camera_id: str, new: CameraConfig) -> dict[str, Any]:
        return (await self._worker(camera_id)).update(new)

    async def dead_letters(self, camera_id: str) -> Any:
        return (await self._worker(camera_id)).dead_letters()

    async def config(self, camera_id: str) -> CameraConfig:
        return (await self._worker(camera_id)).config()

    async def preview(self, camera_id: str, max_fps: float = 2.0) -> bytes | None:
        return await (await self._worker(camera_id)).preview(max_fps)

    async def wait(self, camera_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        return await (await self._worker(camera_id)).wait(timeout_s)

    async def stop(self, camera_id: str) -> dict[str, Any]:
        return await (await self._worker(camera_id)).stop()


#: The host's methods that act on one camera (its id their first argument).
PER_CAMERA = frozenset(
    {
        "alive",
        "barrier",
        "config",
        "dead_letters",
        "preview",
        "remove",
        "rewind",
        "start",
        "status",
        "stop",
        "update",
        "wait",
    }
)


class _CameraMethod:
    def __init__(self, method: Any, camera_id: str) -> None:
        self._method = method
        self._camera_id = camera_id

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._method.remote(self._camera_id, *args, **kwargs)


@dataclass(frozen=True, eq=False)
class CameraLink:
    """One camera of a camera process, called as a camera actor would be:
    ``link.status.remote()`` is ``host.status.remote(camera_id)``. It
    travels (to the API's replicas) as the host's handle and the id."""

    host: Any
    camera_id: str

    def __getattr__(self, name: str) -> Any:
        if name not in PER_CAMERA:
            raise AttributeError(name)
        return _CameraMethod(getattr(self.host, name), self.camera_id)

    @property
    def __ray_call__(self) -> Any:
        """Calls on the process itself (its pid, say)."""
        return self.host.__ray_call__

    @property
    def _actor_id(self) -> Any:
        return self.host._actor_id
