"""The MQTT output in a running pipeline: ``outputs: [{type: mqtt}]``
against a real mosquitto, down while the camera counts, from its start to
its end of file.

A subscriber receives every crossing the warehouse holds (deduped by
``event_id``: at-least-once may repeat, never lose) and the retained
counts equal the pipeline's totals once the broker is back. The same run
raises alerts (an occupancy rule on the clip's zone): the MQTT subscriber
and a WebSocket client of the live API (kind filter ``alert``) each get
exactly the changes the warehouse's ``alerts`` table holds.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import ray
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from camcount.alerts.rules import AlertsConfig, OccupancyRule
from camcount.config import (
    ApiConfig,
    AppConfig,
    DetectorConfig,
    StorageConfig,
    WarehouseConfig,
    load_config,
)
from camcount.outputs.settings import MqttOutputConfig
from camcount.scenes.synthetic import ZONE_ID, generate_scene, write_scene
from serve_app.app import start_pipeline
from tests.integration.conftest import free_port
from tests.mosquitto import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNTING_TIMEOUT_S = 300.0
TOKEN = "mqtt-pipeline-token-93d1"
#: Someone in the clip's zone for a moment: it opens and resolves as
#: people walk in and out, so both changes of alerts go out.
ZONE_OCCUPIED = OccupancyRule(
    id="zone-occupied", camera="cam31", zone=ZONE_ID, above=0, hold_s=0.3, severity="info"
)


class Subscriber:
    """A persistent QoS 1 session: the broker keeps its queue across the
    restart, as a real consumer's."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.crossings: dict[int, dict[str, Any]] = {}
        self.alerts: dict[int, dict[str, Any]] = {}
        self.counts: dict[tuple[str, ...], int] = {}
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix}", clean_session=False
        )
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *_: c.subscribe(f"{prefix}/#", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert ready.wait(10)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/count"):
                key = (body["camera_id"], body["counter_id"], body["class_name"], body["direction"])
                self.counts[key] = body["count"]
            elif body["kind"] == "crossing":
                self.crossings[body["event_id"]] = body
            elif body["kind"] == "alert":
                self.alerts[body["event_id"]] = body


class LiveAlerts:
    """A WebSocket client of the live API, subscribed to the ``alert``
    kind from the first update on, in a thread until ``close``."""

    def __init__(self, api_url: str) -> None:
        self.alerts: dict[int, dict[str, Any]] = {}
        self.other_kinds: set[str] = set()
        self.lock = threading.Lock()
        self._open = contextlib.ExitStack()
        self._ws = self._open.enter_context(
            ws_connect(
                api_url.replace("http", "ws", 1).rstrip("/") + "/live/ws",
                additional_headers={"Authorization": f"Bearer {TOKEN}"},
                open_timeout=30,
            )
        )
        assert json.loads(self._ws.recv(timeout=30))["type"] == "hello"
        self._ws.send(json.dumps({"type": "subscribe", "kinds": ["alert"], "after": 0}))
        assert json.loads(self._ws.recv(timeout=30))["type"] == "subscribed"
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            self._receive()

    def _receive(self) -> None:
        for frame in self._ws:
            m = json.loads(frame)
            updates = m["updates"] if m["type"] == "updates" else [m]
            with self.lock:
                for u in updates:
                    if u.get("type") != "update":
                        continue
                    if u["kind"] == "alert":
                        self.alerts[u["data"]["event_id"]] = u["data"]
                    else:
                        self.other_kinds.add(u["kind"])
            if m["type"] in ("update", "updates"):
                self._ws.send(json.dumps({"type": "ack", "seq": updates[-1]["seq"]}))

    def close(self) -> None:
        self._open.close()
        self._thread.join(10)


def camera_finished(pipeline: Any) -> bool:
    cameras = ray.get(pipeline.controller.status.remote())["cameras"]
    return bool(cameras) and all(c["state"] == "finished" for c in cameras)


def test_every_crossing_arrives_through_a_broker_outage(
    ray_cluster: None, mosquitto: Mosquitto, tmp_path: Any
) -> None:
    video, _, _ = write_scene(generate_scene(31), tmp_path / "cam31.mp4")
    camera = load_config(video.with_suffix(".yaml")).cameras[0]
    assert camera.id == ZONE_OCCUPIED.camera
    prefix = f"cc{uuid.uuid4().hex[:8]}"
    config = AppConfig(
        cameras=(camera,),
        detector=DetectorConfig(model="oracle"),
        warehouse=WarehouseConfig(url=f"chdb://{tmp_path}/chdb"),
        storage=StorageConfig(root=f"file://{tmp_path}/store", checkpoint_interval_s=2.0),
        outputs=(
            MqttOutputConfig(
                type="mqtt", host=mosquitto.host, port=mosquitto.port, topic_prefix=prefix
            ),
        ),
        alerts=AlertsConfig(rules=(ZONE_OCCUPIED,)),
        api=ApiConfig(port=free_port(), tokens=(TOKEN,)),
    )
    sub = Subscriber(mosquitto, prefix)
    pipeline = start_pipeline(config)
    live: LiveAlerts | None = None
    try:
        mosquitto.stop()
        assert not camera_finished(pipeline)  # the outage began while it counts
        live = LiveAlerts(pipeline.api_url)
        deadline = time.monotonic() + COUNTING_TIMEOUT_S
        while not camera_finished(pipeline) and time.monotonic() < deadline:
            time.sleep(0.25)
        mosquitto.start()  # once every event is counted and waits for the broker
        ray.get(pipeline.controller.wait_files.remote(COUNTING_TIMEOUT_S))
        totals = {
            (r["camera_id"], r["counter_id"], r["class_name"], r["direction"]): r["count"]
            for r in ray.get(pipeline.controller.totals.remote())
        }
        stored = ray.get(pipeline.sink.sql.remote("SELECT event_id FROM crossings FINAL"))
        stored_ids = set(stored.column("event_id").to_pylist())
        stored_alerts = {
            r["event_id"]: r["state"]
            for r in ray.get(
                pipeline.sink.sql.remote("SELECT event_id, state FROM alerts FINAL")
            ).to_pylist()
        }
        # The live stream had them before the warehouse did.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with live.lock:
                if set(live.alerts) >= set(stored_alerts):
                    break
            time.sleep(0.2)
    finally:
        if live is not None:
            live.close()
        pipeline.stop()
        if not mosquitto.running:
            mosquitto.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sub.lock:
            if (
                set(sub.crossings) >= stored_ids
                and sub.counts == totals
                and set(sub.alerts) >= set(stored_alerts)
            ):
                break
        time.sleep(0.2)
    sub.client.disconnect()
    sub.client.loop_stop()
    assert live is not None
    assert stored_ids and set(sub.crossings) == stored_ids
    assert sub.counts == totals
    # Alerts: both changes of some, each the same fact on all three paths.
    assert set(stored_alerts.values()) == {"firing", "resolved"}
    assert set(sub.alerts) == set(stored_alerts)
    assert set(live.alerts) == set(stored_alerts)
    assert live.other_kinds == set()  # the kind filter let nothing else through
    for event_id, state in stored_alerts.items():
        assert sub.alerts[event_id]["state"] == live.alerts[event_id]["state"] == state
        assert sub.alerts[event_id]["alert_id"] == live.alerts[event_id]["alert_id"]
