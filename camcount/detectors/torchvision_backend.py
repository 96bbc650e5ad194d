"""Any ``torchvision.models.detection`` model behind the Detector interface.

Users with the internet and a GPU get every COCO detector torchvision has
(Faster R-CNN, RetinaNet, FCOS, SSD...), people *and* vehicles, by naming it:
``torchvision:fasterrcnn_resnet50_fpn_v2``. ``weights`` says where the
weights come from:

- unset, ``DEFAULT`` or a member name such as ``COCO_V1``: torchvision's own
  file, read from the torch hub cache and downloaded into it when missing.
  Offline, the error names the URL to fetch and the path to put it at.
- a path to a ``.pth``/``.pt`` state_dict (a fine-tuned model, or the hub
  file copied over from a machine with the internet).
- ``random``: untrained and seeded; for tests and speed measurements.

torchvision numbers its outputs with the training set's labels (COCO: 91 ids
with "N/A" gaps, 0 the background). Those become indices into a compact
``class_names`` without the background and the gaps, as every backend's
``class_id`` must index its ``class_names``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
import torch
import torchvision
from torch import Tensor, nn

from camcount.detectors.base import Detector, DetectorSettings, Frame, FrameMeta
from camcount.detectors.detections import Detections
from camcount.detectors.torch_runtime import (
    check_frames,
    frames_to_device,
    resolve_device,
    set_threads,
    use_half,
)
from camcount.errors import DetectorError

RANDOM_WEIGHTS = "random"
DEFAULT_WEIGHTS = "DEFAULT"
# Category names torchvision uses for "no class": the background and COCO's unused ids.
NOT_A_CLASS = frozenset({"__background__", "N/A"})
_STATE_SUFFIXES = (".pth", ".pt", ".bin")


# --- model labels -> compact class ids (the TorchScript backend shares this) --------------


@dataclass(frozen=True)
class LabelMap:
    """Turns a model's label numbers into indices of ``class_names``.

    Invariant: ``lookup[label]`` is the class id of ``label``, or -1 for a
    label that names no class (the background, a gap), which is dropped.
    """

    class_names: tuple[str, ...]
    lookup: npt.NDArray[np.int64]

    @classmethod
    def from_label_names(
        cls, label_names: Sequence[str], background_label: int | None = None
    ) -> LabelMap:
        kept = [name for i, name in enumerate(label_names) if _is_class(name, i, background_label)]
        dupes = sorted({n for n in kept if kept.count(n) > 1})
        if dupes:
            raise DetectorError(f"class names must be unique, {dupes} appear more than once")
        index = {name: i for i, name in enumerate(kept)}
        lookup = np.array(
            [
                index[name] if _is_class(name, i, background_label) else -1
                for i, name in enumerate(label_names)
            ],
            dtype=np.int64,
        )
        return cls(tuple(kept), lookup)

    def class_ids(self, labels: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
        """Labels the map does not know (a model with more outputs than names) become -1."""
        labels = labels.astype(np.int64)
        inside = (labels >= 0) & (labels < len(self.lookup))
        out = np.full(len(labels), -1, dtype=np.int64)
        out[inside] = self.lookup[labels[inside]]
        return out


def _is_class(name: str, label: int, background_label: int | None) -> bool:
    return label != background_label and bool(name) and name not in NOT_A_CLASS


def names_option(options: Mapping[str, object], key: str = "class_names") -> list[str] | None:
    names = options.get(key)
    if names is None:
        return None
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise DetectorError(f"option {key} must be a list of names, got {names!r}")
    if not names:
        raise DetectorError(f"option {key} is empty")
    return list(names)


def input_size_option(options: Mapping[str, object]) -> tuple[int, int] | None:
    size = options.get("input_size")
    if size is None:
        return None
    if (
        not isinstance(size, list | tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise DetectorError(f"option input_size must be [width, height] in pixels, got {size!r}")
    return int(size[0]), int(size[1])


def detections_from_outputs(
    outputs: Sequence[Mapping[str, Tensor]], labels: LabelMap
) -> list[Detections]:
    """torchvision's per-image ``{"boxes", "scores", "labels"}`` dicts as Detections."""
    found = []
    for i, output in enumerate(outputs):
        missing = {"boxes", "scores", "labels"} - set(output)
        if missing:
            raise DetectorError(f"model output {i} lacks {sorted(missing)}; it has {list(output)}")
        boxes = output["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
        scores = output["scores"].detach().float().cpu().numpy().reshape(-1)
        class_id = labels.class_ids(output["labels"].detach().cpu().numpy().reshape(-1))
        keep = class_id >= 0
        found.append(Detections.from_arrays(boxes[keep], scores[keep], class_id[keep]))
    return found


# --- weights ------------------------------------------------------------------------------


def detection_models() -> list[str]:
    return list(torchvision.models.list_models(module=torchvision.models.detection))


def hub_checkpoint(url: str) -> Path:
    """Where torch hub keeps, and looks first for, the file at ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def _put_it_there(url: str, target: Path) -> str:
    return (
        f"on a machine with internet access fetch {url} and copy it to {target} "
        "(the torch hub cache; $TORCH_HOME moves it), or pass weights=/path/to/file.pth"
    )


def _is_path(spec: str) -> bool:
    return spec.endswith(_STATE_SUFFIXES) or "/" in spec or os.sep in spec or Path(spec).exists()


def _weights_member(model_name: str, spec: str) -> Any:
    enum = torchvision.models.get_model_weights(model_name)
    name = spec.rpartition(".")[2]  # "SSDLite..._Weights.COCO_V1" or "COCO_V1"
    try:
        return enum[name]
    except KeyError:
        choices = [*enum.__members__, RANDOM_WEIGHTS, "/path/to/file.pth"]
        raise DetectorError(f"{model_name} has no weights {spec!r}: use one of {choices}") from None


def load_state_file(model: nn.Module, path: Path) -> None:
    """A state_dict (bare, or under "state_dict"/"model") loaded strictly.

    BatchNorm's ``num_batches_tracked`` may be missing: torchvision's trained
    files are saved from FrozenBatchNorm2d, which has none, while a model built
    without weights uses BatchNorm2d; in eval mode the two compute the same.
    """
    if not path.is_file():
        raise DetectorError(f"weights file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise DetectorError(f"cannot read weights {path}: {exc}") from exc
    state = blob
    for key in ("state_dict", "model"):
        if isinstance(blob, dict) and isinstance(blob.get(key), dict):
            state = blob[key]
    if not isinstance(state, dict):
        raise DetectorError(f"{path} holds no state_dict (found {type(state).__name__})")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise DetectorError(
            f"weights {path} do not fit the model (a different model, or another number of "
            f"classes: set options.class_names to the file's labels): {exc}"
        ) from exc
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise DetectorError(
            f"weights {path} do not fit the model: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )


def _build(model_name: str, **kwargs: Any) -> nn.Module:
    try:
        model = torchvision.models.get_model(model_name, weights_backbone=None, **kwargs)
    except (TypeError, ValueError) as exc:
        raise DetectorError(f"cannot build {model_name} with {kwargs}: {exc}") from exc
    if not isinstance(model, nn.Module):  # get_model is typed loosely
        raise DetectorError(f"{model_name} did not build a torch module")
    return model


def load_model(
    model_name: str, weights: str | None, options: Mapping[str, object]
) -> tuple[nn.Module, list[str]]:
    """The model on the CPU and its label names (index = the model's label number)."""
    models = detection_models()
    if model_name not in models:
        raise DetectorError(f"torchvision has no detection model {model_name!r}; one of {models}")
    kwargs = options.get("model_kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise DetectorError(f"option model_kwargs must be a mapping, got {kwargs!r}")
    kwargs = dict(kwargs)
    spec = weights or DEFAULT_WEIGHTS
    names = names_option(options)

    if spec == RANDOM_WEIGHTS or _is_path(spec):
        default = torchvision.models.get_model_weights(model_name).DEFAULT
        names = names or list(default.meta["categories"])
        kwargs.setdefault("num_classes", len(names))
        seed = options.get("seed", 0)
        if not isinstance(seed, int):
            raise DetectorError(f"option seed must be an integer, got {seed!r}")
        with torch.random.fork_rng(devices=[]):  # a seed for this model, not for the process
            torch.manual_seed(seed)
            model = _build(model_name, weights=None, **kwargs)
        if spec != RANDOM_WEIGHTS:
            load_state_file(model, Path(spec).expanduser())
        return model, names

    member = _weights_member(model_name, spec)
    target = hub_checkpoint(member.url)
    if not target.is_file() and options.get("download", True) is False:
        raise DetectorError(
            f"{model_name} weights {spec} are not in the torch hub cache and download is "
            f"off; {_put_it_there(member.url, target)}"
        )
    try:
        model = _build(model_name, weights=member, progress=False, **kwargs)
    except OSError as exc:  # URLError, timeouts, refused connections: no internet
        raise DetectorError(
            f"cannot download {model_name} weights {spec} ({exc}); "
            f"{_put_it_there(member.url, target)}"
        ) from exc
    except RuntimeError as exc:  # a truncated or corrupt file in the cache
        raise DetectorError(
            f"cannot load {target} ({exc}); delete it and fetch it again: "
            f"{_put_it_there(member.url, target)}"
        ) from exc
    return model, names or list(member.meta["categories"])


# --- the detector -------------------------------------------------------------------------


class TorchvisionDetector(Detector):
    """A torchvision detection model; RGB frames of any size, batched, on CPU or CUDA.

    ``input_size`` is the model's own fixed size where it has one (SSD: 300,
    SSDLite: 320), so cameras send no more pixels than it uses; the R-CNN
    family resizes by the shorter side itself and takes frames as they are,
    unless option ``input_size`` says otherwise.
    """

    color_order = "rgb"

    def __init__(self, model_name: str, settings: DetectorSettings | None = None) -> None:
        settings = settings or DetectorSettings()
        options = settings.options
        set_threads(options)
        self.device = resolve_device(settings.device)
        self.name = f"torchvision:{model_name}"
        model, label_names = load_model(model_name, settings.weights, options)
        self.labels = LabelMap.from_label_names(label_names, background_label=0)
        self.class_names = self.labels.class_names
        super().__init__(settings)
        self.input_size = input_size_option(options) or _fixed_size(model)
        self._half = use_half(self.device, options)
        model.eval().to(self.device)
        channels_last = options.get("channels_last", self.device.type == "cuda")
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model

    def infer(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        check_frames(frames)
        if not frames:
            return []
        autocast = (
            torch.autocast("cuda", dtype=torch.float16) if self._half else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            images = [
                image.permute(2, 0, 1).float().div_(255.0)
                for image in frames_to_device(frames, self.device)
            ]
            outputs = self.model(images)
        return detections_from_outputs(outputs, self.labels)


def _fixed_size(model: nn.Module) -> tuple[int, int] | None:
    size = getattr(getattr(model, "transform", None), "fixed_size", None)
    return (int(size[0]), int(size[1])) if size else None
