"""SSD-style detectors exported to ONNX, run by onnxruntime (the ``onnx`` extra).

Counting sites are often CPU-only, and a runtime built for CPU inference
runs the same network several times faster than eager torch there (see
``bench/RESULTS.md``). ``camcount models export`` writes such a file from
the person SSDLite.

The contract a file must meet (``docs/detectors.md`` has it for users):

- One input: uint8 (N, H, W, 3) frames at the model's fixed input size, in
  the model's colour order; normalisation happens inside the graph.
- Two outputs: ``boxes`` (N, A, 4) as xyxy, normalised to [0, 1] of the
  input (``box_format: pixels`` for input pixels), before clipping; and
  ``scores`` (N, A, C) per class, background excluded, activation applied.
- Metadata ``camcount`` (a JSON object in the model's metadata_props), or
  options of the same names: ``class_names`` (C names, required),
  ``color_order``, ``nms_iou``, ``max_detections``, ``box_format``.

Non-maximum suppression stays outside the graph, in the same order of
operations as the torch SSDLite (NMS on unclipped boxes per class, keep the
best ``max_detections``, clip, drop empty boxes), so both give the same
detections.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torchvision.ops import batched_nms

from camcount.detectors.base import Detector, DetectorSettings, Frame, FrameMeta
from camcount.detectors.detections import Detections
from camcount.detectors.ssdlite import (
    _INPUT_SCALE,
    _MAX_DETECTIONS,
    _NMS_IOU,
    IMAGE_SIZE,
    SSDLiteNet,
    SSDLitePerson,
    decode_boxes,
)
from camcount.detectors.torch_runtime import check_frames
from camcount.detectors.torchvision_backend import names_option
from camcount.errors import DetectorError

METADATA_KEY = "camcount"
_MIN_SCORE = 1e-8  # as the SSDLite graph: scores at or below it are never boxes
_DEFAULTS: dict[str, Any] = {
    "color_order": "rgb",
    "nms_iou": 0.6,
    "max_detections": 100,
    "box_format": "normalized",
}
_INSTALL = "onnxruntime is not installed: pip install 'camcount[onnx]'"


def _providers(ort: Any, device: str) -> list[str]:
    """CUDA only where onnxruntime was built with it (the onnxruntime-gpu wheel)."""
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto":
        return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise DetectorError(
                f"device {device!r} asked for, but onnxruntime offers only {available}; "
                "install onnxruntime-gpu in place of onnxruntime"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise DetectorError(f"device {device!r} is not supported: use cpu, cuda or auto")


def _threads(options: Mapping[str, object]) -> int:
    """0 lets onnxruntime use one thread per physical core."""
    threads = options.get("threads", 0)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise DetectorError(f"option threads must be a non-negative integer, got {threads!r}")
    return threads


class OnnxDetector(Detector):
    """An SSD-style ONNX model (see the module docstring) on onnxruntime."""

    def __init__(self, path: str, settings: DetectorSettings | None = None) -> None:
        settings = settings or DetectorSettings()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DetectorError(_INSTALL) from exc
        self.path = Path(path).expanduser()
        self.name = f"onnx:{path}"
        if not self.path.is_file():
            raise DetectorError(f"ONNX file not found: {self.path}")
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = _threads(settings.options)
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads spinning for work gain little at a camera's frame rate and cost a lot
        # beside other processes (camera actors decode on the same cores): off by default.
        spin = settings.options.get("allow_spinning", False)
        if not isinstance(spin, bool):
            raise DetectorError(f"option allow_spinning must be true or false, got {spin!r}")
        session_options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spin else "0"
        )
        try:
            self.session = ort.InferenceSession(
                str(self.path), session_options, providers=_providers(ort, settings.device)
            )
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            raise DetectorError(f"onnxruntime cannot load {self.path}: {exc}") from exc
        stored = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}")
        try:
            meta = json.loads(stored)
        except ValueError as exc:
            raise DetectorError(f"{self.path}: metadata {METADATA_KEY!r} is not JSON") from exc
        options: dict[str, Any] = {**_DEFAULTS, **meta, **settings.options}
        names = names_option(options)
        if names is None:
            raise DetectorError(
                f"{self.path} carries no class names: pass options.class_names (one per score "
                f"column) or export it with `camcount models export`"
            )
        self.class_names = tuple(names)
        super().__init__(settings)
        self._configure(options)

    def _configure(self, options: Mapping[str, Any]) -> None:
        graph_input = self.session.get_inputs()[0]
        self._input_name = graph_input.name
        shape = graph_input.shape
        if len(shape) != 4 or not all(isinstance(v, int) for v in shape[1:]) or shape[3] != 3:
            raise DetectorError(
                f"{self.path}: input {graph_input.name} must be (N, H, W, 3) with a fixed H and "
                f"W, got {shape}"
            )
        self.input_size = (int(shape[2]), int(shape[1]))
        outputs = [o.name for o in self.session.get_outputs()]
        if not {"boxes", "scores"} <= set(outputs):
            raise DetectorError(
                f"{self.path}: outputs must include boxes and scores, got {outputs}"
            )
        if options["color_order"] not in ("rgb", "bgr"):
            raise DetectorError(f"color_order must be rgb or bgr, got {options['color_order']!r}")
        self.color_order = options["color_order"]
        if options["box_format"] not in ("normalized", "pixels"):
            raise DetectorError(
                f"box_format must be normalized or pixels, got {options['box_format']!r}"
            )
        self._normalized = options["box_format"] == "normalized"
        self._nms_iou = float(options["nms_iou"])
        self._max_detections = int(options["max_detections"])

    def infer(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        check_frames(frames)
        if not frames:
            return []
        batch = np.stack([self._fit(f) for f in frames])
        boxes, scores = self.session.run(["boxes", "scores"], {self._input_name: batch})
        width, height = self.input_size or (1, 1)
        found = self.postprocess(boxes, scores, (width, height), self.settings.score_threshold)
        out = []
        for frame, (xyxy, conf, cls) in zip(frames, found, strict=True):
            # Boxes are in the fitted input; scale them to the frame given.
            h, w = frame.shape[:2]
            xyxy = xyxy * np.array([w / width, h / height] * 2, dtype=np.float32)
            out.append(Detections.from_arrays(xyxy, conf, cls))
        return out

    def _fit(self, frame: Frame) -> Frame:
        """The graph's size is fixed; a frame of another size is resized here (bilinear)."""
        if self.input_size is None or (frame.shape[1], frame.shape[0]) == self.input_size:
            return frame
        resized = cv2.resize(frame, self.input_size, interpolation=cv2.INTER_LINEAR)
        return np.asarray(resized, dtype=np.uint8)

    def postprocess(
        self,
        boxes: npt.NDArray[np.float32],
        scores: npt.NDArray[np.float32],
        size: tuple[int, int],
        min_score: float,
    ) -> list[tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]]:
        """Per image (xyxy in input pixels, scores, class ids), after NMS per class."""
        n, anchors, classes = scores.shape
        t_boxes = torch.from_numpy(boxes).float()
        t_scores = torch.from_numpy(scores).float()
        image = torch.arange(n)[:, None, None].expand(n, anchors, classes)
        cls = torch.arange(classes)[None, None, :].expand(n, anchors, classes)
        keep = (t_scores > _MIN_SCORE) & (t_scores >= min_score)
        image, cls, score = image[keep], cls[keep], t_scores[keep]
        anchor = keep.nonzero()[:, 1]
        box = t_boxes[image, anchor]
        order = batched_nms(box, score, image * classes + cls, self._nms_iou)
        pixels = torch.tensor([*size] * 2, dtype=torch.float32)
        limit, scale = (torch.ones(4), pixels) if self._normalized else (pixels, torch.ones(4))
        out = []
        for i in range(n):
            sel = order[image[order] == i][: self._max_detections]
            b = torch.minimum(box[sel].clamp(min=0.0), limit)
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            good = area > 0
            out.append(
                (
                    (b[good] * scale).numpy().astype(np.float32),
                    score[sel][good].numpy(),
                    cls[sel][good].numpy().astype(np.int64),
                )
            )
        return out


