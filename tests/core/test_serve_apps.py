"""The deployment rule: who owns a run's Serve applications, and what a
declared application must be for a run to use it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from camcount.config import parse_config
from camcount.errors import ConfigError
from camcount.serve_apps import (
    AppsMode,
    AppSpec,
    RunningApp,
    ServeAppsError,
    check_declared,
    choose_mode,
    declared_problems,
    settling,
)

DETECTOR = AppSpec("camcount", "serve_app.app:build", "Detector", None)
API = AppSpec("camcount-api", "serve_app.app:build_api", "Api", "/")
LIVE = AppSpec("camcount-live", "serve_app.app:build_live", "Live", "/live")
NEEDED = (DETECTOR, API, LIVE)


def app(spec: AppSpec, **changes: object) -> RunningApp:
    """The app as a Serve config declares it, but for ``changes``."""
    declared = RunningApp(
        name=spec.name,
        status="RUNNING",
        declared=True,
        route_prefix=spec.route_prefix,
        deployments=(spec.ingress,),
    )
    return replace(declared, **changes)  # type: ignore[arg-type]


def apps(*running: RunningApp) -> dict[str, RunningApp]:
    return {a.name: a for a in running}


@pytest.mark.parametrize(
    ("setting", "running", "mode"),
    [
        # Nothing runs: the run creates its apps.
        ("auto", {}, AppsMode.OWNED),
        ("owned", {}, AppsMode.OWNED),
        # A Serve config or RayService declared them: the run joins.
        ("auto", apps(*(app(s) for s in NEEDED)), AppsMode.DECLARED),
        # One declared app is enough to join (the others' absence is then an error).
        ("auto", apps(app(DETECTOR)), AppsMode.DECLARED),
        # Left by an owned run whose driver was killed (serve.run): replaced.
        ("auto", apps(*(app(s, declared=False) for s in NEEDED)), AppsMode.OWNED),
        ("owned", apps(app(DETECTOR, declared=False)), AppsMode.OWNED),
        # Declared by setting: joined whatever Serve runs (checked next).
        ("declared", {}, AppsMode.DECLARED),
        ("declared", apps(app(DETECTOR, declared=False)), AppsMode.DECLARED),
    ],
)
def test_the_mode_a_run_takes(setting, running, mode):
    assert choose_mode(setting, running) is mode


def test_an_owned_run_never_replaces_declared_apps():
    with pytest.raises(ServeAppsError) as caught:
        choose_mode("owned", apps(app(DETECTOR), app(API, declared=False)))
    assert caught.value.problems == [
        "'camcount' runs from a Serve config; an owned run would replace it"
    ]
    assert "serve.apps: declared" in str(caught.value)


@pytest.mark.parametrize(
    ("running", "problems"),
    [
        # All three as declared by cluster/serve_config.yaml.
        (apps(*(app(s) for s in NEEDED)), []),
        # A config that declares only the detector (the old RayService).
        (
            apps(app(DETECTOR)),
            [
                "'camcount-api' is not running: declare it with import_path "
                "serve_app.app:build_api",
                "'camcount-live' is not running: declare it with import_path "
                "serve_app.app:build_live",
            ],
        ),
        # A replica that fails to start: Serve's first line of why.
        (
            apps(
                app(DETECTOR, status="DEPLOY_FAILED", message="no weights\ntraceback..."),
                app(API),
                app(LIVE),
            ),
            ["'camcount' is DEPLOY_FAILED: no weights"],
        ),
        # The wrong import path under the detector's name.
        (
            apps(app(DETECTOR, deployments=("Api",)), app(API), app(LIVE)),
            [
                "'camcount' has no 'Detector' deployment (it has Api): declare it with "
                "import_path serve_app.app:build"
            ],
        ),
        # The live streams moved: the dashboard would not find them.
        (
            apps(app(DETECTOR), app(API), app(LIVE, route_prefix="/stream")),
            ["'camcount-live' is at route_prefix '/stream', expected '/live'"],
        ),
    ],
)
def test_what_a_declared_app_must_be(running, problems):
    assert declared_problems(NEEDED, running) == problems


def test_a_misconfigured_declaration_is_one_error_naming_each_app():
    with pytest.raises(ServeAppsError) as caught:
        check_declared(NEEDED, apps(app(DETECTOR)))
    message = str(caught.value)
    assert "'camcount-api' is not running" in message
    assert "'camcount-live' is not running" in message
    assert "cluster/serve_config.yaml" in message
    check_declared((DETECTOR,), apps(app(DETECTOR)))  # replay needs the detector alone


def test_apps_still_deploying_are_waited_for_and_failed_ones_are_not():
    assert settling(NEEDED, apps(app(DETECTOR, status="DEPLOYING")))
    assert settling(NEEDED, apps(app(LIVE, status="DELETING")))  # then it is missing
    assert not settling(NEEDED, apps(app(DETECTOR, status="DEPLOY_FAILED")))
    assert not settling(NEEDED, apps(*(app(s) for s in NEEDED)))


def test_the_setting_is_checked_where_the_file_is_read():
    assert parse_config("serve: {apps: declared}\n").serve.apps == "declared"
    assert parse_config("{}\n").serve.apps == "auto"
    with pytest.raises(ConfigError, match=r"serve\.apps"):
        parse_config("serve:\n  apps: shared\n", source="c.yaml")
