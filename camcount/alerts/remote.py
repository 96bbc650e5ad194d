"""The alert rules of a running pipeline, read and replaced through its
API (``GET``/``PUT /alerts/rules``): what ``camcount alerts rules`` does.

Plain ``urllib``, so the command needs nothing the core does not have.
Every failure is one ``RequestError`` line: the API's own message when it
answered, or why it could not be reached.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from camcount.alerts.rules import AlertsConfig
from camcount.config import ApiConfig, TokenConfig
from camcount.errors import RequestError

PATH = "/alerts/rules"
TIMEOUT_S = 30.0


def api_url(api: ApiConfig) -> str:
    """Where the config's API listens (a wildcard host is this machine)."""
    host = "127.0.0.1" if api.host in ("0.0.0.0", "::", "") else api.host
    return f"http://{host}:{api.port}"


def admin_token(api: ApiConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The first admin token the config names: its ``tokens_env``
    variable's first, else the first admin entry of ``tokens``."""
    env = os.environ if environ is None else environ
    if api.tokens_env:
        from_env = [t.strip() for t in env.get(api.tokens_env, "").split(",") if t.strip()]
        if from_env:
            return from_env[0]
    for entry in api.tokens:
        if isinstance(entry, TokenConfig):
            if entry.scope == "admin":
                return entry.token
        else:
            return entry
    return None


def get_rules(url: str, token: str | None) -> AlertsConfig:
    return _rules(_call("GET", url, token, None))


def put_rules(url: str, token: str | None, rules: AlertsConfig) -> AlertsConfig:
    return _rules(_call("PUT", url, token, rules.document()))


def _call(method: str, url: str, token: str | None, body: Any) -> Any:
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(
        url.rstrip("/") + PATH, data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise _refused(exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RequestError("unavailable", f"cannot reach the API at {url}: {reason}", 503) from None
    except ValueError:
        raise RequestError("bad_answer", f"the API at {url} did not answer JSON", 502) from None


def _refused(exc: urllib.error.HTTPError) -> RequestError:
    """The API's error body (docs/api.md, Errors) as one line."""
    try:
        body = json.loads(exc.read())
        message, code = str(body["message"]), str(body["error"])
    except (ValueError, KeyError, TypeError, OSError):
        message, code = exc.reason or "refused", "refused"
    return RequestError(code, f"{exc.code} {message}", exc.code)


def _rules(answer: Any) -> AlertsConfig:
    try:
        return AlertsConfig.model_validate(answer)
    except ValidationError:
        raise RequestError(
            "bad_answer", "the API answered something that is not rules", 502
        ) from None
