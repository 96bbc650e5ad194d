"""External events through the real parts: a controller with no camera,
its shard and an external source actor subscribed to a real mosquitto
broker, and the REST app's ``POST /events`` in front of the controller.

Duplicates (a resent MQTT message, a retried request, the same batch
again without its key) change nothing; a late event is a dead letter;
the group the source joins counts what it counts; and a lost external
source actor is rolled back with its shard without losing or doubling
anything.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import ray
from starlette.testclient import TestClient

from actors.controller import Controller
from camcount.config import (
    ApiConfig,
    AppConfig,
    ExternalConfig,
    ExternalSourceConfig,
    GroupConfig,
    GroupJoin,
    MqttSubscriptionConfig,
    StorageConfig,
    WarehouseConfig,
    WindowsConfig,
)
from serve_app.api import ApiService, ControllerClient, build_api_app
from serve_app.auth import token_digest
from tests.mosquitto import Mosquitto

pytestmark = pytest.mark.integration

TOKEN = "events-token-5c1d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEY = ("doors", "main", "person", "in")
OUT_KEY = ("doors", "main", "person", "out")
NAMESPACE = "camcount-external-test"


def event(
    seq: int, t: float, n: int = 1, direction: str = "in", device: str = "d1"
) -> dict[str, Any]:
    return {
        "device_id": device,
        "seq": seq,
        "event_time": t,
        "counter_id": "main",
        "direction": direction,
        "count": n,
    }


class Run:
    def __init__(self, controller: Any, name: str, broker: Mosquitto, topic: str) -> None:
        self.controller = controller
        self.broker = broker
        self.topic = topic
        client = ControllerClient(name, NAMESPACE, find_sink=False)
        service = ApiService(ApiConfig(rate_limit_per_s=1000), [token_digest(TOKEN)], client, [10])
        self.http = TestClient(build_api_app(service))

    def publish(self, payloads: list[Any]) -> None:
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}")
        pub.connect(self.broker.host, self.broker.port)
        pub.loop_start()
        try:
            for p in payloads:
                pub.publish(self.topic, json.dumps(p), qos=1).wait_for_publish(5)
        finally:
            pub.disconnect()
            pub.loop_stop()

    def totals(self) -> dict[tuple[str, str, str, str], int]:
        rows = ray.get(self.controller.totals.remote())
        return {
            (r["camera_id"], r["counter_id"], r["class_name"], r["direction"]): r["count"]
            for r in rows
        }

    def wait_total(self, key: tuple[str, str, str, str], n: int, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.totals().get(key) == n:
                return
            time.sleep(0.1)
        raise AssertionError(f"{key} is {self.totals().get(key)}, expected {n}")

    def shard(self) -> Any:
        return ray.get(self.controller.shard_handles.remote())[0]


@pytest.fixture(scope="module")
def run(
    ray_cluster: None, mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    root: Path = tmp_path_factory.mktemp("external")
    topic = f"site/{uuid.uuid4().hex[:8]}/doors"
    config = AppConfig(
        groups=(GroupConfig(id="site"),),
        external=ExternalConfig(
            sources=(
                ExternalSourceConfig(
                    id="doors",
                    counters=("main",),
                    mqtt=MqttSubscriptionConfig(
                        host=mosquitto.host,
                        port=mosquitto.port,
                        topics=(topic,),
                        reconnect_max_delay_s=1,
                    ),
                    joins=(GroupJoin(group="site", counter="main"),),
                ),
            )
        ),
        windows=WindowsConfig(sizes_s=(10,), allowed_lateness_s=0, idle_timeout_s=600),
        warehouse=WarehouseConfig(enabled=False),
        storage=StorageConfig(root=f"file://{root}/store", checkpoint_interval_s=3600),
    )
    name = f"controller-{uuid.uuid4().hex[:8]}"
    controller = Controller.options(name=name, namespace=NAMESPACE).remote(config)  # type: ignore[attr-defined]
    ray.get(controller.start.remote(), timeout=60)
    try:
        yield Run(controller, name, mosquitto, topic)
    finally:
        ray.get(controller.shutdown.remote(checkpoint=False), timeout=60)
        ray.kill(controller)


def test_mqtt_and_api_events_count_once_in_the_same_windows_and_group(run: Run) -> None:
    # MQTT: a batch, the same message resent, one event alone.
    run.publish(
        [[event(1, 1, 2), event(2, 2)], [event(1, 1, 2), event(2, 2)], event(3, 3, 1, "out")]
    )
    run.wait_total(KEY, 3)
    # The API: the same device's later events, a retried request with its
    # key, and the batch again without a key.
    body = {"source": "doors", "events": [event(4, 4, 5), event(5, 5, 1, "out")]}
    first = run.http.post("/events", json=body, headers={**AUTH, "Idempotency-Key": "b-1"})
    assert first.status_code == 200, first.text
    assert first.json() == {"source": "doors", "accepted": 2, "duplicates": 0, "replayed": False}
    retry = run.http.post("/events", json=body, headers={**AUTH, "Idempotency-Key": "b-1"})
    assert retry.json()["replayed"] is True
    again = run.http.post("/events", json=body, headers=AUTH)
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 2
    assert run.totals()[KEY] == 8 and run.totals()[OUT_KEY] == 2
    # A late event: its window closed when the watermark passed 15.
    run.http.post("/events", json={"source": "doors", "events": [event(6, 15.5)]}, headers=AUTH)
    late = run.http.post(
        "/events", json={"source": "doors", "events": [event(7, 2, 4)]}, headers=AUTH
    )
    assert late.json()["accepted"] == 1
    letters = ray.get(run.controller.dead_letters.remote())
    assert [d.reason for d in letters if d.source == "doors"] == ["late"]
    rows = {
        (r.camera_id, r.direction, r.window_start): r.count
        for r in ray.get(run.shard().rows.remote())
    }
    assert rows[("doors", "in", 0.0)] == 8  # the late 4 changed no closed row
    assert rows[("group:site", "in", 0.0)] == 8
    assert rows[("group:site", "net", 0.0)] == 8 - 2


def test_bad_events_are_a_422_naming_the_field(run: Run) -> None:
    bad = {"source": "doors", "events": [event(100, 20), {**event(101, 20), "counter_id": "back"}]}
    r = run.http.post("/events", json=bad, headers=AUTH)
    assert r.status_code == 422 and "events[1].counter_id" in r.json()["message"]
    r = run.http.post("/events", json={"source": "nowhere", "events": [event(1, 1)]}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "source"]
    assert run.http.post("/events", json=bad).status_code == 401


def test_a_lost_source_is_rolled_back_and_counts_each_event_once(run: Run) -> None:
    before = run.totals()[KEY]
    assert ray.get(run.controller.checkpoint.remote(), timeout=60)["ok"]
    run.publish([event(200, 30, 3)])
    run.wait_total(KEY, before + 3)
    # Lost after the checkpoint: its MQTT message was never acknowledged,
    # so the broker sends it to the new source, which counts it once.
    external = ray.get(run.controller.external_handle.remote("doors"))
    ray.kill(external, no_restart=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = ray.get(run.controller.external_handle.remote("doors"))
        if new is not None and new != external:
            break
        time.sleep(0.2)
    run.wait_total(KEY, before + 3, timeout_s=30)
    time.sleep(1.0)  # nothing arrives twice
    assert run.totals()[KEY] == before + 3
