"""The OpenAPI document of the whole HTTP edge, generated from the route
declarations (``camcount.http.rest`` at ``/``, ``camcount.http.live_routes``
at ``/live``); the REST app serves it at ``/openapi.json``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from camcount.alerts.rules import AlertsConfig
from camcount.config import CameraConfig
from camcount.http.alert_rules import alert_rules_router
from camcount.http.alerts import alerts_router
from camcount.http.live_routes import live_router
from camcount.http.models import CameraPatch, EventBatch
from camcount.http.rest import rest_router

API_VERSION = "1.0.0"
API_TITLE = "camcount API"
API_DESCRIPTION = (
    "Cameras, counts and live updates of camcount. Every route but the health checks, "
    "this document and `/docs` needs `Authorization: Bearer TOKEN`: a read token reads, "
    "changes (POST, PUT, PATCH, DELETE) need an admin token. Live updates also "
    "stream over the WebSocket `/live/ws` (see docs/api.md)."
)
LIVE_PREFIX = "/live"
#: Bodies the routes read themselves (``responses.json_body``).
BODY_MODELS: tuple[type[BaseModel], ...] = (CameraConfig, CameraPatch, EventBatch, AlertsConfig)


def openapi_document(window_sizes: Sequence[int] = ()) -> dict[str, Any]:
    """OpenAPI 3.1 of every HTTP route; ``window_sizes`` are the sizes
    ``/counts`` accepts. Bodies the routes read themselves get their
    models' schemas here, with every model those refer to."""
    routes = APIRouter()
    routes.include_router(rest_router(window_sizes))
    routes.include_router(alerts_router(window_sizes))
    routes.include_router(alert_rules_router())
    routes.include_router(live_router(), prefix=LIVE_PREFIX)
    doc = get_openapi(
        title=API_TITLE,
        version=API_VERSION,
        openapi_version="3.1.0",
        description=API_DESCRIPTION,
        routes=routes.routes,
        separate_input_output_schemas=False,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in BODY_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    doc["security"] = [{"bearer": []}]
    return doc
