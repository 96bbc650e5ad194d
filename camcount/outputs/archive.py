"""The archive: every raw event as Parquet in object storage, to query
with any Parquet reader and to rebuild the warehouse from.

Layout (hive-style, so ``pyarrow.dataset`` and ClickHouse read the
partitions as columns)::

    {uri}/kind={kind}/date={YYYY-MM-DD}/camera_id={camera}/part-{n:08d}-{stream}-{run}.parquet
    {uri}/kind=dead_letter/date={YYYY-MM-DD}/part-{n:08d}-{stream}-{run}.parquet

``n`` is the checkpoint whose barrier the rows came before, ``stream``
the shard that sent them (``s0``, ``s1``...; ``controller`` for camera
metadata), ``run`` the pipeline run. A file holds its kind's Arrow schema
(``camcount.events``) with every column, ``camera_id`` included; the date
is the event's UTC day (a window row's start, a visit's entry, camera
metadata's version).

Exactly-once, by name:

1. rows wait in memory until a flush; the flush at checkpoint ``n``
   writes one file per (kind, date, camera) under ``n`` and returns only
   once every file is whole and in place (a local file is written under a
   ``.`` name that readers skip, then renamed; an object store's single
   PUT is atomic), so a reader never sees half a file;
2. the same name always holds the same rows, so a file written again is
   replaced, never doubled;
3. when the pipeline rolls a shard back to checkpoint ``b`` (a part died),
   ``rewind(b)`` deletes that stream's files after ``b``: the rows in them
   are made again by the replay, into files of later checkpoints. An
   archive that itself restarted loses only rows not yet flushed, and its
   new epoch fails the checkpoint, which rolls every shard back.

A flush at the end of the input (no barrier) is named after the last
checkpoint plus one, with ``-end1``, ``-end2``... (one per such flush).
A checkpoint is flushed once: a second flush of it (or of an older one)
would replace its files with other rows, and is refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from camcount.events import DeadLetter
from camcount.outputs.errors import ArchiveError
from camcount.outputs.port import END_OF_INPUT, Ack, Guarantee
from camcount.outputs.tables import CAMERA_KINDS, EVENT_KINDS
from camcount.stream.spill import open_root

#: The column whose UTC day names a row's ``date=`` partition, per kind;
#: camera metadata is dated by its version (milliseconds).
DATE_COLUMNS: dict[str, str] = {
    "crossing": "event_time",
    "zone_transition": "event_time",
    "zone_sample": "event_time",
    "zone_visit": "entered_at",
    "window_row": "window_start",
    "dead_letter": "event_time",
    "gap": "gap_from",
    "camera": "version",
    "camera_counter": "version",
}
_MS_DATED = frozenset({"camera", "camera_counter"})
#: Kinds without a camera: their files lie right under ``date=``.
CAMERALESS = frozenset({"dead_letter"})
PARQUET_COMPRESSION = "zstd"


def open_archive(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and base path of an archive URI (``file://`` or a
    plain path, ``s3://``, ``gs://``); ``ArchiveError`` for a bad one."""
    if not uri.strip():
        raise ArchiveError(uri, "no archive URI given")
    try:
        return open_root(uri)
    except (OSError, pa.ArrowException, ValueError, TypeError) as exc:
        raise ArchiveError(uri, f"cannot open: {exc}") from exc


@dataclass(frozen=True)
class ArchiveFile:
    """One file of the archive, parsed back from its name."""

    path: str
    kind: str
    checkpoint_id: int
    stream: str
    run: str
    #: 0 for a checkpoint's file, k for the k-th flush at the end of input.
    end: int


def _file_name(checkpoint_id: int, stream: str, run: str, end: int) -> str:
    return f"part-{checkpoint_id:08d}-{stream}-{run}{f'-end{end}' if end else ''}.parquet"


