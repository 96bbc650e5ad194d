"""Detector backends behind one interface; ``build_detector`` picks one by name.

Backends are imported only when asked for, so the core and the camera side
never load torch unless a torch model is chosen.
"""

from __future__ import annotations

import difflib

from camcount.detectors.base import Detector, DetectorSettings, FrameMeta
from camcount.errors import DetectorError

__all__ = ["Detector", "DetectorSettings", "FrameMeta", "build_detector", "check_model_name"]

#: Models named alone, and kinds that take a name or path after a colon.
NAMED_MODELS = ("oracle", "noisy", "ssdlite-person", "ssdlite-person-int8")
MODEL_KINDS = ("torchvision", "torchscript", "onnx")


def check_model_name(spec: str) -> None:
    """Refuse a model name no backend knows, with the closest one, where the
    config is read (``config-check`` included), not when a replica starts."""
    kind, colon, arg = spec.partition(":")
    if kind in NAMED_MODELS and not colon:
        return
    if kind in MODEL_KINDS:
        if not arg:
            raise DetectorError(f"detector {spec!r} needs a name after the colon, e.g. {kind}:...")
        return
    if colon:
        close = [f"{k}:{arg}" for k in difflib.get_close_matches(kind, MODEL_KINDS, n=1)]
    else:
        close = difflib.get_close_matches(spec, NAMED_MODELS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DetectorError(
        f"unknown detector {spec!r}{hint}: choose oracle, noisy, ssdlite-person, "
        "torchvision:<model>, torchscript:<path> or onnx:<path>"
    )


def build_detector(spec: str, settings: DetectorSettings | None = None) -> Detector:
    """``spec`` is ``oracle``, ``noisy``, ``ssdlite-person``, ``ssdlite-person-int8``,
    ``torchvision:<model>``,
    ``torchscript:<path>`` or ``onnx:<path>``."""
    check_model_name(spec)
    kind, _, arg = spec.partition(":")
    if kind == "oracle":
        from camcount.detectors.synthetic import OracleDetector

        return OracleDetector(settings)
    if kind == "noisy":
        from camcount.detectors.synthetic import NoisyDetector

        return NoisyDetector(settings)
    if kind == "ssdlite-person":
        from camcount.detectors.ssdlite import SSDLitePerson

        return SSDLitePerson(settings)
    if kind == "ssdlite-person-int8":
        from camcount.detectors.onnx import OnnxDetector
        from camcount.detectors.quantize import int8_path

        path = int8_path()
        if not path.is_file():
            raise DetectorError(
                f"ssdlite-person-int8 is not built yet ({path}): run "
                "`camcount models export --int8 --calibration VIDEO_OR_DIR ...` once"
            )
        return OnnxDetector(str(path), settings)
    if kind == "torchvision":
        from camcount.detectors.torchvision_backend import TorchvisionDetector

        return TorchvisionDetector(arg, settings)
    if kind == "torchscript":
        from camcount.detectors.torchscript import TorchScriptDetector

        return TorchScriptDetector(arg, settings)
    if kind == "onnx":
        from camcount.detectors.onnx import OnnxDetector

        return OnnxDetector(arg, settings)
    raise AssertionError(f"check_model_name let {spec!r} through")
