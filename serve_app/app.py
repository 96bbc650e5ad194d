"""Binds everything: the detector, REST and live applications on Serve, and
the controller that builds the actors. ``camcount run``/``replay`` and the
tests start the pipeline through ``start_pipeline``; ``serve run
serve_app.app:build`` (and ``:build_api``, ``:build_live``) deploy the Serve
side from a config file alone.

Who owns the Serve applications is one rule (camcount/serve_apps.py,
cluster/README.md): a run either creates them and deletes them on stop
(owned), or finds them declared by a Serve config or RayService and only
uses them (declared).

Serve routes by prefix per application: the REST routes and the dashboard
at ``/``, the live streams (WebSocket, SSE, long poll) at ``/live``, each
its own deployment (serve_app/live.py says why).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import serve

from actors.camera import CAMERA_CPUS
from actors.controller import Controller
from actors.placement import ModelCoreAvoider
from actors.sink import start_sink
from camcount.config import AppConfig, load_config, with_absolute_paths
from camcount.events import CountRow
from camcount.scrape_targets import MetricsAddress, write_targets
from camcount.serve_apps import (
    AppsMode,
    AppSpec,
    RunningApp,
    check_declared,
    choose_mode,
    settling,
)
from serve_app.api import SINK_NAME, ApiIngress
from serve_app.auth import resolve_digests, token_digest
from serve_app.detector import detector_app
from serve_app.live import LiveIngress

log = logging.getLogger("camcount.app")

DETECTOR_APP = "camcount"
API_APP = "camcount-api"
LIVE_APP = "camcount-live"
LIVE_PREFIX = "/live"
CONTROLLER_NAME = "camcount-controller"
NAMESPACE = "camcount"

#: The applications a run needs, as cluster/serve_config.yaml and the
#: RayService declare them (tests/test_cluster_files.py compares them).
DETECTOR_SPEC = AppSpec(DETECTOR_APP, "serve_app.app:build", "Detector", None)
API_SPEC = AppSpec(API_APP, "serve_app.app:build_api", "Api", "/")
LIVE_SPEC = AppSpec(LIVE_APP, "serve_app.app:build_live", "Live", LIVE_PREFIX)
APP_SPECS = (DETECTOR_SPEC, API_SPEC, LIVE_SPEC)
#: How long a run waits for declared apps still deploying (a RayService
#: just applied builds its apps while the pipeline's job starts).
DECLARED_SETTLE_S = 120.0


def build(args: dict[str, str]) -> serve.Application:
    """Application builder for ``serve run serve_app.app:build config=FILE``."""
    config = load_config(args.get("config") or os.environ["CAMCOUNT_CONFIG"])
    return detector_app(config.detector)


def api_applications(
    config: AppConfig, token_digests: Sequence[str], sink: Any = None
) -> tuple[serve.Application, serve.Application]:
    """The REST and live applications. Replicas get token digests, never the
    tokens (serve_app/auth.py), so the settings travel without them."""
    api = config.api
    settings = api.model_copy(update={"tokens": ()})
    digests = list(token_digests)
    rest = ApiIngress.options(num_replicas=api.replicas).bind(
        settings, digests, CONTROLLER_NAME, NAMESPACE, list(config.windows.sizes_s), sink
    )
    live = LiveIngress.options(
        num_replicas=api.live_replicas, max_ongoing_requests=api.live_max_connections
    ).bind(settings, digests, CONTROLLER_NAME, NAMESPACE)
    return rest, live


def build_api(args: dict[str, str]) -> serve.Application:
    """``serve run serve_app.app:build_api config=FILE`` at route prefix ``/``."""
    config = load_config(args.get("config") or os.environ["CAMCOUNT_CONFIG"])
    return api_applications(config, resolve_digests(config.api))[0]


def build_live(args: dict[str, str]) -> serve.Application:
    """``serve run serve_app.app:build_live config=FILE`` at route prefix ``/live``."""
    config = load_config(args.get("config") or os.environ["CAMCOUNT_CONFIG"])
    return api_applications(config, resolve_digests(config.api))[1]


#: Ray settings for the clusters ``connect_ray`` starts (cluster/README.md
#: gives them to ``ray start`` on other clusters). Frames sent to the
#: detector are object-store objects used once; the raylet frees dead
#: objects in batches, by default once a second, and every camera process
#: keeps the store pages its requests were written to mapped: with a
#: second of all cameras' frames waiting to be freed, each camera's resident
#: memory held ~6 MB more of the store at 8 cameras on CPU, and more with
#: a faster detector.
LOCAL_SYSTEM_CONFIG = {"free_objects_period_milliseconds": 100}


def connect_ray(
    address: str | None, log_to_driver: bool = True, cameras: int = 0, metrics_export_port: int = 0
) -> None:
    """Join a cluster at ``address``, or start a local one.

    Ray's CPU counts are placement tokens: camera, aggregator and API actors
    mostly wait on I/O and each other, so a local cluster offers more logical
    CPUs than cores, or a few cameras could not be placed: at least enough
    for ``cameras`` camera actors (a quarter each) and the rest beside them,
    or the last cameras of a large config would wait for a CPU forever.
    A local cluster exports its metrics on ``metrics_export_port`` (0: a
    port Ray picks; ``write_metrics_targets`` tells Prometheus either way).
    """
    if address:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.ERROR)
        return
    ray.init(
        # A cluster of its own, even where another runs on this machine
        # (``ray start``): joining one is what ``address`` is for.
        address="local",
        namespace=NAMESPACE,
        num_cpus=max(8, 4 * (os.cpu_count() or 2), math.ceil(CAMERA_CPUS * cameras) + 8),
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=log_to_driver,
        _system_config=LOCAL_SYSTEM_CONFIG,
        _metrics_export_port=metrics_export_port or None,
    )


def metrics_addresses() -> list[MetricsAddress]:
    """Where every live node of the cluster exports its metrics."""
    return [
        MetricsAddress(node["NodeManagerAddress"], int(node["MetricsExportPort"]))
        for node in ray.nodes()
        if node.get("alive") and node.get("MetricsExportPort")
    ]


def write_metrics_targets(path: str | Path) -> list[MetricsAddress]:
    """The Prometheus file_sd target file for this cluster, written whole
    (cluster/prometheus/prometheus.yml reads it). Ray writes such a file
    only when its dashboard runs, which local clusters switch off; nodes
    come and go, so ``camcount run`` rewrites it while it runs."""
    addresses = metrics_addresses()
    write_targets(Path(path), addresses)
    return addresses


def _serve_details() -> dict[str, Any] | None:
    """Serve's instance details (None: Serve is not started): the only
    place that says how an app was deployed (config or code), at which
    route prefix, and where the proxies listen."""
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    return None if client is None else dict(client.get_serve_details())


def running_apps() -> dict[str, RunningApp]:
    """camcount's applications as Serve runs them now."""
    names = {spec.name for spec in APP_SPECS}
    apps: dict[str, Any] = (_serve_details() or {}).get("applications") or {}
    return {
        name: RunningApp(
            name=name,
            status=_plain(app.get("status", "")),
            declared=_plain(app.get("source")) == "declarative",
            route_prefix=app.get("route_prefix"),
            deployments=tuple(app.get("deployments") or ()),
            message=str(app.get("message") or ""),
        )
        for name, app in apps.items()
        if name in names
    }


