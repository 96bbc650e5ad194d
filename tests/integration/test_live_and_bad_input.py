"""Live sources that stall and come back, bad inputs beside good cameras,
and live clients that move from one live replica to another."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from camcount.config import (
    ApiConfig,
    AppConfig,
    CameraConfig,
    DetectorConfig,
    SourcesConfig,
    StorageConfig,
    TrackerConfig,
    WarehouseConfig,
    ZoneConfig,
    load_config,
    parse_config,
)
from camcount.errors import ConfigError
from camcount.scenes.synthetic import generate_scene, truth_path, write_scene
from serve_app.app import start_pipeline
from tests.core.test_capture import damage
from tests.integration.conftest import free_port
from tests.integration.mjpeg import MjpegCamera

pytestmark = pytest.mark.integration

TABLE_ZONE = ZoneConfig(id="table", polygon=((250, 250), (650, 250), (650, 431), (250, 431)))


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def camera_status(pipeline, camera_id: str) -> dict:
    return next(c for c in pipeline.status()["cameras"] if c["camera_id"] == camera_id)


def entries(status: dict) -> int:
    return sum(t["count"] for t in status["totals"] if t["direction"] == "enter")


@pytest.mark.slow
def test_a_live_stream_cut_off_and_restored_stalls_then_streams_and_keeps_counting(
    ray_cluster, shared_data
):
    video = shared_data / "videos" / "intel_one-by-one-person-detection.mp4"
    stream = MjpegCamera(video, fps=20, start_frame=60)
    stream.start()
    config = AppConfig(
        cameras=(CameraConfig(id="ipcam", source=stream.url, zones=(TABLE_ZONE,)),),
        detector=DetectorConfig(model="ssdlite-person", score_threshold=0.5),
        tracker=TrackerConfig(lost_track_buffer_s=2.0),
        warehouse=WarehouseConfig(enabled=False),  # the live side is what is tested
    )
    pipeline = start_pipeline(config, api=False)
    try:
        wait_for(lambda: camera_status(pipeline, "ipcam")["state"] == "streaming", 60, "streaming")
        wait_for(lambda: entries(camera_status(pipeline, "ipcam")) >= 1, 90, "a first visit")
        before = entries(camera_status(pipeline, "ipcam"))
        stream.cut()
        wait_for(lambda: camera_status(pipeline, "ipcam")["state"] == "stalled", 30, "stalled")
        time.sleep(3)
        stream.restore()
        wait_for(
            lambda: camera_status(pipeline, "ipcam")["state"] == "streaming", 60, "streaming again"
        )
        status = camera_status(pipeline, "ipcam")
        assert status["reconnects"] >= 1
        wait_for(
            lambda: entries(camera_status(pipeline, "ipcam")) > before,
            120,
            "counts after the outage",
        )
    finally:
        pipeline.stop()
        stream.cut()


def test_bad_sources_fail_clearly_and_the_good_camera_keeps_going(ray_cluster, tmp_path: Path):
    good, _, _ = write_scene(generate_scene(31), tmp_path / "good.mp4")
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    # 200 kB of noise in the middle: OpenCV opens it, decodes half, stops.
    damaged = damage(good, tmp_path / "damaged.mp4")
    truth_path(damaged).write_text(truth_path(good).read_text())  # for the oracle
    good_cam = CameraConfig.model_validate(
        {
            **parse_config(good.with_suffix(".yaml").read_text()).cameras[0].model_dump(),
            "source": str(good),
        }
    )
    refused = f"http://127.0.0.1:{free_port()}/stream.mjpg"
    config = AppConfig(
        cameras=(
            good_cam,
            CameraConfig(id="missing", source=str(tmp_path / "nope.mp4")),
            CameraConfig(id="truncated", source=str(truncated)),
            CameraConfig(id="damaged", source=str(damaged)),
            CameraConfig(id="refused", source=refused),
            CameraConfig(id="unresolvable", source="rtsp://nosuchhost.invalid/stream"),
        ),
        detector=DetectorConfig(model="oracle"),
        warehouse=WarehouseConfig(enabled=False),
    )
    pipeline = start_pipeline(config, api=False)
    try:
        wait_for(
            lambda: camera_status(pipeline, "good")["state"] == "finished", 120, "the good camera"
        )
        states = {c["camera_id"]: c for c in pipeline.status()["cameras"]}
        assert (
            states["missing"]["state"] == "failed" and "no such file" in states["missing"]["detail"]
        )
        wait_for(
            lambda: camera_status(pipeline, "damaged")["state"] in ("failed", "finished"),
            60,
            "the damaged camera's end",
        )
        states = {c["camera_id"]: c for c in pipeline.status()["cameras"]}
        # Cut in half, the MP4 loses its index (written last): it cannot open.
        assert states["truncated"]["state"] == "failed"
        assert "cannot open" in states["truncated"]["detail"]
        # Damaged in the middle, it is read up to the damage and then fails:
        # never "finished" with half of its events silently missing.
        assert states["damaged"]["state"] == "failed", states["damaged"]
        assert states["damaged"]["detail"].startswith(
            "damaged or truncated: decoding stopped at frame "
        )
        assert states["damaged"]["detail"].endswith(" of 300")
        assert states["refused"]["state"] in ("connecting", "stalled")
        assert "refused" in states["refused"]["detail"] or "retrying" in states["refused"]["detail"]
        # a name that does not resolve is told apart from a refused connection
        assert states["unresolvable"]["state"] == "connecting"
        assert states["unresolvable"]["detail"].startswith("host not found: nosuchhost.invalid")
        assert states["good"]["totals"], "the good camera counted nothing"
    finally:
        pipeline.stop()


def test_an_unknown_camera_field_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as exc:
        parse_config("cameras:\n  - id: a\n    source: a.mp4\n    zoom: 3\n", "cams.yaml")
    assert "cameras.0.zoom" in str(exc.value) and "line 4" in str(exc.value)


# ----------------------------------------------------------- resume across replicas

TOKEN = "replica-token-51d2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Update kinds a camera's push makes, each stamped with its creation.
CAMERA_KINDS = {"crossing", "zone_transition", "zone_sample", "zone_visit"}
#: Updates published while the client is away, before it comes back.
MOVED_AFTER = 20


async def _next_update(ws: Any, timeout_s: float = 15.0) -> dict[str, Any]:
    """The next update, past heartbeats and other notices."""
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        if m["type"] == "update":
            m["received"] = time.time()
            return m


async def _subscribed(url: str, camera: str) -> Any:
    ws = await websockets.connect(url, additional_headers=AUTH)
    assert json.loads(await ws.recv())["type"] == "hello"
    await ws.send(json.dumps({"type": "subscribe", "cameras": [camera]}))
    while json.loads(await ws.recv())["type"] != "subscribed":
        pass
    return ws


async def _read_all(ws: Any, into: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Every update until ``stop``, acknowledged as a client must."""
    while not stop.is_set():
        try:
            into.append(await _next_update(ws, 0.5))
        except TimeoutError:
            continue
        await ws.send(json.dumps({"type": "ack", "seq": into[-1]["seq"]}))


