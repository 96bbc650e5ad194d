"""The checkpoint store on a local ``file://`` root (tmp_path).

The same code runs against S3 in tests/integration/test_checkpoint_s3.py;
here every case takes milliseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import camcount.checkpoints.store as store_module
from camcount.checkpoints import (
    FORMAT_VERSION,
    CheckpointStore,
    CheckpointStoreError,
    Manifest,
    PartInfo,
)
from camcount.checkpoints.store import _take_query_options
from camcount.errors import redact_uri


@dataclass(frozen=True)
class TrackState:
    """A stand-in for a core snapshot: numpy arrays inside a frozen dataclass."""

    next_id: int
    boxes: np.ndarray
    ids: np.ndarray
    memory: dict[int, tuple[float, float]]


def make_state(n: int = 3) -> TrackState:
    return TrackState(
        next_id=n + 1,
        boxes=np.arange(n * 4, dtype=np.float32).reshape(n, 4),
        ids=np.arange(1, n + 1, dtype=np.int64),
        memory={i: (float(i), -0.5) for i in range(n)},
    )


def checkpoint(store: CheckpointStore, parts: dict[str, str], *, seal: bool = True) -> int:
    """Write one checkpoint of camera parts ({camera id: payload}); seal it
    with a manifest unless ``seal`` is false (a checkpoint cut short)."""
    checkpoint_id = store.next_id()
    infos = tuple(
        store.write_part(checkpoint_id, "cameras", cam, payload) for cam, payload in parts.items()
    )
    if seal:
        store.complete(Manifest(checkpoint_id, time.time(), infos, {"cameras": sorted(parts)}))
    return checkpoint_id


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(f"file://{tmp_path}/store", keep=2)


def test_round_trip_of_numpy_state(store: CheckpointStore, tmp_path: Path) -> None:
    state = make_state()
    info = store.write_part(1, "cameras", "cam-1", state)
    assert info == PartInfo(
        "cameras", "cam-1", "checkpoints/000000000001/cameras/cam-1.arrow", info.bytes
    )
    assert info.bytes == (tmp_path / "store" / info.path).stat().st_size
    back = store.read_part(1, "cameras", "cam-1")
    assert isinstance(back, TrackState)
    assert back.next_id == state.next_id and back.memory == state.memory
    np.testing.assert_array_equal(back.boxes, state.boxes)
    assert back.boxes.dtype == np.float32 and back.ids.dtype == np.int64
    assert back is not state


def test_manifest_round_trip(store: CheckpointStore) -> None:
    part = store.write_part(1, "shards", "0", {"window": (1, 2)})
    written = Manifest(1, 1234.5, (part,), {"shards": 1, "hub_seq": 7}, final=True)
    store.complete(written)
    assert store.manifest(1) == written
    assert store.latest() == written
    assert Manifest.from_json(written.to_json(), "x") == written


@pytest.mark.parametrize(
    "root",
    [
        "file://./var/store",  # relative to the working directory
        "./var/store",  # a plain relative path
        "ABS",  # file:///abs
    ],
)
def test_root_forms(root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    if root == "ABS":
        root = f"file://{tmp_path}/var/store"
    store = CheckpointStore(root)
    store.write_part(1, "hub", "hub", 42)
    assert (tmp_path / "var/store/checkpoints/000000000001/hub/hub.arrow").is_file()
    assert store.uri == root


def test_next_id_counts_incomplete_checkpoints(store: CheckpointStore) -> None:
    assert store.next_id() == 1
    store.write_part(1, "cameras", "a", 1)
    assert store.next_id() == 2  # a checkpoint cut short still takes its id
    store.write_part(7, "cameras", "a", 1)
    assert store.next_id() == 8


def test_ids_never_reused_after_prune(store: CheckpointStore) -> None:
    ids = [checkpoint(store, {"a": f"p{i}"}) for i in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    assert store.prune() == [1, 2, 3]
    assert store.next_id() == 6
    assert [i.checkpoint_id for i in store.list()] == [4, 5]


def test_latest_ignores_incomplete(store: CheckpointStore) -> None:
    assert store.latest() is None
    checkpoint(store, {"a": "old"}, seal=False)
    assert store.latest() is None  # parts but no _COMPLETE
    done = checkpoint(store, {"a": "done"})
    checkpoint(store, {"a": "newer", "b": "cut short"}, seal=False)
    latest = store.latest()
    assert latest is not None and latest.checkpoint_id == done
    with pytest.raises(CheckpointStoreError, match="not complete") as err:
        store.manifest(done + 1)
    assert err.value.uri.endswith("000000000003/_COMPLETE")


def test_latest_skips_a_torn_manifest(store: CheckpointStore, tmp_path: Path) -> None:
    # A _COMPLETE cut short on a local disk: fall back to the one before.
    checkpoint(store, {"a": "1"})
    second = checkpoint(store, {"a": "2"})
    complete = tmp_path / f"store/checkpoints/{second:012d}/_COMPLETE"
    complete.write_bytes(complete.read_bytes()[:20])
    latest = store.latest()
    assert latest is not None and latest.checkpoint_id == 1
    assert [i.complete for i in store.list()] == [True, False]


# Each row: what the checkpoints are, oldest first (c complete, i incomplete),
# keep, which ids prune deletes.
PRUNE_CASES = [
    ("cccc", 3, [1]),  # only the `keep` newest complete ones stay
    ("icici", 1, [1, 2, 3]),  # the incomplete 5 is newer than the newest: in progress
    ("ci", 3, []),  # nothing older than the newest complete
    ("ii", 1, []),  # nothing complete: nothing is safe to delete
    ("cc", 5, []),  # fewer than `keep`
    ("iccicci", 2, [1, 2, 3, 4]),  # incomplete 4 is between kept ones: still older
    ("c", 1, []),  # never the newest complete
]


@pytest.mark.parametrize(("shape", "keep", "deleted"), PRUNE_CASES)
def test_prune(tmp_path: Path, shape: str, keep: int, deleted: list[int]) -> None:
    store = CheckpointStore(str(tmp_path / "store"), keep=keep)
    for n, kind in enumerate(shape):
        checkpoint(store, {"cam": str(n)}, seal=kind == "c")
    newest_complete = max((n + 1 for n, k in enumerate(shape) if k == "c"), default=None)
    assert store.prune() == deleted
    remaining = [i.checkpoint_id for i in store.list()]
    assert remaining == [n for n in range(1, len(shape) + 1) if n not in deleted]
    assert store.next_id() == len(shape) + 1
    latest = store.latest()
    assert (latest.checkpoint_id if latest else None) == newest_complete
    assert store.prune() == []  # idempotent


def test_list_reports_each_checkpoint(store: CheckpointStore) -> None:
    checkpoint(store, {"a": "x", "b": "y"})
    checkpoint(store, {"a": "x"}, seal=False)
    first, second = store.list()
    assert (first.checkpoint_id, first.complete, first.parts, first.final) == (1, True, 2, False)
    assert first.created_at is not None and first.bytes > 0
    assert (second.checkpoint_id, second.complete, second.created_at, second.parts) == (
        2,
        False,
        None,
        1,
    )


def test_delete_all(store: CheckpointStore) -> None:
    checkpoint(store, {"a": "x"})
    checkpoint(store, {"a": "x"}, seal=False)
    assert store.delete_all() == 2
    assert store.list() == [] and store.latest() is None
    assert store.next_id() == 1  # --fresh starts over
    assert store.delete_all() == 0


def test_wrong_manifest_version_is_refused(store: CheckpointStore) -> None:
    part = store.write_part(1, "cameras", "a", 1)
    store.complete(Manifest(1, 0.0, (part,), {}, format_version=FORMAT_VERSION + 1))
    message = f"format_version {FORMAT_VERSION + 1}, this camcount reads only {FORMAT_VERSION}"
    with pytest.raises(CheckpointStoreError, match=message) as err:
        store.manifest(1)
    assert err.value.uri.endswith("checkpoints/000000000001/_COMPLETE")
    with pytest.raises(CheckpointStoreError, match=message):
        store.latest()  # never quietly falls back to an older checkpoint


def test_wrong_part_version_is_refused(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "FORMAT_VERSION", FORMAT_VERSION + 1)
    store.write_part(1, "cameras", "a", make_state())
    monkeypatch.undo()
    with pytest.raises(CheckpointStoreError, match=f"format_version '{FORMAT_VERSION + 1}'") as e:
        store.read_part(1, "cameras", "a")
    assert e.value.uri.endswith("checkpoints/000000000001/cameras/a.arrow")


CAMERA_IDS = [
    "plain",
    "with/slash",
    "../escape",
    "two words",
    "caméra-été",
    "東京駅 north",
    "100%",
    ".",
    "..",
    "a?b#c&d=e",
]


def test_any_camera_id_round_trips(store: CheckpointStore, tmp_path: Path) -> None:
    for n, cam in enumerate(CAMERA_IDS):
        store.write_part(1, "cameras", cam, n)
    assert store.part_ids(1, "cameras") == sorted(CAMERA_IDS)
    for n, cam in enumerate(CAMERA_IDS):
        assert store.read_part(1, "cameras", cam) == n
    # Every part stayed in its directory, whatever its id.
    files = list((tmp_path / "store").rglob("*.arrow"))
    assert {f.parent for f in files} == {tmp_path / "store/checkpoints/000000000001/cameras"}
    assert store.part_ids(1, "shards") == [] and store.part_ids(9, "cameras") == []


def test_unwritable_root_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    store = CheckpointStore(str(blocker))
    with pytest.raises(CheckpointStoreError) as err:
        store.write_part(1, "cameras", "a", 1)
    assert err.value.uri == f"{blocker}/checkpoints/000000000001/cameras/a.arrow"
    assert str(blocker) in str(err.value)


def test_never_overwrites(store: CheckpointStore) -> None:
    part = store.write_part(1, "cameras", "a", "first")
    with pytest.raises(CheckpointStoreError, match="never overwritten") as err:
        store.write_part(1, "cameras", "a", "second")
    assert err.value.uri.endswith("cameras/a.arrow")
    assert store.read_part(1, "cameras", "a") == "first"
    store.complete(Manifest(1, 0.0, (part,), {}))
    with pytest.raises(CheckpointStoreError, match="never overwritten"):
        store.complete(Manifest(1, 1.0, (), {}))
    assert store.manifest(1).created_at == 0.0


def test_complete_refuses_a_missing_or_resized_part(store: CheckpointStore) -> None:
    part = store.write_part(1, "cameras", "a", 1)
    ghost = PartInfo("cameras", "b", "checkpoints/000000000001/cameras/b.arrow", 10)
    with pytest.raises(CheckpointStoreError, match="it is missing") as err:
        store.complete(Manifest(1, 0.0, (part, ghost), {}))
    assert err.value.uri.endswith("cameras/b.arrow")
    resized = PartInfo(part.kind, part.part_id, part.path, part.bytes + 1)
    with pytest.raises(CheckpointStoreError, match=f"it holds {part.bytes}"):
        store.complete(Manifest(1, 0.0, (resized,), {}))
    assert store.latest() is None


def test_read_errors(store: CheckpointStore, tmp_path: Path) -> None:
    with pytest.raises(CheckpointStoreError, match="no such part"):
        store.read_part(1, "cameras", "a")
    store.write_part(1, "cameras", "a", 1)
    path = tmp_path / "store/checkpoints/000000000001/cameras/a.arrow"
    path.write_bytes(path.read_bytes()[:30])  # a write cut short
    with pytest.raises(CheckpointStoreError, match="cannot read part"):
        store.read_part(1, "cameras", "a")


def test_part_read_under_another_name_is_refused(store: CheckpointStore, tmp_path: Path) -> None:
    store.write_part(1, "cameras", "a", 1)
    directory = tmp_path / "store/checkpoints/000000000001/cameras"
    (directory / "b.arrow").write_bytes((directory / "a.arrow").read_bytes())
    with pytest.raises(CheckpointStoreError, match=r"camcount\.part='a', expected 'b'"):
        store.read_part(1, "cameras", "b")


def test_unpicklable_state(store: CheckpointStore) -> None:
    with pytest.raises(CheckpointStoreError, match="cannot be pickled"):
        store.write_part(1, "cameras", "a", lambda: None)
    assert store.next_id() == 1  # nothing was written


# Each row: a write a caller got wrong, refused before anything is stored.
CALLER_MISTAKES = [
    ((0, "cameras", "a"), "at least 1, got 0"),  # ids start at 1
    ((1, "../x", "a"), "part kind must match"),  # a kind is a plain name
    ((1, "", "a"), "part kind must match"),
    ((1, "cameras", ""), "non-empty string"),
    ((1, "cameras", "é" * 100), "too long"),  # 600 bytes once quoted
]


@pytest.mark.parametrize(("args", "message"), CALLER_MISTAKES)
def test_caller_mistakes(store: CheckpointStore, args: tuple[int, str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.write_part(*args, state=1)
    assert store.next_id() == 1


def test_keep_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep must be an integer of at least 1, got 0"):
        CheckpointStore(str(tmp_path), keep=0)


# Each row: a root as configured, and how messages show it.
REDACTIONS = [
    ("/var/store", "/var/store"),
    ("file://./var/store", "file://./var/store"),
    ("s3://AKIA:s3cr3t@bucket/p", "s3://***@bucket/p"),
    (
        "s3://bucket/p?access_key=AKIA&secret_key=s3cr3t&region=eu-west-1",
        "s3://bucket/p?access_key=***&secret_key=***&region=eu-west-1",
    ),
    ("gs://bucket/p?access_token=ya29", "gs://bucket/p?access_token=***"),
]


@pytest.mark.parametrize(("root", "shown"), REDACTIONS)
def test_secrets_never_shown(root: str, shown: str) -> None:
    assert redact_uri(root) == shown
    error = CheckpointStoreError(root, "boom")
    assert error.uri == shown and str(error) == f"checkpoint store {shown}: boom"
    assert "s3cr3t" not in str(error) and "AKIA" not in str(error)


def test_store_uri_masks_credentials() -> None:
    store = CheckpointStore(
        "s3://AKIA:s3cr3t@bucket/p?endpoint_override=http://127.0.0.1:9&scheme=http"
        "&region=us-east-1"
    )
    assert "s3cr3t" not in store.uri and "s3cr3t" not in repr(store)


def test_s3_options_are_taken_off_the_uri() -> None:
    uri = "s3://b/p?endpoint_override=http://h:1&connect_timeout=0.5&scheme=http&max_attempts=4"
    assert _take_query_options(uri, store_module.S3_URI_OPTIONS) == (
        "s3://b/p?endpoint_override=http://h:1&scheme=http",
        {"connect_timeout": "0.5", "max_attempts": "4"},
    )
    assert _take_query_options("s3://b/p", store_module.S3_URI_OPTIONS) == ("s3://b/p", {})


def test_bad_root_is_refused() -> None:
    with pytest.raises(CheckpointStoreError, match="cannot open storage root") as err:
        CheckpointStore("s3://k:s3cr3t@bucket/p?no_such_option=1")
    assert "s3cr3t" not in str(err.value)
    with pytest.raises(CheckpointStoreError, match="max_attempts must be at least 1"):
        CheckpointStore("s3://bucket/p?region=us-east-1&max_attempts=0")
