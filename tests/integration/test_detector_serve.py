"""The detector deployment on a real Serve instance: batches form across
callers, results go back to the right caller, overload is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import ray
from ray import serve

from camcount.config import DetectorConfig
from camcount.detectors import FrameMeta, build_detector
from camcount.detectors.slicing import SliceSettings, detect_sliced, frame_regions
from camcount.scenes.synthetic import generate_scene, write_scene
from serve_app.detector import detector_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    video, _, _ = write_scene(generate_scene(11), tmp_path_factory.mktemp("det") / "s11.mp4")
    return video


@pytest.fixture
def serve_instance(ray_cluster):
    serve.start(http_options={"host": "127.0.0.1", "port": 0})
    yield
    serve.delete("detector-test")


def frames_for(scene: Path, indices: list[int]) -> list[tuple[np.ndarray, FrameMeta]]:
    tiny = np.zeros((36, 64, 3), dtype=np.uint8)
    return [(tiny, FrameMeta(str(scene), i, (640, 360))) for i in indices]


def test_batches_form_across_callers_and_results_return_to_their_caller(serve_instance, scene):
    config = DetectorConfig(
        model="oracle", max_batch_size=8, batch_wait_timeout_s=0.05, options={"latency_s": 0.02}
    )
    handle = serve.run(detector_app(config), name="detector-test", route_prefix=None)
    reference = build_detector("oracle")

    @ray.remote
    def caller(start: int) -> list[tuple[int, list[list[float]]]]:
        h = serve.get_deployment_handle("Detector", app_name="detector-test")

        async def go():
            items = frames_for(scene, list(range(start, start + 40)))
            results = await asyncio.gather(*[h.detect.remote(f, m) for f, m in items])
            return [
                (m.frame_index, r.xyxy.tolist()) for (_, m), r in zip(items, results, strict=True)
            ]

        return asyncio.run(go())

    outputs = ray.get([caller.remote(s) for s in (0, 50, 100, 150)])
    for out in outputs:
        for index, boxes in out:
            tiny = np.zeros((36, 64, 3), dtype=np.uint8)
            want = reference.detect([tiny], [FrameMeta(str(scene), index, (640, 360))])[0]
            np.testing.assert_allclose(boxes, want.xyxy.tolist(), atol=1e-3)
    stats = handle.stats.remote().result()
    assert stats["frames"] == 160
    assert max(stats["batch_sizes"]) > 1, stats
    print(f"\nbatch sizes seen: {stats['batch_sizes']}")


def test_a_full_queue_refuses_with_backpressure(serve_instance, scene):
    config = DetectorConfig(
        model="oracle",
        max_batch_size=1,
        max_ongoing_requests=1,
        max_queued_requests=2,
        options={"latency_s": 0.5},
    )
    handle = serve.run(detector_app(config), name="detector-test", route_prefix=None)
    responses = [handle.detect.remote(f, m) for f, m in frames_for(scene, list(range(10)))]
    errors = []
    for r in responses:
        try:
            r.result(timeout_s=30)
        except Exception as exc:
            errors.append(type(exc).__name__)
    assert "BackPressureError" in errors
    assert len(errors) < 10  # the ones in flight and queued were served


def test_a_sliced_frame_is_batched_region_by_region_and_comes_back_merged(serve_instance, scene):
    """A sliced camera's regions join the batches that other cameras' frames
    fill, and each frame comes back as one Detections, the same the core's
    in-process slicing gives (camcount count)."""
    config = DetectorConfig(
        model="oracle", max_batch_size=16, batch_wait_timeout_s=0.05, options={"latency_s": 0.02}
    )
    handle = serve.run(detector_app(config), name="detector-test", route_prefix=None)
    reference = build_detector("oracle")
    settings = SliceSettings(grid=(2, 2))
    full = np.zeros((360, 640, 3), dtype=np.uint8)  # the oracle reads the truth, not pixels
    metas = [FrameMeta(str(scene), i, (640, 360)) for i in range(40, 60)]
    sliced = [
        frame_regions(full, m, settings, reference.input_size, reference.color_order) for m in metas
    ]
    response = handle.detect_sliced.remote(
        [inputs for inputs, _ in sliced], [metas for _, metas in sliced], settings
    )
    others = [handle.detect.remote(f, m) for f, m in frames_for(scene, list(range(100, 120)))]
    got = response.result(timeout_s=60)
    for r in others:
        r.result(timeout_s=60)
    want = detect_sliced(reference, [full] * len(metas), metas, settings)
    assert len(got) == len(metas)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.xyxy, w.xyxy, atol=1e-3)
        np.testing.assert_array_equal(g.class_id, w.class_id)
    stats = handle.stats.remote().result()
    assert stats["frames"] == 5 * len(metas) + len(others)  # every region one batch item
    assert max(stats["batch_sizes"]) == 16, stats