def _plain(value: Any) -> str:
    """An enum of Serve's details (ApplicationStatus, APIType) as its value."""
    return str(getattr(value, "value", value))


def serve_address() -> tuple[str, int] | None:
    """The host and port Serve's proxies listen on, when Serve runs."""
    details = _serve_details()
    if details is None:
        return None
    http = details.get("http_options") or {}
    return str(http.get("host", "127.0.0.1")), int(http.get("port", 8000))


def join_declared(needed: Sequence[AppSpec], settle_s: float = DECLARED_SETTLE_S) -> None:
    """Wait while a needed app is still deploying, then insist that every
    one runs as the run needs it (``ServeAppsError`` naming each that does
    not)."""
    deadline = time.monotonic() + settle_s
    running = running_apps()
    while settling(needed, running) and time.monotonic() < deadline:
        time.sleep(1.0)
        running = running_apps()
    check_declared(needed, running)


@dataclass
class Pipeline:
    config: AppConfig
    controller: Any
    #: A token made for this run when none is configured (else None).
    token: str | None = None
    #: The warehouse sink (None with ``warehouse.enabled: false``).
    sink: Any = None
    #: Whether ``stop`` closes the sink (it made it) or leaves it to the caller.
    owns_sink: bool = False
    #: Owned: this run created the Serve apps and deletes them on stop;
    #: declared: they were there before it and stay after it.
    apps_mode: AppsMode = AppsMode.OWNED
    #: Serve's address when it was started elsewhere (declared apps).
    serve_at: tuple[str, int] | None = None
    #: The process that watches the run keeps off the model's cores too.
    _keep_off_model: ModelCoreAvoider = field(
        default_factory=ModelCoreAvoider, init=False, repr=False
    )

    def status(self) -> dict[str, Any]:
        self._keep_off_model()
        return _call(lambda: self.controller.status.remote())

    def wait_files(
        self,
        on_progress: Callable[[list[dict[str, Any]]], object] | None = None,
        poll_s: float = 0.5,
    ) -> dict[str, Any]:
        """Until every camera's loop has ended and all windows are closed;
        ``on_progress`` gets the cameras' status while waiting. A
        controller that Ray restarts meanwhile restores the run from its
        newest checkpoint, and the wait goes on."""
        while True:
            done = self.controller.wait_files.remote(None)
            try:
                while not ray.wait([done], timeout=poll_s)[0]:
                    self._keep_off_model()
                    if on_progress is not None:
                        on_progress(self.status()["cameras"])
                return ray.get(done)
            except ray.exceptions.RayActorError:
                time.sleep(poll_s)  # the controller is restarting: ask again

    def totals(self) -> list[CountRow]:
        return _call(lambda: self.controller.totals.remote())

    def checkpoint(self) -> dict[str, Any]:
        """A checkpoint now; returns the checkpoint status."""
        return _call(lambda: self.controller.checkpoint.remote())

    @property
    def api_url(self) -> str:
        """Where Serve's proxy listens: the config's address (Serve is
        started with it, and shut down when the last application of a run
        goes, so the next run in the same Ray session gets its own)."""
        host, port = self.serve_at or (self.config.api.host, self.config.api.port)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard; a token made for this run rides in the fragment,
        which the browser keeps to itself (never sent, never logged)."""
        return f"{self.api_url}/" + (f"#token={self.token}" if self.token else "")

    def stop(self, checkpoint: bool = True) -> dict[str, Any]:
        """The API first (so nothing asks for a vanishing controller), then
        a final checkpoint (nothing counted is lost; the next run on the
        same store resumes from it) and the cameras, the controller, then
        the sink (flushed, and with chDB its database released), then the
        detector. Declared apps stay (the run did not create them).
        Returns what the controller said of the final checkpoint."""
        owned = self.apps_mode is AppsMode.OWNED
        if owned:
            _delete_apps(API_APP, LIVE_APP)
        outcome: dict[str, Any] = {}
        try:
            outcome = _call(
                lambda: self.controller.shutdown.remote(checkpoint), timeout_s=STOP_TIMEOUT_S
            )
        finally:
            ray.kill(self.controller)
            if self.owns_sink and self.sink is not None:
                try:
                    ray.get(self.sink.close.remote(), timeout=60)
                finally:
                    ray.kill(self.sink)
            if owned:
                _delete_apps(DETECTOR_APP)
                _shutdown_idle_serve()
            self._keep_off_model.release()
        return outcome


#: A stop's final checkpoint waits at most for one checkpoint's timeout.
STOP_TIMEOUT_S = 90.0


def _call(make: Callable[[], Any], timeout_s: float | None = None, tries: int = 60) -> Any:
    """One controller call, asked again while Ray restarts the controller
    (the restarted one restores the run on its first call)."""
    for attempt in range(tries):
        try:
            return ray.get(make(), timeout=timeout_s)
        except ray.exceptions.RayActorError:
            if attempt == tries - 1:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _delete_apps(*names: str, timeout_s: float = 60.0) -> None:
    """Delete them together and wait once (a blocking delete waits seconds
    for each), until Serve no longer lists any of them."""
    for name in names:
        with contextlib.suppress(Exception):  # never deployed, or already gone
            serve.delete(name, _blocking=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            running = serve.status().applications
        except Exception:  # Serve itself is gone: so are they
            return
        if not any(name in running for name in names):
            return
        time.sleep(0.2)


def _shutdown_idle_serve() -> None:
    """Shut Serve down once it runs no application: its HTTP address is
    fixed for its life, and the next run's config names its own."""
    with contextlib.suppress(Exception):
        if not serve.status().applications:
            serve.shutdown()


