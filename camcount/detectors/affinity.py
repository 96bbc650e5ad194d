"""CPU cores reserved for the model on a node that cameras share.

On CPU the model is the pipeline's bottleneck, and it shares the node's cores
with every camera's decoding, their Ray threads and the rest of the
pipeline. The kernel's fair scheduler then keeps the model thread waiting for
a core a sixth of the time when the node is busy (bench/RESULTS.md: 0.17 of a
core of run-queue wait on 2 cores with 8 cameras), and each such wait stalls
every camera. So a detector replica that runs on CPU reserves cores in a
small registry on its node and pins its inference thread to them; the
pipeline's other processes on that node read the registry and keep off those
cores. The kernel still balances everything else over the remaining cores.

The registry is a directory of one file per reserving process (named by its
pid, holding its cores), changed under a lock so that replicas starting side
by side pick different cores. Entries of processes that have died are
ignored and removed, so a replica killed without cleaning up frees its cores.
At least one core is always left unreserved. Where the platform has no
``sched_setaffinity`` (macOS, Windows) nothing is reserved or pinned.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

Cores = frozenset[int]


def supported() -> bool:
    return hasattr(os, "sched_setaffinity") and Path("/proc/self/task").is_dir()


@functools.cache
def usable_cores() -> Cores:
    """The node's cores as its first process (pid 1: the container's init,
    or the host's) may use them, not this process's own mask: Ray's
    processes may have been started off the model's cores (cluster/README.md),
    and a replica must still be able to reserve them."""
    if not supported():
        return frozenset()
    try:
        return frozenset(os.sched_getaffinity(1))
    except OSError:
        return frozenset(os.sched_getaffinity(0))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CoreRegistry:
    """Which cores of this node are reserved, and by which process."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl  # POSIX only; reserving is never reached elsewhere

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _entries(self) -> dict[int, Cores]:
        out: dict[int, Cores] = {}
        if not self.root.is_dir():
            return out
        for path in self.root.iterdir():
            if not path.name.isdigit():
                continue
            pid = int(path.name)
            if not _alive(pid):
                path.unlink(missing_ok=True)
                continue
            try:
                out[pid] = frozenset(int(c) for c in json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # being written or removed: its owner is mid-change
        return out

    def reserved(self, *, excluding: int | None = None) -> Cores:
        """Every core a live process holds (but ``excluding``'s own)."""
        entries = self._entries()
        return frozenset().union(*(c for pid, c in entries.items() if pid != excluding))

    def reserve(self, count: int, *, owner: int | None = None) -> Cores:
        """Up to ``count`` free cores for ``owner`` (this process by default),
        taken from the top so that core 0, which takes most interrupts, stays
        with the shared work. Fewer, or none, when the node has too few cores
        left: one always stays unreserved."""
        owner = os.getpid() if owner is None else owner
        if count <= 0 or not supported():
            return frozenset()
        with self._locked():
            taken = self.reserved(excluding=owner)
            free = sorted(usable_cores() - taken, reverse=True)
            spare = len(free) - 1  # one core stays for everything else
            cores = frozenset(free[: max(0, min(count, spare))])
            path = self.root / str(owner)
            if cores:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(sorted(cores)))
                tmp.replace(path)
            else:
                path.unlink(missing_ok=True)
        if len(cores) < count:
            logger.warning(
                "reserved %d of %d cores for the model: %d usable, %d held by other replicas",
                len(cores),
                count,
                len(usable_cores()),
                len(taken),
            )
        return cores

    def release(self, *, owner: int | None = None) -> None:
        owner = os.getpid() if owner is None else owner
        with self._locked():
            (self.root / str(owner)).unlink(missing_ok=True)


def _set_threads(cores: Cores) -> None:
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cores)


def keep_off(reserved: Cores) -> Cores:
    """Move every thread of this process off ``reserved`` (threads started
    later inherit the mask of the thread that starts them). Returns the cores
    now used; all usable ones when keeping off would leave none."""
    if not supported():
        return frozenset()
    allowed = usable_cores() - reserved or usable_cores()
    _set_threads(allowed)
    return allowed


def current_cores() -> Cores:
    """Where the calling thread may run (empty where that cannot be known)."""
    return frozenset(os.sched_getaffinity(0)) if supported() else frozenset()


def pin_this_thread(cores: Cores) -> None:
    """Only the calling thread, and the threads it starts (a backend's
    intra-op pool), run on ``cores``."""
    if cores and supported():
        os.sched_setaffinity(0, cores)
