"""A webhook as a pipeline output: a config's ``outputs: [{type: webhook}]``
posts what the pipeline counted to a real receiver on loopback, which
checks every signature."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import ray

from camcount.alerts.engine import AlertEngine
from camcount.alerts.rules import AlertsConfig, OccupancyRule
from camcount.config import (
    AppConfig,
    DetectorConfig,
    StorageConfig,
    WarehouseConfig,
    load_config,
)
from camcount.detectors import DetectorSettings, build_detector
from camcount.outputs.settings import WebhookOutputConfig
from camcount.reference import count_video
from camcount.scenes.synthetic import generate_scene, write_scene
from serve_app.app import start_pipeline
from tests.core.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

SECRET = "pipeline-hook-secret"


def test_a_webhook_output_gets_every_crossing_and_window_count_signed(
    ray_cluster: None, tmp_path: Path
) -> None:
    video, _, _ = write_scene(generate_scene(31), tmp_path / "cam31.mp4")
    camera = load_config(video.with_suffix(".yaml")).cameras[0]
    receiver = WebhookReceiver(SECRET)
    hook = WebhookOutputConfig(
        type="webhook",
        name="ops",
        url=receiver.url,
        secret=SECRET,
        kinds=("crossing", "window_row", "alert"),
        batch_size=20,
        linger_s=0.2,
    )
    config = AppConfig(
        cameras=(camera,),
        detector=DetectorConfig(model="oracle", max_batch_size=8, options={"seed": 5}),
        warehouse=WarehouseConfig(url=f"chdb://{tmp_path}/chdb"),
        storage=StorageConfig(root=f"file://{tmp_path}/store"),
        outputs=(hook,),
        # Someone in the zone: an alert per visit, in event time.
        alerts=AlertsConfig(
            rules=(
                OccupancyRule(id="zone-busy", camera=camera.id, zone="zone-a", above=0, hold_s=0),
            )
        ),
    )
    pipeline = start_pipeline(config, shards=1, api=False)
    try:
        ray.get(pipeline.controller.wait_files.remote(300))
        stored = ray.get(
            pipeline.sink.sql.remote("SELECT event_id, state FROM alerts FINAL ORDER BY event_id")
        ).to_pylist()
    finally:
        pipeline.stop()
        receiver.close()
    det = build_detector("oracle", DetectorSettings(options={"seed": 5}))
    lines = {ln.id for ln in camera.lines}
    reference = count_video(config, camera, det)
    want = Counter(
        {
            (r["counter_id"], r["class_name"], r["direction"]): r["count"]
            for r in reference.totals
            if r["counter_id"] in lines
        }
    )
    # The alerts the rule raises on the reference run's zone samples, in order.
    engine = AlertEngine(config.alerts.rules)
    alerts = [a for s in reference.samples for a in engine.on_samples([s])]
    assert {a.state for a in alerts} == {"firing", "resolved"}
    events = receiver.received.events.values()
    crossings = Counter(
        (e["counter_id"], e["class_name"], e["direction"])
        for e in events
        if e["kind"] == "crossing"
    )
    smallest = min(config.windows.sizes_s)
    windows: Counter[tuple[str, str, str]] = Counter()
    for e in events:
        if (
            e["kind"] == "window_row"
            and e["window_size_s"] == smallest
            and e["counter_id"] in lines
        ):
            windows[(e["counter_id"], e["class_name"], e["direction"])] += e["count"]
    assert sum(want.values()) > 0
    assert receiver.received.refused_signatures == []
    assert crossings == want  # every crossing once (deduped by event_id), none missing
    assert +windows == want  # the closed windows add up to the same counts
    assert all(e["camera_id"] == camera.id for e in events)
    # Alerts reach the receiver and the warehouse's history as the core
    # raised them on the same samples.
    posted = {e["event_id"]: e["state"] for e in events if e["kind"] == "alert"}
    assert posted == {str(a.event_id): a.state for a in alerts}
    assert {(int(r["event_id"]), r["state"]) for r in stored} == {
        (a.event_id, a.state) for a in alerts
    }
