"""The Prometheus file_sd target file for a camcount cluster.

Every Ray node exports its metrics (camcount's ``ray_camcount_*`` among
them) on its own port. Ray writes a target file naming them only while its
dashboard runs, and the clusters ``camcount run`` starts switch the
dashboard off; so the run writes the file itself, in Prometheus' file_sd
format (https://prometheus.io/docs/guides/file-sd/), and
cluster/prometheus/prometheus.yml reads it.

The file is replaced whole (written beside, then renamed): Prometheus
reads it whenever it changes and must never see half of it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The job label the dashboard's queries and the alert rules leave free;
#: Ray's own discovery file uses the same.
JOB = "ray"


@dataclass(frozen=True, order=True)
class MetricsAddress:
    """Where one node serves its metrics."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def file_sd(addresses: Iterable[MetricsAddress]) -> list[dict[str, Any]]:
    """One target group holding every address once, in a stable order."""
    targets = [str(a) for a in sorted(set(addresses))]
    return [{"targets": targets, "labels": {"job": JOB}}]


def write_targets(path: Path, addresses: Iterable[MetricsAddress]) -> None:
    """Replace ``path`` with the target file for ``addresses``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(file_sd(addresses), indent=2) + "\n")
    os.replace(partial, path)
