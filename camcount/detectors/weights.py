"""Where detector weights are kept: outside the project, in a per-user cache.

Weights are not project files (they are large and have their own licences),
so every backend that loads a named model looks here first.
"""

from __future__ import annotations

import os
from pathlib import Path

SSDLITE_WEIGHTS_NAME = "ssdlite_person.pt"


def models_dir() -> Path:
    """``$CAMCOUNT_MODELS_DIR``, else a per-user cache (weights are not project files)."""
    env = os.environ.get("CAMCOUNT_MODELS_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "camcount" / "models"


def ssdlite_weights_path() -> Path:
    return models_dir() / SSDLITE_WEIGHTS_NAME
