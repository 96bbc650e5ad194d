"""Where and how a torch backend runs: device, threads, host-to-device copies.

Every torch backend (the SSDLite port, torchvision models, TorchScript files)
takes the same ``device`` setting and the same ``torch_threads`` option, so
one config line means the same thing whichever model it names, and a CPU
replica and a bare benchmark can be pinned to the same thread count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from camcount.errors import DetectorError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when torch sees one; asking for CUDA without one is an error,
    not a silent fall back to a CPU that would be an order of magnitude slower."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DetectorError(f"unknown device {name!r}: use cpu, cuda or auto") from exc
    if device.type not in ("cpu", "cuda"):
        raise DetectorError(f"device {name!r} is not supported: use cpu, cuda or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DetectorError(f"device {name!r} asked for, but torch sees no CUDA device")
    return device


def set_threads(options: Mapping[str, object]) -> None:
    """Only on request: torch.set_num_threads is process-wide, not per detector.

    Left alone, torch uses ``OMP_NUM_THREADS`` when set (Ray sets it to an
    actor's ``num_cpus``) and the machine's cores otherwise.
    """
    threads = options.get("torch_threads")
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise DetectorError(f"option torch_threads must be a positive integer, got {threads!r}")
    torch.set_num_threads(threads)


def use_half(device: torch.device, options: Mapping[str, object]) -> bool:
    """fp16 on CUDA unless option ``half: false``; never on CPU, where it is slower."""
    half = options.get("half", True)
    if not isinstance(half, bool):
        raise DetectorError(f"option half must be true or false, got {half!r}")
    return half and device.type == "cuda"


def to_device(array: npt.NDArray[np.generic], device: torch.device) -> Tensor:
    """A host array on ``device``; pinned and non-blocking on CUDA, so the copy
    overlaps with work already queued instead of stalling the stream."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def check_frames(frames: Sequence[object], channels: int = 3) -> None:
    """Refuse what a camera would never send, with the frame's index, before any
    backend turns it into an obscure shape error deep inside a model."""
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise DetectorError(f"frame {i}: expected a numpy array, got {type(frame).__name__}")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != channels:
            raise DetectorError(
                f"frame {i}: expected uint8 (H, W, {channels}), got {frame.dtype} {frame.shape}"
            )


def frames_to_device(frames: Sequence[npt.NDArray[np.uint8]], device: torch.device) -> list[Tensor]:
    """Frames as uint8 (H, W, C) tensors on ``device``, stacked into one copy
    when they share a shape (the usual case: the camera resized them)."""
    if len({f.shape for f in frames}) == 1:
        return list(to_device(np.stack(frames), device).unbind(0))
    return [to_device(f, device) for f in frames]
