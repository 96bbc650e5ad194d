"""A real mosquitto broker for tests: on a free loopback port, with its own
config file and persistence folder, stoppable and startable again on the
same port (a broker outage) with its retained messages kept."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

from camcount.localprocess import LocalProcess, free_port

MOSQUITTO = "/usr/sbin/mosquitto"

__all__ = ["MOSQUITTO", "Mosquitto", "free_port"]


class Mosquitto(LocalProcess):
    """One broker process; ``stop`` and ``start`` simulate an outage (it
    saves its retained messages on SIGTERM)."""

    name = "mosquitto"
    stop_timeout_s = 10.0

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            # Run as root (CI), it would switch to the mosquitto user, who
            # cannot write its persistence file here.
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            f"log_dest file {folder}/mosquitto.log\n"
            "max_queued_messages 0\n"
        )

    def start(self, timeout_s: float = 10.0) -> None:
        log = self.folder / "mosquitto.log"
        self.spawn([MOSQUITTO, "-c", str(self.config)], log, None, self.port, timeout_s)

    def answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False
