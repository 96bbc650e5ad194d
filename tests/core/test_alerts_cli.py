"""``camcount alerts rules``: the rules of a running pipeline through its
API. Bad input is one line and exit 2, before any request is made."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from camcount.alerts.remote import admin_token, api_url
from camcount.cli import main
from camcount.config import ApiConfig, TokenConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A pipeline config whose API port nobody listens on."""
    path = tmp_path / "camcount.yaml"
    path.write_text(
        f"cameras: [{{id: gate, source: gate.mp4}}]\napi: {{port: {free_port()}, tokens: [t]}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # a field no rule has, named with its place
        ("rules: [{kind: camera, id: d, state: stalled, colour: red}]", "rules.0.camera.colour"),
        # a state no camera has
        ("rules: [{kind: camera, id: d, state: asleep}]", "rules.0.camera.state"),
        # not YAML at all
        ("rules: [", "cannot read rules"),
    ],
)
def test_bad_rules_are_one_line_and_exit_2(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, says: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    assert main(["alerts", "rules", str(config), "--set", str(rules)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert says in err and len(err.strip().splitlines()) == 1


def test_a_pipeline_not_running_is_one_line_and_exit_2(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    # The section as it stands in a config file is taken too.
    rules.write_text("alerts:\n  rules: [{kind: camera, id: d, state: stalled}]\n")
    for argv in (["alerts", "rules", str(config)], [*_set(config, rules)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "cannot reach the API at http://127.0.0.1:" in err
        assert len(err.strip().splitlines()) == 1


def _set(config: Path, rules: Path) -> list[str]:
    return ["alerts", "rules", str(config), "--set", str(rules)]


def test_the_address_and_token_come_from_the_config() -> None:
    api = ApiConfig(host="0.0.0.0", port=8123, tokens=(TokenConfig(token="r", scope="read"), "a"))
    assert api_url(api) == "http://127.0.0.1:8123"
    assert admin_token(api, {}) == "a"  # a read token cannot change rules
    assert admin_token(api, {"CAMCOUNT_API_TOKENS": " e1, e2"}) == "e1"
    assert admin_token(ApiConfig(), {}) is None
