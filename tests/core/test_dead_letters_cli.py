"""``camcount dead-letters``: a webhook's dead letters listed, replayed to a
real receiver once it is back, and removed once delivered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from camcount.cli import main
from camcount.config import load_config
from camcount.outputs.settings import WebhookOutputConfig
from camcount.outputs.webhook import WebhookSink
from tests.core.test_webhooks import SECRET, crossings, ids, window_rows
from tests.core.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET)
    yield r
    r.close()


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "camcount.yaml"
    path.write_text(
        f"""
storage:
  root: file://{tmp_path}/store
outputs:
  - type: webhook
    name: ops
    url: {url}
    secret_env: OPS_HOOK_SECRET
    batch_size: 40
    retries: 1
    backoff_base_s: 0.01
    backoff_max_s: 0.02
"""
    )
    return path


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_dead_letters_are_listed_and_replayed_once_the_receiver_is_back(
    receiver: WebhookReceiver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPS_HOOK_SECRET", SECRET)
    config_file = write_config(tmp_path, receiver.url)
    config = load_config(config_file)
    hook = config.outputs[0]
    assert isinstance(hook, WebhookOutputConfig)
    # A run meets a receiver that is down past its retry budget.
    receiver.down()
    sink = WebhookSink(hook, config.storage.root)
    sink.write("crossing", crossings(90))
    sink.write("window_row", window_rows(2))
    assert sink.flush(1).dead_lettered == 92
    sink.close()

    code, out, _ = run(["dead-letters", str(config_file), "--json"], capsys)
    listed = json.loads(out)["batches"]
    assert code == 0
    assert sum(b["events"] for b in listed) == 92
    assert {(b["output"], b["reason"]) for b in listed} == {("ops", "unavailable")}

    # Still down: the replay says so, exits 1 and keeps every dead letter.
    code, _, err = run(["dead-letters", str(config_file), "--replay"], capsys)
    assert code == 1
    assert "webhook ops: replayed 0 events" in err and "ConnectError" in err

    receiver.up()
    code, _, err = run(["dead-letters", str(config_file), "--replay"], capsys)
    assert code == 0, err
    assert "webhook ops: replayed 92 events" in err
    assert set(receiver.received.events) == ids(crossings(90)) | ids(window_rows(2))
    assert receiver.received.refused_signatures == []
    code, out, _ = run(["dead-letters", str(config_file), "--json"], capsys)
    assert json.loads(out)["batches"] == []


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        # a webhook the config does not have
        (["--output", "nope"], {"OPS_HOOK_SECRET": SECRET}, "--output: no webhook named 'nope'"),
        # a replay needs the secret, and its variable is not set
        (["--replay"], {}, "OPS_HOOK_SECRET is not set"),
    ],
)
def test_bad_input_ends_in_one_line_and_status_2(
    args: list[str],
    env: dict[str, str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPS_HOOK_SECRET", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    config_file = write_config(tmp_path, "http://127.0.0.1:9/hook")
    code, _, err = run(["dead-letters", str(config_file), *args], capsys)
    assert code == 2
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
