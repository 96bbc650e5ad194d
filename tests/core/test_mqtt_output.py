"""The MQTT output against a real mosquitto broker: what a subscriber
receives, the retained counts, replays, an outage and a dead broker."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from camcount.events import Crossing, Direction, WindowRow, to_arrow
from camcount.outputs.mqtt import UNACKED_REASON, MqttError, MqttSettings, MqttSink
from camcount.outputs.port import Guarantee, Sink
from tests.mosquitto import Mosquitto

_RUN = iter(range(1_000_000))


def crossings(camera: str, frames: range, direction: Direction = Direction.IN) -> list[Crossing]:
    return [
        Crossing(camera, "door", 1 + f % 3, f, f / 10, "person", direction, 0.9, 1.0, 2.0)
        for f in frames
    ]


class Subscriber:
    """A persistent-session subscriber: it keeps its queue across a broker
    restart, as a real consumer with QoS 1 would."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.events: dict[int, dict[str, Any]] = {}
        self.received = 0
        self.counts: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{prefix}",
            clean_session=False,
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self._lock:
            if msg.topic.endswith("/count"):
                self.counts[msg.topic] = body
            else:
                self.received += 1
                self.events[body["event_id"]] = body

    def wait_for(self, n_events: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.events) >= n_events:
                    return
            time.sleep(0.02)
        raise AssertionError(f"{len(self.events)} of {n_events} events arrived")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return f"t{next(_RUN)}-{time.monotonic_ns()}"


@pytest.fixture
def subscriber(mosquitto: Mosquitto, prefix: str) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto, prefix)
    yield sub
    sub.close()


def sink_for(broker: Mosquitto, prefix: str, **kw: Any) -> MqttSink:
    sink = MqttSink(MqttSettings(broker.host, broker.port, topic_prefix=prefix, **kw))
    assert sink.connected(5)
    return sink


def test_it_is_an_output_of_the_port(mosquitto: Mosquitto, prefix: str) -> None:
    sink = sink_for(mosquitto, prefix)
    try:
        assert isinstance(sink, Sink)
        assert sink.guarantee is Guarantee.AT_LEAST_ONCE
    finally:
        sink.close()


def test_a_subscriber_gets_every_event_and_the_counts(
    mosquitto: Mosquitto, prefix: str, subscriber: Subscriber
) -> None:
    sink = sink_for(mosquitto, prefix)
    try:
        ins, outs = crossings("cam1", range(0, 40)), crossings("cam1", range(40, 50), Direction.OUT)
        rows = [WindowRow("cam1", "door", "person", "in", 10, 0.0, 40)]
        sink.write("crossing", to_arrow(Crossing, ins + outs))
        sink.write("window_row", to_arrow(WindowRow, rows))
        ack = sink.flush(1)
        assert (ack.checkpoint_id, ack.delivered, ack.dead_lettered) == (1, 51, 0)
        subscriber.wait_for(51)
        assert set(subscriber.events) == {e.event_id for e in ins + outs + rows}
        one = subscriber.events[ins[0].event_id]
        assert one["kind"] == "crossing" and one["camera_id"] == "cam1" and one["direction"] == "in"
        assert subscriber.counts[f"{prefix}/cam1/door/person/in/count"]["count"] == 40
        assert subscriber.counts[f"{prefix}/cam1/door/person/out/count"]["count"] == 10
    finally:
        sink.close()


def test_a_replayed_batch_comes_again_with_the_same_ids_and_counts_stay(
    mosquitto: Mosquitto, prefix: str, subscriber: Subscriber
) -> None:
    sink = sink_for(mosquitto, prefix)
    try:
        first = crossings("cam2", range(0, 20))
        sink.write("crossing", to_arrow(Crossing, first))
        sink.flush(1)
        # A restore replays from frame 10: 10 repeats, then 10 new ones.
        sink.write("crossing", to_arrow(Crossing, crossings("cam2", range(10, 30))))
        sink.flush(2)
        subscriber.wait_for(30)
        time.sleep(0.2)
        assert subscriber.received == 40 and len(subscriber.events) == 30
        assert sink.counts() == {("cam2", "door", "person", "in"): 30}
        assert subscriber.counts[f"{prefix}/cam2/door/person/in/count"]["count"] == 30
    finally:
        sink.close()


def test_a_restarted_output_goes_on_from_the_retained_counts(
    mosquitto: Mosquitto, prefix: str, subscriber: Subscriber
) -> None:
    first = sink_for(mosquitto, prefix)
    first.write("crossing", to_arrow(Crossing, crossings("cam5", range(0, 20))))
    first.flush(1)
    first.close()  # lost; the shard replays from its checkpoint at frame 10
    second = sink_for(mosquitto, prefix)
    try:
        second.write("crossing", to_arrow(Crossing, crossings("cam5", range(10, 25))))
        second.flush(2)
        assert second.counts() == {("cam5", "door", "person", "in"): 25}
        subscriber.wait_for(25)
        time.sleep(0.2)
        assert subscriber.counts[f"{prefix}/cam5/door/person/in/count"]["count"] == 25
    finally:
        second.close()


def test_nothing_is_lost_while_the_broker_restarts(
    mosquitto: Mosquitto, prefix: str, subscriber: Subscriber
) -> None:
    sink = sink_for(mosquitto, prefix, reconnect_min_delay_s=1, reconnect_max_delay_s=1)
    try:
        sink.write("crossing", to_arrow(Crossing, crossings("cam3", range(0, 10))))
        sink.flush(1)
        mosquitto.stop()
        sink.write("crossing", to_arrow(Crossing, crossings("cam3", range(10, 60))))
        threading.Timer(1.5, mosquitto.start).start()
        ack = sink.flush(2)
        assert (ack.delivered, ack.dead_lettered) == (50, 0)
        subscriber.wait_for(60)
        assert sink.metrics()["disconnects"] >= 1
    finally:
        sink.close()
        if not mosquitto.running:
            mosquitto.start()


def test_what_a_dead_broker_never_took_goes_to_dead_letters(
    mosquitto: Mosquitto, prefix: str
) -> None:
    sink = sink_for(mosquitto, prefix, flush_timeout_s=0.5)
    try:
        mosquitto.stop()
        events = crossings("cam4", range(0, 5))
        sink.write("crossing", to_arrow(Crossing, events))
        ack = sink.flush(1)
        assert (ack.delivered, ack.dead_lettered) == (0, 5)
        letters = sink.dead_letters()
        assert {d.payload_id for d in letters} == {e.event_id for e in events}
        assert {d.reason for d in letters} == {UNACKED_REASON}
    finally:
        mosquitto.start()
        sink.close()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("qos", 3),  # MQTT has QoS 0, 1 and 2 only
        ("port", 0),
        ("topic_prefix", "camcount/#"),  # a wildcard is no topic to publish to
        ("flush_timeout_s", 0),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(setting: str, value: object) -> None:
    with pytest.raises(MqttError, match=setting):
        MqttSettings(**{setting: value})  # type: ignore[arg-type]
