"""Users' own exported models: a TorchScript file behind the Detector interface.

The contract a file must meet (``docs/detectors.md`` has it for users):

- Input, one of (``input`` in the metadata or the options):
  ``list`` (default): a list of float32 (3, H, W) RGB tensors in [0, 1], one
  per image, as torchvision detection models take them;
  ``float``: one float32 (N, 3, H, W) tensor in [0, 1];
  ``uint8``: one uint8 (N, 3, H, W) tensor in [0, 255].
- Output: a list with one dict per image holding ``boxes`` (K, 4) xyxy in the
  pixels of the image it was given, ``scores`` (K,) and ``labels`` (K,)
  integers. A scripted torchvision model returns ``(losses, detections)``:
  the detections are taken from it.
- ``class_names``: indexed by label; ``__background__`` and ``N/A`` entries
  name no class and their boxes are dropped.

The metadata travels inside the file as the extra file ``camcount.json``
(``torch.jit.save(..., _extra_files=...)``), so a model and its class names
cannot be separated; options of the same names override it.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from camcount.detectors.base import Detector, DetectorSettings, Frame, FrameMeta
from camcount.detectors.detections import Detections
from camcount.detectors.torch_runtime import (
    check_frames,
    frames_to_device,
    resolve_device,
    set_threads,
)
from camcount.detectors.torchvision_backend import (
    LabelMap,
    TorchvisionDetector,
    detections_from_outputs,
    input_size_option,
    names_option,
)
from camcount.errors import DetectorError

METADATA_FILE = "camcount.json"
InputFormat = Literal["list", "float", "uint8"]
_INPUT_FORMATS: tuple[InputFormat, ...] = ("list", "float", "uint8")


@contextlib.contextmanager
def _jit_deprecation_known() -> Iterator[None]:
    """torch 2.14 warns that TorchScript is deprecated on every load and save; users'
    files are TorchScript all the same, and docs/detectors.md says so once."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        yield


def read_metadata(path: Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """The module on the CPU and the ``camcount.json`` stored beside it (empty if none)."""
    if not path.is_file():
        raise DetectorError(f"TorchScript file not found: {path}")
    extra = {METADATA_FILE: ""}
    try:
        with _jit_deprecation_known():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError) as exc:
        raise DetectorError(f"{path} is not a TorchScript file torch can load: {exc}") from exc
    raw = extra[METADATA_FILE]
    if not raw:
        return module, {}
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise DetectorError(f"{path}: {METADATA_FILE} is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise DetectorError(f"{path}: {METADATA_FILE} must hold an object, got {meta!r}")
    return module, meta


class TorchScriptDetector(Detector):
    """A TorchScript detection model meeting the contract in this module's docstring."""

    def __init__(self, path: str, settings: DetectorSettings | None = None) -> None:
        settings = settings or DetectorSettings()
        set_threads(settings.options)
        self.device = resolve_device(settings.device)
        self.path = Path(path).expanduser()
        self.name = f"torchscript:{path}"
        module, meta = read_metadata(self.path)
        options: dict[str, Any] = {**meta, **settings.options}
        names = names_option(options)
        if names is None:
            raise DetectorError(
                f"{self.path} carries no class names: pass options.class_names (indexed by "
                f"label) or store them in the file's {METADATA_FILE} (camcount models export)"
            )
        self.labels = LabelMap.from_label_names(names)
        self.class_names = self.labels.class_names
        super().__init__(settings)
        self.input_size = input_size_option(options)
        color = options.get("color_order", "rgb")
        if color not in ("rgb", "bgr"):
            raise DetectorError(f"option color_order must be rgb or bgr, got {color!r}")
        self.color_order = color
        fmt = options.get("input", "list")
        if fmt not in _INPUT_FORMATS:
            raise DetectorError(f"option input must be one of {_INPUT_FORMATS}, got {fmt!r}")
        self.input_format: InputFormat = fmt
        self.module = module.eval().to(self.device)

    def infer(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        check_frames(frames)
        if not frames:
            return []
        with torch.inference_mode():
            images = [f.permute(2, 0, 1) for f in frames_to_device(frames, self.device)]
            if self.input_format == "list":
                outputs = self._call([i.float().div_(255.0) for i in images])
            else:
                outputs = self._batched(images)
        if len(outputs) != len(frames):
            raise DetectorError(f"{self.path} returned {len(outputs)} results for {len(frames)}")
        return detections_from_outputs(outputs, self.labels)

    def _batched(self, images: list[Tensor]) -> list[Mapping[str, Tensor]]:
        """Batch formats need one size per call, so frames are grouped by size."""
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            groups[tuple(image.shape)].append(i)
        outputs: list[Mapping[str, Tensor]] = [{} for _ in images]
        for indices in groups.values():
            batch = torch.stack([images[i] for i in indices])
            if self.input_format == "float":
                batch = batch.float().div_(255.0)
            for i, out in zip(indices, self._call(batch), strict=True):
                outputs[i] = out
        return outputs

    def _call(self, inputs: Tensor | list[Tensor]) -> list[Mapping[str, Tensor]]:
        try:
            result = self.module(inputs)
        except RuntimeError as exc:
            raise DetectorError(
                f"{self.path} failed on input format {self.input_format!r}: {exc}"
            ) from exc
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], list):
            result = result[1]  # a scripted torchvision model: (losses, detections)
        if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
            raise DetectorError(
                f"{self.path} must return a list of dicts with boxes, scores and labels; "
                f"got {type(result).__name__}"
            )
        return result


def save_torchscript(module: torch.jit.ScriptModule, path: Path, meta: Mapping[str, Any]) -> Path:
    """Write the module with its metadata inside, so the file is self-describing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _jit_deprecation_known():
        torch.jit.save(module, str(path), _extra_files={METADATA_FILE: json.dumps(dict(meta))})
    return path


def export_torchvision(detector: TorchvisionDetector, path: Path) -> Path:
    """Script a torchvision detector (on the CPU, fp32) into a file this backend loads.

    Scripting, not tracing: a trace would freeze the number of boxes and the
    image sizes of the example it ran on.
    """
    model: nn.Module = detector.model
    model = model.to(memory_format=torch.contiguous_format).to("cpu").float().eval()
    try:
        with _jit_deprecation_known():
            scripted = torch.jit.script(model)
    except Exception as exc:  # the TorchScript compiler raises its own assorted errors
        raise DetectorError(f"cannot script {detector.name}: {exc}") from exc
    names = ["__background__"] * len(detector.labels.lookup)
    for label, class_id in enumerate(detector.labels.lookup):
        names[label] = detector.class_names[class_id] if class_id >= 0 else "N/A"
    names[0] = "__background__"
    meta = {
        "class_names": names,
        "input": "list",
        "input_size": list(detector.input_size) if detector.input_size else None,
        "color_order": detector.color_order,
        "source": detector.name,
    }
    return save_torchscript(scripted, path, meta)
