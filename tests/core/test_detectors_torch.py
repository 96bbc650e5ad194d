"""The torchvision, TorchScript and ONNX backends on real models.

Nothing is downloaded: torchvision models are built untrained and seeded
(``weights="random"``), and the hub cache is pointed at a temporary folder.
The ONNX checks need the person SSDLite weights (``camcount models fetch``,
as ``test_ssdlite.py``) and the shared reference image.
"""

from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from camcount.detectors import build_detector
from camcount.detectors.base import DetectorSettings, FrameMeta
from camcount.detectors.detections import Detections
from camcount.detectors.torch_runtime import resolve_device
from camcount.detectors.torchscript import export_torchvision, save_torchscript
from camcount.detectors.torchvision_backend import (
    LabelMap,
    TorchvisionDetector,
    hub_checkpoint,
)
from camcount.errors import DetectorError

# torch 2.14 marks TorchScript deprecated; these tests script small modules on purpose.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*:FutureWarning")

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
IMAGE = DATA / "images" / "ssdlite_example.jpg"
needs_image = pytest.mark.skipif(not IMAGE.is_file(), reason=f"reference image not at {IMAGE}")

SSDLITE = "ssdlite320_mobilenet_v3_large"
HUB_FILE = "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"
# A small label space keeps an untrained model's output (every class scores alike) short;
# label 2 is a gap, as COCO's "N/A" ids are.
GAPPED = ["__background__", "person", "N/A", "car"]


def random_detector(seed: int = 0, **options: object) -> TorchvisionDetector:
    settings = DetectorSettings(
        score_threshold=0.0,
        device="cpu",
        weights="random",
        options={"seed": seed, "class_names": GAPPED, **options},
    )
    return TorchvisionDetector(SSDLITE, settings)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Two different RGB frames at the model's size, so per-image results can differ."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (320, 320, 3), dtype=np.uint8) for _ in range(2)]


def metas(n: int, size: tuple[int, int] = (640, 480)) -> list[FrameMeta]:
    return [FrameMeta("test", i, size) for i in range(n)]


def same(a: Detections, b: Detections) -> None:
    assert len(a) == len(b)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-3)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-5)
    np.testing.assert_array_equal(a.class_id, b.class_id)


@pytest.fixture(scope="module")
def seeded(frames) -> tuple[TorchvisionDetector, list[Detections]]:
    detector = random_detector(seed=1)
    return detector, detector.detect(frames, metas(2))


# --- torchvision -------------------------------------------------------------------------


def test_torchvision_output_shape_scale_and_classes(seeded, frames) -> None:
    detector, found = seeded
    assert detector.name == f"torchvision:{SSDLITE}"
    assert detector.class_names == ("person", "car")  # background and the gap dropped
    assert detector.input_size == (320, 320) and detector.color_order == "rgb"
    assert len(found) == 2
    for dets in found:
        assert len(dets) > 0
        assert set(dets.class_id.tolist()) <= {0, 1}
        # Scaled from the 320x320 frame back to the 640x480 original.
        assert dets.xyxy[:, [0, 2]].max() <= 640 + 1e-3 and dets.xyxy[:, [1, 3]].max() <= 480 + 1e-3
        assert dets.xyxy[:, [0, 2]].max() > 320
        assert np.all(dets.xyxy[:, 2] >= dets.xyxy[:, 0])
    # A batch gives what single frames give: results are not mixed up within a batch.
    same(detector.detect(frames[1:], metas(1))[0], found[1])


def test_the_seed_decides_the_untrained_weights(seeded) -> None:
    detector, _ = seeded

    def weights(d: TorchvisionDetector) -> list[Tensor]:
        return [p.detach() for p in d.model.parameters()]

    for a, b in zip(weights(random_detector(seed=1)), weights(detector), strict=True):
        assert torch.equal(a, b)
    other = weights(random_detector(seed=2))
    assert not all(torch.equal(a, b) for a, b in zip(other, weights(detector), strict=True))
    assert torch.initial_seed() != 1  # the process's own generator was left alone


def test_default_class_names_are_compact_coco() -> None:
    detector = TorchvisionDetector(
        SSDLITE, DetectorSettings(device="cpu", weights="random", classes=("person", "car"))
    )
    names = detector.class_names
    assert len(names) == 80 and names[:3] == ("person", "bicycle", "car")
    assert "N/A" not in names and "__background__" not in names
    # COCO label 3 is car, label 12 a gap, label 13 stop sign.
    ids = detector.labels.class_ids(np.array([0, 1, 3, 12, 13, 91, -1]))
    assert ids.tolist() == [-1, 0, 2, -1, names.index("stop sign"), -1, -1]


