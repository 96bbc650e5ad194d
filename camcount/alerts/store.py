"""The alert rules set through the API, kept beside the checkpoints.

Rules changed while the pipeline runs (``PUT /alerts/rules``) must outlive
the controller that took them, and must be in force before any shard is
made again: they are the controller's durable state, stored under the
same root as the checkpoints (``file://``, ``s3://``, ``gs://``), not in
a shard's checkpoint, which a rule change between two checkpoints would
not reach. Layout::

    {root}/alert_rules/{version:020d}.json

As with checkpoints, every object is written once and never renamed or
overwritten (object stores have no atomic rename): a change is a new
version, the newest one present is in force, and older ones are pruned.
A run started afresh deletes them with its checkpoints: the config's rules
are in force again.
"""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import ValidationError

from camcount.alerts.rules import AlertsConfig
from camcount.checkpoints.store import open_store_root
from camcount.errors import CheckpointStoreError

RULES_DIR = "alert_rules"
#: Versions kept besides the newest (a reader listing while a writer prunes
#: still finds one).
KEEP_VERSIONS = 3
_NAME = re.compile(r"^([0-9]{20})\.json$")


class RuleStore:
    """The newest version is the rules in force; ``None`` from ``load``
    means none was ever set through the API (the config's are in force)."""

    def __init__(self, root: str) -> None:
        self._fs, base = open_store_root(root)
        self._dir = f"{base.rstrip('/')}/{RULES_DIR}"
        self._local = self._fs.type_name == "local"

    def save(self, rules: AlertsConfig) -> int:
        """Stores ``rules`` as the next version; returns it.

        1. Encode first, so nothing is written for rules that cannot be.
        2. Write the new version in one stream (one PUT on object stores).
        3. Prune all but the newest ``KEEP_VERSIONS``.
        """
        # Step 1
        data = json.dumps(rules.document(), sort_keys=True).encode()
        versions = self._versions()
        version = (versions[-1] if versions else 0) + 1
        path = self._path(version)
        # Step 2
        try:
            if self._local:
                self._fs.create_dir(self._dir, recursive=True)
            with self._fs.open_output_stream(path) as out:
                out.write(data)
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(path, f"cannot write alert rules: {exc}") from exc
        # Step 3
        for old in [*versions, version][:-KEEP_VERSIONS]:
            self._delete(self._path(old))
        return version

    def load(self) -> AlertsConfig | None:
        versions = self._versions()
        if not versions:
            return None
        path = self._path(versions[-1])
        try:
            with self._fs.open_input_stream(path) as src:
                raw = src.read()
            return AlertsConfig.model_validate(json.loads(raw))
        except (OSError, pa.ArrowException, ValueError, ValidationError) as exc:
            raise CheckpointStoreError(path, f"cannot read alert rules: {exc}") from exc

    def clear(self) -> None:
        for version in self._versions():
            self._delete(self._path(version))

    def _versions(self) -> list[int]:
        selector = pafs.FileSelector(self._dir, recursive=False, allow_not_found=True)
        try:
            infos = self._fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(self._dir, f"cannot list alert rules: {exc}") from exc
        found = (_NAME.match(i.base_name) for i in infos if i.type == pafs.FileType.File)
        return sorted(int(m.group(1)) for m in found if m)

    def _path(self, version: int) -> str:
        return f"{self._dir}/{version:020d}.json"

    def _delete(self, path: str) -> None:
        try:
            self._fs.delete_file(path)
        except FileNotFoundError:
            pass
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(path, f"cannot delete alert rules: {exc}") from exc
