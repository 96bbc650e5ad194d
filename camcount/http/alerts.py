"""``GET /alerts`` and ``GET /forecasts``: what needs people now, and
what the next hour should bring, read from the warehouse's ``alerts`` and
``forecasts`` tables (docs/alerts.md, docs/warehouse.md) as ``/counts``
reads ``window_counts``.

Query strings are checked once here, into typed queries; the documented
warehouse queries (``open_alerts``, ``alert_changes``,
``latest_forecasts``) answer them through the ``ControllerPort``; the
rows become the same objects the live stream's ``alert`` and ``forecast``
updates carry (times as epoch seconds with their milliseconds), so a
client reads both with one code path.

No ``from __future__ import annotations`` here: FastAPI reads the
routes' annotations (as in ``camcount.http.rest``).
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from camcount.alerts.rules import Severity
from camcount.config import MAX_ID_CHARS
from camcount.errors import RequestError
from camcount.http.controller import ControllerPort
from camcount.http.counts import parse_time
from camcount.http.live.query import ID_PATTERN
from camcount.http.responses import errors

SEVERITIES: tuple[str, ...] = get_args(Severity)
MAX_ALERT_CHANGES = 1000
DEFAULT_ALERT_CHANGES = 100
#: Open alerts answered at most: far more than a dashboard shows.
MAX_OPEN_ALERTS = 1000
#: A group's id as the config has it (``group:`` is added here).
GROUP_PATTERN = rf"^[A-Za-z0-9_.-]{{1,{MAX_ID_CHARS}}}$"
#: What ``source`` says: the one store these routes read.
SOURCE = "warehouse"


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class AlertChange(_Answer):
    """One change of an alert: the ``data`` of a live ``alert`` update."""

    event_id: int = Field(description="the change: (alert_id, state)")
    alert_id: int = Field(description="the alert across its firing and resolved changes")
    rule_id: str
    target: str = Field(description="camera, camera/zone, group:id or camera/counter/class/dir")
    camera_id: str = Field(description="the target's camera, or group:id")
    state: Literal["firing", "resolved"]
    severity: Severity
    value: float = Field(description="the value that decided the change")
    threshold: float = Field(description="the edge it crossed")
    opened_at: float = Field(description="event time the alert opened, epoch seconds")
    event_time: float = Field(description="event time of this change, epoch seconds")
    message: str
    labels: list[str] = Field(description="the rule's labels, key=value")


class Alerts(_Answer):
    source: Literal["warehouse"]
    open: list[AlertChange] = Field(description="alerts firing now, oldest first")
    changes: list[AlertChange] = Field(description="changes at or after `since`, newest first")
    truncated: bool = Field(description="more changes than `limit` matched")


class ForecastPoint(_Answer):
    window_start: float = Field(description="epoch seconds (UTC)")
    window_end: float
    value: float = Field(description="expected count")
    lower: float = Field(description="lower edge of the band")
    upper: float = Field(description="upper edge of the band")


class ForecastSeries(_Answer):
    camera_id: str = Field(description="camera id, or group:id")
    counter_id: str
    class_name: str
    direction: str
    window_size_s: int
    issued_for: float = Field(
        description="start of the issue's first window: made when the window before it closed"
    )
    points: list[ForecastPoint]


class Forecasts(_Answer):
    source: Literal["warehouse"]
    series: list[ForecastSeries] = Field(description="per key, its latest issue")


@dataclass(frozen=True, slots=True)
class AlertsQuery:
    camera_id: str
    severity: str
    since: float
    limit: int


@dataclass(frozen=True, slots=True)
class ForecastsQuery:
    camera_id: str
    counter_id: str
    window_size_s: int


def _check_id(name: str, value: str | None) -> str:
    if value and not re.fullmatch(ID_PATTERN, value):
        raise RequestError("bad_parameter", f"{name} must match {ID_PATTERN}", 422)
    return value or ""


def checked_alerts_query(
    *,
    camera: str | None = None,
    severity: str | None = None,
    since: str | None = None,
    limit: int | None = None,
) -> AlertsQuery:
    """Every rule of ``GET /alerts``; an empty value means absent."""
    if severity and severity not in SEVERITIES:
        raise RequestError("bad_parameter", f"severity must be one of {list(SEVERITIES)}", 422)
    if limit is not None and not 1 <= limit <= MAX_ALERT_CHANGES:
        raise RequestError("bad_parameter", f"limit must be in [1, {MAX_ALERT_CHANGES}]", 422)
    return AlertsQuery(
        camera_id=_check_id("camera", camera),
        severity=severity or "",
        since=parse_time("since", since) if since else 0.0,
        limit=limit if limit is not None else DEFAULT_ALERT_CHANGES,
    )


def checked_forecasts_query(
    window_sizes: Sequence[int],
    *,
    camera: str | None = None,
    group: str | None = None,
    counter: str | None = None,
    window_size_s: int | None = None,
) -> ForecastsQuery:
    """Every rule of ``GET /forecasts``: a camera or a group (not both;
    neither: every key), a counter, a counted window size."""
    if camera and group:
        raise RequestError("bad_parameter", "group cannot be given with camera", 422)
    if group and not re.fullmatch(GROUP_PATTERN, group):
        raise RequestError("bad_parameter", f"group must match {GROUP_PATTERN}", 422)
    sizes = sorted(window_sizes)
    if window_size_s is not None and sizes and window_size_s not in sizes:
        raise RequestError("bad_parameter", f"window_size_s must be one of {sizes}", 422)
    if window_size_s is not None and window_size_s < 1:
        raise RequestError("bad_parameter", "window_size_s must be 1 or more", 422)
    return ForecastsQuery(
        camera_id=f"group:{group}" if group else _check_id("camera", camera),
        counter_id=_check_id("counter", counter),
        window_size_s=window_size_s or 0,
    )


def _epoch(t: datetime, ms: int) -> float:
    return round(t.timestamp() + ms / 1000, 3)


def alert_change(row: Mapping[str, Any], state: str | None = None) -> dict[str, Any]:
    """A row of ``open_alerts`` (state given: firing) or ``alert_changes``
    as the live ``alert`` update's data."""
    return {
        "event_id": int(row["event_id"]),
        "alert_id": int(row["alert_id"]),
        "rule_id": row["rule_id"],
        "target": row["target"],
        "camera_id": row["camera_id"],
        "state": state or row["state"],
        "severity": row["severity"],
        "value": row["value"],
        "threshold": row["threshold"],
        "opened_at": _epoch(row["opened_at"], row["opened_ms"]),
        "event_time": _epoch(row["event_time"], row["event_ms"]),
        "message": row["message"],
        "labels": list(row["labels"]),
    }