def test_label_map_table() -> None:
    cases = [
        # (label names, background label, class names, lookup)
        (["__background__", "a", "b"], 0, ("a", "b"), [-1, 0, 1]),
        (["no person", "person"], 0, ("person",), [-1, 0]),  # keypoint R-CNN's list
        (["a", "N/A", "b"], None, ("a", "b"), [0, -1, 1]),  # TorchScript: names decide
    ]
    for names, background, classes, lookup in cases:
        labels = LabelMap.from_label_names(names, background_label=background)
        assert labels.class_names == classes
        assert labels.lookup.tolist() == lookup
    with pytest.raises(DetectorError, match="unique"):
        LabelMap.from_label_names(["__background__", "a", "a"], background_label=0)


def test_a_state_dict_file_loads(seeded, frames, tmp_path: Path) -> None:
    detector, found = seeded
    path = tmp_path / "finetuned.pth"
    torch.save(detector.model.state_dict(), path)
    loaded = TorchvisionDetector(
        SSDLITE,
        DetectorSettings(
            score_threshold=0.0, device="cpu", weights=str(path), options={"class_names": GAPPED}
        ),
    )
    same(loaded.detect(frames[:1], metas(1))[0], found[0])


def test_weights_that_do_not_fit_say_so(seeded, tmp_path: Path) -> None:
    detector, _ = seeded
    path = tmp_path / "four_classes.pth"
    torch.save(detector.model.state_dict(), path)
    with pytest.raises(DetectorError, match="class_names"):  # built for COCO's 91 labels
        TorchvisionDetector(SSDLITE, DetectorSettings(device="cpu", weights=str(path)))


def test_a_missing_weights_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.pth"
    with pytest.raises(DetectorError, match=str(missing)):
        TorchvisionDetector(SSDLITE, DetectorSettings(device="cpu", weights=str(missing)))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_default_weights_offline_say_where_to_put_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / HUB_FILE
    url = f"https://download.pytorch.org/models/{HUB_FILE}"
    assert hub_checkpoint(url) == target
    # Download switched off: fails before any network access.
    with pytest.raises(DetectorError) as off:
        TorchvisionDetector(SSDLITE, DetectorSettings(device="cpu", options={"download": False}))
    assert str(target) in str(off.value) and url in str(off.value)
    # Download on, but the network is unreachable (a proxy on a closed local port).
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(DetectorError, match="cannot download") as down:
        TorchvisionDetector(SSDLITE, DetectorSettings(device="cpu", weights="DEFAULT"))
    assert str(target) in str(down.value) and url in str(down.value)
    assert not target.exists()


