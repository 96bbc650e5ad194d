"""The webhook output against a real receiver on a loopback port.

The receiver (webhook_receiver.py) checks every signature with its own
secret and dedupes by ``event_id``; outages are the real thing (its port
closed: connection refused) or real answers (503 with ``Retry-After``,
400). Backoffs are short so that a test's outage lasts well under a
second or two.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from camcount.config import parse_config
from camcount.errors import ConfigError, SignatureError
from camcount.events import Crossing, Direction, WindowRow, to_arrow
from camcount.outputs.backoff import Backoff, parse_retry_after
from camcount.outputs.port import Guarantee, Sink
from camcount.outputs.settings import WebhookOutputConfig
from camcount.outputs.signing import sign, verify
from camcount.outputs.webhook import WebhookSink
from tests.core.webhook_receiver import WebhookReceiver

SECRET = "whsec-test-0123456789"
T0 = 1_767_225_600.0


def crossings(n: int, camera: str = "gate", first_track: int = 0) -> pa.Table:
    return to_arrow(
        Crossing,
        [
            Crossing(
                camera,
                "line-1",
                track_id=first_track + i,
                frame_index=10 * i,
                event_time=T0 + i,
                class_name="person",
                direction=Direction.IN if i % 2 else Direction.OUT,
                confidence=0.9,
                anchor_x=10.0,
                anchor_y=20.0,
            )
            for i in range(n)
        ],
    )


def window_rows(n: int, camera: str = "gate") -> pa.Table:
    return to_arrow(
        WindowRow,
        [WindowRow(camera, "line-1", "person", "in", 60, T0 + 60 * i, i) for i in range(n)],
    )


def ids(table: pa.Table) -> set[str]:
    return {str(i) for i in table.column("event_id").to_pylist()}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver(SECRET)
    yield r
    r.close()


def make_sink(receiver: WebhookReceiver, root: Path, **settings: Any) -> WebhookSink:
    values: dict[str, Any] = {
        "name": "ops",
        "url": receiver.url,
        "secret": SECRET,
        "batch_size": 50,
        "linger_s": 0.05,
        "timeout_s": 2.0,
        "retries": 4,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.4,
    }
    values.update(settings)
    return WebhookSink(
        WebhookOutputConfig(type="webhook", **values), f"file://{root}", rng=random.Random(0)
    )


# ------------------------------------------------------------------ signing

BODY = b'{"events":[{"event_id":"1"}]}'


@pytest.mark.parametrize(
    ("secret", "header", "body", "now", "error"),
    [
        # the post as signed, checked at once: accepted
        (SECRET, sign([SECRET], 1000, BODY), BODY, 1000.0, None),
        # within the tolerance, either side of the receiver's clock
        (SECRET, sign([SECRET], 1000, BODY), BODY, 1299.0, None),
        (SECRET, sign([SECRET], 1000, BODY), BODY, 701.0, None),
        # rotating: signed with the new and the old secret, the receiver knows one
        (SECRET, sign(["new-secret", SECRET], 1000, BODY), BODY, 1000.0, None),
        # the receiver's secret is not the sender's
        ("wrong", sign([SECRET], 1000, BODY), BODY, 1000.0, "does not match"),
        # one byte of the body changed on the way
        (SECRET, sign([SECRET], 1000, BODY), BODY.replace(b"1", b"2"), 1000.0, "does not match"),
        # the timestamp changed (a replayed post made to look fresh)
        (SECRET, sign([SECRET], 1000, BODY).replace("t=1000", "t=1290"), BODY, 1290.0, "match"),
        # a captured post replayed after the tolerance
        (SECRET, sign([SECRET], 1000, BODY), BODY, 1301.0, "tolerance"),
        # no header, a header without signature, without timestamp, garbage
        (SECRET, None, BODY, 1000.0, "no X-Camcount-Signature"),
        (SECRET, "t=1000", BODY, 1000.0, "no v1="),
        (SECRET, "v1=abc", BODY, 1000.0, "no t="),
        (SECRET, "t=soon,v1=abc", BODY, 1000.0, "whole seconds"),
        (SECRET, "nonsense", BODY, 1000.0, "malformed"),
    ],
)
def test_verify(
    secret: str, header: str | None, body: bytes, now: float, error: str | None
) -> None:
    if error is None:
        assert verify(secret, header, body, now=lambda: now) == 1000
    else:
        with pytest.raises(SignatureError, match=error):
            verify(secret, header, body, now=lambda: now)


def test_signature_is_the_documented_hmac() -> None:
    """The recipe in docs/webhooks.md, done by hand, gives the header's v1."""
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1000." + BODY, hashlib.sha256).hexdigest()
    assert sign([SECRET], 1000, BODY) == f"t=1000,v1={expected}"


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"secret": None}, "exactly one of secret and secret_env"),
        ({"secret_env": "HOOK_SECRET"}, "exactly one of secret and secret_env"),
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"url": "not a url"}, "http:// or https://"),
        ({"kinds": ["crossing", "frame"]}, "unknown kinds"),
        ({"kinds": ["crossing", "dead_letter"]}, "a webhook does not post"),
        ({"batch_size": 0}, "batch_size"),
        ({"retries": -1}, "retries"),
        ({"backoff_base_s": 2, "backoff_max_s": 1}, "below backoff_base_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"name": "a b"}, "name"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(settings: dict[str, Any], error: str) -> None:
    values = {"name": "ops", "url": "https://example.com/hook", "secret": "s", **settings}
    with pytest.raises(ValidationError, match=error):
        WebhookOutputConfig(type="webhook", **values)


def test_a_webhook_entry_in_the_config_file_is_checked_where_it_is_read() -> None:
    """Through the config's ``outputs:`` union: the line and field named."""
    text = "outputs:\n  - type: webhook\n    url: ftp://x/y\n    secret: s\n"
    with pytest.raises(ConfigError, match=r"line \d: outputs\.0\.webhook\.url: .*http://"):
        parse_config(text)
    config = parse_config("outputs:\n  - {type: webhook, url: 'http://h/x', secret_env: S}\n")
    (hook,) = config.outputs
    assert isinstance(hook, WebhookOutputConfig) and hook.label == "webhook"
    assert "window_row" in hook.webhook_kinds and "zone_sample" not in hook.webhook_kinds


def test_secret_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = WebhookOutputConfig(
        type="webhook", name="ops", url="https://example.com/h", secret_env="HOOK_SECRET"
    )
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="HOOK_SECRET is not set"):
        config.resolve_secret()
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    assert config.resolve_secret() == "from-env"
    # a secret given inline never shows in the config's text
    assert "s3cr3t" not in repr(
        WebhookOutputConfig(type="webhook", name="o", url="http://h/x", secret="s3cr3t")
    )


