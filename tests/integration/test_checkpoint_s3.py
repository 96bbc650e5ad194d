"""The checkpoint store against a real S3 endpoint: moto's server on a free
loopback port, spoken to over HTTP by pyarrow's S3 client.

Also the outage: with the endpoint down a write fails within seconds with
an error naming the object (and never its credentials), and once the
endpoint is back on the same port writes work again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from camcount.checkpoints import CheckpointStore, CheckpointStoreError, Manifest
from tests.integration.s3 import BUCKET, SECRET_KEY, Endpoint, serve_s3

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    yield from serve_s3()


@pytest.fixture
def running(endpoint: Endpoint) -> Endpoint:
    """The endpoint, up (a test that stopped it may have failed midway)."""
    if not endpoint.running:
        endpoint.start()
    return endpoint


@dataclass(frozen=True)
class WindowState:
    counts: np.ndarray
    keys: tuple[str, ...]


def test_checkpoints_on_s3(running: Endpoint) -> None:
    store = CheckpointStore(running.root("run-1"), keep=2)
    assert store.next_id() == 1
    cameras = ["cam/1", "lobby east", "café"]
    for _ in range(3):
        checkpoint_id = store.next_id()
        parts = [
            store.write_part(checkpoint_id, "cameras", cam, WindowState(np.arange(4), (cam,)))
            for cam in cameras
        ]
        parts.append(store.write_part(checkpoint_id, "hub", "hub", {"seq": checkpoint_id}))
        store.complete(Manifest(checkpoint_id, time.time(), tuple(parts), {"shards": 1}))
    half = store.write_part(4, "cameras", "cam/1", WindowState(np.zeros(1), ()))
    assert half.path == "checkpoints/000000000004/cameras/cam%2F1.arrow"

    latest = store.latest()
    assert latest is not None and latest.checkpoint_id == 3
    assert store.part_ids(3, "cameras") == sorted(cameras)
    back = store.read_part(3, "cameras", "café")
    assert isinstance(back, WindowState) and back.keys == ("café",)
    np.testing.assert_array_equal(back.counts, np.arange(4))
    assert store.read_part(3, "hub", "hub") == {"seq": 3}

    with pytest.raises(CheckpointStoreError, match="never overwritten") as err:
        store.write_part(3, "hub", "hub", {})
    assert err.value.uri.startswith(f"s3://{BUCKET}/run-1/checkpoints/000000000003/hub/hub.arrow")

    assert [(i.checkpoint_id, i.complete, i.parts) for i in store.list()] == [
        (1, True, 4),
        (2, True, 4),
        (3, True, 4),
        (4, False, 1),
    ]
    assert store.prune() == [1]
    assert store.next_id() == 5
    assert store.delete_all() == 3
    assert store.list() == [] and store.next_id() == 1


def test_outage_fails_fast_and_recovers(running: Endpoint) -> None:
    store = CheckpointStore(running.root("run-outage"))
    store.write_part(1, "cameras", "a", 1)

    running.stop()
    started = time.monotonic()
    with pytest.raises(CheckpointStoreError) as err:
        store.write_part(1, "cameras", "b", 2)
    took_s = time.monotonic() - started
    assert took_s < 10, f"an unreachable endpoint took {took_s:.1f} s to fail"
    message = str(err.value)
    assert f"s3://{BUCKET}/run-outage/checkpoints/000000000001/cameras/b.arrow" in message
    assert SECRET_KEY not in message and SECRET_KEY not in err.value.uri

    running.start()  # same port, same buckets
    info = store.write_part(1, "cameras", "b", 2)
    assert info.bytes > 0
    assert store.part_ids(1, "cameras") == ["a", "b"]
    assert store.read_part(1, "cameras", "b") == 2


def test_uri_settings_override_the_defaults(running: Endpoint) -> None:
    store = CheckpointStore(running.root("run-settings") + "&connect_timeout=0.5&max_attempts=1")
    store.write_part(1, "shards", "0", "state")
    assert store.read_part(1, "shards", "0") == "state"
