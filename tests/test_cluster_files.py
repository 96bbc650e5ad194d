"""The deployment files in cluster/ and the Dockerfile: they parse, declare
the same Serve apps as the code expects, start the pipeline the one way
cluster/README.md describes, and chart and alert on every exported metric,
and only on metrics that exist."""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
#: Where ray.util.metrics definitions live (the core never imports Ray).
METRIC_PACKAGES = ("actors", "serve_app")
#: What Prometheus sees of each kind (Ray's exporter: counters get _total,
#: histograms _bucket/_sum/_count, gauges stay bare).
SUFFIXES = {"Counter": ("_total",), "Gauge": ("",), "Histogram": ("_bucket", "_sum", "_count")}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def serve_config() -> dict[str, Any]:
    return load_yaml(CLUSTER / "serve_config.yaml")


def rayservice() -> dict[str, Any]:
    return load_yaml(CLUSTER / "kuberay" / "rayservice.yaml")


def test_every_yaml_parses():
    for path in [*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml")]:
        assert load_yaml(path), path


def test_the_serve_config_declares_the_apps_a_run_joins():
    from ray.serve.schema import ServeDeploySchema

    from serve_app.app import APP_SPECS

    config = ServeDeploySchema.model_validate(serve_config())
    declared = {(a.name, a.import_path, a.route_prefix) for a in config.applications}
    assert declared == {(s.name, s.import_path, s.route_prefix) for s in APP_SPECS}
    # Each app is built from the same camcount config file.
    assert {a.args["config"] for a in config.applications} == {"/etc/camcount/camcount.yaml"}


def test_the_rayservice_declares_what_the_serve_config_declares():
    """Names, import paths, route prefixes, arguments, runtime environments
    and deployment options, and Serve's own settings (proxies, HTTP port,
    logging): a RayService is the same declaration on Kubernetes."""
    from ray.serve.schema import ServeDeploySchema

    service = rayservice()
    assert service["kind"] == "RayService"
    on_k8s = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    local = ServeDeploySchema.model_validate(serve_config())
    assert on_k8s.model_dump() == local.model_dump()


def test_the_detector_runs_torch_on_the_one_core_it_reserves():
    """docs/detectors.md: a replica (num_cpus 1) runs its model on one
    thread; more threads than free cores ran 3 to 5 times slower."""
    from camcount.config import DetectorConfig
    from serve_app.app import DETECTOR_APP
    from serve_app.detector import detector_app

    replica_cpus = detector_app(DetectorConfig())._bound_deployment.ray_actor_options["num_cpus"]
    for config in (serve_config(), yaml.safe_load(rayservice()["spec"]["serveConfigV2"])):
        (app,) = [a for a in config["applications"] if a["name"] == DETECTOR_APP]
        assert int(app["runtime_env"]["env_vars"]["OMP_NUM_THREADS"]) == replica_cpus == 1


def test_the_rayjob_runs_the_pipeline_against_the_declared_apps():
    from camcount.cli import build_parser, cmd_run

    job = load_yaml(CLUSTER / "kuberay" / "rayjob.yaml")
    assert job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "camcount"
    args = build_parser().parse_args(argv[1:])
    assert args.func is cmd_run
    assert (args.address, args.serve_apps) == ("auto", "declared")
    # The config the declared apps were built from, mounted in the cluster.
    assert {a["args"]["config"] for a in serve_config()["applications"]} == {args.config}
    # It submits to an existing cluster (the RayService's), never its own.
    assert "ray.io/cluster" in job["spec"]["clusterSelector"]
    assert "rayClusterSpec" not in job["spec"]
    images = {c["image"] for c in job["spec"]["submitterPodTemplate"]["spec"]["containers"]}
    assert images == _rayservice_images()


def _rayservice_images() -> set[str]:
    cluster = rayservice()["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]
    return {c["image"] for t in templates for c in t["spec"]["containers"]}


# The image.


def _dockerfile_pip_line() -> list[str]:
    """The arguments of the Dockerfile's ``pip install``."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("RUN") and "pip install" in ln]
    words = shlex.split(line.removeprefix("RUN"))
    return words[words.index("install") + 1 :]


def _requirements(words: list[str]) -> list[str]:
    return [w for w in words if not w.startswith("-")]


def test_the_image_pins_torch_inside_the_ranges_the_package_admits():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    admitted = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    reqs = _requirements(_dockerfile_pip_line())
    pins = {Requirement(r).name: Requirement(r) for r in reqs if not r.startswith(".")}
    assert set(pins) == {"torch", "torchvision"}
    for name, pin in pins.items():
        (spec,) = pin.specifier
        assert spec.operator == "==", pin
        assert spec.version in admitted[name], (pin, admitted[name])
    # The package itself, with the extras a cluster needs (the ONNX backend).
    (package,) = [r for r in reqs if r.startswith(".")]
    extras = set(re.findall(r"\[(.*)\]", package)[0].split(","))
    assert extras <= set(project["optional-dependencies"]) and "onnx" in extras


def test_the_image_fetches_the_weights_after_installing_the_package():
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    runs = [ln for ln in lines if ln.startswith("RUN")]
    fetch = next(i for i, ln in enumerate(runs) if "camcount models fetch" in ln)
    install = next(i for i, ln in enumerate(runs) if "pip install" in ln)
    assert install < fetch
    assert any(ln.startswith("FROM python:3.11") for ln in lines)
    # Weights land where the package looks for them at run time.
    assert re.search(r"CAMCOUNT_MODELS_DIR=\S+", (ROOT / "Dockerfile").read_text())
    # Only the package goes into the build context.
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored and {"!camcount/", "!actors/", "!serve_app/"} <= set(ignored)


def _container_builder() -> list[str] | None:
    """A builder that can build here: docker with a daemon, podman or buildah."""
    if shutil.which("docker"):
        alive = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
        if alive.returncode == 0:
            return ["docker", "build"]
    if shutil.which("podman"):
        return ["podman", "build"]
    if shutil.which("buildah"):
        return ["buildah", "bud"]
    return None


@pytest.mark.slow
def test_the_image_builds_or_its_pip_layer_resolves(tmp_path):
    """With a container builder, the image is built. Without one (this
    machine has a docker client but no daemon), the Dockerfile's pip line
    is resolved as it stands by ``pip install --dry-run`` from a clean slate
    (``--ignore-installed``) through pip's configured indexes: every pin and
    extra must have a release that installs together."""
    builder = _container_builder()
    if builder is not None:
        subprocess.run([*builder, "-t", "camcount:test", str(ROOT)], check=True, timeout=3600)
        return
    words = [w if not w.startswith(".") else str(ROOT) + w[1:] for w in _dockerfile_pip_line()]
    report = tmp_path / "report.json"
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
    done = subprocess.run(
        [*pip, "--quiet", "--report", str(report), *words],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    chosen = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    pins = dict(r.split("==") for r in _requirements(words) if "==" in r)
    for name, version in pins.items():
        assert chosen[name] == version
    assert {"camcount", "ray", "onnxruntime"} <= set(chosen)


# Monitoring.


def exported_metrics() -> dict[str, str]:
    """Every ``metrics.Counter/Gauge/Histogram("camcount_...")`` defined
    in the Ray packages, by name, with its kind."""
    found: dict[str, str] = {}
    for package in METRIC_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in SUFFIXES
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).startswith("camcount_")
                ):
                    found[node.args[0].value] = node.func.attr
    return found


def prometheus_names(exported: dict[str, str]) -> dict[str, str]:
    """Each name Prometheus shows for an exported metric -> the metric."""
    return {
        f"ray_{name}{suffix}": name for name, kind in exported.items() for suffix in SUFFIXES[kind]
    }


def queried_series(expr: str) -> set[str]:
    return set(re.findall(r"\bray_camcount_[a-z_]+", expr))


def test_the_metrics_are_found_where_they_are_defined():
    exported = exported_metrics()
    # One of each kind, from each of the layers that exports them.
    assert exported["camcount_frames_processed"] == "Counter"
    assert exported["camcount_sink_warehouse_up"] == "Gauge"
    assert exported["camcount_detector_batch_size"] == "Histogram"
    assert exported["camcount_live_slow_clients"] == "Counter"
    assert len(exported) >= 28


def test_the_dashboard_charts_every_exported_metric_by_its_exported_name():
    dashboard = json.loads((CLUSTER / "grafana" / "camcount.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queried = set().union(*(queried_series(e) for e in exprs))
    names = prometheus_names(exported_metrics())
    assert queried <= set(names), f"not exported as queried: {sorted(queried - set(names))}"
    charted = {names[q] for q in queried}
    missing = set(exported_metrics()) - charted
    assert not missing, f"exported but not on the dashboard: {sorted(missing)}"


ALERTS = CLUSTER / "prometheus" / "alerts.yml"


def test_the_alert_rules_cover_the_failures_operators_must_see():
    rules = [r for g in load_yaml(ALERTS)["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {
        "CameraDown",
        "WarehouseDown",
        "WarehouseLagging",
        "CheckpointsFailing",
        "DetectorSaturated",
        "LiveClientsDropped",
    } <= names
    exported = prometheus_names(exported_metrics())
    for rule in rules:
        series = queried_series(rule["expr"])
        assert series, rule["alert"]
        assert series <= set(exported), (rule["alert"], sorted(series - set(exported)))
        assert rule["annotations"]["summary"], rule["alert"]


def test_promtool_accepts_the_rules_and_the_scrape_config(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        from tests.conftest import require_binary

        require_binary("/usr/bin/promtool", "promtool (apt-get install prometheus)")
        promtool = "/usr/bin/promtool"
    rules = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The scrape config, with the target glob pointed at a file a run wrote.
    config = load_yaml(CLUSTER / "prometheus" / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    (tmp_path / "targets.json").write_text('[{"targets": ["127.0.0.1:8080"]}]')
    config["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(tmp_path / "*.json")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_reads_the_target_file_a_run_writes_and_loads_the_rules():
    from camcount.config import MetricsConfig

    config = load_yaml(CLUSTER / "prometheus" / "prometheus.yml")
    assert config["rule_files"] == [ALERTS.name]
    (job,) = config["scrape_configs"]
    assert "static_configs" not in job
    (globs,) = [sd["files"] for sd in job["file_sd_configs"]]
    target_file = Path(str(MetricsConfig().targets_file)).name
    assert any(fnmatch.fnmatch(target_file, Path(g).name) for g in globs)
    # Not Ray's dashboard-only discovery file: local clusters never write it.
    assert not any("prom_metrics_service_discovery" in g for g in globs)