def parse_file(path: str) -> ArchiveFile | None:
    """The archive file at ``path``, or None for anything else."""
    name = path.rsplit("/", 1)[-1]
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    fields = name[len("part-") : -len(".parquet")].split("-")
    end = 0
    if fields[-1].startswith("end") and fields[-1][3:].isdigit():
        end = int(fields.pop()[3:])
    if len(fields) != 3 or not fields[0].isdigit():
        return None
    kind = next((p[len("kind=") :] for p in path.split("/") if p.startswith("kind=")), "")
    return ArchiveFile(path, kind, int(fields[0]), fields[1], fields[2], end)


def _dates(kind: str, table: pa.Table) -> pa.Array:
    """Each row's UTC day as ``YYYY-MM-DD``."""
    t = np.asarray(table.column(DATE_COLUMNS[kind]).to_numpy(), dtype=np.float64)
    if kind in _MS_DATED:
        t = t / 1000.0
    days = np.floor(t / 86400.0).astype(np.int32)
    return pa.array(days, pa.date32()).cast(pa.string())


def partitions(kind: str, table: pa.Table) -> list[tuple[str, pa.Table]]:
    """``table`` split into its partition folders (relative, no trailing
    slash), each with its rows in their order."""
    if table.num_rows == 0:
        return []
    dates = _dates(kind, table)
    has_camera = kind not in CAMERALESS and "camera_id" in table.column_names
    keys = pa.table(
        {"date": dates, "camera_id": table.column("camera_id") if has_camera else dates}
    )
    out = []
    for key in keys.group_by(["date", "camera_id"], use_threads=False).aggregate([]).to_pylist():
        mask = pc.equal(dates, key["date"])
        folder = f"kind={kind}/date={key['date']}"
        if has_camera:
            mask = pc.and_(mask, pc.equal(table.column("camera_id"), key["camera_id"]))
            folder += f"/camera_id={key['camera_id']}"
        out.append((folder, table.filter(mask)))
    return sorted(out, key=lambda p: p[0])


