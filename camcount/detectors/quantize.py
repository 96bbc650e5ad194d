"""An int8 person detector for CPUs: the SSDLite's ONNX graph quantized
statically by onnxruntime's tools.

On a CPU the detector is a camera's whole cost, and int8 convolutions do
the same work in a fraction of the time (bench/RESULTS.md, "Cameras per
core"). Static quantization needs calibration frames, the ranges of every
activation on scenes like the ones it will see: frames sampled from the
user's own videos or images (``--calibration``), resized to the model's
input as the detector resizes them. Weights are quantized per channel
(QInt8), activations per tensor (QUInt8), in QDQ form, so the graph keeps
its float interface and the ONNX backend loads it as any other file. The
heads' last convolutions and the box decoding stay float: quantized, they
rounded every score to a grid coarse enough to move people across the
tracker's thresholds (``QuantSettings`` and bench/RESULTS.md).

What int8 changes in detections is measured, not assumed: the tests and
``bench/capacity.py`` compare it with the float model on the reference
image and on the clips.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from camcount.detectors.base import prepare_frame
from camcount.detectors.ssdlite import IMAGE_SIZE
from camcount.detectors.weights import models_dir
from camcount.errors import DetectorError

INT8_NAME = "ssdlite_person_int8.onnx"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
#: Frames per video: spread over the video, so the ranges cover its scenes.
FRAMES_PER_VIDEO = 16


def int8_path() -> Path:
    """Where the named model ``ssdlite-person-int8`` is looked for."""
    return models_dir() / INT8_NAME


def calibration_frames(
    sources: Sequence[str | Path], per_video: int = FRAMES_PER_VIDEO
) -> list[np.ndarray]:
    """RGB frames at the model's input size from videos, images or folders
    of them."""
    files: list[Path] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise DetectorError(f"calibration source not found: {path}")
    frames: list[np.ndarray] = []
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            image = cv2.imread(str(path))
            if image is not None:
                frames.append(_input(image))
            continue
        frames.extend(_video_frames(path, per_video))
    if not frames:
        raise DetectorError(
            f"no frame could be read from the calibration sources: {[str(s) for s in sources]}"
        )
    return frames


def _video_frames(path: Path, n: int) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            return
        for index in np.linspace(0, total - 1, min(n, total)).astype(int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = cap.read()
            if ok:
                yield _input(frame)
    finally:
        cap.release()


def _input(bgr: np.ndarray) -> np.ndarray:
    """The frame as a camera hands it to the model (``Detector.prepare``):
    ranges measured on frames resized another way are ranges of other pixels."""
    return prepare_frame(bgr, (IMAGE_SIZE, IMAGE_SIZE), "rgb")


Calibration = Literal["minmax", "entropy", "percentile"]


@dataclass(frozen=True)
class QuantSettings:
    """How the graph is quantized. The defaults are the setting measured to
    change counts least at the best speed (bench/RESULTS.md, "Cameras per
    core"); the others stay selectable so the comparison can be rerun.

    ``op_types``: the operators given int8 forms (empty: every one
    onnxruntime can quantize). ``float_tail``: the nodes between the last
    convolutions and the outputs (box decoding, sigmoid) stay float, so box
    corners and scores are not rounded to 256 levels. ``float_heads``: the
    heads' last convolutions stay float as well.
    """

    op_types: tuple[str, ...] = ()
    per_channel: bool = True
    symmetric_activations: bool = False
    calibration: Calibration = "minmax"
    float_tail: bool = True
    float_heads: bool = True
    qdq: bool = True
    reduce_range: bool = False


def tail_nodes(model: Any, outputs: Sequence[str], heads: bool) -> list[str]:
    """Names of the nodes from the outputs back to the last convolutions
    (those included when ``heads``): a walk up the graph that stops at a
    Conv and at shape arithmetic (which reads a tensor's shape, not its values)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    names: list[str] = []
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            if heads:
                names.append(node.name)
            continue
        names.append(node.name)
        if node.op_type != "Shape":
            stack.extend(node.input)
    return names


def quantize_onnx(
    float_model: Path,
    out: Path,
    frames: Sequence[np.ndarray],
    progress: Callable[[str], None] | None = None,
    settings: QuantSettings | None = None,
) -> Path:
    """Writes the int8 form of ``float_model`` (a file the ONNX backend
    loads) calibrated on ``frames``; the camcount metadata is kept."""
    settings = settings or QuantSettings()
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise DetectorError(
            "int8 quantization needs onnx and onnxruntime: pip install 'camcount[onnx]'"
        ) from exc

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            frame = next(self._it, None)
            return None if frame is None else {"images": frame[None]}

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        if progress is not None:
            progress("preparing the graph for quantization")
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        if progress is not None:
            progress(f"calibrating on {len(frames)} frames (a minute or so)")
        exclude: list[str] = []
        if settings.float_tail or settings.float_heads:
            graph = onnx.load(str(prepared))
            outputs = [o.name for o in graph.graph.output]
            exclude = tail_nodes(graph, outputs, heads=settings.float_heads)
        method = {
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[settings.calibration]
        quantize_static(
            str(prepared),
            str(out),
            Frames(),
            quant_format=QuantFormat.QDQ if settings.qdq else QuantFormat.QOperator,
            op_types_to_quantize=list(settings.op_types) or None,
            activation_type=(
                QuantType.QInt8 if settings.symmetric_activations else QuantType.QUInt8
            ),
            weight_type=QuantType.QInt8,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            nodes_to_exclude=exclude or None,
            calibrate_method=method,
            extra_options={"ActivationSymmetric": settings.symmetric_activations},
        )
    model = onnx.load(str(out))
    source = onnx.load(str(float_model), load_external_data=False)
    props = {p.key: p.value for p in source.metadata_props}
    if "camcount" in props:
        meta = json.loads(props["camcount"])
        meta["source"] = f"{meta.get('source', 'model')} (int8)"
        onnx.helper.set_model_props(model, {"camcount": json.dumps(meta)})
    onnx.save(model, str(out))
    return out


def export_int8(
    out: Path,
    calibration: Sequence[str | Path],
    weights: str | None = None,
    progress: Callable[[str], None] | None = None,
    settings: QuantSettings | None = None,
    per_video: int = FRAMES_PER_VIDEO,
) -> Path:
    """The person SSDLite exported to ONNX and quantized to int8."""
    from camcount.detectors.onnx import export_ssdlite

    frames = calibration_frames(calibration, per_video)
    with tempfile.TemporaryDirectory() as tmp:
        if progress is not None:
            progress("exporting ssdlite-person to ONNX")
        float_model = export_ssdlite(Path(tmp) / "float.onnx", weights=weights)
        return quantize_onnx(float_model, out, frames, progress, settings)
