"""Detectors that read a synthetic scene's truth instead of its pixels.

They go through the same ``Detector`` interface as real models (frames in,
boxes out), using the frame's source and index to find the truth, so the
whole pipeline, batching and routing included, is exercised.

``noisy`` degrades the truth with misses, jitter, false positives and class
flips, seeded by (seed, source, frame index): the same frame always gets the
same noise, whatever order or batch it arrives in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camcount.detectors.base import Detector, DetectorSettings, Frame, FrameMeta
from camcount.detectors.detections import Detections
from camcount.errors import DetectorError
from camcount.scenes.synthetic import CLASS_NAMES, load_truth, source_seed, truth_path


class OracleDetector(Detector):
    """Exact boxes from the truth file.

    Option ``latency_s`` makes every call take at least that long, standing
    in for a real model's cost when sizing queues and batches.
    """

    name = "oracle"
    class_names = CLASS_NAMES
    input_size = (64, 36)  # pixels are never looked at: keep the frames tiny
    confidence = 0.9

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        super().__init__(settings)
        self._truth: dict[str, list[Any]] = {}
        self.latency_s = float(self.settings.options.get("latency_s", 0.0))

    def _frames_of(self, source: str) -> list[Any]:
        if source not in self._truth:
            path = truth_path(source)
            if not Path(path).exists():
                raise DetectorError(
                    f"{self.name} detector needs the truth file {path} beside {source} "
                    "(written by `camcount synth`)"
                )
            self._truth[source] = load_truth(path)["frames"]
        return self._truth[source]

    def truth(self, meta: FrameMeta) -> Detections:
        frames = self._frames_of(meta.source)
        rows = frames[meta.frame_index] if 0 <= meta.frame_index < len(frames) else []
        if not rows:
            return Detections.empty()
        arr = np.asarray(rows, dtype=np.float64)
        return Detections.from_arrays(arr[:, 2:6], np.full(len(arr), self.confidence), arr[:, 1])

    def infer(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        return [self._scaled(self.truth(m), f, m) for f, m in zip(frames, metas, strict=True)]

    @staticmethod
    def _scaled(dets: Detections, frame: Frame, meta: FrameMeta) -> Detections:
        # Truth is in original pixels; the base class expects frame pixels.
        h, w = frame.shape[:2]
        x0, y0 = 0, 0
        ow, oh = meta.frame_size
        if meta.region is not None and len(dets):
            # A tile sees what lies in it, objects cut by its border cut too,
            # as a model would.
            x0, y0, x1, y1 = meta.region
            ow, oh = x1 - x0, y1 - y0
            xyxy = dets.xyxy.copy()
            xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], x0, x1)
            xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], y0, y1)
            seen = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
            dets = Detections(xyxy, dets.confidence, dets.class_id, dets.tracker_id)[seen]
        if len(dets) == 0 or ((w, h) == (ow, oh) and not (x0 or y0)):
            return dets
        offset = np.array([x0, y0, x0, y0], dtype=np.float32)
        scale = np.array([w / ow, h / oh, w / ow, h / oh], dtype=np.float32)
        return Detections(
            (dets.xyxy - offset) * scale, dets.confidence, dets.class_id, dets.tracker_id
        )


class NoisyDetector(OracleDetector):
    """The oracle with seeded misses, box jitter, false positives and class flips.

    Options (``detector.options``): ``seed`` (0), ``miss_rate`` (0.1),
    ``jitter_px`` (5: standard deviation of every box edge), ``fp_rate``
    (0.02: false boxes per true box), ``class_flip_rate`` (0).
    """

    name = "noisy"

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        super().__init__(settings)
        opts = self.settings.options
        self.seed = int(opts.get("seed", 0))
        self.miss_rate = float(opts.get("miss_rate", 0.1))
        self.jitter_px = float(opts.get("jitter_px", 5.0))
        self.fp_rate = float(opts.get("fp_rate", 0.02))
        self.class_flip_rate = float(opts.get("class_flip_rate", 0.0))
        for name in ("miss_rate", "fp_rate", "class_flip_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise DetectorError(f"noisy detector option {name} must be in [0, 1], got {v}")

    def truth(self, meta: FrameMeta) -> Detections:
        exact = super().truth(meta)
        rng = np.random.default_rng([self.seed, source_seed(meta.source), meta.frame_index])
        n = len(exact)
        keep = rng.random(n) >= self.miss_rate
        boxes = exact.xyxy.astype(np.float64) + rng.normal(0, self.jitter_px, size=(n, 4))
        classes = exact.class_id.copy()
        flip = rng.random(n) < self.class_flip_rate
        if flip.any():
            shift = rng.integers(1, len(CLASS_NAMES), size=int(flip.sum()))
            classes[flip] = (classes[flip] + shift) % len(CLASS_NAMES)
        conf = rng.uniform(0.55, 0.95, size=n)
        n_fp = rng.poisson(self.fp_rate * max(n, 1))
        w, h = meta.frame_size
        fp_wh = rng.uniform([20, 30], [90, 70], size=(n_fp, 2))
        fp_xy = rng.uniform([0, 0], [w, h], size=(n_fp, 2))
        fp = np.concatenate([fp_xy, fp_xy + fp_wh], axis=1)
        boxes = np.concatenate([boxes[keep], fp])
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w - 1)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h - 1)
        ok = (boxes[:, 2] - boxes[:, 0] > 2) & (boxes[:, 3] - boxes[:, 1] > 2)
        dets = Detections.from_arrays(
            boxes,
            np.concatenate([conf[keep], rng.uniform(0.3, 0.7, size=n_fp)]),
            np.concatenate([classes[keep], rng.integers(0, len(CLASS_NAMES), size=n_fp)]),
        )
        return dets[ok]
