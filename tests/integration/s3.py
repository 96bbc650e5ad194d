"""An S3 endpoint on loopback for tests: moto's server, stoppable and
restartable on the same port (its buckets live in the test process, so they
survive a restart), with the bucket checkpoints go to."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow.fs as pafs
import pytest

from tests.integration.conftest import free_port

moto_server = pytest.importorskip("moto.server", reason="moto[server] not installed")

ACCESS_KEY = "testing"
SECRET_KEY = "s3cr3t-never-shown"
REGION = "us-east-1"
BUCKET = "camcount-checkpoints"


class Endpoint:
    """moto's S3 server, stoppable and restartable on the same port. Its
    buckets live in this process, so they survive a restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: moto_server.ThreadedMotoServer | None = None

    def start(self) -> None:
        self._server = moto_server.ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.port, verbose=False
        )
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def root(self, prefix: str) -> str:
        return (
            f"s3://{ACCESS_KEY}:{SECRET_KEY}@{BUCKET}/{prefix}"
            f"?endpoint_override=http://127.0.0.1:{self.port}&scheme=http&region={REGION}"
        )


def serve_s3() -> Iterator[Endpoint]:
    """An endpoint with the bucket made, stopped at the end."""
    server = Endpoint()
    server.start()
    try:
        admin = pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region=REGION,
            scheme="http",
            endpoint_override=f"127.0.0.1:{server.port}",
            allow_bucket_creation=True,
        )
        admin.create_dir(BUCKET)
        yield server
    finally:
        server.stop()
