"""The MQTT output in a running pipeline: ``outputs: [{type: mqtt}]``
against a real mosquitto, stopped for 20 s while the pipeline counts.

A subscriber receives every crossing the warehouse holds (deduped by
``event_id``: at-least-once may repeat, never lose) and the retained
counts equal the pipeline's totals once the broker is back.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import ray

from camcount.config import AppConfig, DetectorConfig, StorageConfig, WarehouseConfig, load_config
from camcount.outputs.settings import MqttOutputConfig
from camcount.scenes.synthetic import generate_scene, write_scene
from serve_app.app import start_pipeline
from tests.mosquitto import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 20.0


class Subscriber:
    """A persistent QoS 1 session: the broker keeps its queue across the
    restart, as a real consumer's."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.crossings: dict[int, dict[str, Any]] = {}
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


def test_every_crossing_arrives_through_a_broker_outage(
    ray_cluster: None, mosquitto: Mosquitto, tmp_path: Any
) -> None:
    video, _, _ = write_scene(generate_scene(31), tmp_path / "cam31.mp4")
    camera = load_config(video.with_suffix(".yaml")).cameras[0]
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
    )
    sub = Subscriber(mosquitto, prefix)
    pipeline = start_pipeline(config, api=False)
    try:
        mosquitto.stop()  # while the camera counts
        restart = threading.Timer(OUTAGE_S, mosquitto.start)
        restart.start()
        ray.get(pipeline.controller.wait_files.remote(300))
        restart.join()
        totals = {
            (r["camera_id"], r["counter_id"], r["class_name"], r["direction"]): r["count"]
            for r in ray.get(pipeline.controller.totals.remote())
        }
        stored = ray.get(pipeline.sink.sql.remote("SELECT event_id FROM crossings FINAL"))
        stored_ids = set(stored.column("event_id").to_pylist())
    finally:
        pipeline.stop()
        if not mosquitto.running:
            mosquitto.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sub.lock:
            if set(sub.crossings) >= stored_ids and sub.counts == totals:
                break
        time.sleep(0.2)
    sub.client.disconnect()
    sub.client.loop_stop()
    assert stored_ids and set(sub.crossings) == stored_ids
    assert sub.counts == totals
