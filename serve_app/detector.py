"""The detector as a Ray Serve deployment, batched across every camera.

The model is loaded once per replica. ``detect`` takes one frame (already
resized by the camera) and awaits the batched method, which Serve fills
with frames from all cameras up to ``max_batch_size`` or until
``batch_wait_timeout_s``. A sliced camera's frame arrives as its regions
(``detect_sliced``): each region is one batch item like another camera's
frame, and the frame's regions are merged here before it goes back.
Inference runs in a worker thread so the replica keeps accepting requests
(and forming the next batch) meanwhile.

On CPU the replica reserves cores of its node for the model (``reserve_cores``,
camcount.detectors.affinity): the model is built and run in one thread pinned to them,
the replica's other threads and the node's cameras keep off them.

Overload is a clear signal, not a growing queue: past ``max_queued_requests``
callers get ``BackPressureError`` and decide (a file source waits, a live
source drops frames).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter as Tally
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray import serve
from ray.util import metrics

from actors.placement import node_registry
from camcount.config import DetectorConfig
from camcount.detectors import DetectorSettings, FrameMeta, build_detector
from camcount.detectors.affinity import keep_off, pin_this_thread, supported
from camcount.detectors.base import Frame, InputSpec
from camcount.detectors.detections import Detections
from camcount.detectors.slicing import SliceSettings, merge_detections

_BATCH_BOUNDARIES = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
_LATENCY_BOUNDARIES_S = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]


#: Serve learns of a lost replica at its next health check (10 s apart by
#: default) and only then starts another; every camera waits meanwhile.
#: A check is one small call, so once a second costs nothing.
HEALTH_CHECK_PERIOD_S = 1.0


@serve.deployment(
    name="Detector",
    max_ongoing_requests=32,
    max_queued_requests=64,
    health_check_period_s=HEALTH_CHECK_PERIOD_S,
)
class DetectorDeployment:
    def __init__(self, config: DetectorConfig | Mapping[str, Any]) -> None:
        """``config`` comes checked from ``detector_app``; bound from
        plain data instead (a builder handed a Serve config file's
        ``args``), it is a mapping, checked here, once."""
        cfg = (
            config if isinstance(config, DetectorConfig) else DetectorConfig.model_validate(config)
        )
        settings = DetectorSettings(
            score_threshold=cfg.score_threshold,
            classes=cfg.classes,
            device=cfg.device,
            weights=cfg.weights,
            options=dict(cfg.options),
        )
        cores = self._reserve(cfg)
        # One thread runs the model, so a backend's own threads start (and
        # stay) on the reserved cores and each batch finds the model warm there.
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="camcount-model",
            initializer=pin_this_thread,
            initargs=(cores,),
        )
        self._cores = cores
        self._detector = self._executor.submit(build_detector, cfg.model, settings).result()
        self._infer.set_max_batch_size(cfg.max_batch_size)
        self._infer.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)
        self._batch_sizes: Tally[int] = Tally()
        self._frames = 0
        tags = ("model",)
        self._m_batch = metrics.Histogram(
            "camcount_detector_batch_size",
            "frames per model call",
            boundaries=_BATCH_BOUNDARIES,
            tag_keys=tags,
        )
        self._m_latency = metrics.Histogram(
            "camcount_detector_batch_latency_s",
            "model time per batch",
            boundaries=_LATENCY_BOUNDARIES_S,
            tag_keys=tags,
        )
        self._m_wait = metrics.Histogram(
            "camcount_detector_queue_wait_s",
            "time a frame waited for its batch",
            boundaries=_LATENCY_BOUNDARIES_S,
            tag_keys=tags,
        )
        self._m_frames = metrics.Counter(
            "camcount_detector_frames", "frames detected", tag_keys=tags
        )
        self._tags = {"model": cfg.model}

    @staticmethod
    def _reserve(cfg: DetectorConfig) -> frozenset[int]:
        count = cfg.reserved_cores()
        if not count or not supported():
            return frozenset()
        registry = node_registry()
        cores = registry.reserve(count)
        keep_off(registry.reserved())
        return cores

    def __del__(self) -> None:
        """Serve calls this on a graceful shutdown: the cores are free at
        once (a killed replica's are freed when its pid is found dead)."""
        if getattr(self, "_cores", None):
            node_registry().release()

    def spec(self) -> InputSpec:
        """Input size, colour order and class names, for cameras that must
        prepare frames without loading the model."""
        return self._detector.spec()

    async def detect(self, frame: Frame, meta: FrameMeta) -> Detections:
        return await self._infer((frame, meta, time.monotonic()))

    async def detect_many(self, frames: list[Frame], metas: list[FrameMeta]) -> list[Detections]:
        """Several frames of one camera in one request: each still joins the
        batches formed across cameras, but the per-request cost (routing,
        serialization, the replica's bookkeeping: milliseconds of CPU on
        each side) is paid once for all of them."""
        if len(frames) != len(metas):
            raise ValueError(f"{len(frames)} frames but {len(metas)} metas")
        now = time.monotonic()
        calls = [self._infer((f, m, now)) for f, m in zip(frames, metas, strict=True)]
        return list(await asyncio.gather(*calls))

    async def detect_sliced(
        self, regions: list[list[Frame]], metas: list[list[FrameMeta]], settings: SliceSettings
    ) -> list[Detections]:
        """Frames of one sliced camera, each sent as its regions (the whole
        frame and its tiles, camcount.detectors.slicing): every region is one item of
        the batches formed across cameras, and each frame's regions come
        back merged into the one ``Detections`` the camera counts from."""
        if len(regions) != len(metas) or any(
            len(r) != len(m) for r, m in zip(regions, metas, strict=False)
        ):
            raise ValueError("every frame needs one meta per region")
        now = time.monotonic()
        calls = [
            self._infer((image, meta, now))
            for images, frame_metas in zip(regions, metas, strict=True)
            for image, meta in zip(images, frame_metas, strict=True)
        ]
        found: list[Detections] = list(await asyncio.gather(*calls))
        merged, start = [], 0
        for images in regions:
            merged.append(merge_detections(found[start : start + len(images)], settings))
            start += len(images)
        return merged

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _infer(self, items: list[tuple[Frame, FrameMeta, float]]) -> list[Detections]:
        started = time.monotonic()
        frames = [i[0] for i in items]
        metas = [i[1] for i in items]
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(self._executor, self._detector.detect, frames, metas)
        took = time.monotonic() - started
        n = len(items)
        self._batch_sizes[n] += 1
        self._frames += n
        self._m_batch.observe(n, tags=self._tags)
        self._m_latency.observe(took, tags=self._tags)
        self._m_frames.inc(n, tags=self._tags)
        for _, _, arrived in items:
            self._m_wait.observe(started - arrived, tags=self._tags)
        return out

    def stats(self) -> dict[str, Any]:
        """This replica's batch sizes so far ({size: batches}), the cores
        its model runs on (empty: not pinned) and its node."""
        return {
            "frames": self._frames,
            "batch_sizes": dict(self._batch_sizes),
            "model_cores": sorted(self._cores),
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }


def detector_app(config: DetectorConfig) -> serve.Application:
    """The deployment with every tunable number taken from the config."""
    return DetectorDeployment.options(**deployment_options(config)).bind(config)


def deployment_options(config: DetectorConfig) -> dict[str, Any]:
    """Serve's options for the detector. Replicas go only to nodes that
    declare ``config.resources`` (on a mixed cluster, the GPU nodes say so
    with a custom resource); with ``autoscaling`` their number follows the
    requests in flight instead of staying at ``num_replicas``."""
    actor: dict[str, Any] = {"num_gpus": config.num_gpus, "num_cpus": 1}
    if config.resources:
        actor["resources"] = dict(config.resources)
    options: dict[str, Any] = {
        "max_ongoing_requests": config.max_ongoing_requests,
        "max_queued_requests": config.max_queued_requests,
        "ray_actor_options": actor,
    }
    if config.autoscaling is not None:
        options["autoscaling_config"] = config.autoscaling.serve_options()
    else:
        options["num_replicas"] = config.num_replicas
    return options
