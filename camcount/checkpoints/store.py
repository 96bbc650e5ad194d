"""Checkpoint parts and manifests in object storage, through ``pyarrow.fs``.

Layout under the storage root (docs/checkpoints.md)::

    {root}/checkpoints/{id:012d}/{kind}/{quoted part id}.arrow
    {root}/checkpoints/{id:012d}/_COMPLETE

Every object is written once under its checkpoint id and never renamed or
overwritten: S3 and GCS have no atomic rename, so the only commit point
they offer is "this object now exists". ``_COMPLETE`` is that commit point
for a whole checkpoint; a checkpoint without it is never restored from.

The same code serves ``file://`` (default), ``s3://`` and ``gs://`` roots;
object stores get short timeouts and few retries (see ``open_store_root``)
because a checkpoint that cannot be written should fail within seconds and
be retried at the next interval, not hold a barrier for minutes.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime
import json
import logging
import pickle
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.ipc as ipc

from camcount.checkpoints.manifest import FORMAT_VERSION, CheckpointInfo, Manifest, PartInfo
from camcount.errors import CheckpointStoreError, redact_uri
from camcount.stream.spill import open_root

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
COMPLETE_NAME = "_COMPLETE"
PART_SUFFIX = ".arrow"
STATE_COLUMN = "state"
PICKLE_PROTOCOL = 5
ID_WIDTH = 12

# Object-store defaults when the root URI does not set them. Connection
# refused fails at once anyway; these bound the slow cases (a black-holed
# endpoint, a stalled transfer) and the SDK's retry backoff.
OBJECT_STORE_CONNECT_TIMEOUT_S = 2.0
OBJECT_STORE_REQUEST_TIMEOUT_S = 10.0
OBJECT_STORE_MAX_ATTEMPTS = 2
GCS_RETRY_TIME_LIMIT_S = 10.0
# Our own query parameters on an ``s3://`` root; pyarrow's from_uri refuses
# unknown ones, so they are taken off before it sees the URI.
S3_URI_OPTIONS = ("connect_timeout", "request_timeout", "max_attempts")

# Local filesystems cap a file name at 255 bytes; refusing longer part ids
# up front gives one clear error on every backend instead of an OSError on
# some of them.
_MAX_NAME_BYTES = 255
_KIND_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ID_DIR_RE = re.compile(r"[0-9]+")
_META_VERSION = b"camcount.format_version"
_META_KIND = b"camcount.kind"
_META_PART = b"camcount.part"
_META_CHECKPOINT = b"camcount.checkpoint"


def open_store_root(root: str) -> tuple[pafs.FileSystem, str]:
    """``spill.open_root``, plus fail-fast settings for object stores.

    An ``s3://`` root may carry ``connect_timeout``, ``request_timeout``
    (seconds) and ``max_attempts`` query parameters; where it does not, the
    module's defaults apply. pyarrow cannot take these from a URI, so the
    filesystem is rebuilt from the options ``from_uri`` parsed (the same
    options pyarrow pickles it with), keeping credentials, endpoint and
    region exactly as the URI gave them.
    """
    settings: dict[str, str] = {}
    uri = root
    if root.startswith("s3://"):
        uri, settings = _take_query_options(root, S3_URI_OPTIONS)
    try:
        fs, base = open_root(uri)
        if fs.type_name == "s3":
            fs = _fail_fast_s3(fs, settings)
        elif fs.type_name == "gcs":
            fs = _fail_fast_gcs(fs)
    except (OSError, pa.ArrowException, ValueError, TypeError) as exc:
        raise CheckpointStoreError(root, f"cannot open storage root: {exc}") from exc
    return fs, base


def _take_query_options(uri: str, names: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """Split our options off a URI's query, leaving the other parameters
    byte for byte as given (re-encoding them could change what pyarrow
    reads, an ``endpoint_override`` URL say)."""
    head, sep, query = uri.partition("?")
    if not sep:
        return uri, {}
    kept: list[str] = []
    taken: dict[str, str] = {}
    for segment in query.split("&"):
        key, _, value = segment.partition("=")
        if unquote(key) in names:
            taken[unquote(key)] = unquote(value)
        elif segment:
            kept.append(segment)
    return (f"{head}?{'&'.join(kept)}" if kept else head), taken


def _fail_fast_s3(fs: pafs.FileSystem, settings: dict[str, str]) -> pafs.FileSystem:
    _, (options,) = fs.__reduce__()
    options = dict(options)
    options["connect_timeout"] = float(
        settings.get("connect_timeout", OBJECT_STORE_CONNECT_TIMEOUT_S)
    )
    options["request_timeout"] = float(
        settings.get("request_timeout", OBJECT_STORE_REQUEST_TIMEOUT_S)
    )
    attempts = int(settings.get("max_attempts", OBJECT_STORE_MAX_ATTEMPTS))
    if attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {attempts}")
    options["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=attempts)
    return pafs.S3FileSystem(**options)


def _fail_fast_gcs(fs: pafs.FileSystem) -> pafs.FileSystem:
    # The GCS client retries for 15 minutes by default.
    _, (options,) = fs.__reduce__()
    if options.get("retry_time_limit") is not None:
        return fs
    options = dict(options)
    options["retry_time_limit"] = datetime.timedelta(seconds=GCS_RETRY_TIME_LIMIT_S)
    return pafs.GcsFileSystem(**options)


@dataclass
class _Present:
    """What one listing found of one checkpoint."""

    parts: int = 0
    bytes: int = 0
    has_complete: bool = False


class CheckpointStore:
    """Checkpoint parts and ``_COMPLETE`` manifests under one storage root.

    Invariants it keeps:

    - an object, once written, is never overwritten or renamed;
    - ``latest`` and ``manifest`` only return a checkpoint whose
      ``_COMPLETE`` was written, and ``complete`` writes it only once every
      part it names is stored with the size it names;
    - ids are never reused: ``next_id`` is above every id present, and
      ``prune`` never deletes the newest id (it is either the newest
      complete checkpoint or newer than it);
    - every storage failure is a ``CheckpointStoreError`` naming the object.

    Part states are pickled (protocol 5) inside a one-row Arrow IPC file,
    so any snapshot value (frozen dataclasses holding numpy arrays) is
    stored as is, with its format version, kind, part and checkpoint in the
    schema metadata. Unpickling runs code: the root must be trusted, as the
    operator's own bucket is.

    No locking: the checkpoint protocol gives every part one writer, and
    the existence check before a write is a guard against bugs, not a lock
    (S3 has no create-if-absent for it to rely on).
    """

    def __init__(self, root: str, keep: int = 3) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer of at least 1, got {keep!r}")
        # The root for messages, with any credentials masked.
        self.uri = redact_uri(root)
        self.keep = keep
        self._fs, base = open_store_root(root)
        self._base = base.rstrip("/") or "/"
        self._local = self._fs.type_name == "local"
        self._query = root.partition("?")[2] if not self._local else ""
        self._scheme = root.split("://", 1)[0] if "://" in root else "file"
        self._dir = f"{self._base.rstrip('/')}/{CHECKPOINTS_DIR}"

    def __repr__(self) -> str:
        return f"CheckpointStore({self.uri!r}, keep={self.keep})"

    # -- parts ---------------------------------------------------------

    def next_id(self) -> int:
        present = self._scan()
        return max(present, default=0) + 1

    def write_part(self, checkpoint_id: int, kind: str, part_id: str, state: object) -> PartInfo:
        """Store one part's state, once.

        1. Serialise the state in memory, so a state that cannot be pickled
           fails before anything is written.
        2. Refuse if the object exists: a second write would mean two
           writers, or a retry that must use a new checkpoint id.
        3. Write it in one stream (one PUT on object stores).
        """
        path = self._part_path(checkpoint_id, kind, part_id)
        uri = self._uri_of(path)
        # Step 1
        buffer = self._encode(checkpoint_id, kind, part_id, state, uri)
        # Step 2
        self._refuse_existing(path, uri)
        # Step 3
        self._write(path, buffer, uri)
        return PartInfo(kind, part_id, self._relative(path), buffer.size)

    def read_part(self, checkpoint_id: int, kind: str, part_id: str) -> object:
        path = self._part_path(checkpoint_id, kind, part_id)
        uri = self._uri_of(path)
        try:
            with self._fs.open_input_file(path) as src:
                table = ipc.open_file(src).read_all()
        except FileNotFoundError as exc:
            raise CheckpointStoreError(uri, "no such part") from exc
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(uri, f"cannot read part: {exc}") from exc
        meta = table.schema.metadata or {}
        version = meta.get(_META_VERSION, b"").decode("utf-8", "replace")
        if version != str(FORMAT_VERSION):
            raise CheckpointStoreError(
                uri,
                f"part has format_version {version or None!r}, this camcount reads only "
                f"{FORMAT_VERSION}; resume with the version that wrote it or start with --fresh",
            )
        expected = {
            _META_KIND: kind,
            _META_PART: part_id,
            _META_CHECKPOINT: str(checkpoint_id),
        }
        for key, want in expected.items():
            got = meta.get(key, b"").decode("utf-8", "replace")
            if got != want:
                raise CheckpointStoreError(
                    uri, f"part says {key.decode()}={got!r}, expected {want!r} (a misplaced file)"
                )
        if table.num_rows != 1 or table.column_names != [STATE_COLUMN]:
            raise CheckpointStoreError(
                uri,
                f"part holds {table.num_rows} rows of {table.column_names}, "
                f"expected one row of [{STATE_COLUMN!r}]",
            )
        payload = table.column(STATE_COLUMN)[0].as_py()
        try:
            return pickle.loads(payload)
        except Exception as exc:  # unpickling can raise almost anything
            raise CheckpointStoreError(uri, f"cannot unpickle state: {exc!r}") from exc

    def part_ids(self, checkpoint_id: int, kind: str) -> builtins.list[str]:
        directory = f"{self._checkpoint_dir(checkpoint_id)}/{_check_kind(kind)}"
        infos = self._list(directory, recursive=False)
        return sorted(
            unquote(i.base_name.removesuffix(PART_SUFFIX))
            for i in infos
            if i.type == pafs.FileType.File and i.base_name.endswith(PART_SUFFIX)
        )

    # -- manifests -----------------------------------------------------

    def complete(self, manifest: Manifest) -> None:
        """Seal a checkpoint by writing its ``_COMPLETE`` manifest.

        1. Refuse if the checkpoint is already complete.
        2. Check that every part the manifest names is stored with the
           size it names, so a restore never meets a missing part.
        3. Write the manifest, last.
        """
        checkpoint_id = manifest.checkpoint_id
        path = self._complete_path(checkpoint_id)
        uri = self._uri_of(path)
        data = manifest.to_json()
        # Step 1
        self._refuse_existing(path, uri)
        # Step 2
        stored = {
            self._relative(i.path): i.size
            for i in self._list(self._checkpoint_dir(checkpoint_id), recursive=True)
            if i.type == pafs.FileType.File
        }
        for part in manifest.parts:
            if stored.get(part.path) != part.bytes:
                found = stored.get(part.path)
                raise CheckpointStoreError(
                    self._uri_of(f"{self._base.rstrip('/')}/{part.path}"),
                    f"cannot complete checkpoint {checkpoint_id}: part "
                    f"{part.kind}/{part.part_id} should hold {part.bytes} bytes, "
                    + ("it is missing" if found is None else f"it holds {found}"),
                )
        # Step 3
        self._write(path, pa.py_buffer(data), uri)

    def manifest(self, checkpoint_id: int) -> Manifest:
        path = self._complete_path(checkpoint_id)
        uri = self._uri_of(path)
        data = self._read_bytes(path, uri, missing=f"checkpoint {checkpoint_id} is not complete")
        return self._parse(checkpoint_id, data, uri)

    def latest(self) -> Manifest | None:
        """The newest complete checkpoint, or None.

        A ``_COMPLETE`` that is not valid JSON (a write cut short on a local
        disk) is skipped for the one before it; one from another format
        version raises, since quietly resuming from an older checkpoint
        would rewind the run.
        """
        present = self._scan()
        for checkpoint_id in sorted(present, reverse=True):
            if not present[checkpoint_id].has_complete:
                continue
            path = self._complete_path(checkpoint_id)
            uri = self._uri_of(path)
            data = self._read_bytes(path, uri, missing="manifest vanished while reading")
            try:
                json.loads(data)
            except ValueError as exc:
                log.warning("skipping checkpoint %s: torn manifest (%s)", redact_uri(uri), exc)
                continue
            return self._parse(checkpoint_id, data, uri)
        return None

    def list(self) -> builtins.list[CheckpointInfo]:
        present = self._scan()
        out: builtins.list[CheckpointInfo] = []
        for checkpoint_id in sorted(present):
            found = present[checkpoint_id]
            manifest = self._usable(checkpoint_id) if found.has_complete else None
            out.append(
                CheckpointInfo(
                    checkpoint_id=checkpoint_id,
                    complete=manifest is not None,
                    created_at=None if manifest is None else manifest.created_at,
                    parts=found.parts,
                    bytes=found.bytes,
                    final=False if manifest is None else manifest.final,
                )
            )
        return out

    # -- deletion ------------------------------------------------------

    def prune(self) -> builtins.list[int]:
        """Delete what a restore can no longer need: complete checkpoints
        older than the newest ``keep``, and incomplete ones older than the
        newest complete (those newer may still be in progress)."""
        present = self._scan()
        complete = [
            i for i in sorted(present) if present[i].has_complete and self._usable(i) is not None
        ]
        if not complete:
            return []
        kept = set(complete[-self.keep :])
        newest = complete[-1]
        doomed = [
            i
            for i in sorted(present)
            if (i in complete and i not in kept) or (i not in complete and i < newest)
        ]
        for checkpoint_id in doomed:
            self._delete(checkpoint_id)
        return doomed

    def delete(self, checkpoint_id: int) -> None:
        """Remove one checkpoint (an operator's restore to an older one)."""
        self._delete(checkpoint_id)

    def delete_all(self) -> int:
        """Remove every checkpoint (``--fresh``); ids start again at 1."""
        present = self._scan()
        for checkpoint_id in sorted(present):
            self._delete(checkpoint_id)
        return len(present)

    # -- internals -----------------------------------------------------

    def _checkpoint_dir(self, checkpoint_id: int) -> str:
        if isinstance(checkpoint_id, bool) or not isinstance(checkpoint_id, int):
            raise TypeError(f"checkpoint id must be an int, got {checkpoint_id!r}")
        if checkpoint_id < 1:
            raise ValueError(f"checkpoint id must be at least 1, got {checkpoint_id}")
        return f"{self._dir}/{checkpoint_id:0{ID_WIDTH}d}"

    def _complete_path(self, checkpoint_id: int) -> str:
        return f"{self._checkpoint_dir(checkpoint_id)}/{COMPLETE_NAME}"

    def _part_path(self, checkpoint_id: int, kind: str, part_id: str) -> str:
        directory = self._checkpoint_dir(checkpoint_id)
        return f"{directory}/{_check_kind(kind)}/{_part_file_name(part_id)}"

    def _relative(self, path: str) -> str:
        return path[len(self._base.rstrip("/")) + 1 :]

    def _uri_of(self, path: str) -> str:
        """The object's address as an operator would type it."""
        if self._local:
            return path
        query = f"?{self._query}" if self._query else ""
        return f"{self._scheme}://{path}{query}"

    def _encode(
        self, checkpoint_id: int, kind: str, part_id: str, state: object, uri: str
    ) -> pa.Buffer:
        try:
            payload = pickle.dumps(state, protocol=PICKLE_PROTOCOL)
        except Exception as exc:  # pickling can raise almost anything
            raise CheckpointStoreError(
                uri, f"state of type {type(state).__name__} cannot be pickled: {exc!r}"
            ) from exc
        schema = pa.schema(
            [pa.field(STATE_COLUMN, pa.large_binary(), nullable=False)],
            metadata={
                _META_VERSION: str(FORMAT_VERSION).encode(),
                _META_KIND: kind.encode(),
                _META_PART: part_id.encode("utf-8"),
                _META_CHECKPOINT: str(checkpoint_id).encode(),
            },
        )
        table = pa.table([pa.array([payload], pa.large_binary())], schema=schema)
        sink = pa.BufferOutputStream()
        with ipc.new_file(sink, schema) as writer:
            writer.write_table(table)
        buffer: pa.Buffer = sink.getvalue()
        return buffer

    def _refuse_existing(self, path: str, uri: str) -> None:
        try:
            info = self._fs.get_file_info(path)
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(uri, f"cannot check whether it exists: {exc}") from exc
        if info.type != pafs.FileType.NotFound:
            raise CheckpointStoreError(
                uri, "already exists; checkpoint objects are never overwritten"
            )

    def _write(self, path: str, data: pa.Buffer, uri: str) -> None:
        try:
            if self._local:  # object stores have no directories to make
                self._fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            with self._fs.open_output_stream(path) as out:
                out.write(data)
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(uri, f"cannot write: {exc}") from exc

    def _read_bytes(self, path: str, uri: str, missing: str) -> bytes:
        try:
            with self._fs.open_input_stream(path) as src:
                data: bytes = src.read()
        except FileNotFoundError as exc:
            raise CheckpointStoreError(uri, missing) from exc
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(uri, f"cannot read: {exc}") from exc
        return data

    def _parse(self, checkpoint_id: int, data: bytes, uri: str) -> Manifest:
        manifest = Manifest.from_json(data, uri)
        if manifest.checkpoint_id != checkpoint_id:
            raise CheckpointStoreError(
                uri,
                f"manifest is for checkpoint {manifest.checkpoint_id}, found under {checkpoint_id}",
            )
        return manifest

    def _usable(self, checkpoint_id: int) -> Manifest | None:
        """The manifest if this version can restore from it; storage errors
        still raise, content problems are logged and give None."""
        path = self._complete_path(checkpoint_id)
        uri = self._uri_of(path)
        data = self._read_bytes(path, uri, missing="manifest vanished while reading")
        try:
            return self._parse(checkpoint_id, data, uri)
        except CheckpointStoreError as exc:
            log.warning("checkpoint %s cannot be restored from: %s", checkpoint_id, exc)
            return None

    def _list(self, directory: str, recursive: bool) -> builtins.list[pafs.FileInfo]:
        selector = pafs.FileSelector(directory, recursive=recursive, allow_not_found=True)
        try:
            infos: builtins.list[pafs.FileInfo] = self._fs.get_file_info(selector)
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(self._uri_of(directory), f"cannot list: {exc}") from exc
        return infos

    def _scan(self) -> dict[int, _Present]:
        """Every checkpoint id present (a directory or any object under it)
        and what it holds, from one recursive listing."""
        present: dict[int, _Present] = {}
        prefix = f"{self._dir}/"
        for info in self._list(self._dir, recursive=True):
            if not info.path.startswith(prefix):
                continue
            rest = info.path[len(prefix) :].split("/")
            if not _ID_DIR_RE.fullmatch(rest[0]):
                continue
            found = present.setdefault(int(rest[0]), _Present())
            if info.type != pafs.FileType.File:
                continue
            found.bytes += info.size or 0
            if rest[1:] == [COMPLETE_NAME]:
                found.has_complete = True
            elif len(rest) == 3 and rest[2].endswith(PART_SUFFIX):
                found.parts += 1
        return present

    def _delete(self, checkpoint_id: int) -> None:
        """Delete one checkpoint, ``_COMPLETE`` first: an object store
        deletes a prefix in no set order, and a checkpoint whose parts are
        half gone must already have stopped being complete."""
        directory = self._checkpoint_dir(checkpoint_id)
        complete = f"{directory}/{COMPLETE_NAME}"
        try:
            with contextlib.suppress(FileNotFoundError):
                self._fs.delete_file(complete)
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(self._uri_of(complete), f"cannot delete: {exc}") from exc
        try:
            with contextlib.suppress(FileNotFoundError):  # a concurrent prune got there first
                self._fs.delete_dir(directory)
        except (OSError, pa.ArrowException) as exc:
            raise CheckpointStoreError(self._uri_of(directory), f"cannot delete: {exc}") from exc


def _check_kind(kind: str) -> str:
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise ValueError(f"part kind must match {_KIND_RE.pattern}, got {kind!r}")
    return kind


def _part_file_name(part_id: str) -> str:
    """A file name for any part id: slashes, spaces and non-ASCII are
    percent-quoted, so a camera id can never escape its directory."""
    if not isinstance(part_id, str) or not part_id:
        raise ValueError(f"part id must be a non-empty string, got {part_id!r}")
    name = quote(part_id, safe="") + PART_SUFFIX
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise ValueError(
            f"part id {part_id!r} is too long: its file name would be {len(name)} bytes, "
            f"at most {_MAX_NAME_BYTES}"
        )
    return name
