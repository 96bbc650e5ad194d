"""Detector backends behind one interface; ``build_detector`` picks one by name.

Backends are imported only when asked for, so the core and the camera side
never load torch unless a torch model is chosen.
"""

from __future__ import annotations

from camcount.detectors.base import Detector, DetectorSettings, FrameMeta
from camcount.errors import DetectorError

__all__ = ["Detector", "DetectorSettings", "FrameMeta", "build_detector"]


def build_detector(spec: str, settings: DetectorSettings | None = None) -> Detector:
    """``spec`` is ``oracle``, ``noisy``, ``ssdlite-person``, ``torchvision:<model>``,
    ``torchscript:<path>`` or ``onnx:<path>``."""
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
    if kind in ("torchvision", "torchscript", "onnx") and not arg:
        raise DetectorError(f"detector {spec!r} needs a name after the colon, e.g. {kind}:...")
    if kind == "torchvision":
        from camcount.detectors.torchvision_backend import TorchvisionDetector

        return TorchvisionDetector(arg, settings)
    if kind == "torchscript":
        from camcount.detectors.torchscript import TorchScriptDetector

        return TorchScriptDetector(arg, settings)
    if kind == "onnx":
        from camcount.detectors.onnx import OnnxDetector

        return OnnxDetector(arg, settings)
    raise DetectorError(
        f"unknown detector {spec!r}: choose oracle, noisy, ssdlite-person, "
        "torchvision:<model>, torchscript:<path> or onnx:<path>"
    )
