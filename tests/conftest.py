"""Fixtures shared by the whole suite.

Real test data lives in ``../shared/data`` beside the checkout; tests that
need it skip with a clear message where it is absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mosquitto import MOSQUITTO, Mosquitto

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def require_binary(path: str, what: str) -> None:
    """Skip where a system binary is missing, but fail under CI so CI never
    skips it silently."""
    if Path(path).exists():
        return
    message = f"{what} not installed ({path} missing)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: CI must install it (.ci/run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A mosquitto broker for the whole session (stop and start it again
    to simulate an outage; a test that does so leaves it running)."""
    require_binary(MOSQUITTO, "the mosquitto MQTT broker")
    broker = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
