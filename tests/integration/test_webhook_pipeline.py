"""A webhook as a pipeline output: a config's ``outputs: [{type: webhook}]``
posts what the pipeline counted to a real receiver on loopback, which
checks every signature."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from camcount.alerts.engine import AlertEngine
from camcount.alerts.rules import AlertsConfig, CameraRule, OccupancyRule
from camcount.config import (
    ApiConfig,
    AppConfig,
    CameraConfig,
    DetectorConfig,
    StorageConfig,
    WarehouseConfig,
    load_config,
)
from camcount.detectors import DetectorSettings, build_detector
from camcount.outputs.settings import WebhookOutputConfig
from camcount.reference import count_video
from camcount.scenes.synthetic import generate_scene, truth_path, write_scene
from serve_app.app import start_pipeline
from tests.core.test_capture import damage
from tests.core.webhook_receiver import WebhookReceiver
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

SECRET = "pipeline-hook-secret"
TOKEN = "alert-rules-admin-token"


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


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def stored_alerts(pipeline: Any, rule_id: str) -> list[dict[str, Any]]:
    """The warehouse's alert changes of one rule, times in ms."""
    rows = ray.get(
        pipeline.sink.sql.remote(
            "SELECT alert_id, target, state, "
            "toUnixTimestamp(opened_at) * 1000 + opened_ms AS opened, "
            "toUnixTimestamp(event_time) * 1000 + event_ms AS at "
            "FROM alerts FINAL WHERE rule_id = {rule:String} ORDER BY at",
            {"rule": rule_id},
        )
    ).to_pylist()
    return list(rows)


def test_camera_states_and_rules_set_through_the_api_raise_alerts_once(
    ray_cluster: None, tmp_path: Path
) -> None:
    """(a) A camera whose source breaks off is reported ``failed`` by the
    controller to its shard: one ``camera`` alert, at the receiver and in
    the warehouse. (b) A rule set through ``PUT /alerts/rules`` raises
    alerts the config's rules did not, and is still in force after the
    shard is killed and made again, with no alert raised twice."""
    video, _, _ = write_scene(generate_scene(31), tmp_path / "gate.mp4")
    gate = load_config(video.with_suffix(".yaml")).cameras[0]
    gate = gate.model_copy(update={"loop": True, "realtime": True})  # runs until stopped
    # Noise in the middle: it is read up to there, then fails.
    broken = damage(video, tmp_path / "broken.mp4")
    truth_path(broken).write_text(truth_path(video).read_text())  # for the oracle
    receiver = WebhookReceiver(SECRET)
    down = CameraRule(id="down", state="failed", hold_s=1)
    config = AppConfig(
        cameras=(gate, CameraConfig(id="broken", source=str(broken))),
        detector=DetectorConfig(model="oracle", max_batch_size=8),
        api=ApiConfig(port=free_port(), tokens=(TOKEN,)),
        warehouse=WarehouseConfig(url=f"chdb://{tmp_path}/chdb", flush_interval_s=0.5),
        storage=StorageConfig(root=f"file://{tmp_path}/store", checkpoint_interval_s=1.0),
        outputs=(
            WebhookOutputConfig(
                type="webhook",
                name="ops",
                url=receiver.url,
                secret=SECRET,
                kinds=("alert",),
                batch_size=20,
                linger_s=0.2,
            ),
        ),
        alerts=AlertsConfig(rules=(down,)),
    )
    # Someone in any of the gate camera's zones, or nobody: one or the
    # other opens an alert soon after the rules are set, whatever the scene
    # shows then.
    busy = {"kind": "occupancy", "id": "busy", "camera": gate.id, "above": 0, "hold_s": 0}
    empty = {"kind": "occupancy", "id": "empty", "camera": gate.id, "below": 1, "hold_s": 0}
    added = ("busy", "empty")

    def new_alerts() -> list[dict[str, Any]]:
        return [r for rule in added for r in stored_alerts(pipeline, rule)]

    pipeline = start_pipeline(config, shards=1)
    api = httpx.Client(
        base_url=pipeline.api_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    )
    try:
        # (a) The broken camera's alert, made durable by a checkpoint.
        wait_for(lambda: stored_alerts(pipeline, "down"), 60, "the broken camera's alert")
        in_force = api.get("/alerts/rules").json()
        assert in_force == AlertsConfig(rules=(down,)).document()
        assert new_alerts() == []  # not rules of the config
        # (b) A rule that cannot run here is refused, naming it; one that can
        # is in force at once.
        nowhere = {"kind": "occupancy", "id": "site", "group": "nowhere", "above": 5}
        refused = api.put("/alerts/rules", json={"rules": [*in_force["rules"], nowhere]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == ["rules", "1"]
        assert "group 'nowhere'" in refused.json()["message"]
        put = api.put("/alerts/rules", json={"rules": [*in_force["rules"], busy, empty]})
        assert put.status_code == 200, put.text
        assert [r["id"] for r in put.json()["rules"]] == ["down", *added]
        raised = wait_for(new_alerts, 60, "the new rules' alerts")
        killed_after = max(r["at"] for r in raised)
        [shard] = ray.get(pipeline.controller.shard_handles.remote())
        ray.kill(shard, no_restart=False)
        wait_for(
            lambda: [r for r in new_alerts() if r["at"] > killed_after],
            60,
            "the new rules' alerts from the shard made again",
        )
        [again] = ray.get(pipeline.controller.shard_handles.remote())
        assert [r.id for r in ray.get(again.alert_rules.remote())] == ["down", *added]
        assert api.get("/alerts/rules").json() == put.json()
        pipeline.checkpoint()
        downs = stored_alerts(pipeline, "down")
        by_rule = {rule: stored_alerts(pipeline, rule) for rule in added}
    finally:
        api.close()
        pipeline.stop()
        receiver.close()
    # (a) once: one alert, one change, in the warehouse and at the receiver.
    assert [(r["target"], r["state"]) for r in downs] == [("broken", "firing")]
    posted = [e for e in receiver.received.events.values() if e["rule_id"] == "down"]
    assert [(int(e["alert_id"]), e["state"]) for e in posted] == [(downs[0]["alert_id"], "firing")]
    # (b) never raised twice: each alert fires once, and none opens while
    # another of the same rule and target is still open (a repeat after the
    # shard was restored would, under another id).
    for changes in by_rule.values():
        firing = sorted((r["opened"], r["alert_id"]) for r in changes if r["state"] == "firing")
        assert len({a for _, a in firing}) == len(firing)
        resolved = {r["alert_id"]: r["at"] for r in changes if r["state"] == "resolved"}
        for (_, earlier), (opened, _) in itertools.pairwise(firing):
            assert earlier in resolved and resolved[earlier] <= opened