def test_a_client_resumes_on_another_live_replica_missing_and_repeating_nothing(
    ray_cluster, tmp_path: Path
) -> None:
    video, _, _ = write_scene(generate_scene(43), tmp_path / "cam43.mp4")
    camera = load_config(video.with_suffix(".yaml")).cameras[0].model_copy(update={"id": "hop"})
    config = AppConfig(
        detector=DetectorConfig(model="oracle"),
        api=ApiConfig(
            port=free_port(),
            tokens=(TOKEN,),
            live_replicas=2,
            heartbeat_s=1.0,
            sources=SourcesConfig(folders=(str(tmp_path),)),
        ),
        warehouse=WarehouseConfig(enabled=False),
        storage=StorageConfig(root=f"file://{tmp_path}/store"),
    )
    pipeline = start_pipeline(config)
    try:
        with httpx.Client(base_url=pipeline.api_url, headers=AUTH, timeout=30) as c:
            deadline = time.monotonic() + 60
            while len(found := c.get("/live/endpoints").json()["endpoints"]) < 2:
                assert time.monotonic() < deadline, f"two live replicas never listed: {found}"
                time.sleep(0.5)
        replica_a, replica_b = (e["ws"] for e in found)
        assert replica_a != replica_b

        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
            stayed: list[dict[str, Any]] = []
            stop = asyncio.Event()
            observer = await _subscribed(replica_a, "hop")
            watching = asyncio.create_task(_read_all(observer, stayed, stop))
            first = await _subscribed(replica_a, "hop")
            async with httpx.AsyncClient(base_url=pipeline.api_url, headers=AUTH, timeout=30) as c:
                added = await c.post("/cameras", json=camera.model_dump(mode="json"))
                assert added.status_code == 201, added.text
                seen = [await _next_update(first) for _ in range(5)]
                await first.close()
                resume_after = seen[-1]["seq"]
                # the stream goes on while the client is away: the one that
                # stayed reads on (enough updates, or the camera's last ones)
                while sum(u["seq"] > resume_after for u in stayed) < MOVED_AFTER:
                    if (await c.get("/cameras/hop")).json()["status"]["state"] == "finished":
                        await asyncio.sleep(2.0)  # its last pushes reach the replicas
                        break
                    await asyncio.sleep(0.3)
            stop.set()
            await watching
            await observer.close()
            # on the other replica, from where the first connection stopped
            resumed: list[dict[str, Any]] = []
            async with websockets.connect(
                f"{replica_b}?after={resume_after}", additional_headers=AUTH
            ) as again:
                await again.recv()  # hello
                await again.send(json.dumps({"type": "subscribe", "cameras": ["hop"]}))
                while not resumed or resumed[-1]["seq"] < stayed[-1]["seq"]:
                    resumed.append(await _next_update(again))
                    if len(resumed) % 16 == 0:
                        await again.send(json.dumps({"type": "ack", "seq": resumed[-1]["seq"]}))
            return stayed, resumed, resume_after

        stayed, resumed, resume_after = asyncio.run(run())
        missed = [u for u in stayed if u["seq"] > resume_after]
        assert len(missed) >= 5, "the camera's updates ended before the client moved"
        strip = [{k: v for k, v in u.items() if k != "received"} for u in resumed]
        # exactly what the client that stayed got after that point: no gap, no repeat
        assert strip == [{k: v for k, v in u.items() if k != "received"} for u in missed]
        seqs = [u["seq"] for u in stayed]
        assert seqs == sorted(set(seqs))
        # every update a camera push made says when its events were made,
        # and when it went to the hub, on the clients' own clock
        made = [u for u in stayed if u["kind"] in CAMERA_KINDS]
        assert made
        for u in made:
            assert u["created"] <= u["published"] <= u["received"], u
            assert u["received"] - u["created"] < 60
    finally:
        pipeline.stop()
