"""Live sequence numbers that a restarted hub never hands out twice.

The hub numbers every live update; a client resumes by the last number it
saw. A hub that restarts from nothing would number from 1 again, and a
resuming client would take new updates for ones it had. So the hub
reserves numbers in blocks, each recorded as its own object under
``{root}/live/`` before any number of it is used; a new hub starts after
the highest block recorded. Objects are written once and never renamed
(object stores have no atomic rename); older ones are deleted.
"""

from __future__ import annotations

import contextlib

import pyarrow.fs as pafs

from camcount.checkpoints.store import open_store_root
from camcount.errors import CheckpointStoreError

BLOCK = 100_000
_PREFIX = "block-"


class SequenceBlocks:
    """Hands out the end of the reserved range; reserve before passing it."""

    def __init__(self, root: str, block: int = BLOCK) -> None:
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.uri = root
        self._fs, base = open_store_root(root)
        self._dir = f"{base}/live"
        self._block = block
        self._reserved_to = 0

    def _ends(self) -> list[int]:
        try:
            infos = self._fs.get_file_info(pafs.FileSelector(self._dir, allow_not_found=True))
        except OSError as exc:
            raise CheckpointStoreError(f"{self.uri}/live", str(exc)) from exc
        ends = []
        for info in infos:
            name = info.base_name
            if name.startswith(_PREFIX) and name[len(_PREFIX) :].isdigit():
                ends.append(int(name[len(_PREFIX) :]))
        return sorted(ends)

    def start(self) -> int:
        """The last number a previous hub may have used (0 when none), with
        the next block reserved after it."""
        ends = self._ends()
        last = ends[-1] if ends else 0
        self._reserved_to = last
        self.reserve(last + 1)
        return last

    def reserve(self, seq: int) -> None:
        """Make sure ``seq`` is inside a recorded block."""
        if seq <= self._reserved_to:
            return
        end = max(seq, self._reserved_to) + self._block
        try:
            self._fs.create_dir(self._dir, recursive=True)
            with self._fs.open_output_stream(f"{self._dir}/{_PREFIX}{end:020d}") as out:
                out.write(b"")
        except OSError as exc:
            raise CheckpointStoreError(f"{self.uri}/live", str(exc)) from exc
        old = [e for e in self._ends() if e < end]
        for e in old:
            with contextlib.suppress(OSError):  # the next reservation tries again
                self._fs.delete_file(f"{self._dir}/{_PREFIX}{e:020d}")
        self._reserved_to = end
