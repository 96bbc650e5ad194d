"""Who owns a run's Serve applications: the one deployment rule.

A run needs three Serve applications (the detector, the REST API, the live
streams). Either ``camcount run`` owns them, or a Serve config (``serve
deploy``, ``serve run cluster/serve_config.yaml``) or a KubeRay RayService
declares them; never both, or each would replace what the other deployed.

- ``owned``: the run creates the apps and deletes them when it stops. Serve
  running one of them from a config is an error: replacing it would undo
  what the cluster's operator declared.
- ``declared``: the run finds the apps running under the expected names,
  checks that each is what it needs (its ingress deployment and route
  prefix) and uses them; it never replaces or deletes them. A missing or
  misconfigured app is an error that names it.
- ``auto``: declared when Serve already runs a camcount app deployed from a
  config, else owned. Serve records how each app was deployed: from a
  config (declarative) or from code (``serve.run``, imperative). An
  imperative app under a camcount name is what an owned run left behind
  when its driver was killed, so an owned run replaces it.

Everything here works on plain values, so the rule is tested without Ray;
``serve_app/app.py`` reads Serve's state into them and acts on the outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from camcount.errors import CamcountError

AppsSetting = Literal["auto", "owned", "declared"]

#: Serve's application states (ray.serve's ApplicationStatus) that mean
#: "not settled yet": a RayService just applied is still building its apps,
#: and an app a new config left out is being deleted (then it is missing).
SETTLING = frozenset({"NOT_STARTED", "DEPLOYING", "DELETING"})
RUNNING = "RUNNING"


class AppsMode(StrEnum):
    OWNED = "owned"
    DECLARED = "declared"


@dataclass(frozen=True)
class AppSpec:
    """What a run needs of one application, and how a config declares it."""

    name: str
    import_path: str
    #: The deployment that serves the app's requests (its ingress).
    ingress: str
    #: None: reached through handles only, never over HTTP.
    route_prefix: str | None


@dataclass(frozen=True)
class RunningApp:
    """One application as Serve reports it."""

    name: str
    #: Serve's application status (RUNNING, DEPLOYING, DEPLOY_FAILED...).
    status: str
    #: Deployed from a config (Serve's ``declarative`` source).
    declared: bool
    route_prefix: str | None
    deployments: tuple[str, ...]
    message: str = ""


class ServeAppsError(CamcountError):
    """The Serve applications a run would use break the deployment rule.

    ``problems`` holds one line per application that is missing, failed or
    not what the run needs, or that an owned run would have to replace.
    """

    def __init__(self, problems: list[str], hint: str) -> None:
        self.problems = problems
        sep = " " if len(problems) == 1 else "\n  "
        super().__init__(f"Serve applications:{sep}" + "\n  ".join(problems) + f" ({hint})")


def choose_mode(setting: AppsSetting, running: Mapping[str, RunningApp]) -> AppsMode:
    """The mode a run takes, given what Serve runs under camcount's names.

    ``running`` holds only the applications with camcount's names.
    """
    declared = sorted(name for name, app in running.items() if app.declared)
    if setting == "owned":
        if declared:
            raise ServeAppsError(
                [
                    f"{name!r} runs from a Serve config; an owned run would replace it"
                    for name in declared
                ],
                "set serve.apps: declared (or auto) to use them, or remove them from the "
                "Serve config",
            )
        return AppsMode.OWNED
    if setting == "declared":
        return AppsMode.DECLARED
    return AppsMode.DECLARED if declared else AppsMode.OWNED


def settling(needed: Iterable[AppSpec], running: Mapping[str, RunningApp]) -> bool:
    """Whether any needed app is still being deployed: worth waiting for."""
    return any(spec.name in running and running[spec.name].status in SETTLING for spec in needed)


def declared_problems(needed: Iterable[AppSpec], running: Mapping[str, RunningApp]) -> list[str]:
    """One line per needed app that is missing or not what the run needs."""
    problems = []
    for spec in needed:
        app = running.get(spec.name)
        declare = f"declare it with import_path {spec.import_path}"
        if app is None:
            problems.append(f"{spec.name!r} is not running: {declare}")
        elif app.status != RUNNING:
            why = f": {app.message.strip().splitlines()[0]}" if app.message.strip() else ""
            problems.append(f"{spec.name!r} is {app.status}{why}")
        elif spec.ingress not in app.deployments:
            problems.append(
                f"{spec.name!r} has no {spec.ingress!r} deployment (it has "
                f"{', '.join(sorted(app.deployments)) or 'none'}): {declare}"
            )
        elif app.route_prefix != spec.route_prefix:
            problems.append(
                f"{spec.name!r} is at route_prefix {app.route_prefix!r}, "
                f"expected {spec.route_prefix!r}"
            )
    return problems


def check_declared(needed: Iterable[AppSpec], running: Mapping[str, RunningApp]) -> None:
    """Raise ``ServeAppsError`` unless every needed app runs as declared."""
    problems = declared_problems(needed, running)
    if problems:
        raise ServeAppsError(
            problems, "cluster/serve_config.yaml declares them as camcount needs them"
        )