def start_pipeline(
    config: AppConfig, shards: int = 1, api: bool = True, sink: Any = None, fresh: bool = True
) -> Pipeline:
    """Deploy the detector (or join the declared one), start the warehouse
    sink, create the controller (and its live hub), deploy (or join) the
    REST and live apps, then start the cameras.

    ``config.serve.apps`` decides who owns the Serve apps (the module
    docstring); a declared app that is missing or misconfigured fails here,
    before anything starts. The sink is started here unless one is given
    or the config disables the warehouse; a warehouse that cannot be
    reached (wrong password, port) fails here, before any camera starts.
    With ``api`` and no token configured, an owned run makes a token
    (``Pipeline.token``, in ``Pipeline.dashboard_url``). Ray must be
    initialised by the caller (locally or ``address=...``). With ``fresh``
    the checkpoints under ``storage.root`` are deleted and every source
    starts over; without, the run resumes from the newest complete
    checkpoint there (file sources continue where they stopped).
    """
    config = with_absolute_paths(config)
    needed = APP_SPECS if api else (DETECTOR_SPEC,)
    mode = choose_mode(config.serve.apps, running_apps())
    serve_at = None
    if mode is AppsMode.DECLARED:
        join_declared(needed)
        serve_at = serve_address()
        if api and not resolve_digests(config.api):
            log.warning(
                "no API token configured: the declared API answers 401 to every route but "
                "health (api.tokens, CAMCOUNT_API_TOKENS in the cluster's environment)"
            )
    owns_sink = sink is None and config.warehouse.enabled
    if owns_sink:
        sink = start_sink(
            config.warehouse, config.storage.root, name=SINK_NAME, namespace=NAMESPACE
        )
    quiet = {"log_level": "WARNING", "enable_access_log": False}
    try:
        if mode is AppsMode.OWNED:
            _deploy_detector(config, quiet)
    except BaseException:
        if owns_sink:
            with contextlib.suppress(Exception):
                ray.get(sink.close.remote(), timeout=60)
            ray.kill(sink)
        raise
    controller = Controller.options(
        name=CONTROLLER_NAME, namespace=NAMESPACE, get_if_exists=False
    ).remote(config, DETECTOR_APP, shards, 2.0, sink, fresh)
    pipeline = Pipeline(
        config, controller, sink=sink, owns_sink=owns_sink, apps_mode=mode, serve_at=serve_at
    )
    try:
        if api and mode is AppsMode.OWNED:
            digests = resolve_digests(config.api)
            if not digests:
                pipeline.token = secrets.token_urlsafe(24)
                digests = (token_digest(pipeline.token),)
            rest, live = api_applications(config, digests, sink)
            serve.run(live, name=LIVE_APP, route_prefix=LIVE_PREFIX, logging_config=quiet)
            serve.run(rest, name=API_APP, route_prefix="/", logging_config=quiet)
        ray.get(controller.start.remote())
    except BaseException:
        pipeline.stop(checkpoint=False)
        raise
    return pipeline


def _deploy_detector(config: AppConfig, logging_config: dict[str, Any]) -> None:
    """Serve at the config's address, and the detector app on it (an owned
    run's; a leftover of an owned run killed earlier is replaced)."""
    if serve.status().proxies:  # started elsewhere: its address is fixed for its life
        log.warning(
            "Serve runs already in this Ray cluster: the API answers at its address, "
            "not necessarily at api.host:api.port (%s:%s)",
            config.api.host,
            config.api.port,
        )
    serve.start(
        http_options={"host": config.api.host, "port": config.api.port},
        logging_config=logging_config,
    )
    serve.run(
        detector_app(config.detector),
        name=DETECTOR_APP,
        route_prefix=None,
        logging_config=logging_config,
    )