def test_default_weights_come_from_the_hub_cache(frames, tmp_path, monkeypatch) -> None:
    """A file copied into the cache by hand is used as is, without a download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # An untrained model with COCO's 91 labels stands in for the real file.
    coco = TorchvisionDetector(SSDLITE, DetectorSettings(device="cpu", weights="random"))
    target = tmp_path / "hub" / "checkpoints" / HUB_FILE
    target.parent.mkdir(parents=True)
    torch.save(coco.model.state_dict(), target)
    cached = TorchvisionDetector(
        SSDLITE, DetectorSettings(device="cpu", weights="COCO_V1", options={"download": False})
    )
    assert cached.class_names == coco.class_names
    a = coco.detect(frames[:1], metas(1))[0]
    same(cached.detect(frames[:1], metas(1))[0], a)


def test_bad_names_are_refused() -> None:
    with pytest.raises(DetectorError, match="no detection model 'resnet50'"):
        build_detector("torchvision:resnet50", DetectorSettings(device="cpu"))
    with pytest.raises(DetectorError, match="COCO_V1"):
        build_detector(f"torchvision:{SSDLITE}", DetectorSettings(weights="IMAGENET"))
    with pytest.raises(DetectorError, match="needs a name"):
        build_detector("torchvision:")


def test_device_selection() -> None:
    assert resolve_device("cpu").type == "cpu"
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DetectorError, match="not supported"):
        resolve_device("mps")
    with pytest.raises(DetectorError, match="unknown device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DetectorError, match="no CUDA"):
            TorchvisionDetector(SSDLITE, DetectorSettings(device="cuda", weights="random"))
    detector = random_detector()
    assert next(detector.model.parameters()).device.type == "cpu"
    assert not detector._half  # fp16 is for CUDA only


# --- TorchScript -------------------------------------------------------------------------


def test_an_exported_torchvision_model_gives_the_same_detections(
    seeded, frames, tmp_path: Path
) -> None:
    detector, found = seeded
    path = export_torchvision(random_detector(seed=1), tmp_path / "model.pt")
    scripted = build_detector(f"torchscript:{path}", DetectorSettings(score_threshold=0.0))
    assert scripted.class_names == detector.class_names
    assert scripted.input_size == (320, 320)
    for got, want in zip(scripted.detect(frames, metas(2)), found, strict=True):
        same(got, want)


class _Corner(nn.Module):
    """The contract at its smallest: one box over the top-left quarter, labelled 1,
    scored 1 for an image with any light in it and 0 for a black one."""

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        out: list[dict[str, Tensor]] = []
        for image in images:
            h, w = float(image.shape[1]), float(image.shape[2])
            out.append(
                {
                    "boxes": torch.tensor([[0.0, 0.0, w / 2, h / 2]]),
                    "scores": (image.float().max() > 0).float().reshape(1),
                    "labels": torch.tensor([1]),
                }
            )
        return out


@pytest.mark.parametrize("fmt", ["uint8", "float"])
def test_the_batch_input_contract(fmt: str, tmp_path: Path) -> None:
    path = save_torchscript(
        torch.jit.script(_Corner()), tmp_path / "corner.pt", {"input": fmt, "input_size": [40, 30]}
    )
    with pytest.raises(DetectorError, match="class names"):
        build_detector(f"torchscript:{path}")
    detector = build_detector(
        f"torchscript:{path}",
        DetectorSettings(score_threshold=0.0, options={"class_names": ["__background__", "bus"]}),
    )
    assert detector.class_names == ("bus",) and detector.input_size == (40, 30)
    bright = np.full((30, 40, 3), 255, dtype=np.uint8)
    dark = np.zeros((20, 20, 3), dtype=np.uint8)  # another size: its own call
    got = detector.detect(
        [bright, dark], [FrameMeta("t", 0, (80, 60)), FrameMeta("t", 1, (20, 20))]
    )
    np.testing.assert_allclose(got[0].xyxy, [[0, 0, 40, 30]])  # scaled to 80x60
    np.testing.assert_allclose(got[0].confidence, [1.0])
    np.testing.assert_allclose(got[1].xyxy, [[0, 0, 10, 10]])
    np.testing.assert_allclose(got[1].confidence, [0.0])
    assert got[1].class_id.tolist() == [0]


def test_torchscript_files_that_break_the_contract(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="not found"):
        build_detector(f"torchscript:{tmp_path / 'none.pt'}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(DetectorError, match="TorchScript"):
        build_detector(f"torchscript:{junk}")
    bad_meta = save_torchscript(torch.jit.script(_Corner()), tmp_path / "m.pt", {})
    with pytest.raises(DetectorError, match="input must be one of"):
        build_detector(
            f"torchscript:{bad_meta}",
            DetectorSettings(options={"class_names": ["a"], "input": "nhwc"}),
        )


# --- ONNX --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnxscript", reason="the onnx extra is not installed")
    from camcount.detectors.fetch import fetch_ssdlite
    from camcount.detectors.onnx import export_ssdlite

    weights = fetch_ssdlite()
    return export_ssdlite(tmp_path_factory.mktemp("onnx") / "ssdlite.onnx", weights=str(weights))


@needs_image
@pytest.mark.parametrize("threshold", [0.5, 0.05])
def test_onnx_matches_eager_torch_on_the_reference_image(onnx_file: Path, threshold: float) -> None:
    settings = DetectorSettings(score_threshold=threshold, device="cpu")
    eager = build_detector("ssdlite-person", settings)
    onnx = build_detector(f"onnx:{onnx_file}", settings)
    assert onnx.class_names == ("person",) and onnx.input_size == (300, 300)
    image = cv2.imread(str(IMAGE))
    meta = [FrameMeta(str(IMAGE), 0, (image.shape[1], image.shape[0]))]
    want = eager.detect([eager.prepare(image)], meta)[0]
    got = onnx.detect([onnx.prepare(image)], meta)[0]
    assert len(got) == len(want) and len(want) >= 4
    np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1.0)
    np.testing.assert_allclose(got.confidence, want.confidence, atol=0.01)
    if threshold == 0.5:  # data/README.md: the three clear people, then one at about 0.587
        np.testing.assert_allclose(got.confidence, [0.977, 0.836, 0.673, 0.587], atol=0.01)
        np.testing.assert_allclose(got.xyxy[0], [267, 62, 343, 270], atol=1.5)


@needs_image
def test_onnx_batches_like_single_frames(onnx_file: Path) -> None:
    onnx = build_detector(f"onnx:{onnx_file}", DetectorSettings(score_threshold=0.3))
    image = cv2.imread(str(IMAGE))
    frame = onnx.prepare(image)
    flipped = np.ascontiguousarray(frame[:, ::-1])
    raw = np.ascontiguousarray(image[..., ::-1])  # full size: resized to 300x300 inside
    size = (image.shape[1], image.shape[0])
    batch = onnx.detect([frame, flipped, raw], metas(3, size))
    for i, f in enumerate([frame, flipped, raw]):
        same(batch[i], onnx.detect([f], metas(1, size))[0])


@pytest.fixture(scope="module")
def int8_file(onnx_file: Path, tmp_path_factory) -> Path:
    from camcount.detectors.quantize import calibration_frames, quantize_onnx

    videos = sorted((DATA / "videos").glob("*"))
    if not videos:
        pytest.skip(f"no calibration videos at {DATA / 'videos'}")
    frames = calibration_frames(videos, per_video=4)
    return quantize_onnx(onnx_file, tmp_path_factory.mktemp("int8") / "int8.onnx", frames)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area - inter))


@needs_image
def test_int8_finds_the_same_people_as_float_on_the_reference_image(
    onnx_file: Path, int8_file: Path
) -> None:
    settings = DetectorSettings(score_threshold=0.5, device="cpu")
    full = build_detector(f"onnx:{onnx_file}", settings)
    int8 = build_detector(f"onnx:{int8_file}", settings)
    image = cv2.imread(str(IMAGE))
    meta = [FrameMeta(str(IMAGE), 0, (image.shape[1], image.shape[0]))]
    want = full.detect([full.prepare(image)], meta)[0]
    got = int8.detect([int8.prepare(image)], meta)[0]
    assert len(got) == len(want) == 4
    for box, score in zip(want.xyxy, want.confidence, strict=True):
        best = max(range(len(got)), key=lambda i: iou(box, got.xyxy[i]))
        assert iou(box, got.xyxy[best]) >= 0.9
        assert abs(got.confidence[best] - score) <= 0.05


def test_the_float_tail_runs_from_the_heads_last_convolutions_to_the_outputs(
    onnx_file: Path,
) -> None:
    import onnx

    from camcount.detectors.quantize import tail_nodes

    model = onnx.load(str(onnx_file))
    op = {node.name: node.op_type for node in model.graph.node}
    tail = tail_nodes(model, ["boxes", "scores"], heads=False)
    # Box decoding and the sigmoid, and no convolution: those stay int8.
    assert {"Exp", "Sigmoid"} <= {op[n] for n in tail}
    assert "Conv" not in {op[n] for n in tail}
    heads = set(tail_nodes(model, ["boxes", "scores"], heads=True)) - set(tail)
    # A box and a class head on each of the six feature maps.
    assert len(heads) == 12 and {op[n] for n in heads} == {"Conv"}


def test_int8_keeps_the_heads_and_the_box_decoding_float(int8_file: Path) -> None:
    import onnx

    from camcount.detectors.quantize import tail_nodes

    model = onnx.load(str(int8_file))
    nodes = {node.name: node for node in model.graph.node}
    tail = tail_nodes(model, ["boxes", "scores"], heads=False)
    # Scores and box corners are not rounded to 256 levels on their way out...
    assert not {nodes[n].op_type for n in tail} & {"QuantizeLinear", "DequantizeLinear"}
    # ...nor are the heads' weights.
    float_weights = {
        i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT
    }
    heads = set(tail_nodes(model, ["boxes", "scores"], heads=True)) - set(tail)
    assert len(heads) == 12
    assert all(nodes[n].input[1] in float_weights for n in heads)


def test_int8_needs_calibration_frames_it_can_read(tmp_path: Path) -> None:
    from camcount.detectors.quantize import calibration_frames

    with pytest.raises(DetectorError, match="not found"):
        calibration_frames([tmp_path / "none.mp4"])
    (tmp_path / "notes.txt").write_text("no frames here")
    with pytest.raises(DetectorError, match="no frame could be read"):
        calibration_frames([tmp_path])


def test_the_named_int8_model_says_how_to_build_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CAMCOUNT_MODELS_DIR", str(tmp_path))
    with pytest.raises(DetectorError, match="models export --int8"):
        build_detector("ssdlite-person-int8")


def test_onnx_files_that_break_the_contract(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    with pytest.raises(DetectorError, match="not found"):
        build_detector(f"onnx:{tmp_path / 'none.onnx'}")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01")
    with pytest.raises(DetectorError, match="cannot load"):
        build_detector(f"onnx:{junk}")
