"""Batches set aside in object storage: pending (to replay) and dead.

The warehouse sink spills a batch here when the warehouse is down and its
memory buffer is full, or when a checkpoint barrier needs everything
durable while the warehouse is down; it replays and deletes the batch
once the warehouse is back. Rows the warehouse refused go to ``dead/``
with the reason, for a replay once the cause is fixed.

Every file is written once under a name derived from its rows (kind and
a digest of the row identities), never renamed (S3 and GCS have no atomic
rename), and deleted only after its rows are acknowledged. Writing the
same batch twice gives the same name, so a retried spill is a no-op, and
a crash between a replay and the delete only replays idempotent rows
again. Files are Arrow IPC; the schema's metadata carries the kind, the
shape (warehouse rows, or source events that failed conversion), and for
dead letters the reason and detail.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc

log = logging.getLogger(__name__)

SPILL_FORMAT = "1"
SUFFIX = ".arrow"


def open_root(root: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and base path for a storage root URI.

    ``file://`` may be relative (``file://./var/store``, the config's
    default), taken from the working directory; ``s3://``, ``gs://`` and
    the rest go through ``FileSystem.from_uri``.
    """
    if "://" not in root:
        return pafs.LocalFileSystem(), os.path.abspath(root)
    if root.startswith("file://"):
        return pafs.LocalFileSystem(), os.path.abspath(root[len("file://") :])
    fs, path = pafs.FileSystem.from_uri(root)
    return fs, path.rstrip("/")


@dataclass(frozen=True)
class SpillFile:
    """One stored batch: where it is and what it holds."""

    path: str
    kind: str
    digest: str


@dataclass(frozen=True)
class StoredBatch:
    file: SpillFile
    rows: pa.Table
    shape: str
    reason: str
    detail: str


class SpillStore:
    """Pending and dead batches of one sink under ``{root}/{namespace}``."""

    def __init__(self, root: str, namespace: str = "warehouse/sink-0") -> None:
        self.root = root
        self._fs, base = open_root(root)
        self._pending = f"{base}/{namespace}/pending"
        self._dead = f"{base}/{namespace}/dead"
        self._unreadable: set[str] = set()

    def __repr__(self) -> str:
        return f"SpillStore({self._pending.rsplit('/', 1)[0]})"

    def put_pending(self, kind: str, rows: pa.Table, digest: str) -> SpillFile:
        return self._put(self._pending, kind, rows, digest, "warehouse", "", "")

    def put_dead(
        self, kind: str, rows: pa.Table, digest: str, shape: str, reason: str, detail: str
    ) -> SpillFile:
        return self._put(self._dead, kind, rows, digest, shape, reason, detail)

    def pending(self) -> list[SpillFile]:
        """Pending batches, oldest first; unreadable (partly written) files
        are left in place and skipped."""
        return [f for f in self._list(self._pending) if f.path not in self._unreadable]

    def dead(self) -> list[SpillFile]:
        return self._list(self._dead)

    def read(self, f: SpillFile) -> StoredBatch | None:
        """The batch, or None if the file cannot be read (a write cut short
        by a crash: its rows were never acknowledged, so the pipeline
        replays them from its checkpoint)."""
        try:
            with self._fs.open_input_file(f.path) as src:
                table = ipc.open_file(src).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            log.error("cannot read spilled batch %s: %s; leaving it in place", f.path, exc)
            self._unreadable.add(f.path)
            return None
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        rows = table.replace_schema_metadata(None)
        return StoredBatch(
            f,
            rows,
            meta.get("camcount.shape", "warehouse"),
            meta.get("camcount.reason", ""),
            meta.get("camcount.detail", ""),
        )

    def remove(self, f: SpillFile) -> None:
        with contextlib.suppress(FileNotFoundError):  # another replay got there first
            self._fs.delete_file(f.path)

    def _put(
        self,
        base: str,
        kind: str,
        rows: pa.Table,
        digest: str,
        shape: str,
        reason: str,
        detail: str,
    ) -> SpillFile:
        directory = f"{base}/{kind}"
        f = SpillFile(f"{directory}/{digest}{SUFFIX}", kind, digest)
        if self._fs.get_file_info(f.path).type != pafs.FileType.NotFound:
            return f
        self._fs.create_dir(directory, recursive=True)
        meta = {
            "camcount.kind": kind,
            "camcount.shape": shape,
            "camcount.reason": reason,
            "camcount.detail": detail,
            "camcount.spill_format": SPILL_FORMAT,
        }
        table = rows.replace_schema_metadata(meta)
        with self._fs.open_output_stream(f.path) as out, ipc.new_file(out, table.schema) as w:
            w.write_table(table)
        return f

    def _list(self, base: str) -> list[SpillFile]:
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = [
            i
            for i in self._fs.get_file_info(selector)
            if i.type == pafs.FileType.File and i.path.endswith(SUFFIX)
        ]
        infos.sort(key=lambda i: (i.mtime_ns or 0, i.path))
        out = []
        for i in infos:
            kind = i.path.rsplit("/", 2)[-2]
            out.append(SpillFile(i.path, kind, i.base_name.removesuffix(SUFFIX)))
        return out
