"""Binds everything: the detector and API applications on Serve, and the
controller that builds the actors. ``camcount run``/``replay`` and the tests
start the pipeline through ``start_pipeline``; ``serve run
serve_app.app:build`` deploys the Serve side from a config file alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from actors.controller import Controller
from camcount.config import AppConfig, load_config
from camcount.processor import CountRow
from serve_app.detector import detector_app

DETECTOR_APP = "camcount"
API_APP = "camcount-api"
CONTROLLER_NAME = "camcount-controller"
NAMESPACE = "camcount"


@serve.deployment(name="Api", max_ongoing_requests=100, ray_actor_options={"num_cpus": 0})
class ApiIngress:
    """Health and status until the full API lands; reads the controller."""

    def __init__(self, controller_name: str = CONTROLLER_NAME) -> None:
        self._controller_name = controller_name

    async def __call__(self, request: Request) -> JSONResponse:
        path = request.url.path.rstrip("/")
        if path in ("", "/healthz"):
            return JSONResponse({"status": "ok"})
        if path == "/status":
            controller = ray.get_actor(self._controller_name, namespace=NAMESPACE)
            return JSONResponse(await controller.status.remote())
        return JSONResponse({"error": "not_found", "path": path}, status_code=404)


def build(args: dict[str, str]) -> serve.Application:
    """Application builder for ``serve run serve_app.app:build config=FILE``."""
    config = load_config(args.get("config") or os.environ["CAMCOUNT_CONFIG"])
    return detector_app(config.detector)


def connect_ray(address: str | None) -> None:
    """Join a cluster at ``address``, or start a local one.

    Ray's CPU counts are placement tokens: camera, aggregator and API actors
    mostly wait on I/O and each other, so a local cluster offers more logical
    CPUs than cores, or a few cameras could not be placed.
    """
    if address:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.ERROR)
    else:
        ray.init(
            namespace=NAMESPACE,
            num_cpus=max(8, 4 * (os.cpu_count() or 2)),
            include_dashboard=False,
            logging_level=logging.ERROR,
        )


@dataclass
class Pipeline:
    config: AppConfig
    controller: Any

    def status(self) -> dict[str, Any]:
        return ray.get(self.controller.status.remote())

    def wait_files(
        self,
        on_progress: Callable[[list[dict[str, Any]]], object] | None = None,
        poll_s: float = 0.5,
    ) -> dict[str, Any]:
        """Until every camera's loop has ended and all windows are closed;
        ``on_progress`` gets the cameras' status while waiting."""
        done = self.controller.wait_files.remote(None)
        while not ray.wait([done], timeout=poll_s)[0]:
            if on_progress is not None:
                on_progress(self.status()["cameras"])
        return ray.get(done)

    def totals(self) -> list[CountRow]:
        return ray.get(self.controller.totals.remote())

    def stop(self) -> None:
        try:
            ray.get(self.controller.shutdown.remote(), timeout=30)
        finally:
            ray.kill(self.controller)
            for app in (API_APP, DETECTOR_APP):
                with contextlib.suppress(Exception):  # already gone: nothing to stop
                    serve.delete(app)


def start_pipeline(
    config: AppConfig, shards: int = 1, api: bool = True, sink: Any = None
) -> Pipeline:
    """Deploy the detector (and the API), then the controller and cameras.

    Ray must be initialised by the caller (locally or ``address=...``).
    """
    quiet = {"log_level": "WARNING", "enable_access_log": False}
    serve.start(
        http_options={"host": config.api.host, "port": config.api.port}, logging_config=quiet
    )
    serve.run(
        detector_app(config.detector), name=DETECTOR_APP, route_prefix=None, logging_config=quiet
    )
    if api:
        serve.run(ApiIngress.bind(), name=API_APP, route_prefix="/", logging_config=quiet)
    controller = Controller.options(
        name=CONTROLLER_NAME, namespace=NAMESPACE, get_if_exists=False
    ).remote(config.model_dump(mode="json"), DETECTOR_APP, shards, 2.0, sink)
    ray.get(controller.start.remote())
    return Pipeline(config, controller)
