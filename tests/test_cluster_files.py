"""The deployment files in cluster/ parse, and name only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"


def test_serve_config_is_a_valid_serve_deploy_schema():
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(
        yaml.safe_load((CLUSTER / "serve_config.yaml").read_text())
    )
    routes = {app.import_path: app.route_prefix for app in config.applications}
    assert routes == {
        "serve_app.app:build": None,  # reached through handles, not HTTP
        "serve_app.app:build_api": "/",
        "serve_app.app:build_live": "/live",
    }
    from serve_app import app

    names = {a.name for a in config.applications}
    assert names == {app.DETECTOR_APP, app.API_APP, app.LIVE_APP}
    assert app.LIVE_PREFIX == "/live"


def test_every_yaml_parses():
    for path in CLUSTER.rglob("*.yaml"):
        assert yaml.safe_load(path.read_text()), path
    service = yaml.safe_load((CLUSTER / "kuberay" / "rayservice.yaml").read_text())
    assert service["kind"] == "RayService"
    assert yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["import_path"] == (
        "serve_app.app:build"
    )


def test_the_dashboard_queries_metrics_the_code_exports():
    dashboard = json.loads((CLUSTER / "grafana" / "camcount.json").read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried.update(
                re.findall(r"ray_(camcount_[a-z_]+?)(?:_total|_bucket)?\b", target["expr"])
            )
    source = "\n".join(
        p.read_text() for d in ("actors", "serve_app") for p in (ROOT / d).rglob("*.py")
    )
    exported = set(re.findall(r'"(camcount_[a-z_]+)"', source))
    assert queried and queried <= exported, queried - exported
