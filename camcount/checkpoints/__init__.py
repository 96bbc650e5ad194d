"""Checkpoint storage: parts written once per checkpoint, sealed by a
``_COMPLETE`` manifest written last (docs/checkpoints.md). No Ray here;
actors call this through the controller's protocol.

Names are imported on first use: camera processes use ``states`` (what a
camera saves) but never the store, and stay without pyarrow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camcount.checkpoints.manifest import (
        FORMAT_VERSION,
        CheckpointInfo,
        Manifest,
        PartInfo,
    )
    from camcount.checkpoints.store import CheckpointStore, open_store_root
    from camcount.errors import CheckpointStoreError

_WHERE = {
    "FORMAT_VERSION": "camcount.checkpoints.manifest",
    "CheckpointInfo": "camcount.checkpoints.manifest",
    "Manifest": "camcount.checkpoints.manifest",
    "PartInfo": "camcount.checkpoints.manifest",
    "CheckpointStore": "camcount.checkpoints.store",
    "open_store_root": "camcount.checkpoints.store",
    "CheckpointStoreError": "camcount.errors",
}

__all__ = [
    "FORMAT_VERSION",
    "CheckpointInfo",
    "CheckpointStore",
    "CheckpointStoreError",
    "Manifest",
    "PartInfo",
    "open_store_root",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
