"""The deployment rule on a real Serve instance: an owned run creates its
apps and deletes them; a run joins the apps cluster/serve_config.yaml
declares (built from the file's own import paths), uses them and leaves
them running; an owned run refuses to replace declared apps; a declaration
that lacks an app is one clear error. Also the Prometheus target file."""

from __future__ import annotations

import copy
import json
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ray.serve._private.api import serve_start
from ray.serve.schema import ServeDeploySchema

from camcount.config import load_config
from camcount.scenes.synthetic import SceneLayout, generate_scene, write_scene
from camcount.serve_apps import AppsMode, ServeAppsError
from serve_app.app import (
    APP_SPECS,
    LIVE_APP,
    _delete_apps,
    _shutdown_idle_serve,
    running_apps,
    start_pipeline,
    write_metrics_targets,
)
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "deploy-modes-token"
NAMES = {spec.name for spec in APP_SPECS}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    """A short synthetic clip and the camera config beside it."""
    _, _, config = write_scene(
        generate_scene(41, SceneLayout(frames=40), n_objects=2),
        tmp_path_factory.mktemp("deploy") / "cam41.mp4",
    )
    return config


def config_file(scene: Path, tmp_path: Path, port: int, apps: str = "auto") -> Path:
    """The scene's camera with a warehouse, store, API and owner of its own."""
    path = scene.with_name(f"run-{tmp_path.name}-{apps}.yaml")
    path.write_text(
        scene.read_text()
        + f"warehouse: {{url: 'chdb://{tmp_path / 'chdb'}'}}\n"
        + f"storage: {{root: 'file://{tmp_path / 'store'}'}}\n"
        + f"api: {{host: 127.0.0.1, port: {port}, tokens: [{TOKEN}]}}\n"
        + f"serve: {{apps: {apps}}}\n"
    )
    return path


def serve_config(config: Path, port: int) -> dict[str, Any]:
    """cluster/serve_config.yaml pointed at ``config``, on a free port."""
    deploy = yaml.safe_load((ROOT / "cluster" / "serve_config.yaml").read_text())
    deploy["http_options"] = {"host": "127.0.0.1", "port": port}
    for app in deploy["applications"]:
        app["args"]["config"] = str(config)
    return deploy


def declare(deploy: dict[str, Any]) -> None:
    """What ``serve run``/``serve deploy`` of the file does: Serve builds
    each app from its import path, in its own processes."""
    schema = ServeDeploySchema.model_validate(deploy)
    client = serve_start(http_options=schema.http_options.model_dump())
    client.deploy_apps(schema, _blocking=True)


@pytest.fixture
def clean_serve(ray_cluster):
    yield
    _delete_apps(*NAMES)
    _shutdown_idle_serve()


def test_an_owned_run_creates_its_apps_and_deletes_them_on_stop(clean_serve, scene, tmp_path):
    config = load_config(config_file(scene, tmp_path, free_port(), apps="owned"))
    pipeline = start_pipeline(config)
    try:
        during = running_apps()
    finally:
        pipeline.stop(checkpoint=False)
    assert pipeline.apps_mode is AppsMode.OWNED
    assert set(during) == NAMES
    assert not any(app.declared for app in during.values())
    assert running_apps() == {}


def test_a_run_joins_declared_apps_and_leaves_them_running(clean_serve, scene, tmp_path):
    path = config_file(scene, tmp_path, free_port())
    deploy = serve_config(path, free_port())
    declare(deploy)
    pipeline = start_pipeline(load_config(path))
    try:
        # The run counts through the declared detector ...
        status = pipeline.wait_files()
        # ... and the declared API serves it: it finds the run's controller.
        answer = httpx.get(
            f"{pipeline.api_url}/status",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
    finally:
        pipeline.stop(checkpoint=False)
    assert pipeline.apps_mode is AppsMode.DECLARED
    assert pipeline.token is None  # the declared apps take the config's tokens
    assert [c["state"] for c in status["cameras"]] == ["finished"]
    assert sum(c["frames_processed"] for c in status["cameras"]) > 0
    assert answer.status_code == 200, answer.text
    assert [c["camera_id"] for c in answer.json()["cameras"]] == ["cam41"]
    after = running_apps()
    assert set(after) == NAMES
    assert all(app.declared and app.status == "RUNNING" for app in after.values())

    # An owned run would replace them: refused, before anything starts.
    with pytest.raises(ServeAppsError, match=r"serve\.apps: declared"):
        start_pipeline(load_config(config_file(scene, tmp_path, free_port(), apps="owned")))

    # A Serve config without the live app: the run names what is missing.
    partial = copy.deepcopy(deploy)
    partial["applications"] = [a for a in deploy["applications"] if a["name"] != LIVE_APP]
    declare(partial)
    with pytest.raises(ServeAppsError, match="'camcount-live' is not running"):
        start_pipeline(load_config(path))


def test_the_target_file_names_the_nodes_metrics_endpoint(ray_cluster, tmp_path):
    path = tmp_path / "targets.json"
    addresses = write_metrics_targets(path)
    groups = json.loads(path.read_text())
    assert groups == [{"targets": [str(a) for a in addresses], "labels": {"job": "ray"}}]
    assert addresses  # this cluster's one node
    with urllib.request.urlopen(f"http://{addresses[0]}/metrics", timeout=30) as reply:
        body = reply.read().decode()
    assert "# TYPE ray_" in body  # Prometheus text format, Ray's own series at least