def alerts_answer(
    q: AlertsQuery, open_rows: Sequence[Mapping[str, Any]], change_rows: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``change_rows`` asked with one row beyond the limit: its presence
    says there were more."""
    return {
        "source": SOURCE,
        "open": [alert_change(r, "firing") for r in open_rows],
        "changes": [alert_change(r) for r in change_rows[: q.limit]],
        "truncated": len(change_rows) > q.limit,
    }


def forecasts_answer(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Rows of ``latest_forecasts`` (ordered by key, then window) as one
    series per key."""
    series: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = (r["camera_id"], r["counter_id"], r["class_name"], r["direction"])
        size = int(r["window_size_s"])
        one = series.setdefault(
            (*key, size),
            {
                "camera_id": r["camera_id"],
                "counter_id": r["counter_id"],
                "class_name": r["class_name"],
                "direction": r["direction"],
                "window_size_s": size,
                "issued_for": r["issued_for"].timestamp(),
                "points": [],
            },
        )
        start = r["window_start"].timestamp()
        one["points"].append(
            {
                "window_start": start,
                "window_end": start + size,
                "value": r["value"],
                "lower": r["lower"],
                "upper": r["upper"],
            }
        )
    return {"source": SOURCE, "series": list(series.values())}


async def _rows(
    port: ControllerPort, name: str, params: Mapping[str, object]
) -> list[dict[str, Any]]:
    rows = await port.warehouse_rows(name, params)
    if rows is None:
        raise RequestError(
            "no_warehouse",
            "alerts and forecasts are read from the warehouse, and this pipeline runs "
            "without one (warehouse.enabled); the live stream still carries them",
            404,
        )
    return rows


def _port(request: Request) -> ControllerPort:
    port: ControllerPort = request.app.state.rest.controller
    return port


def _sizes(request: Request) -> tuple[int, ...]:
    sizes: tuple[int, ...] = request.app.state.rest.window_sizes
    return sizes


Port = Annotated[ControllerPort, Depends(_port)]


def alerts_router(window_sizes: Sequence[int]) -> APIRouter:
    """The two routes; ``window_sizes`` are the counted sizes, the ones
    ``window_size_s`` may name (the document lists them)."""
    sizes = sorted(window_sizes) or [10]
    router = APIRouter()

    def alerts_params(
        camera: Annotated[
            str | None,
            Query(
                description="camera id or group:id (default: all)",
                json_schema_extra={"pattern": ID_PATTERN},
            ),
        ] = None,
        severity: Annotated[
            str | None,
            Query(
                description="one severity (default: all)", json_schema_extra={"enum": SEVERITIES}
            ),
        ] = None,
        since: Annotated[
            str | None,
            Query(description="changes at or after this time: epoch seconds or ISO 8601"),
        ] = None,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_ALERT_CHANGES,
                description=f"changes at most, newest first (default {DEFAULT_ALERT_CHANGES})",
            ),
        ] = None,
    ) -> AlertsQuery:
        return checked_alerts_query(camera=camera, severity=severity, since=since, limit=limit)

    @router.get(
        "/alerts",
        operation_id="alerts",
        summary="open alerts, and the recent changes of alerts",
        response_model=Alerts,
        responses=errors(401, 404, 422, 429, 503),
    )
    async def alerts(q: Annotated[AlertsQuery, Depends(alerts_params)], port: Port) -> JSONResponse:
        opened = await _rows(
            port,
            "open_alerts",
            {"camera_id": q.camera_id, "severity": q.severity, "limit": MAX_OPEN_ALERTS},
        )
        changes = await _rows(
            port,
            "alert_changes",
            {
                "camera_id": q.camera_id,
                "severity": q.severity,
                "since": int(q.since),
                "limit": q.limit + 1,
            },
        )
        return JSONResponse(alerts_answer(q, opened, changes))

    def forecasts_params(
        request: Request,
        camera: Annotated[
            str | None,
            Query(
                description="camera id (default: all)", json_schema_extra={"pattern": ID_PATTERN}
            ),
        ] = None,
        group: Annotated[
            str | None,
            Query(
                description="group id, instead of a camera",
                json_schema_extra={"pattern": GROUP_PATTERN},
            ),
        ] = None,
        counter: Annotated[str | None, Query(description="line or zone id (default: all)")] = None,
        window_size_s: Annotated[
            int | None,
            Query(
                description="one forecast window size (default: all)",
                json_schema_extra={"enum": sizes},
            ),
        ] = None,
    ) -> ForecastsQuery:
        return checked_forecasts_query(
            _sizes(request),
            camera=camera,
            group=group,
            counter=counter,
            window_size_s=window_size_s,
        )

    @router.get(
        "/forecasts",
        operation_id="forecasts",
        summary="each counted key's latest forecast: the next windows with their band",
        response_model=Forecasts,
        responses=errors(401, 404, 422, 429, 503),
    )
    async def forecasts(
        q: Annotated[ForecastsQuery, Depends(forecasts_params)], port: Port
    ) -> JSONResponse:
        rows = await _rows(
            port,
            "latest_forecasts",
            {
                "camera_id": q.camera_id,
                "counter_id": q.counter_id,
                "window_size_s": q.window_size_s,
            },
        )
        return JSONResponse(forecasts_answer(rows))

    return router
