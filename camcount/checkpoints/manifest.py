"""What a checkpoint holds, and the ``_COMPLETE`` manifest that seals it.

The manifest is JSON rather than Arrow so an operator can read it with
``cat`` or ``aws s3 cp`` when deciding what to resume from. Its
``format_version`` is checked before anything else is read, so a manifest
written by a newer camcount is refused with that reason instead of failing
on some renamed field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from camcount.errors import CheckpointStoreError

# Bumped whenever the part files or the manifest change shape; a run only
# resumes from checkpoints written with the same version.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PartInfo:
    """One stored part: the state of one camera, shard or hub.

    ``path`` is relative to the store's root, so a store copied elsewhere
    (a bucket synced to a laptop) still resolves its parts.
    """

    kind: str
    part_id: str
    path: str
    bytes: int


@dataclass(frozen=True)
class Manifest:
    """A complete checkpoint: every part it lists was written before it.

    ``topology`` is the controller's own description of the run (cameras,
    shard count, hub sequence...) and must be JSON-able; the store keeps it
    opaque. ``final`` marks the checkpoint a stop (Ctrl-C, SIGTERM) wrote,
    so an operator can tell a clean stop from a periodic checkpoint.
    """

    checkpoint_id: int
    created_at: float
    parts: tuple[PartInfo, ...]
    topology: dict[str, Any] = field(default_factory=dict)
    final: bool = False
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        doc = {
            "format_version": self.format_version,
            "checkpoint_id": self.checkpoint_id,
            "created_at": self.created_at,
            "final": self.final,
            "parts": [
                {"kind": p.kind, "part_id": p.part_id, "path": p.path, "bytes": p.bytes}
                for p in self.parts
            ],
            "topology": self.topology,
        }
        try:
            text = json.dumps(doc, ensure_ascii=False, indent=1, allow_nan=False)
        except (TypeError, ValueError) as exc:
            # Refused here, not on restore: a manifest that cannot be read
            # back would leave the run with nothing to resume from.
            raise ValueError(
                f"checkpoint {self.checkpoint_id}: topology is not JSON-able: {exc}"
            ) from exc
        return text.encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, uri: str) -> Manifest:
        """Parse a manifest; ``uri`` names it in the error if it cannot be used."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CheckpointStoreError(uri, f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise CheckpointStoreError(uri, f"manifest is not a JSON object: {type(doc).__name__}")
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise CheckpointStoreError(
                uri,
                f"manifest has format_version {version!r}, this camcount reads only "
                f"{FORMAT_VERSION}; resume with the version that wrote it or start with --fresh",
            )
        try:
            parts = tuple(
                PartInfo(str(p["kind"]), str(p["part_id"]), str(p["path"]), int(p["bytes"]))
                for p in doc["parts"]
            )
            topology = doc.get("topology", {})
            if not isinstance(topology, dict):
                raise TypeError(f"topology is a {type(topology).__name__}, not an object")
            return cls(
                checkpoint_id=int(doc["checkpoint_id"]),
                created_at=float(doc["created_at"]),
                parts=parts,
                topology=topology,
                final=bool(doc.get("final", False)),
                format_version=version,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointStoreError(uri, f"manifest is malformed: {exc!r}") from exc


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint as an operator lists it (``camcount checkpoints``).

    ``created_at`` and ``final`` come from the manifest, so an incomplete
    checkpoint has no ``created_at``; ``parts`` and ``bytes`` count what is
    stored, manifest included.
    """

    checkpoint_id: int
    complete: bool
    created_at: float | None
    parts: int
    bytes: int
    final: bool
