"""The controller: owns the topology, checkpoints it, and brings it back.

It builds the live hub, one output actor per ``outputs:`` entry
(actors/output.py), the aggregator shards and the camera processes from
the config (``pipeline.cameras_per_process`` cameras each,
actors/camera_host.py; camcount/hosts.py is the plan of who is where);
adds, removes and updates cameras while running; drives checkpoints; and
restores any part that dies from the newest complete checkpoint.

Checkpoint ``n`` (docs/checkpoints.md), every
``storage.checkpoint_interval_s``:

1. ask every camera for ``Barrier(n)`` (``CameraHost.barrier``);
2. (the cameras cut it between two frames and send it with their state;)
3. (each shard aligns, writes its cameras' and its own state, has the
   sink and every output flush every row before the barrier,) and reports
   the objects it wrote (``AggregatorActor.checkpoint_done``);
4. write ``_COMPLETE``, the manifest, last; then prune old checkpoints.

A checkpoint that fails or times out is abandoned (shards release what
they held) and counted; counting goes on, and the next one tries again.

Recovery. A camera and its shard form a region: the shard's state holds
what the camera sent up to the checkpoint. When a camera or a shard dies,
its region rolls back to the newest complete checkpoint: the shard (or a
new one) restores its state, every camera of the region becomes a new
incarnation restored from its own state (a file seeks to the saved frame;
a live camera rewinds in its own process, a dead one is placed again: the
spare process, or a process with room, or a new one),
and batches from the old incarnations are fenced off. What the
region had sent after the checkpoint is made again, identically; the
warehouse keeps one row per identity, so nothing is counted twice, and
nothing before the checkpoint is lost; each output's stream from the shard
goes back with it (the archive deletes its files after the checkpoint).
When the sink or an output dies (Ray restarts it), every region rolls
back, since rows it held in memory are gone. The
hub restarts itself and numbers on. The parts outlive a controller that
dies (actors/lifetime.py): Ray restarts it, it finds them, and every
region rolls back in place, as after a sink loss; parts lost with it are
made again.

A camera process that dies takes every camera it held: each camera is
watched on its own, so each one's region rolls back, and the lost process
is *closed* at once (no camera is placed in it again). A camera that stops
answering closes its process too; its neighbours there run on, and the
process ends once the last of them has left it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util import metrics

from actors.aggregator import AggregatorActor
from actors.camera import MIN_FRAMES_PER_REQUEST, CameraIdentity
from actors.camera_host import CAMERA_CPUS, CameraHost, CameraLink
from actors.external import ExternalSourceActor
from actors.hub import LiveHub
from actors.lifetime import detached, parts_of
from actors.output import OutputActor
from actors.placement import CameraNodes, ModelCoreAvoider, shard_options
from camcount.alerts.camera_states import observed_state
from camcount.alerts.rules import AlertsConfig
from camcount.alerts.store import RuleStore
from camcount.checkpoints import CheckpointStore, Manifest, PartInfo
from camcount.checkpoints.states import CameraState
from camcount.config import AppConfig, CameraConfig, ExternalSourceConfig
from camcount.errors import AlertRulesRefused, CameraNotHosted
from camcount.events import CountRow, DeadLetter, row_order, stable_id, to_arrow
from camcount.external import (
    ExternalCount,
    ExternalEventError,
    ExternalSourceState,
    check_counters,
)
from camcount.hosts import HostPlan, placement_key
from camcount.outputs.tables import CAMERA_KINDS
from camcount.stream.aggregation import AggregatorState, GroupSpec, resplit, shard_router
from camcount.warehouse.rows import camera_tables

log = logging.getLogger("camcount.controller")

MAX_FRAMES_IN_FLIGHT = 16
# Camera processes keep pyarrow out (actors/_keep_out/pyarrow says why);
# Ray expands ${PYTHONPATH} from the worker's own environment.
CAMERA_RUNTIME_ENV = {
    "env_vars": {
        "PYTHONPATH": f"{Path(__file__).parent / '_keep_out'}{os.pathsep}${{PYTHONPATH}}",
    }
}
#: A checkpoint not complete after this many intervals (at least
#: ``MIN_CHECKPOINT_TIMEOUT_S``) is abandoned.
CHECKPOINT_TIMEOUT_INTERVALS = 5
MIN_CHECKPOINT_TIMEOUT_S = 10.0
ENDED = frozenset({"finished", "failed", "stopped"})
#: How long a live camera of a region being rolled back may take to stop
#: and rewind before it is replaced by a new process instead.
REWIND_TIMEOUT_S = 30.0
_DURATION_BOUNDARIES_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10]


@ray.remote(num_cpus=0, max_restarts=-1)
class Controller:
    def __init__(
        self,
        config: AppConfig,
        detector_app: str = "camcount",
        shards: int = 1,
        health_interval_s: float = 2.0,
        sink: Any = None,
        fresh: bool = True,
    ) -> None:
        """``fresh``: start over (delete the checkpoints under the storage
        root) instead of resuming from the newest complete one. A
        controller that Ray restarted always resumes."""
        self.config = config
        self._detector_app = detector_app
        self._n_shards = max(1, shards)
        self._health_interval_s = health_interval_s
        self._sink = sink
        # Output actors by name (``outputs:``), made at the start.
        self._outputs: dict[str, Any] = {}
        self._output_kinds: dict[str, frozenset[str]] = {}
        self._output_run = ""
        context = ray.get_runtime_context()
        self._reconstructed = context.was_current_actor_reconstructed
        self._me = context.current_actor
        self._run_id = context.get_actor_id() or "driver"
        self._born = time.monotonic()
        self._fresh = fresh and not self._reconstructed
        storage = self.config.storage
        self._store = CheckpointStore(storage.root, storage.keep_checkpoints)
        # The alert rules in force: the config's, until some are set through
        # the API; those are kept beside the checkpoints (RuleStore) and
        # read back by a resume or a restarted controller.
        self._rules: AlertsConfig = self.config.alerts
        self._rule_store = RuleStore(storage.root)
        # Per camera, the state last reported to its shard and when it began
        # there (``_report_camera_states``).
        self._camera_states: dict[str, tuple[str, float]] = {}
        self._interval_s = storage.checkpoint_interval_s
        self._checkpoint_timeout_s = max(
            MIN_CHECKPOINT_TIMEOUT_S, CHECKPOINT_TIMEOUT_INTERVALS * self._interval_s
        )
        # A restarted controller keeps the hub that outlived it (its
        # handle is in the API's replicas); the other parts are found at
        # the start (actors/lifetime.py).
        hubs = parts_of(self._run_id).get("hub", []) if self._reconstructed else []
        for extra in hubs[1:]:
            ray.kill(extra, no_restart=True)
        self.hub = (
            hubs[0]
            if hubs
            else LiveHub.options(**self._detached("hub")).remote(
                storage_root=storage.root, owner=self._me
            )
        )
        w = self.config.windows
        self._groups = self.config.group_members()
        self._group_specs = [GroupSpec(g, frozenset(m)) for g, m in self._groups]
        self._window_args = (w.sizes_s, w.allowed_lateness_s, w.idle_timeout_s)
        self.shards: list[Any] = []
        self._cameras: dict[str, CameraConfig] = {}
        # Each camera's link into its process (CameraLink), and the processes.
        self._actors: dict[str, Any] = {}
        self._plan = HostPlan(self.config.pipeline.cameras_per_process)
        self._hosts: dict[str, Any] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._incarnation: dict[str, int] = {}
        # External sources (IoT counters, POST /events): one actor each,
        # an input of its shard as a camera is.
        self._externals: dict[str, Any] = {}
        self._last_status: dict[str, dict[str, Any]] = {}
        self._spare: Any = None
        self._spare_ready: asyncio.Future[str] | None = None
        self._spare_enabled = storage.spare_camera
        # Cameras of a region being rolled back (by how many recoveries at
        # once): their status says so.
        self._restoring: Counter[str] = Counter()
        # Cameras of those known lost, a new incarnation being made: failed.
        self._lost: Counter[str] = Counter()
        # Shards being rolled back right now: told nothing meanwhile.
        self._rolling: set[int] = set()
        self._dead: list[DeadLetter] = []
        self._restarts: dict[str, int] = {}
        self._unsent: list[DeadLetter] = []
        self._recoveries: list[dict[str, Any]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._watchers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._started: asyncio.Future[list[dict[str, Any]]] | None = None
        self._stopping = False
        self._start_timeout_s = 60.0
        self._keep_off_model = ModelCoreAvoider()
        self._nodes = CameraNodes(self.config.placement)
        # What a restore goes back to: the newest complete checkpoint of
        # this run, or before the first, what the run started from.
        self._base_id: int | None = None
        self._initial: tuple[list[AggregatorState | None], dict[str, CameraState]] = (
            [None] * self._n_shards,
            {},
        )
        self._resumed_from: int | None = None
        self._next_id = 1
        self._cp: dict[str, Any] = {
            "completed": 0,
            "failed": 0,
            "last_id": None,
            "last_completed_at": None,
            "last_duration_s": None,
            "last_bytes": None,
            "last_error": None,
            "failing": False,
        }
        self._durations: list[float] = []
        self._m_cp_duration = metrics.Histogram(
            "camcount_checkpoint_duration_s",
            "from asking the cameras to the manifest written",
            boundaries=_DURATION_BOUNDARIES_S,
        )
        self._m_cp_bytes = metrics.Gauge("camcount_checkpoint_bytes", "size of the last checkpoint")
        self._m_cp_age = metrics.Gauge(
            "camcount_checkpoint_age_s", "seconds since the newest complete checkpoint"
        )
        self._m_cp_failures = metrics.Counter(
            "camcount_checkpoint_failures", "checkpoints abandoned"
        )
        self._m_restarts = metrics.Counter(
            "camcount_part_restarts", "parts restored from a checkpoint", ("part",)
        )
        self._restore_task: asyncio.Task[None] | None = None
        if self._reconstructed:  # restore at once, not at the first call
            self._me.ping.remote()

    def _detached(self, kind: str) -> dict[str, Any]:
        return detached(self._run_id, kind)

    async def ping(self) -> None:
        """The parts ask this to learn whether the controller is gone for
        good (actors/lifetime.py). A restarted controller's first call:
        it starts restoring the run."""
        if self._reconstructed:
            self._restoring_run()

    # ------------------------------------------------------------ start

    async def start(self) -> list[dict[str, Any]]:
        """Resume from the newest complete checkpoint (unless fresh), then
        start every camera of the config, together."""
        if self._started is not None:
            return await asyncio.shield(self._started)
        started = self._started = asyncio.get_running_loop().create_future()
        try:
            statuses = await self._start()
        except BaseException as exc:
            started.set_exception(exc)
            started.exception()  # retrieved: those waiting on it have it
            self._started = None  # the next call tries again
            raise
        started.set_result(statuses)
        return statuses

    async def _ensure_started(self) -> None:
        """A controller that Ray restarted restores itself on its first
        call, and every call waits until it has."""
        if self._reconstructed and (self._started is None or not self._started.done()):
            await asyncio.shield(self._restoring_run())

    def _restoring_run(self) -> asyncio.Task[None]:
        """The one restore of a restarted controller, begun at its first call."""
        if self._restore_task is None:
            self._restore_task = asyncio.get_running_loop().create_task(self._restore())
        return self._restore_task

    async def _restore(self) -> None:
        """A restore that fails (a part it needs is itself restarting: the
        sink after a node loss, say) is tried again until it works."""
        log.warning("controller restarted: restoring from the newest checkpoint")
        delay = 0.5
        while True:
            try:
                await self.start()
                return
            except Exception:
                log.exception("restoring the run failed; trying again in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _start(self) -> list[dict[str, Any]]:
        async with self._lock:
            if self._fresh:
                await asyncio.to_thread(self._store.delete_all)
                await asyncio.to_thread(self._rule_store.clear)
                manifest = None
            else:
                manifest = await asyncio.to_thread(self._store.latest)
                await self._load_rules()
            self._initial = await asyncio.to_thread(self._load, manifest)
            self._resumed_from = manifest.checkpoint_id if manifest is not None else None
            self._next_id = await asyncio.to_thread(self._store.next_id)
            topology = manifest.topology if manifest is not None else {}
            # The run names what outputs leave behind: kept across resumes,
            # so a resume rewinds the files of the run it resumes.
            self._output_run = str(
                topology.get("output_run") or f"{stable_id(self._run_id):016x}"[:12]
            )
            await self._start_outputs(int(topology.get("shards", 0)))
            if self._reconstructed:
                statuses = await self._adopt()
            else:
                statuses = await self._launch_all()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch_loop()),
            loop.create_task(self._checkpoint_loop()),
        ]
        if self._spare is None:
            self._start_spare()
        if self._reconstructed:  # a restart of this actor is a row too
            self._note_restart(
                "controller",
                "controller",
                f"controller lost; restored from checkpoint {self._resumed_from}",
                time.monotonic() - self._born,
            )
            await self._write_restart_letters()
        return list(statuses)

    async def _load_rules(self) -> None:
        """The rules last set through the API, if any, before any shard is
        made: a resumed run and a restarted controller run them, not the
        config's. Rules this config can no longer run are refused whole
        (the config's are in force, and the log says why)."""
        stored = await asyncio.to_thread(self._rule_store.load)
        if stored is None:
            return
        problems = self.config.rule_problems(stored)
        if problems:
            log.warning("alert rules set through the API not used: %s", "; ".join(problems))
            return
        self._rules = stored

    async def _launch_all(self) -> list[dict[str, Any]]:
        """A new run's parts, from what it resumes from (or nothing)."""
        self.shards = [self._new_shard(i, self._initial[0][i]) for i in range(self._n_shards)]
        # All processes start together: each waits for a worker to spawn
        # and import its libraries (seconds), so one after another the
        # first cameras of a large config would finish files before the
        # last began.
        n = len(self.config.cameras)
        spawned = [(c, self._spawn(c, self._initial[1].get(c.id), n)) for c in self.config.cameras]
        await asyncio.gather(*(s.ready.remote() for s in self.shards))
        self._watch_shared_parts()
        await self._record_cameras(list(self.config.cameras))
        external = await asyncio.to_thread(self._external_states, self._resumed_from)
        await self._renew_externals(list(self.config.external.sources), external, set())
        await asyncio.gather(*(self._register(c) for c, _ in spawned))
        return list(await asyncio.gather(*(self._begin(c, a) for c, a in spawned)))

    def _watch_shared_parts(self) -> None:
        for i, shard in enumerate(self.shards):
            self._watch(("shard", str(i)), shard)
        self._watch(("hub", "hub"), self.hub)
        if self._sink is not None:
            self._watch(("sink", "sink"), self._sink)
        for name, output in self._outputs.items():
            self._watch(("output", name), output)

    async def _start_outputs(self, shards_before: int) -> None:
        """One actor per ``outputs:`` entry (those that outlived a restarted
        controller are kept), each ready before any shard sends to it (a bad
        entry fails the start with its own error). On a resume, every
        shard's stream goes back to the checkpoint resumed from: what the
        run wrote after it is made again."""
        found = await asyncio.to_thread(parts_of, self._run_id) if self._reconstructed else {}
        for cfg in self.config.outputs:
            name = cfg.label
            kept = found.get(f"output_{name}", [])
            _kill(kept[1:])
            if name not in self._outputs:
                self._outputs[name] = (
                    kept[0]
                    if kept
                    else OutputActor.options(**self._detached(f"output_{name}")).remote(
                        cfg, self.config.storage.root, self._output_run, owner=self._me
                    )
                )
        described = await asyncio.gather(*(o.ready.remote() for o in self._outputs.values()))
        self._output_kinds = {d["name"]: frozenset(d["kinds"]) for d in described}
        if not self._reconstructed:
            streams = [f"s{i}" for i in range(max(self._n_shards, shards_before))]
            await asyncio.gather(
                *(
                    o.rewind.remote(stream, self._resumed_from)
                    for o in self._outputs.values()
                    for stream in streams
                )
            )

    async def _to_outputs(self, tables: dict[str, Any], version: int) -> None:
        """What the controller itself makes (camera metadata, restart
        records) to the outputs that take it, durable before it returns:
        the ``controller`` stream, flushed under ``version`` (ms), so every
        call leaves its own files."""
        for name, output in self._outputs.items():
            kinds = self._output_kinds.get(name, frozenset())
            wanted = {k: t for k, t in tables.items() if k in kinds}
            if not wanted:
                continue
            for kind, table in wanted.items():
                await output.write.remote(kind, table, "controller")
            await output.flush_epoch.remote("controller", version)

    async def _adopt(self) -> list[dict[str, Any]]:
        """A restarted controller's start: the parts that outlived it roll
        back in place to the newest complete checkpoint, as after a sink
        loss (everything after it is made again, identically); parts lost
        with it are made again from the checkpoint. Cameras added or
        updated while the run went keep what they had become."""
        # Found again on every try: a failed one may have made some.
        found = await asyncio.to_thread(parts_of, self._run_id)
        found.pop("hub", None)  # taken when this actor was made
        self._spare = self._spare_ready = None  # found again below
        self._plan = HostPlan(self.config.pipeline.cameras_per_process)
        self._hosts = {}
        if self._sink is not None:  # lost with the controller's node, say
            await _until_back(lambda: self._sink.epoch.remote())
        self.shards = []
        kept_shards = 0
        for i in range(self._n_shards):
            same = found.pop(f"shard{i}", [])
            kept_shards += bool(same)
            self.shards.append(same[0] if same else self._new_shard(i, None))
            _kill(same[1:])
        configs = {c.id: c for c in self.config.cameras}
        survivors = await self._adopt_cameras(found.pop("camera", []), configs)
        for leftover in found.values():  # shards of more shards than now
            _kill(leftover)
        self._cameras.update(configs)
        for camera_id, (n, link) in survivors.items():
            self._install(configs[camera_id], link, n)
        await asyncio.gather(*(self._nodes.found_on(c, a) for c, (_, a) in survivors.items()))
        # The shards' registered incarnations: a camera lost with the
        # controller is numbered after its last, never as one in flight.
        registered = await asyncio.gather(*(_answer(s.senders.remote()) for s in self.shards))
        for senders in registered:
            for camera_id, sender in (senders or {}).items():
                n = max(self._incarnation.get(camera_id, -1), _incarnation_of(sender))
                self._incarnation[camera_id] = n
        await asyncio.gather(*(s.ready.remote() for s in self.shards))
        # Shards that outlived it run the rules in force (a change it stored
        # but did not get to apply included); the same rules change nothing.
        await asyncio.gather(
            *(s.set_alert_rules.remote(list(self._rules.rules)) for s in self.shards)
        )
        self._watch_shared_parts()
        cameras = list(configs.values())
        await self._record_cameras(cameras)
        log.warning(
            "controller restarted: %s of %s cameras and %s of %s shards outlived it",
            len(survivors),
            len(cameras),
            kept_shards,
            self._n_shards,
        )
        await self._roll_back(
            list(range(self._n_shards)), cameras, None, set(configs) - set(survivors)
        )
        return [self._last_status.get(c.id, {"camera_id": c.id}) for c in cameras]

    async def _adopt_cameras(
        self, hosts: list[Any], configs: dict[str, CameraConfig]
    ) -> dict[str, tuple[int, CameraLink]]:
        """The cameras found running in ``hosts`` (a restarted controller's
        start): each camera's newest incarnation, by camera id, entered in
        the plan as found; an older one still running is removed from its
        process, and a process left with none ends (an idle one stays the
        spare). ``configs`` takes the cameras' configs as they are now."""
        answers: list[list[CameraIdentity] | None] = await asyncio.gather(
            *(_answer(h.identity.remote()) for h in hosts)
        )
        survivors: dict[str, tuple[int, int, CameraLink]] = {}
        for index, (host, identities) in enumerate(zip(hosts, answers, strict=True)):
            if identities is None:
                _kill([host])
                continue
            if not identities:
                if self._spare is None:
                    self._spare = host  # an idle spare: still the spare
                    self._spare_ready = asyncio.ensure_future(host.ready.remote())
                else:
                    _kill([host])
                continue
            for identity in identities:
                cfg = identity.camera
                n = _incarnation_of(identity.sender)
                link = CameraLink(host, cfg.id)
                kept = survivors.get(cfg.id)
                if kept is not None and kept[0] >= n:
                    self._quietly(link.remove.remote())
                    continue
                if kept is not None:
                    self._quietly(kept[2].remove.remote())
                survivors[cfg.id] = (n, index, link)
                configs[cfg.id] = cfg
        held: dict[int, list[str]] = {}
        for camera_id, (_, index, _) in survivors.items():
            held.setdefault(index, []).append(camera_id)
        for index, host in enumerate(hosts):
            if answers[index] and index not in held:
                _kill([host])
        for index, camera_ids in held.items():
            host_id = self._plan.found(camera_ids, placement_key(configs[camera_ids[0]]))
            self._hosts[host_id] = hosts[index]
        return {c: (n, link) for c, (n, _, link) in survivors.items()}

    def _load(
        self, manifest: Manifest | None
    ) -> tuple[list[AggregatorState | None], dict[str, CameraState]]:
        """The shard and camera states of ``manifest``, re-cut for this run's
        shards and routing (the checkpoint may have been written by
        another number of shards)."""
        if manifest is None:
            return [None] * self._n_shards, {}
        n = manifest.checkpoint_id
        saved = [
            self._store.read_part(n, "shards", part) for part in self._store.part_ids(n, "shards")
        ]
        states: list[AggregatorState | None] = (
            list(
                resplit(
                    [s for s in saved if isinstance(s, AggregatorState)],
                    self._n_shards,
                    self._route,
                )
            )
            or [None] * self._n_shards
        )
        wanted = {c.id for c in self.config.cameras}
        cameras: dict[str, CameraState] = {}
        for camera_id in self._store.part_ids(n, "cameras"):
            if camera_id in wanted:
                state = self._store.read_part(n, "cameras", camera_id)
                if isinstance(state, CameraState):
                    cameras[camera_id] = state
        log.warning(
            "resuming from checkpoint %s (%s shards then, %s now, %s cameras)",
            n,
            len(saved),
            self._n_shards,
            len(cameras),
        )
        return states, cameras

    @property
    def _route(self) -> Any:
        sites = (
            {c.id: c.site for c in self.config.cameras}
            | {c.id: c.site for c in self._cameras.values()}
            | {s.id: s.site for s in self.config.external.sources}
        )
        return shard_router(self._n_shards, sites, self._group_specs)

    def _new_shard(self, index: int, state: AggregatorState | None) -> Any:
        storage = self.config.storage
        return AggregatorActor.options(
            **self._detached(f"shard{index}"), **shard_options(self.config.placement)
        ).remote(
            index,
            *self._window_args,
            self._groups,
            self._sink,
            self.hub,
            storage.root,
            storage.keep_checkpoints,
            state,
            owner=self._me,
            outputs=list(self._outputs.values()),
            alert_rules=self._rules.rules,
            forecast=self.config.forecast.settings(self.config.windows.sizes_s),
        )

    def _shard_index(self, camera: CameraConfig) -> int:
        return int(self._route(camera.id))

    def _shard_of(self, camera: CameraConfig) -> Any:
        return self.shards[self._shard_index(camera)]

    # ------------------------------------------------------------ cameras

    async def add_camera(self, cfg: CameraConfig) -> dict[str, Any]:
        """A new camera, its config checked once where it entered (the API)."""
        await self._ensure_started()
        async with self._lock:
            if cfg.id in self._actors:
                raise ValueError(f"camera {cfg.id!r} exists already")
            await self._record_cameras([cfg])
            return await self._launch(cfg, None, len(self._cameras) + 1)

    async def _record_cameras(
        self, cameras: list[CameraConfig], removed: tuple[str, ...] = ()
    ) -> None:
        """The warehouse's cameras tables follow the topology, so analysts
        can group rows by site and tags and see each camera's lines."""
        if not (cameras or removed):
            return
        version = int(time.time() * 1000)
        if self._sink is not None:
            await self._sink.write_cameras.remote(cameras, version, list(removed))
        if any(self._output_kinds.get(n, frozenset()) & CAMERA_KINDS for n in self._outputs):
            try:
                await self._to_outputs(camera_tables(cameras, version, removed), version)
            except RayActorError as exc:
                # An output restarting: the camera is added all the same; the
                # next change of the topology records every camera it names.
                log.warning("camera metadata not sent to the outputs: %r", exc)

    async def _launch(
        self, cfg: CameraConfig, state: CameraState | None, cameras: int
    ) -> dict[str, Any]:
        actor = self._spawn(cfg, state, cameras)
        await self._register(cfg)
        return await self._begin(cfg, actor)

    def _spawn(
        self, cfg: CameraConfig, state: CameraState | None, cameras: int, lost: bool = False
    ) -> Any:
        """Create the camera's next incarnation in a process with room for
        it (of its placement key), or in a new one, which starts (seconds)
        while the caller does other work. It sends nothing before
        ``_begin``. Placing is synchronous, so cameras spawned together fill
        the same new process. A new process goes to the least loaded node
        the camera may run on (actors/placement.py); a camera joining a
        process counts on that process's node. ``lost``: its last process
        was lost, maybe with its node, so processes on that node are passed
        over when another node may run it."""
        n = self._next_incarnation(cfg.id)
        self._cameras[cfg.id] = cfg
        self._release(cfg.id)  # out of sync otherwise: it is placed afresh
        avoid = self._hosts_on(self._nodes.passed_over(cfg.id, cfg.placement)) if lost else set()
        host_id, new = self._plan.place(cfg.id, placement_key(cfg), avoid)
        if new:
            share = min(self._plan.capacity, max(1, cameras))
            self._hosts[host_id] = CameraHost.options(
                num_cpus=CAMERA_CPUS * share,
                runtime_env=CAMERA_RUNTIME_ENV,
                **self._detached("camera"),
                **self._nodes.place(cfg.id, cfg.placement, lost),
            ).remote(self._detector_app, owner=self._me)
        else:
            peer = min(self._plan.cameras_of(host_id) - {cfg.id})
            self._nodes.join(cfg.id, peer)
        host = self._hosts[host_id]
        # Any call on the camera waits in the host until this has arrived.
        host.add.remote(
            cfg,
            self.config.tracker,
            self._shard_of(cfg),
            f"{cfg.id}#{n}",
            self._frames_in_flight(cameras),
            state,
        )
        link = CameraLink(host, cfg.id)
        self._install(cfg, link, n)
        return link

    def _hosts_on(self, node_id: str | None) -> set[str]:
        """The processes placed on ``node_id`` (none when it is not known)."""
        if node_id is None:
            return set()
        return {
            host_id
            for host_id, cameras in self._plan.hosts().items()
            if any(self._nodes.node_of(c) == node_id for c in cameras)
        }

    def _quietly(self, ref: Any) -> None:
        """A call whose answer nobody needs (a camera leaving a process that
        may be lost), collected so that its failure is not reported."""
        task = asyncio.get_running_loop().create_task(_collect(ref))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _release(self, camera_id: str, lost: bool = False, told: bool = False) -> None:
        """``camera_id`` leaves its process (told so unless ``told`` already,
        not waited for: it may be lost); with ``lost`` (the camera died or stopped answering) no
        camera is placed in that process again. A process left empty ends."""
        host_id = self._plan.host_of(camera_id)
        if host_id is None:
            return
        host = self._hosts[host_id]
        if lost:
            self._plan.close(host_id)
        if not told:
            self._quietly(host.remove.remote(camera_id))
        if self._plan.release(camera_id) is not None:
            self._hosts.pop(host_id, None)
            _kill([host])

    def _next_incarnation(self, camera_id: str) -> int:
        return self._incarnation.get(camera_id, -1) + 1

    def _install(self, cfg: CameraConfig, actor: Any, incarnation: int) -> None:
        """``actor`` is camera ``cfg`` from now on, as ``incarnation``
        (its sender id, which its shard registers), watched for its death."""
        self._incarnation[cfg.id] = incarnation
        self._actors[cfg.id] = actor
        self._watch(("camera", cfg.id), actor)

    async def _register(self, cfg: CameraConfig) -> None:
        """The camera's current incarnation is an input of its shard (earlier
        ones are fenced off from then on). Every camera of a shard registers
        before any starts: a shard's watermark is the lowest of its inputs',
        and one not yet registered would find its first windows closed."""
        sender = f"{cfg.id}#{self._incarnation[cfg.id]}"
        await self._shard_of(cfg).register.remote(cfg.id, sender, cfg.site, cfg.tags)

    async def _begin(self, cfg: CameraConfig, actor: Any) -> dict[str, Any]:
        """Start a registered incarnation."""
        try:
            status = await asyncio.wait_for(actor.start.remote(), timeout=self._start_timeout_s)
        except RayActorError as exc:
            # Lost while starting: its watcher restores it (once the lock
            # this start holds is free).
            status = {"camera_id": cfg.id, "state": "restoring", "detail": repr(exc), "totals": []}
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

    def _frames_in_flight(self, cameras: int) -> int:
        """Enough for the cameras together to keep two detector batches
        queued, so the model never waits out ``batch_wait_timeout_s`` for
        a batch to fill (one camera alone sends whole batches, two in
        flight); at least one request's worth, so requests stay few; no
        more, as each frame in flight adds latency and object-store pages
        that every camera process ends up mapping (8 cameras with 8 frames
        each held ~8 MB more per camera than with 4, for no more frames/s).
        Set when a camera starts, from the cameras running then."""
        cameras = max(1, cameras)
        share = -(-2 * self.config.detector.max_batch_size // cameras)  # ceil
        return min(MAX_FRAMES_IN_FLIGHT, max(MIN_FRAMES_PER_REQUEST, share))

    async def remove_camera(self, camera_id: str) -> dict[str, Any]:
        await self._ensure_started()
        async with self._lock:
            return await self._remove(camera_id)

    async def _remove(self, camera_id: str) -> dict[str, Any]:
        actor = self._actors.pop(camera_id, None)
        if actor is None:
            raise KeyError(camera_id)
        self._unwatch(("camera", camera_id))
        try:
            # Its neighbours in the process run on.
            status = await asyncio.wait_for(actor.remove.remote(), timeout=10)
        except (RayActorError, TimeoutError, CameraNotHosted):
            status = {**self._last_status.get(camera_id, {}), "state": "stopped"}
        self._release(camera_id, told=True)
        self._nodes.forget(camera_id)
        cfg = self._cameras.pop(camera_id)
        with contextlib.suppress(RayActorError):
            await self._shard_of(cfg).remove.remote(camera_id)
        self._last_status.pop(camera_id, None)
        self._camera_states.pop(camera_id, None)
        if not self._stopping:
            await self._record_cameras([], (camera_id,))
        return status

    async def update_camera(self, cfg: CameraConfig) -> dict[str, Any]:
        """New lines, zones or settings for a running camera.

        The camera's tracker state is carried into the new counters, and
        counters that keep their id keep their memory, so an update never
        double counts a track that was mid-crossing.
        """
        await self._ensure_started()
        async with self._lock:
            actor = self._actors.get(cfg.id)
            if actor is None:
                raise KeyError(cfg.id)
            status = await actor.update.remote(cfg)
            self._cameras[cfg.id] = cfg
            await self._record_cameras([cfg])
            return status

    # ------------------------------------------------------------ checkpoints

    async def _checkpoint_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._interval_s)
            if self._stopping:
                return
            async with self._lock:
                if not self._stopping:
                    await self._checkpoint()

    async def checkpoint(self, final: bool = False) -> dict[str, Any]:
        """Take a checkpoint now (operators, tests); see ``status``."""
        await self._ensure_started()
        async with self._lock:
            ok = await self._checkpoint(final)
        return {"ok": ok, **self._cp}

    async def _checkpoint(self, final: bool = False) -> bool:
        """Steps 1 to 4 of the module docstring; the lock is held."""
        n = self._next_id
        self._next_id += 1
        t0 = time.monotonic()
        cameras = [*self._actors.values(), *self._externals.values()]
        fed = {self._shard_index(c) for c in self._cameras.values()} | {
            int(self._route(s)) for s in self._externals
        }
        try:
            # Step 1: every camera cuts Barrier(n); shards without cameras
            # cut it alone.
            await asyncio.wait_for(
                asyncio.gather(
                    *(a.barrier.remote(n, final) for a in cameras),
                    *(s.cut_alone.remote(n) for i, s in enumerate(self.shards) if i not in fed),
                ),
                self._checkpoint_timeout_s,
            )
            # Step 3: each shard has aligned, written and flushed.
            left = max(1.0, self._checkpoint_timeout_s - (time.monotonic() - t0))
            written = await asyncio.wait_for(
                asyncio.gather(*(s.checkpoint_done.remote(n) for s in self.shards)), left
            )
            hub_seq = await asyncio.wait_for(self.hub.last_seq.remote(), 10)
            parts = tuple(PartInfo(**p) for shard_parts in written for p in shard_parts)
            manifest = Manifest(n, time.time(), parts, self._topology(hub_seq), final)
            # Step 4: the manifest, last.
            await asyncio.to_thread(self._store.complete, manifest)
        except Exception as exc:
            self._cp["failed"] += 1
            self._cp["failing"] = True
            self._cp["last_error"] = f"checkpoint {n}: {type(exc).__name__}: {exc}"[:500]
            self._m_cp_failures.inc()
            log.warning("checkpoint %s abandoned: %r", n, exc)
            for shard in self.shards:
                shard.abort.remote(n)
            return False
        for ext in self._externals.values():
            ext.committed.remote(n)  # what they took before it is safe now
        duration = time.monotonic() - t0
        size = sum(p.bytes for p in manifest.parts)
        self._base_id = n
        self._cp.update(
            completed=self._cp["completed"] + 1,
            last_id=n,
            last_completed_at=time.time(),
            last_duration_s=round(duration, 4),
            last_bytes=size,
            failing=False,
        )
        self._durations.append(round(duration, 4))
        del self._durations[:-200]
        self._m_cp_duration.observe(duration)
        self._m_cp_bytes.set(size)
        self._m_cp_age.set(0.0)
        try:
            await asyncio.to_thread(self._store.prune)
        except Exception as exc:  # the next checkpoint prunes again
            log.warning("pruning checkpoints failed: %r", exc)
        if self._unsent:  # restart records a lost sink took with it
            await self._write_restart_letters()
        return True

    def _topology(self, hub_seq: int) -> dict[str, Any]:
        return {
            "shards": len(self.shards),
            "cameras": {
                cid: {"shard": self._shard_index(cfg), "incarnation": self._incarnation[cid]}
                for cid, cfg in sorted(self._cameras.items())
            },
            "hub_last_seq": hub_seq,
            "output_run": self._output_run,
        }

    # ------------------------------------------------------------ recovery

    def _watch(self, key: tuple[str, str], actor: Any) -> None:
        """Keep one call pending on ``actor``; it fails the moment the actor
        dies, and the part is restored."""
        self._unwatch(key)
        self._watchers[key] = asyncio.get_running_loop().create_task(self._watch_one(key, actor))

    def _unwatch(self, key: tuple[str, str]) -> None:
        task = self._watchers.pop(key, None)
        if task is not None:
            task.cancel()

    async def _watch_one(self, key: tuple[str, str], actor: Any) -> None:
        kind, name = key
        try:
            await actor.alive.remote()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._stopping or not isinstance(exc, RayActorError):
                return
            cause = f"{kind} {name} lost ({type(exc).__name__})"
            log.warning("%s", cause)
            self._watchers.pop(key, None)
            asyncio.get_running_loop().create_task(self._on_death(kind, name, actor, cause))

    async def _on_death(self, kind: str, name: str, actor: Any, cause: str) -> None:
        if kind == "camera":
            cfg = self._cameras.get(name)
            if cfg is not None and self._actors.get(name) is actor:
                await self._recover_until_done(
                    [self._shard_index(cfg)], cause, {name: "camera"}, dead={name}
                )
        elif kind == "external":
            if self._externals.get(name) is actor:
                i = int(self._route(name))
                await self._recover_until_done([i], cause, {name: "external"}, dead={name})
        elif kind == "shard":
            i = int(name)
            if i < len(self.shards) and self.shards[i] is actor:
                await self._recover_until_done([i], cause, {f"shard:{i}": "shard"}, {i})
        elif kind == "sink":
            # Ray restarts the sink; rows it held in memory are gone, so
            # every region goes back to the newest checkpoint.
            await _until_back(lambda: self._sink.epoch.remote())
            self._watch(("sink", "sink"), self._sink)
            await self._recover_until_done(range(len(self.shards)), cause, {"sink": "sink"})
        elif kind == "output":
            # As the sink: Ray restarts it, and what it held is made again.
            output = self._outputs[name]
            await _until_back(lambda: output.epoch.remote())
            self._watch(("output", name), output)
            await self._recover_until_done(
                range(len(self.shards)), cause, {f"output:{name}": "output"}
            )
        elif kind == "hub":
            # Ray restarts the hub; it numbers on after its reserved block.
            await _until_back(lambda: self.hub.last_seq.remote())
            self._watch(("hub", "hub"), self.hub)
            self._note_restart("hub", "hub", cause, 0.0)
            await self._write_restart_letters()

    async def _recover_until_done(
        self,
        shard_indices: Iterable[int],
        cause: str,
        parts: dict[str, str],
        replace_shards: set[int] | None = None,
        dead: set[str] | None = None,
    ) -> None:
        """A recovery that fails (the store unreachable, a new actor lost
        while starting) is tried again until it works: the region's cameras
        are ``restoring`` meanwhile, and nothing they would count is lost."""
        indices = list(shard_indices)
        region = {c.id for c in self._cameras.values() if self._shard_index(c) in indices}
        lost = set(dead or ()) & region
        self._restoring.update(region)
        self._lost.update(lost)
        try:
            await self._recover_retrying(indices, cause, parts, replace_shards, dead or set())
        finally:
            self._restoring.subtract(region)
            self._restoring = +self._restoring  # drops the zeros
            self._lost.subtract(lost)
            self._lost = +self._lost

    async def _recover_retrying(
        self,
        indices: list[int],
        cause: str,
        parts: dict[str, str],
        replace_shards: set[int] | None,
        dead: set[str],
    ) -> None:
        delay = 0.5
        while not self._stopping:
            try:
                await self._recover(indices, cause, parts, replace_shards, dead)
                return
            except Exception:
                log.exception("recovery after %s failed; trying again in %.1f s", cause, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                # A shard created by the failed try may be half started.
                replace_shards = set(indices) if replace_shards else None

    async def _recover(
        self,
        shard_indices: Iterable[int],
        cause: str,
        parts: dict[str, str],
        replace_shards: set[int] | None = None,
        dead: set[str] | None = None,
    ) -> None:
        """Roll the regions of ``shard_indices`` back to the newest complete
        checkpoint (module docstring, Recovery); ``dead`` names cameras known
        lost, which need a new process."""
        t0 = time.monotonic()
        async with self._lock:
            if self._stopping:
                return
            indices = sorted(set(shard_indices))
            region = {
                i: [c for c in self._cameras.values() if self._shard_index(c) == i] for i in indices
            }
            cameras = [cfg for cams in region.values() for cfg in cams]
            base = await self._roll_back(indices, cameras, replace_shards, dead or set())
        seconds = time.monotonic() - t0
        for part, kind in parts.items():
            self._note_restart(part, kind, f"{cause}; restored from checkpoint {base}", seconds)
        await self._write_restart_letters()

    async def _roll_back(
        self,
        indices: list[int],
        cameras: list[CameraConfig],
        replace_shards: set[int] | None,
        dead: set[str],
    ) -> int | None:
        """``_recover``'s work, under its lock; returns the checkpoint the
        region went back to (None: the start)."""
        self._rolling.update(indices)
        try:
            return await self._roll_back_locked(indices, cameras, replace_shards, dead)
        finally:
            self._rolling.difference_update(indices)

    async def _roll_back_locked(
        self,
        indices: list[int],
        cameras: list[CameraConfig],
        replace_shards: set[int] | None,
        dead: set[str],
    ) -> int | None:
        base = self._base_id
        shard_states, camera_states = await asyncio.to_thread(
            self._base_states, base, indices, [c.id for c in cameras]
        )
        for i in indices:
            if replace_shards and i in replace_shards:
                with contextlib.suppress(Exception):
                    ray.kill(self.shards[i], no_restart=True)
                self.shards[i] = self._new_shard(i, None)
                self._watch(("shard", str(i)), self.shards[i])
        # Fence: every old incarnation has stopped sending before the
        # shard restores. The live ones rewind in place; the dead are
        # replaced by new processes, which start meanwhile.
        renewed = await asyncio.gather(
            *(self._renew(cfg, camera_states.get(cfg.id), cfg.id in dead) for cfg in cameras)
        )
        external = [s for s in self.config.external.sources if int(self._route(s.id)) in indices]
        external_states = await asyncio.to_thread(self._external_states, base)
        fenced = await self._fence_externals(external, external_states, dead)
        await asyncio.gather(
            *(self.shards[i].restore.remote(shard_states[i], base) for i in indices)
        )
        await self._renew_externals(fenced, external_states, dead)
        await asyncio.gather(*(self._register(cfg) for cfg in cameras))
        await asyncio.gather(
            *(self._begin(cfg, actor) for cfg, actor in zip(cameras, renewed, strict=True))
        )
        return base

    # ------------------------------------------------------------ external sources

    def _external_states(self, base: int | None) -> dict[str, ExternalSourceState]:
        """The external sources' states in checkpoint ``base`` (their
        barriers' snapshots, stored beside the cameras')."""
        if base is None:
            return {}
        saved = set(self._store.part_ids(base, "cameras"))
        states = {}
        for src in self.config.external.sources:
            if src.id in saved:
                state = self._store.read_part(base, "cameras", src.id)
                if isinstance(state, ExternalSourceState):
                    states[src.id] = state
        return states

    async def _fence_externals(
        self,
        sources: list[ExternalSourceConfig],
        states: dict[str, ExternalSourceState],
        dead: set[str],
    ) -> list[ExternalSourceConfig]:
        """Before their shards restore: each live source rewinds as its next
        incarnation (sending nothing more as the old one); a dead or
        unanswering one is replaced afterwards (``_renew_externals``)."""
        for src in sources:
            actor = self._externals.get(src.id)
            if actor is None:
                continue
            n = self._next_incarnation(src.id)
            try:
                if src.id in dead:
                    raise TimeoutError("known lost")
                await asyncio.wait_for(
                    actor.rewind.remote(
                        self.shards[int(self._route(src.id))], f"{src.id}#{n}", states.get(src.id)
                    ),
                    REWIND_TIMEOUT_S,
                )
            except (RayActorError, TimeoutError) as exc:
                log.warning("external source %s did not rewind (%r): replacing it", src.id, exc)
                self._unwatch(("external", src.id))
                _kill([self._externals.pop(src.id)])
            else:
                self._incarnation[src.id] = n
        return sources

    async def _renew_externals(
        self,
        sources: list[ExternalSourceConfig],
        states: dict[str, ExternalSourceState],
        dead: set[str],
    ) -> None:
        """Register each source's incarnation with its shard and start it;
        a source without a live actor gets a new one from its state."""
        for src in sources:
            shard = self.shards[int(self._route(src.id))]
            actor = self._externals.get(src.id)
            if actor is None:
                n = self._next_incarnation(src.id)
                actor = ExternalSourceActor.options(**self._detached("external")).remote(
                    src, shard, f"{src.id}#{n}", states.get(src.id), owner=self._me
                )
                self._incarnation[src.id] = n
                self._externals[src.id] = actor
                self._watch(("external", src.id), actor)
            await shard.register.remote(src.id, f"{src.id}#{self._incarnation[src.id]}", src.site)
            await actor.resume.remote()

    async def post_events(
        self, source_id: str, events: list[ExternalCount], key: str | None = None
    ) -> dict[str, Any]:
        """External events from the API (checked where they entered)."""
        await self._ensure_started()
        cfg = next((s for s in self.config.external.sources if s.id == source_id), None)
        actor = self._externals.get(source_id)
        if cfg is None or actor is None:
            raise KeyError(source_id)
        if not cfg.api:
            raise ExternalEventError([f"source: {source_id!r} takes no events from the API"])
        check_counters(events, cfg.counters)
        result: dict[str, Any] = await actor.submit.remote(events, key)
        return result

    async def _renew(self, cfg: CameraConfig, state: CameraState | None, dead: bool) -> Any:
        """The camera's next incarnation, restored from ``state``: the same
        process rewound when it answers, else the spare process, else a new
        one (a new process takes seconds to start)."""
        actor = self._actors.get(cfg.id)
        if actor is not None and not dead:
            n = self._next_incarnation(cfg.id)
            try:
                await asyncio.wait_for(
                    actor.rewind.remote(self._shard_of(cfg), f"{cfg.id}#{n}", state),
                    REWIND_TIMEOUT_S,
                )
            except (RayActorError, TimeoutError, CameraNotHosted) as exc:
                log.warning("camera %s did not rewind (%r): replacing it", cfg.id, exc)
            else:
                self._incarnation[cfg.id] = n
                return actor
        self._actors.pop(cfg.id, None)
        self._unwatch(("camera", cfg.id))
        self._release(cfg.id, lost=True)
        # The spare runs wherever Ray put it: not for a camera bound to
        # the nodes of its site.
        spare = None if cfg.placement.constrained else await self._take_spare(cfg, state)
        if spare is not None:
            await self._nodes.found_on(cfg.id, spare)
            return spare
        return self._spawn(cfg, state, len(self._cameras), lost=True)

    # A spare camera process, started and idle, takes over a camera that
    # died: a new process needs seconds to start (Ray Serve's imports), the
    # spare a fraction of one. It reserves no CPU: it uses none until it
    # takes over, and then the dead camera's share is free.

    def _start_spare(self) -> None:
        if self._stopping or not self._cameras or not self._spare_enabled:
            return
        self._spare = CameraHost.options(
            num_cpus=0, runtime_env=CAMERA_RUNTIME_ENV, **self._detached("camera")
        ).remote(self._detector_app, owner=self._me)
        self._spare_ready = asyncio.ensure_future(self._spare.ready.remote())

    async def _take_spare(self, cfg: CameraConfig, state: CameraState | None) -> Any:
        """The spare process holding ``cfg``'s next incarnation, or None (no
        spare ready, or it failed); a new spare starts in its place. The
        spare is a camera process like any other from then on: cameras
        placed later fill it."""
        spare, state_of_spare = self._spare, self._spare_state()
        if state_of_spare != "ready":
            if spare is not None and state_of_spare == "none":
                self._start_spare()  # the spare died while starting
            return None
        self._spare = self._spare_ready = None
        n = self._next_incarnation(cfg.id)
        try:
            await asyncio.wait_for(
                spare.add.remote(
                    cfg,
                    self.config.tracker,
                    self._shard_of(cfg),
                    f"{cfg.id}#{n}",
                    self._frames_in_flight(len(self._cameras)),
                    state,
                ),
                REWIND_TIMEOUT_S,
            )
        except (RayActorError, TimeoutError) as exc:
            log.warning("the spare camera process failed (%r)", exc)
            with contextlib.suppress(Exception):
                ray.kill(spare, no_restart=True)
            return None
        finally:
            self._start_spare()
        key = placement_key(cfg)
        host_id = self._plan.new_host(key)
        self._plan.take(host_id, cfg.id, key)
        self._hosts[host_id] = spare
        link = CameraLink(spare, cfg.id)
        self._install(cfg, link, n)
        return link

    def _base_states(
        self, base: int | None, indices: list[int], cameras: list[str]
    ) -> tuple[dict[int, AggregatorState | None], dict[str, CameraState]]:
        if base is None:
            initial_shards, initial_cameras = self._initial
            return (
                {i: initial_shards[i] for i in indices},
                {c: initial_cameras[c] for c in cameras if c in initial_cameras},
            )
        shards: dict[int, AggregatorState | None] = {}
        for i in indices:
            state = self._store.read_part(base, "shards", str(i))
            shards[i] = state if isinstance(state, AggregatorState) else None
        saved = set(self._store.part_ids(base, "cameras"))
        states: dict[str, CameraState] = {}
        for c in cameras:
            if c in saved:
                state = self._store.read_part(base, "cameras", c)
                if isinstance(state, CameraState):
                    states[c] = state
        return shards, states

    def _note_restart(self, part: str, kind: str, detail: str, seconds: float) -> None:
        self._restarts[part] = self._restarts.get(part, 0) + 1
        self._m_restarts.inc(tags={"part": kind})
        self._recoveries.append(
            {
                "part": part,
                "kind": kind,
                "detail": detail,
                "seconds": round(seconds, 3),
                "at": time.time(),
            }
        )
        # The restart's time in ms is its id: a count would start over with
        # a restarted controller and collapse two restarts into one row.
        now = time.time()
        letter = DeadLetter(part, "restart", detail, now, kind, int(now * 1000))
        self._dead.append(letter)
        self._unsent.append(letter)

    async def _write_restart_letters(self) -> None:
        """Every restart is a row of the warehouse's dead letters. They are
        kept until the sink has made them durable in the same incarnation
        that took them: a sink lost in between (its memory with them) gets
        them again with the next restart's."""
        pending, self._unsent = self._unsent, []
        if (self._sink is None and not self._outputs) or not pending:
            return
        try:
            table = to_arrow(DeadLetter, pending)
            if self._sink is not None:
                epoch = await self._sink.epoch.remote()
                await self._sink.write.remote("dead_letter", table)
                if await self._sink.flush_epoch.remote() != epoch:
                    raise RuntimeError("the warehouse sink restarted while taking them")
            await self._to_outputs({"dead_letter": table}, int(time.time() * 1000))
        except Exception as exc:  # the sink is back later: sent with the next
            log.warning("restart records not written yet: %r", exc)
            self._unsent = pending + self._unsent

    async def _watch_loop(self) -> None:
        """The slow path beside the pending ``alive`` calls: a camera that
        stopped answering is restored too."""
        while not self._stopping:
            await asyncio.sleep(self._health_interval_s)
            if self._cp["last_completed_at"] is not None:
                self._m_cp_age.set(time.time() - self._cp["last_completed_at"])
            for camera_id, actor in list(self._actors.items()):
                if self._stopping or self._lock.locked():
                    break
                try:
                    self._last_status[camera_id] = await asyncio.wait_for(
                        actor.status.remote(), timeout=self._health_interval_s * 5
                    )
                except (RayActorError, GetTimeoutError, TimeoutError, CameraNotHosted) as exc:
                    cfg = self._cameras.get(camera_id)
                    if cfg is not None and self._actors.get(camera_id) is actor:
                        await self._recover_until_done(
                            [self._shard_index(cfg)],
                            f"camera {camera_id} not answering ({type(exc).__name__})",
                            {camera_id: "camera"},
                            dead={camera_id},
                        )
            await self._report_camera_states()
            for shard in list(self.shards):
                with contextlib.suppress(RayActorError):
                    await shard.tick.remote()

    async def _report_camera_states(self) -> None:
        """Every camera's state, as its last status shows it, to its shard
        (``camera`` alert rules; docs/alerts.md, "Camera states"). Sent on
        every health check, changed or not: a state that holds lets event
        time pass on the shard, and a shard restored from before a change
        hears of it again, with the start the shard gave it then (kept
        here), so its alert is the same alert. A restarted controller
        keeps none: the shards' restored states have them, and a repeat of
        the same state changes nothing."""
        by_shard: dict[int, dict[str, tuple[str, float | None]]] = {}
        for camera_id, cfg in list(self._cameras.items()):
            lost = self._lost[camera_id] > 0
            if self._restoring[camera_id] > 0 and not lost:
                continue  # rolled back with its shard: its status is of before
            state, began = observed_state(self._last_status.get(camera_id, {}), lost)
            kept = self._camera_states.get(camera_id)
            since = kept[1] if kept is not None and kept[0] == state else began
            by_shard.setdefault(self._shard_index(cfg), {})[camera_id] = (state, since)
        for i, states in by_shard.items():
            if i in self._rolling:
                continue  # its restore must not race a state: told next time
            try:
                answer = await asyncio.wait_for(
                    self.shards[i].camera_states.remote(states), self._health_interval_s * 5
                )
            except (RayActorError, TimeoutError):
                continue  # restored meanwhile: reported again next time
            for camera_id, since in answer.items():
                self._camera_states[camera_id] = (states[camera_id][0], since)

    # ------------------------------------------------------------ answers

    async def status(self) -> dict[str, Any]:
        await self._ensure_started()
        self._keep_off_model()
        cameras = []
        for camera_id, actor in list(self._actors.items()):
            try:
                s = await asyncio.wait_for(actor.status.remote(), timeout=5)
                self._last_status[camera_id] = s
            except (RayActorError, TimeoutError, CameraNotHosted):
                last = self._last_status.get(camera_id, {})
                s = {"camera_id": camera_id, **last, "state": "unreachable"}
            if self._restoring[camera_id] > 0:
                s = {**s, "state": "restoring"}
            s["restarts"] = self._restarts.get(camera_id, 0)
            cameras.append(s)
        for camera_id in self._cameras.keys() - self._actors.keys():
            last = self._last_status.get(camera_id, {"camera_id": camera_id})
            cameras.append(
                {**last, "state": "restoring", "restarts": self._restarts.get(camera_id, 0)}
            )
        return {
            "cameras": cameras,
            "shards": len(self.shards),
            "checkpoints": self._checkpoint_status(),
            "recoveries": list(self._recoveries[-50:]),
            "spare_camera": self._spare_state(),
            "camera_nodes": self._nodes.placed(),
        }

    def _spare_state(self) -> str:
        """``ready`` (a dead camera is taken over at once), ``starting``,
        or ``none`` (off, the run has not started, or the spare died while
        starting)."""
        ready = self._spare_ready
        if self._spare is None or ready is None:
            return "none"
        if not ready.done():
            return "starting"
        return "ready" if not ready.cancelled() and ready.exception() is None else "none"

    def _checkpoint_status(self) -> dict[str, Any]:
        at = self._cp["last_completed_at"]
        return {
            **self._cp,
            "store": self._store.uri,
            "interval_s": self._interval_s,
            "resumed_from": self._resumed_from,
            "age_s": None if at is None else round(time.time() - at, 3),
            "durations_s": list(self._durations),
        }

    async def wait_files(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Until every camera's source has ended (restored cameras
        included), then close all windows and wait until the warehouse
        holds every row (so a replay's answer can be queried the moment it
        returns)."""
        await self._ensure_started()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            if deadline is not None and time.monotonic() > deadline:
                return await self.status()
            if not self._lock.locked() and await self._all_ended():
                try:
                    async with self._lock:
                        # Again under the lock: a recovery may have begun
                        # meanwhile, and its cameras must run to their end
                        # before every window closes.
                        closed = await self._all_ended()
                        if closed:
                            await self._write_restart_letters()
                            for shard in self.shards:
                                await shard.flush.remote()
                            if self._sink is not None:
                                await self._sink.flush.remote()
                            for output in self._outputs.values():
                                await output.flush.remote()
                    if closed:
                        return await self.status()
                except (RayActorError, RuntimeError) as exc:
                    # A part died while closing: it is restored, and the
                    # files run to their end again from the checkpoint.
                    log.warning("closing the windows was interrupted (%r); waiting again", exc)
            await asyncio.sleep(0.25)

    async def _all_ended(self) -> bool:
        if +self._restoring or self._cameras.keys() - self._actors.keys():
            return False  # a region is being restored
        for camera_id, actor in list(self._actors.items()):
            try:
                s = await asyncio.wait_for(actor.status.remote(), timeout=10)
            except (RayActorError, TimeoutError, CameraNotHosted):
                return False
            self._last_status[camera_id] = s
            if s.get("state") not in ENDED:
                return False
        return True

    async def totals(self) -> list[CountRow]:
        await self._ensure_started()
        rows: list[CountRow] = []
        for shard in self.shards:
            rows.extend(await shard.totals.remote())
        return sorted(rows, key=row_order)

    async def frame_ledgers(self) -> dict[str, dict[str, Any]]:
        """Every camera's frame ledger, from its shard: the exactly-once
        check (docs/checkpoints.md, "Verifying")."""
        await self._ensure_started()
        out: dict[str, dict[str, Any]] = {}
        for shard in self.shards:
            out.update(await shard.frame_ledgers.remote())
        return out

    async def dead_letters(self) -> list[DeadLetter]:
        await self._ensure_started()
        out = list(self._dead)
        for shard in self.shards:
            out.extend(await shard.dead_letters.remote())
        for actor in self._actors.values():
            out.extend(await actor.dead_letters.remote())
        return out

    async def alert_rules(self) -> AlertsConfig:
        """The alert rules in force."""
        await self._ensure_started()
        return self._rules

    async def set_alert_rules(self, rules: AlertsConfig) -> AlertsConfig:
        """Replace the alert rules while running (docs/alerts.md): checked
        against this pipeline's windows and groups (``AlertRulesRefused``
        naming each rule's position), stored (so a restored shard, a new
        one and a restarted controller run them), then applied by every
        shard, where the alerts of rules gone or changed resolve."""
        await self._ensure_started()
        problems = [
            (i, problem)
            for i, rule in enumerate(rules.rules)
            for problem in self.config.rule_problems(AlertsConfig(rules=(rule,)))
        ]
        if problems:
            raise AlertRulesRefused(problems)
        async with self._lock:
            await asyncio.to_thread(self._rule_store.save, rules)
            self._rules = rules
            # A shard lost meanwhile is made again with these rules.
            await asyncio.gather(
                *(s.set_alert_rules.remote(list(rules.rules)) for s in self.shards),
                return_exceptions=True,
            )
        log.info("alert rules set: %s", [r.id for r in rules.rules])
        return rules

    async def hub_handle(self) -> Any:
        return self.hub

    async def shard_handles(self) -> list[Any]:
        await self._ensure_started()
        return list(self.shards)

    async def shard_handle(self, camera_id: str) -> Any:
        """The shard a camera sends to (the shard being restored: its new one)."""
        await self._ensure_started()
        async with self._lock:
            return self._shard_of(self._cameras[camera_id])

    async def camera_handle(self, camera_id: str) -> Any:
        await self._ensure_started()
        if camera_id not in self._actors and camera_id in self._cameras:
            async with self._lock:  # being restored: its new incarnation
                pass
        return self._actors[camera_id]

    async def external_handle(self, source_id: str) -> Any:
        """The external source's actor now (None while it is replaced)."""
        return self._externals.get(source_id)

    async def sink_handle(self) -> Any:
        return self._sink

    async def output_handles(self) -> dict[str, Any]:
        """The output actors by name (``outputs:``)."""
        await self._ensure_started()
        return dict(self._outputs)

    async def shutdown(self, checkpoint: bool = True) -> dict[str, Any]:
        """Stop without losing anything: a final checkpoint (each camera
        stops right after its barrier, every window it closed is written),
        then the cameras go. The cameras table keeps them (a stop is not a
        removal); the next run on the same store resumes from here."""
        final: int | None = None
        async with self._lock:
            self._stopping = True
            for task in self._tasks:
                task.cancel()
            for key in list(self._watchers):
                self._unwatch(key)
            if self._spare is not None:
                with contextlib.suppress(Exception):
                    ray.kill(self._spare, no_restart=True)
                self._spare = self._spare_ready = None
            started = self._started is not None and bool(self.shards)
            if checkpoint and started and await self._checkpoint(final=True):
                final = self._cp["last_id"]
            for camera_id in list(self._actors):
                await self._remove(camera_id)
            for ext in self._externals.values():
                with contextlib.suppress(RayActorError):
                    await ext.stop.remote()
            _kill(self._externals.values())
            self._externals = {}
            # Raw events already received reach the sink; windows still open
            # stay open (a stop is not the end of the input).
            for shard in self.shards:
                with contextlib.suppress(RayActorError):
                    await shard.drain.remote()
            for output in self._outputs.values():
                with contextlib.suppress(RayActorError):
                    await output.close.remote()
            # They would outlive this actor (actors/lifetime.py).
            _kill([*self.shards, self.hub, *self._outputs.values(), *self._hosts.values()])
            self._hosts.clear()
        return {"final_checkpoint": final, "checkpoints": self._checkpoint_status()}


async def _until_back(call: Any, timeout_s: float = 120.0) -> Any:
    """``call()`` awaited until the actor Ray is restarting answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await call()
        except RayActorError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _answer(ref: Any, timeout_s: float = 10.0) -> Any:
    """What an actor answers, or None when it is lost or does not answer."""
    try:
        return await asyncio.wait_for(ref, timeout_s)
    except (RayActorError, TimeoutError):
        return None


async def _collect(ref: Any) -> None:
    with contextlib.suppress(Exception):
        await ref


def _kill(actors: Iterable[Any]) -> None:
    for actor in actors:
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)


def _incarnation_of(sender: str) -> int:
    """``camera#3`` is incarnation 3; a spare's id is none (-1)."""
    _, _, n = sender.rpartition("#")
    return int(n) if n.isdigit() else -1