# --- export -------------------------------------------------------------------------------


class _SSDLiteGraph(torch.nn.Module):
    """What goes into the ONNX file: normalisation, the network and box decoding."""

    def __init__(self, net: SSDLiteNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() * _INPUT_SCALE - 1.0
        codes, logits = self.net(x)
        return decode_boxes(codes, self.net.anchors), torch.sigmoid(logits[..., 1:])


def export_ssdlite(path: Path, weights: str | None = None, opset: int | None = None) -> Path:
    """Write the person SSDLite as an ONNX file this backend loads.

    The dynamo exporter (torch's default) needs the ``onnx`` and ``onnxscript``
    packages, which the ``onnx`` extra installs.
    """
    try:
        import onnx
    except ImportError as exc:
        raise DetectorError(
            "exporting needs the onnx package: pip install 'camcount[onnx]'"
        ) from exc
    detector = SSDLitePerson(DetectorSettings(device="cpu", weights=weights))
    graph = _SSDLiteGraph(detector.net.float()).eval()
    example = torch.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.onnx.export(
            graph,
            (example,),
            input_names=["images"],
            output_names=["boxes", "scores"],
            dynamic_shapes={"images": {0: batch}},
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    except Exception as exc:  # the exporter wraps failures in several types
        raise DetectorError(f"torch.onnx.export failed: {exc}") from exc
    if program is None:
        raise DetectorError("torch.onnx.export returned no program")
    meta = {
        "class_names": list(detector.class_names),
        "color_order": detector.color_order,
        "nms_iou": _NMS_IOU,
        "max_detections": _MAX_DETECTIONS,
        "box_format": "normalized",
        "source": detector.name,
    }
    model = program.model_proto
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
