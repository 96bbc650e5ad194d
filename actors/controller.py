"""The controller: owns the topology and keeps it alive.

It builds the live hub, the aggregator shards and one camera actor per
camera from the config; adds, removes and updates cameras while running;
watches every camera and restarts one whose actor died; and answers status
for the terminal and the API.

Without checkpoints a restarted file camera resumes from the last frame it
reported, so tracks in progress at the crash may be missed (never counted
twice: the new incarnation numbers its own channel); a dead letter records
the gap.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from actors.aggregator import AggregatorActor
from actors.camera import MIN_FRAMES_PER_REQUEST, CameraActor
from actors.cores import ModelCoreAvoider
from actors.hub import LiveHub
from camcount.aggregation import GroupSpec, shard_key
from camcount.config import AppConfig, CameraConfig
from camcount.events import DeadLetter
from camcount.processor import CountRow, row_order

log = logging.getLogger("camcount.controller")

MAX_FRAMES_IN_FLIGHT = 16
# Camera processes keep pyarrow out (actors/_keep_out/pyarrow says why);
# Ray expands ${PYTHONPATH} from the worker's own environment.
CAMERA_RUNTIME_ENV = {
    "env_vars": {
        "PYTHONPATH": f"{Path(__file__).parent / '_keep_out'}{os.pathsep}${{PYTHONPATH}}",
    }
}


@ray.remote(num_cpus=0, max_restarts=0)
class Controller:
    def __init__(
        self,
        config: dict[str, Any],
        detector_app: str = "camcount",
        shards: int = 1,
        health_interval_s: float = 2.0,
        sink: Any = None,
    ) -> None:
        self.config = AppConfig.model_validate(config)
        self._detector_app = detector_app
        self._n_shards = max(1, shards)
        self._health_interval_s = health_interval_s
        self._sink = sink
        self.hub = LiveHub.remote()
        w = self.config.windows
        groups = [(g.id, [(m.camera, m.counter) for m in g.members]) for g in self.config.groups]
        self._group_specs = [GroupSpec(g, frozenset(m)) for g, m in groups]
        self.shards = [
            AggregatorActor.remote(
                i, w.sizes_s, w.allowed_lateness_s, w.idle_timeout_s, groups, sink, self.hub
            )
            for i in range(self._n_shards)
        ]
        self._cameras: dict[str, CameraConfig] = {}
        self._actors: dict[str, Any] = {}
        self._incarnation: dict[str, int] = {}
        self._last_status: dict[str, dict[str, Any]] = {}
        self._dead: list[DeadLetter] = []
        self._restarts: dict[str, int] = {}
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self._start_timeout_s = 60.0
        self._keep_off_model = ModelCoreAvoider()

    async def start(self) -> list[dict[str, Any]]:
        await self._record_cameras(list(self.config.cameras))
        # All at once: each start waits for a worker process to spawn and
        # import its libraries (seconds), so one after another the first
        # cameras of a large config would finish files before the last began.
        statuses = await asyncio.gather(
            *(self.add_camera(c.model_dump(mode="json")) for c in self.config.cameras)
        )
        self._watch = asyncio.get_running_loop().create_task(self._watch_loop())
        return list(statuses)

    def _shard_of(self, camera: CameraConfig) -> Any:
        key = shard_key(camera.id, camera.site, self._group_specs)
        return self.shards[zlib.crc32(key.encode()) % len(self.shards)]

    async def add_camera(
        self, camera: dict[str, Any], resume_from: int | None = None
    ) -> dict[str, Any]:
        cfg = CameraConfig.model_validate(camera)
        if cfg.id in self._actors:
            raise ValueError(f"camera {cfg.id!r} exists already")
        if self._watch is not None:  # added while running (start records the config's)
            await self._record_cameras([cfg])
        return await self._launch(cfg)

    async def _record_cameras(
        self, cameras: list[CameraConfig], removed: tuple[str, ...] = ()
    ) -> None:
        """The warehouse's cameras tables follow the topology, so analysts
        can group rows by site and tags and see each camera's lines."""
        if self._sink is not None and (cameras or removed):
            await self._sink.write_cameras.remote(
                [c.model_dump(mode="json") for c in cameras], None, list(removed)
            )

    async def _launch(self, cfg: CameraConfig) -> dict[str, Any]:
        n = self._incarnation.get(cfg.id, -1) + 1
        self._incarnation[cfg.id] = n
        sender = f"{cfg.id}#{n}"
        shard = self._shard_of(cfg)
        await shard.register.remote(cfg.id, sender, cfg.site, cfg.tags)
        actor = CameraActor.options(name=None, runtime_env=CAMERA_RUNTIME_ENV).remote(
            cfg.model_dump(mode="json"),
            self.config.tracker.model_dump(mode="json"),
            shard,
            sender,
            self._detector_app,
            max_in_flight=self._frames_in_flight(),
        )
        self._cameras[cfg.id] = cfg
        self._actors[cfg.id] = actor
        try:
            status = await asyncio.wait_for(actor.start.remote(), timeout=self._start_timeout_s)
        except TimeoutError:
            # The actor is still waiting for a node with free resources; it
            # starts when one frees up, and status says so meanwhile.
            status = {
                "camera_id": cfg.id,
                "state": "pending",
                "detail": f"not started after {self._start_timeout_s:.0f} s: "
                "no node with free resources for the camera actor",
                "totals": [],
            }
        self._last_status[cfg.id] = status
        return status

    def _frames_in_flight(self) -> int:
        """Enough for the cameras together to keep two detector batches
        queued, so the model never waits out ``batch_wait_timeout_s`` for
        a batch to fill (one camera alone sends whole batches, two in
        flight); at least one request's worth, so requests stay few; no
        more, as each frame in flight adds latency and object-store pages
        that every camera process ends up mapping (8 cameras with 8 frames
        each held ~8 MB more per camera than with 4, for no more frames/s).
        Set when a camera starts, from the cameras running then."""
        starting = self._watch is None  # start() launches the config's cameras
        cameras = len(self.config.cameras) if starting else len(self._cameras) + 1
        cameras = max(1, cameras)
        share = -(-2 * self.config.detector.max_batch_size // cameras)  # ceil
        return min(MAX_FRAMES_IN_FLIGHT, max(MIN_FRAMES_PER_REQUEST, share))

    async def remove_camera(self, camera_id: str) -> dict[str, Any]:
        actor = self._actors.pop(camera_id, None)
        if actor is None:
            raise KeyError(camera_id)
        status = await actor.stop.remote()
        ray.kill(actor)
        cfg = self._cameras.pop(camera_id)
        await self._shard_of(cfg).remove.remote(camera_id)
        self._last_status.pop(camera_id, None)
        if not self._stopping:
            await self._record_cameras([], (camera_id,))
        return status

    async def update_camera(self, camera: dict[str, Any]) -> dict[str, Any]:
        """New lines, zones or settings for a running camera.

        The camera's tracker state is carried into the new counters, and
        counters that keep their id keep their memory, so an update never
        double counts a track that was mid-crossing.
        """
        cfg = CameraConfig.model_validate(camera)
        actor = self._actors.get(cfg.id)
        if actor is None:
            raise KeyError(cfg.id)
        status = await actor.update.remote(cfg.model_dump(mode="json"))
        self._cameras[cfg.id] = cfg
        await self._record_cameras([cfg])
        return status

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            for camera_id, actor in list(self._actors.items()):
                try:
                    self._last_status[camera_id] = await asyncio.wait_for(
                        actor.status.remote(), timeout=self._health_interval_s * 5
                    )
                except (RayActorError, GetTimeoutError, TimeoutError) as exc:
                    await self._restart(camera_id, exc)
            for shard in self.shards:
                await shard.tick.remote()

    async def _restart(self, camera_id: str, cause: BaseException) -> None:
        if camera_id not in self._actors:
            return
        self._restarts[camera_id] = self._restarts.get(camera_id, 0) + 1
        last = self._last_status.get(camera_id, {})
        self._dead.append(
            DeadLetter(
                camera_id,
                "restart",
                f"camera actor lost ({type(cause).__name__}); restarted without a checkpoint "
                f"after frame time {last.get('last_frame_time')}: tracks in progress may be missed",
                time.time(),
                "camera",
                self._restarts[camera_id],
            )
        )
        log.warning("restarting camera %s after %r", camera_id, cause)
        old = self._actors.pop(camera_id)
        ray.kill(old, no_restart=True)
        await self._launch(self._cameras[camera_id])

    async def status(self) -> dict[str, Any]:
        self._keep_off_model()
        cameras = []
        for camera_id, actor in self._actors.items():
            try:
                s = await asyncio.wait_for(actor.status.remote(), timeout=5)
                self._last_status[camera_id] = s
            except (RayActorError, TimeoutError):
                s = {**self._last_status.get(camera_id, {}), "state": "unreachable"}
            s["restarts"] = self._restarts.get(camera_id, 0)
            cameras.append(s)
        return {"cameras": cameras, "shards": len(self.shards)}

    async def wait_files(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Until every camera's loop has ended, then close all windows and
        wait until the warehouse holds every row (so a replay's answer can
        be queried the moment it returns)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for actor in list(self._actors.values()):
            left = None if deadline is None else max(0.1, deadline - time.monotonic())
            await actor.wait.remote(left)
        for shard in self.shards:
            await shard.flush.remote()
        if self._sink is not None:
            await self._sink.flush.remote()
        return await self.status()

    async def totals(self) -> list[CountRow]:
        rows: list[CountRow] = []
        for shard in self.shards:
            rows.extend(await shard.totals.remote())
        return sorted(rows, key=row_order)

    async def dead_letters(self) -> list[DeadLetter]:
        out = list(self._dead)
        for shard in self.shards:
            out.extend(await shard.dead_letters.remote())
        for actor in self._actors.values():
            out.extend(await actor.dead_letters.remote())
        return out

    def hub_handle(self) -> Any:
        return self.hub

    def shard_handles(self) -> list[Any]:
        return list(self.shards)

    def camera_handle(self, camera_id: str) -> Any:
        return self._actors[camera_id]

    async def shutdown(self) -> None:
        """Stop the cameras; the cameras table keeps them (a stop is not a
        removal)."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        for camera_id in list(self._actors):
            await self.remove_camera(camera_id)
        # Raw events already received reach the sink; windows still open
        # stay open (a stop is not the end of the input).
        for shard in self.shards:
            await shard.drain.remote()
