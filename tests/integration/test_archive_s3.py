"""The archive on S3 (moto's server on loopback): the same layout, read
back, rewound and rebuilt from as on a local disk, with no secret in an
error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from camcount.outputs.archive import ArchiveSink, read_kind
from camcount.outputs.errors import ArchiveError
from camcount.outputs.rebuild import rebuild_from_archive
from camcount.warehouse import connect
from tests.core.test_warehouse_chdb import make_events
from tests.integration.s3 import BUCKET, SECRET_KEY, Endpoint, serve_s3

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    yield from serve_s3()


def test_the_archive_on_s3_reads_back_rewinds_and_rebuilds(
    endpoint: Endpoint, tmp_path: Path
) -> None:
    uri = endpoint.root("archive-1")
    tables = make_events(seed=21, hours=1, per_hour=30)
    sink = ArchiveSink(uri, "s0", "run1")
    for kind in ("crossing", "window_row"):
        sink.write(kind, tables[kind].slice(0, 20))
    sink.flush(1)
    sink.write("crossing", tables["crossing"].slice(20))
    sink.flush(2)
    assert read_kind(uri, "crossing").num_rows == tables["crossing"].num_rows
    assert sink.rewind(1) >= 1  # the files of checkpoint 2 go
    assert read_kind(uri, "crossing").num_rows == 20
    with connect(f"chdb://{tmp_path}/chdb") as wh:
        report = rebuild_from_archive(uri, wh)
        n = wh.sql("SELECT count() AS n FROM window_counts FINAL").column("n")[0].as_py()
    assert report.rows == {"crossing": 20, "window_row": 20} and n == 20


def test_a_missing_bucket_is_a_clear_error_without_the_secret(endpoint: Endpoint) -> None:
    uri = endpoint.root("x").replace(BUCKET, "no-such-bucket")
    sink = ArchiveSink(uri, "s0", "run1")
    sink.write("crossing", make_events(seed=22, hours=1, per_hour=2)["crossing"])
    with pytest.raises(ArchiveError) as caught:
        sink.flush(1)
    assert "no-such-bucket" in str(caught.value) and SECRET_KEY not in str(caught.value)