class ArchiveSink:
    """One stream's rows into the archive (module docstring: the layout and
    the exactly-once protocol)."""

    guarantee = Guarantee.EXACTLY_ONCE

    def __init__(
        self,
        uri: str,
        stream: str,
        run: str,
        name: str = "archive",
        kinds: frozenset[str] = EVENT_KINDS | CAMERA_KINDS,
        compression: str = PARQUET_COMPRESSION,
    ) -> None:
        for label, value in (("stream", stream), ("run", run)):
            if not value or not value.replace("_", "").isalnum():
                raise ArchiveError(uri, f"{label} must be letters and digits, not {value!r}")
        self.name = name
        self.kinds = kinds
        self.uri = uri
        self.stream = stream
        self.run = run
        self._compression = compression
        self._fs, self._base = open_archive(uri)
        self._local = isinstance(self._fs, pafs.LocalFileSystem)
        self._pending: dict[str, list[pa.Table]] = {}
        self._last_id = 0
        self._ends = 0
        self._delivered = 0
        self._files = 0
        self._bytes = 0
        self._deleted = 0

    def write(self, kind: str, batch: pa.Table) -> None:
        if kind not in DATE_COLUMNS:
            raise ArchiveError(self.uri, f"no archive layout for kind {kind!r}")
        if batch.num_rows:
            self._pending.setdefault(kind, []).append(batch)

    def flush(self, checkpoint_id: int) -> Ack:
        """Step 1 of the module docstring, under ``checkpoint_id`` (or, for
        ``END_OF_INPUT``, the last one plus one, as an ``-end`` file)."""
        end = self._ends + 1 if checkpoint_id == END_OF_INPUT else 0
        n = self._last_id + 1 if end else checkpoint_id
        if not end and n <= self._last_id:
            raise ArchiveError(
                self.uri,
                f"checkpoint {n} of stream {self.stream} follows {self._last_id}: "
                "each checkpoint is flushed once, in order",
            )
        pending, self._pending = self._pending, {}
        delivered = 0
        try:
            for kind, batches in sorted(pending.items()):
                table = pa.concat_tables(batches, promote_options="default")
                for folder, rows in partitions(kind, table):
                    name = _file_name(n, self.stream, self.run, end)
                    self._put(f"{self._base}/{folder}", name, rows)
                    delivered += rows.num_rows
        except BaseException:
            # Nothing of this flush counts: it is written again, whole, by
            # the replay the failed checkpoint leads to.
            self._pending = {k: v + self._pending.get(k, []) for k, v in pending.items()}
            raise
        if end:
            self._ends = end
        else:
            self._last_id, self._ends = checkpoint_id, 0
        self._delivered += delivered
        return Ack(checkpoint_id, delivered)

    def rewind(self, checkpoint_id: int | None) -> int:
        """Step 3: back to ``checkpoint_id`` (None: the run's start). Rows
        not flushed are dropped and this stream's files after it deleted;
        returns how many files went."""
        base = checkpoint_id or 0
        self._pending = {}
        self._last_id, self._ends = base, 0
        gone = 0
        for f in self.files():
            if f.stream == self.stream and f.run == self.run and f.checkpoint_id > base:
                self._guard(lambda f=f: self._fs.delete_file(f.path), f.path)
                gone += 1
        self._deleted += gone
        return gone

    def files(self) -> list[ArchiveFile]:
        return list_files(self._fs, self._base, self.uri)

    def dead_letters(self) -> Sequence[DeadLetter]:
        return ()

    def metrics(self) -> Mapping[str, float]:
        return {
            "delivered": float(self._delivered),
            "pending": float(sum(t.num_rows for b in self._pending.values() for t in b)),
            "files_written": float(self._files),
            "bytes_written": float(self._bytes),
            "files_rewound": float(self._deleted),
        }

    def close(self) -> None:
        self._pending = {}

    def _put(self, folder: str, name: str, rows: pa.Table) -> None:
        path = f"{folder}/{name}"
        sink = pa.BufferOutputStream()
        pq.write_table(rows, sink, compression=self._compression)
        data = sink.getvalue()

        def put() -> None:
            if self._local:
                self._fs.create_dir(folder, recursive=True)
                hidden = f"{folder}/.{name}.{uuid.uuid4().hex}"
                with self._fs.open_output_stream(hidden) as out:
                    out.write(data)
                self._fs.move(hidden, path)
            else:
                with self._fs.open_output_stream(path) as out:
                    out.write(data)

        self._guard(put, path)
        self._files += 1
        self._bytes += data.size

    def _guard(self, action: object, path: str) -> None:
        try:
            action()  # type: ignore[operator]
        except (OSError, pa.ArrowException) as exc:
            raise ArchiveError(self.uri, f"{path}: {exc}") from exc


def list_files(fs: pafs.FileSystem, base: str, uri: str) -> list[ArchiveFile]:
    """Every archive file under ``base`` (none if it does not exist yet)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(uri, f"cannot list: {exc}") from exc
    found = (parse_file(i.path) for i in infos if i.type == pafs.FileType.File)
    return sorted((f for f in found if f is not None), key=lambda f: f.path)


def kinds_in(uri: str) -> list[str]:
    """The kinds the archive at ``uri`` holds files of."""
    fs, base = open_archive(uri)
    return sorted({f.kind for f in list_files(fs, base, uri)})


def dataset(uri: str, kind: str) -> ds.Dataset:
    """One kind of the archive as a ``pyarrow.dataset`` (``date`` and
    ``camera_id`` from the folders; files starting with ``.`` or ``_`` are
    skipped, as every hive reader does)."""
    fs, base = open_archive(uri)
    fields = [("date", pa.string())]
    if kind not in CAMERALESS:
        fields.append(("camera_id", pa.string()))
    layout = ds.partitioning(pa.schema(fields), flavor="hive")
    try:
        return ds.dataset(
            f"{base}/kind={kind}", filesystem=fs, format="parquet", partitioning=layout
        )
    except (OSError, pa.ArrowException) as exc:
        raise ArchiveError(uri, f"cannot read kind {kind!r}: {exc}") from exc


def read_kind(uri: str, kind: str) -> pa.Table:
    """Every row of one kind, in the schema the pipeline wrote it in (the
    partition column ``date`` left out)."""
    from camcount.warehouse.rows import KINDS

    schema = KINDS[kind].source_schema
    return dataset(uri, kind).to_table(columns=schema.names).cast(schema)