# ------------------------------------------------------------------ backoff


def test_backoff_grows_with_jitter_and_believes_retry_after_up_to_its_max() -> None:
    backoff, rng = Backoff(base_s=1.0, max_s=8.0), random.Random(3)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = [backoff.delay_s(attempt, rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not fixed
    assert backoff.delay_s(0, rng, retry_after_s=5.0) == 5.0
    assert backoff.delay_s(0, rng, retry_after_s=120.0) == 8.0
    assert parse_retry_after("7", 0.0) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", T0) == 30.0
    assert parse_retry_after("later", T0) is None


# ------------------------------------------------------------------ delivery


def test_events_arrive_signed_batched_and_whole(receiver: WebhookReceiver, tmp_path: Path) -> None:
    sink = make_sink(receiver, tmp_path)
    assert isinstance(sink, Sink) and sink.guarantee is Guarantee.AT_LEAST_ONCE
    sent = crossings(120)
    sink.write("crossing", sent.slice(0, 70))
    sink.write("window_row", window_rows(5))
    sink.write("crossing", sent.slice(70))
    ack = sink.flush(1)
    sink.close()
    got = receiver.received
    assert ack.delivered == 125 and ack.dead_lettered == 0
    assert set(got.events) == ids(sent) | ids(window_rows(5))
    assert got.deliveries == 3 and got.duplicates == 0 and not got.refused_signatures
    event = got.events[str(sent.column("event_id")[7].as_py())]
    assert event["kind"] == "crossing" and event["track_id"] == 7 and event["direction"] == "in"
    assert sink.dead_letters() == []


def test_linger_sends_a_part_batch_without_a_flush(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = make_sink(receiver, tmp_path, linger_s=0.1)
    sink.write("crossing", crossings(3))
    deadline = time.monotonic() + 5
    while len(receiver.received.events) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(receiver.received.events) == 3
    sink.close()


def test_only_the_chosen_kinds_and_cameras_are_posted(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = make_sink(receiver, tmp_path, kinds=["crossing"], cameras=["gate"])
    gate, dock = crossings(10, "gate"), crossings(10, "dock")
    sink.write("crossing", pa.concat_tables([gate, dock]))
    sink.write("window_row", window_rows(4))
    sink.flush(1)
    sink.close()
    assert set(receiver.received.events) == ids(gate)


def test_a_short_outage_within_the_retry_budget_loses_nothing(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = make_sink(receiver, tmp_path, retries=12)  # at least 2 s of backoff
    receiver.down()
    sink.write("crossing", crossings(130))  # three posts, the first meets the outage
    timer = receiver.up_after(0.5)
    ack = sink.flush(1)
    timer.join()
    sink.close()
    assert ack.delivered == 130 and ack.dead_lettered == 0
    assert set(receiver.received.events) == ids(crossings(130))
    assert sink.metrics()["retried"] >= 1
    assert sink.dead_letters() == []


def test_503_and_429_are_retried_after_what_retry_after_asks(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = make_sink(receiver, tmp_path, backoff_base_s=0.01, backoff_max_s=2.0)
    receiver.fail_next(1, 503, {"Retry-After": "1"})
    receiver.fail_next(1, 429, {"Retry-After": "1"})
    sink.write("crossing", crossings(5))
    sink.flush(1)
    sink.close()
    times = [t for t, _ in receiver.received.requests]
    assert [s for _, s in receiver.received.requests] == [503, 429, 204]
    # without Retry-After the backoff would have come back within 0.02 s
    assert times[1] - times[0] >= 0.95 and times[2] - times[1] >= 0.95
    assert len(receiver.received.events) == 5


def test_every_try_of_a_post_is_the_same_post_signed_afresh(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = make_sink(receiver, tmp_path)
    receiver.fail_next(2, 502)
    sink.write("crossing", crossings(5))
    sink.flush(1)
    sink.close()
    tries = receiver.received.posts
    assert [h["X-Camcount-Attempt"] for h, _ in tries] == ["1", "2", "3"]
    assert len({h["X-Camcount-Delivery"] for h, _ in tries}) == 1
    assert len({body for _, body in tries}) == 1
    assert json.loads(tries[0][1])["delivery_id"] == tries[0][0]["X-Camcount-Delivery"]
    assert all(h["X-Camcount-Signature"].startswith("t=") for h, _ in tries)
    assert receiver.received.deliveries == 1 and len(receiver.received.events) == 5


def test_a_4xx_is_not_retried_and_is_dead_lettered_with_its_status(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = make_sink(receiver, tmp_path)
    receiver.fail_next(1, 400)
    sent = crossings(10)
    sink.write("crossing", sent)
    ack = sink.flush(1)
    sink.close()
    assert [s for _, s in receiver.received.requests] == [400]
    assert ack.delivered == 0 and ack.dead_lettered == 10
    letters = sink.dead_letters()
    assert {str(d.payload_id) for d in letters} == ids(sent)
    assert {(d.source, d.reason, d.payload_kind) for d in letters} == {
        ("webhook:ops", "rejected", "crossing")
    }
    assert letters[0].detail.startswith("HTTP 400")


def test_a_wrong_secret_fails_the_receivers_check(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = make_sink(receiver, tmp_path, secret="not-the-receivers")
    sink.write("crossing", crossings(4))
    ack = sink.flush(1)
    sink.close()
    assert receiver.received.events == {}
    assert receiver.received.refused_signatures == ["signature does not match the body and secret"]
    assert ack.dead_lettered == 4 and sink.dead_letters()[0].detail.startswith("HTTP 401")


def test_a_long_outage_ends_in_dead_letters_then_replay_delivers_them(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sink = make_sink(receiver, tmp_path, retries=2, backoff_max_s=0.1)
    receiver.down()
    sent = crossings(160)
    sink.write("crossing", sent)
    sink.write("window_row", window_rows(3))
    ack = sink.flush(1)
    sink.close()
    assert ack.delivered == 0 and ack.dead_lettered == 163
    assert {d.reason for d in sink.dead_letters()} == {"unavailable"}

    # The dead letters are durable: a new process (the replay command) finds them.
    again = make_sink(receiver, tmp_path, retries=0)
    assert len(again.dead_letters()) == 163
    report = again.replay_dead_letters()
    assert report.receiver_down and report.delivered_events == 0
    assert len(again.dead_letters()) == 163  # nothing lost by a replay that failed

    receiver.up()
    report = again.replay_dead_letters()
    again.close()
    assert report.delivered_events == 163 and report.left_batches == 0
    assert set(receiver.received.events) == ids(sent) | ids(window_rows(3))
    assert again.dead_letters() == []


def test_a_flush_fails_while_the_dead_letter_store_cannot_be_written(
    receiver: WebhookReceiver, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    sink = make_sink(receiver, blocker, retries=0)
    receiver.fail_next(1, 400)
    sink.write("crossing", crossings(3))
    with pytest.raises(OSError):
        sink.flush(1)
    assert sink.metrics()["pending"] == 3  # kept, not dropped
    with pytest.raises(OSError):
        sink.close()  # still refused, and the sender stops all the same
