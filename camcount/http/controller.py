"""What the REST routes need from the running pipeline, as a typed port.

``serve_app.api.ControllerClient`` implements it over Ray handles; the
routes in ``camcount.http.rest`` are written against this protocol only,
so they hold no Ray and no method names as strings. Errors keep the
controller's meaning: ``KeyError`` for an unknown camera, ``ValueError``
for a conflict (``GeometryError`` when lines or zones do not fit the
frame), ``RequestError`` for an unreachable pipeline (503).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from camcount.alerts.rules import AlertsConfig
from camcount.config import CameraConfig
from camcount.external import ExternalCount
from camcount.http.counts import CountsQuery


class ControllerPort(Protocol):
    async def status(self) -> dict[str, Any]:
        """The pipeline's status: every camera's, shards, checkpoints."""
        ...

    async def add_camera(self, cfg: CameraConfig) -> dict[str, Any]:
        """Starts the camera; ``ValueError`` when its id is taken."""
        ...

    async def update_camera(self, cfg: CameraConfig) -> dict[str, Any]:
        """New lines, zones or settings for a running camera."""
        ...

    async def remove_camera(self, camera_id: str) -> dict[str, Any]:
        """Stops the camera; returns its final status."""
        ...

    async def camera_config(self, camera_id: str) -> CameraConfig:
        """The camera's config as its actor runs it."""
        ...

    async def camera_status(self, camera_id: str) -> dict[str, Any]: ...

    async def camera_preview(self, camera_id: str, max_fps: float) -> bytes | None:
        """The latest annotated frame as JPEG, None before there is one."""
        ...

    async def window_counts(self, q: CountsQuery) -> tuple[list[dict[str, Any]], str]:
        """Closed window rows answering ``q`` and where they came from
        (``warehouse`` or ``aggregator``)."""
        ...

    async def camera_known(self, camera_id: str) -> bool:
        """Whether the pipeline runs the camera now or has its history
        (a camera removed through the API keeps its counts readable)."""
        ...

    async def warehouse_rows(
        self, name: str, params: Mapping[str, object]
    ) -> list[dict[str, Any]] | None:
        """The rows of a documented warehouse query (camcount.warehouse.queries),
        None when the pipeline runs without a warehouse."""
        ...

    async def post_events(
        self, source_id: str, events: list[ExternalCount], key: str | None
    ) -> dict[str, Any]:
        """External events into source ``source_id``'s channel: ``KeyError``
        for a source the config does not have, ``ExternalEventError`` for
        events it refuses (a counter it does not have, or a source that
        takes no events from the API)."""
        ...

    async def alert_rules(self) -> AlertsConfig:
        """The alert rules in force."""
        ...

    async def set_alert_rules(self, rules: AlertsConfig) -> AlertsConfig:
        """Replaces them while running; ``AlertRulesRefused`` for rules
        this pipeline cannot run."""
        ...
