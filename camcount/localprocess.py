"""A server run as a child process for tests and benchmarks (ClickHouse,
ZooKeeper, an MQTT broker): started with its output in a log file, ready
once it answers on its port, stopped with SIGTERM and, if it hangs, killed.

One place for the start-up loop, because each server fails to start in its
own way (exits at once with a config error, or never answers), and each
needs the failure reported with where its log is, not a hang until the
test's timeout.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalProcess:
    """Subclasses say what they run (`spawn`'s command) and when it serves
    (`answers`); ``start``/``stop`` may repeat on the same ports and data."""

    #: Named in errors: "clickhouse-server", "zookeeper", ...
    name = "server"
    #: How long `stop` waits after SIGTERM before it kills.
    stop_timeout_s = 30.0

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def answers(self) -> bool:
        """Whether it serves clients yet."""
        raise NotImplementedError

    def spawn(
        self, command: Sequence[str], log: Path, cwd: Path | None, port: int, timeout_s: float
    ) -> None:
        """Start ``command`` with its output appended to ``log`` and wait
        until it `answers`: an exit or ``timeout_s`` raises, naming the log."""
        out = open(log, "ab")  # noqa: SIM115 (owned by the child)
        self._proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise RuntimeError(f"{self.name} exited with {code}; see {log}")
            if self.answers():
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} not ready on port {port} in {timeout_s} s; see {log}")

    def terminate(self) -> None:
        """Ask it to stop, without waiting: servers stopped together wind
        down in parallel; `stop` then waits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float | None = None) -> None:
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
