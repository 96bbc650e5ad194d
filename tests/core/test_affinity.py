"""Cores reserved for the model: the node registry and the masks it leads to,
on this machine's real scheduler."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from camcount.config import DetectorConfig
from camcount.detectors.affinity import (
    CoreRegistry,
    current_cores,
    keep_off,
    pin_this_thread,
    supported,
    usable_cores,
)

pytestmark = pytest.mark.skipif(not supported(), reason="no sched_setaffinity on this platform")

multicore = pytest.mark.skipif(
    supported() and len(usable_cores()) < 2, reason="reserving needs at least 2 cores"
)


@pytest.fixture
def registry(tmp_path: Path) -> CoreRegistry:
    return CoreRegistry(tmp_path / "cores")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process other than this one, to own a reservation."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture(autouse=True)
def every_core_afterwards() -> Iterator[None]:
    yield
    keep_off(frozenset())


@multicore
def test_a_reservation_takes_the_top_core_and_leaves_one_for_the_rest(registry):
    cores = registry.reserve(len(usable_cores()) + 3)
    assert len(cores) == len(usable_cores()) - 1
    assert min(usable_cores()) not in cores
    assert registry.reserved() == cores
    assert registry.reserve(1) == {max(usable_cores())}


@multicore
def test_a_second_replica_gets_another_core_or_none(registry, sleeper, caplog):
    mine = registry.reserve(1)
    with caplog.at_level(logging.WARNING, logger="camcount.detectors.affinity"):
        theirs = registry.reserve(1, owner=sleeper.pid)
    assert not mine & theirs
    assert registry.reserved() == mine | theirs
    if len(usable_cores()) == 2:
        assert theirs == frozenset()
        assert "reserved 0 of 1 cores" in caplog.text
    else:
        assert len(theirs) == 1


@multicore
def test_a_dead_owner_frees_its_cores(registry, sleeper):
    held = registry.reserve(1, owner=sleeper.pid)
    assert registry.reserved() == held != frozenset()
    sleeper.kill()
    sleeper.wait()
    assert registry.reserved() == frozenset()
    assert not (registry.root / str(sleeper.pid)).exists()


@multicore
def test_release_and_a_zero_count_hold_nothing(registry):
    registry.reserve(1)
    registry.release()
    assert registry.reserved() == frozenset()
    assert registry.reserve(0) == frozenset()
    assert not any(p.name.isdigit() for p in registry.root.iterdir())


@multicore
def test_an_entry_being_written_is_skipped_not_fatal(registry, sleeper):
    registry.root.mkdir(parents=True)
    (registry.root / str(sleeper.pid)).write_text("[1,")
    assert registry.reserved() == frozenset()
    (registry.root / str(sleeper.pid)).write_text(json.dumps([0]))
    assert registry.reserved() == {0}


@multicore
def test_keep_off_moves_every_thread_and_later_threads_follow():
    model = frozenset({max(usable_cores())})
    ready, done = threading.Event(), threading.Event()
    seen: dict[str, frozenset[int]] = {}

    def early() -> None:
        ready.set()
        done.wait(10)
        seen["early"] = current_cores()

    thread = threading.Thread(target=early)
    thread.start()
    ready.wait(10)
    allowed = keep_off(model)
    late = threading.Thread(target=lambda: seen.setdefault("late", current_cores()))
    late.start()
    late.join()
    done.set()
    thread.join()
    assert allowed == usable_cores() - model
    assert seen == {"early": allowed, "late": allowed}
    assert current_cores() == allowed
    assert keep_off(frozenset()) == usable_cores() == current_cores()


@multicore
def test_pin_this_thread_pins_only_the_calling_thread():
    model = frozenset({max(usable_cores())})
    seen: dict[str, frozenset[int]] = {}

    def worker() -> None:
        pin_this_thread(model)
        seen["worker"] = current_cores()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen["worker"] == model
    assert current_cores() == usable_cores()


@multicore
def test_a_process_started_off_the_model_core_still_sees_the_node(tmp_path):
    """Ray started under ``taskset`` without the top core (cluster/README.md):
    its replica must still find that core to reserve and pin to."""
    top = max(usable_cores())
    probe = (
        "import json, os; from camcount.detectors.affinity import usable_cores, pin_this_thread, "
        f"current_cores; pin_this_thread(frozenset({{{top}}})); "
        "print(json.dumps([sorted(usable_cores()), sorted(current_cores())]))"
    )
    child = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, usable_cores() - {top}),
    )
    seen, pinned = json.loads(child.stdout)
    assert set(seen) == usable_cores()
    assert pinned == [top]


@pytest.mark.parametrize(
    ("settings", "cores"),
    [
        ({"model": "ssdlite-person"}, 1),
        ({"model": "onnx:/m.onnx", "device": "cpu"}, 1),
        ({"model": "ssdlite-person", "num_gpus": 1}, 0),
        ({"model": "ssdlite-person", "device": "cuda"}, 0),
        ({"model": "oracle"}, 0),
        ({"model": "noisy"}, 0),
        ({"model": "ssdlite-person", "reserve_cores": 0}, 0),
        ({"model": "torchvision:fasterrcnn", "reserve_cores": 3}, 3),
    ],
)
def test_auto_reserves_a_core_only_for_a_real_model_on_cpu(settings, cores):
    assert DetectorConfig.model_validate(settings).reserved_cores() == cores


def test_a_negative_or_unknown_reservation_is_refused():
    with pytest.raises(ValueError, match="reserve_cores"):
        DetectorConfig(reserve_cores=-1)
    with pytest.raises(ValueError, match="reserve_cores"):
        DetectorConfig.model_validate({"reserve_cores": "all"})
