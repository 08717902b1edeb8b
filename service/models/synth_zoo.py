"""Random-weight stand-ins for InsightFace-REST's other model families, built so that their decoders are
tested here end to end through onnxruntime: each graph has its family's exact input (name, shape, float32)
and outputs (names, order, shapes, channel layout), but only a few convolutions inside. They say nothing
about speed (`facefleet models synth` reports their parameters; the SCRFD and IResNet generators of
facefleet.models.synth are the architecture-faithful ones).

- RetinaFace (InsightFace MXNet, `data` [1, 3, 480, 640]): per stride 32, 16, 8 the maps
  face_rpn_cls_prob_reshape_stride<s> [1, 2A, H/s, W/s] (a softmax over background/face per anchor, as the
  MXNet graph's reshape-softmax-reshape), face_rpn_bbox_pred_stride<s> [1, 4A, ...],
  face_rpn_landmark_pred_stride<s> [1, 10A, ...]; mnet_cov2 adds face_rpn_type_prob_reshape_stride<s>
  [1, 3A, ...] after them (a softmax over 3 types per anchor; channels 2A..3A: mask). A = 2.
- CenterFace (Star-Clouds, `input.1` declared [10, 3, 32, 32] like the published file): outputs 537 (heatmap,
  a sigmoid) [10, 1, 8, 8], 538 (scale) [10, 2, 8, 8], 539 (offset), 540 (landmarks) [10, 10, 8, 8], the names
  its demos read.
- YOLOv5-face (`input` [1, 3, 640, 640]): one `output` [1, 25200, 16], rows ordered as YOLOv5's Detect
  head flattens them (stride, anchor, row, column), already in pixels: a sigmoid scaled per column.
- MobileFaceNet-style recognizer (w600k_mbf, `input.1` [N, 3, 112, 112] -> [N, 512]): strided and
  depthwise convs, a global depthwise conv, a fully connected layer and BN.
- Gender/age (genderage_v1, `data` [N, 3, 112, 112] raw RGB -> `fc1` [N, 202]) and the mask classifiers
  (mask_detector 224, mask_detector112: channels-last [N, side, side, 3] -> [N, 2] softmax).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper

from facefleet.models.synth_graph import GraphBuilder, finish

RETINA_ANCHORS = 2
RETINA_STRIDES = (32, 16, 8)
ADAFACE_NAMES = ("input.1", "output")  # assumed: InsightFace-REST's AdaFace file was not available to read


def _named(g: GraphBuilder, x: str, name: str) -> str:
    """Give a tensor the name an output must have."""
    g.nodes.append(helper.make_node("Identity", [x], [name], name=f"out_{name}"))
    return name


def _tame(g: GraphBuilder, x: str) -> str:
    """Tanh: random weights would otherwise give deltas whose exp overflows; the real files' lie in it too."""
    return g.op("Tanh", [x])


def _pyramid(g: GraphBuilder, x: str, widths: tuple[int, ...]) -> dict[int, tuple[str, int]]:
    """Stride-2 convs + ReLU; the (tensor, channels) reached at each stride from 4 on."""
    levels, cin, stride = {}, 3, 1
    for width in widths:
        x, cin, stride = g.relu(g.conv(x, cin, width, 3, 2, bias=True)), width, stride * 2
        if stride >= 4:
            levels[stride] = (x, cin)
    return levels


def _softmax_groups(g: GraphBuilder, x: str, groups: int, cols: int, name: str) -> str:
    """[N, groups * A, H, W] logits -> per-anchor softmax over the groups, channel layout kept (MXNet's
    Reshape(0, groups, -1, 0) / SoftmaxActivation(mode=channel) / Reshape back)."""
    split = g.op("Reshape", [x, g.const(np.array([0, groups, -1, cols], np.int64))])
    soft = g.op("Softmax", [split], axis=1)
    back = g.op("Reshape", [soft, g.const(np.array([0, groups * RETINA_ANCHORS, -1, cols], np.int64))])
    return _named(g, back, name)


def retinaface(
    mask: bool = False, input_hw: tuple[int, int] = (480, 640), seed: int = 0
) -> tuple[onnx.ModelProto, int]:
    """(model, parameters) with RetinaFace's I/O; `mask` adds mnet_cov2's type maps."""
    g = GraphBuilder(seed)
    levels = _pyramid(g, "data", (8, 16, 16, 32, 32))
    a, outputs = RETINA_ANCHORS, []
    for s in RETINA_STRIDES:
        x, c = levels[s]
        rows, cols = -(-input_hw[0] // s), -(-input_hw[1] // s)
        made = [
            _softmax_groups(g, g.conv(x, c, 2 * a, 3, bias=True), 2, cols, f"face_rpn_cls_prob_reshape_stride{s}"),
            _named(g, _tame(g, g.conv(x, c, 4 * a, 3, bias=True)), f"face_rpn_bbox_pred_stride{s}"),
            _named(g, _tame(g, g.conv(x, c, 10 * a, 3, bias=True)), f"face_rpn_landmark_pred_stride{s}"),
        ]
        if mask:
            made.append(
                _softmax_groups(g, g.conv(x, c, 3 * a, 3, bias=True), 3, cols, f"face_rpn_type_prob_reshape_stride{s}")
            )
        outputs += [(n, [1, k * a, rows, cols]) for n, k in zip(made, (2, 4, 10, 3), strict=False)]
    return finish(g, "retinaface", [("data", [1, 3, *input_hw])], outputs), g.parameters


def centerface(input_hw: tuple[int, int] = (32, 32), batch: int = 10, seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """(model, parameters) with CenterFace's I/O, declared as the published file declares it: placeholder dims
    input [10, 3, 32, 32] (fully convolutional, it runs at any size once `dynamic_size` frees them)."""
    g = GraphBuilder(seed)
    x, c = _pyramid(g, "input.1", (16, 32))[4]
    heat = _named(g, g.op("Sigmoid", [g.conv(x, c, 1, 3, bias=True)]), "537")
    maps = [heat] + [
        _named(g, _tame(g, g.conv(x, c, k, 3, bias=True)), n) for n, k in (("538", 2), ("539", 2), ("540", 10))
    ]
    rows, cols = input_hw[0] // 4, input_hw[1] // 4
    outputs = [(n, [batch, k, rows, cols]) for n, k in zip(maps, (1, 2, 2, 10), strict=True)]
    return finish(g, "centerface", [("input.1", [batch, 3, *input_hw])], outputs), g.parameters


# Column scales of the YOLOv5-face rows: centre x, y and size in pixels of a 640 input, score, landmarks, class.
YOLO_COLUMNS = np.array([640, 640, 160, 160, 1] + [640] * 10 + [1], np.float32)


def yolov5_face(input_size: int = 640, seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """(model, parameters) with a YOLOv5-face export's I/O: 3 anchors per cell of strides 8, 16, 32."""
    g = GraphBuilder(seed)
    levels = _pyramid(g, "input", (8, 16, 16, 32, 32))
    width = len(YOLO_COLUMNS)
    rows = []
    for s in (8, 16, 32):
        x, c = levels[s]
        head = g.conv(x, c, 3 * width, 3, bias=True)
        split = g.op("Reshape", [head, g.const(np.array([0, 3, width, -1], np.int64))])
        flat = g.op("Transpose", [split], perm=[0, 1, 3, 2])
        rows.append(g.op("Reshape", [flat, g.const(np.array([0, -1, width], np.int64))]))
    joined = g.op("Concat", rows, axis=1)
    pixels = g.op("Mul", [g.op("Sigmoid", [joined]), g.const(YOLO_COLUMNS)])
    _named(g, pixels, "output")
    count = sum((input_size // s) ** 2 * 3 for s in (8, 16, 32))
    return finish(
        g, "yolov5_face", [("input", [1, 3, input_size, input_size])], [("output", [1, count, width])]
    ), g.parameters


def _depthwise(g: GraphBuilder, x: str, c: int, k: int, stride: int, pad: int) -> str:
    w = g.tensor((c, 1, k, k), float(np.sqrt(2.0 / (k * k))))
    return g.op("Conv", [x, w], stride, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4, group=c)


def mobilefacenet(embedding: int = 512, seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """(model, parameters) of a small MobileFaceNet-style recognizer with w600k_mbf's I/O."""
    g = GraphBuilder(seed)
    x = g.prelu(g.conv("input.1", 3, 32, 3, 2), 32)  # 56 x 56
    for cin, cout in ((32, 64), (64, 128)):  # 28, 14
        x = g.prelu(_depthwise(g, x, cin, 3, 2, 1), cin)
        x = g.prelu(g.conv(x, cin, cout, 1), cout)
    x = g.prelu(_depthwise(g, x, 128, 3, 2, 1), 128)  # 7 x 7
    x = g.prelu(g.conv(x, 128, 512, 1), 512)
    x = _depthwise(g, x, 512, 7, 1, 0)  # global depthwise conv: 1 x 1
    flat = g.op("Flatten", [x], axis=1)
    fc = g.op(
        "Gemm",
        [flat, g.tensor((embedding, 512), float(np.sqrt(1 / 512))), g.tensor((embedding,), 0, fill=0.0)],
        transB=1,
    )
    _named(g, g.bn(fc, embedding), "output")
    return finish(
        g, "mobilefacenet", [("input.1", ["batch", 3, 112, 112])], [("output", ["batch", embedding])]
    ), g.parameters


GENDERAGE_WIDTH = 202  # 2 gender scores, then 100 (no, yes) pairs whose yes-count is the age
GENDERAGE_NAMES = ("data", "fc1")  # InsightFace's genderage.onnx


def genderage(seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """(model, parameters) with InsightFace's gender/age I/O: an aligned 112 x 112 RGB crop, raw 0-255,
    [N, 3, 112, 112] -> [N, 202]."""
    g = GraphBuilder(seed)
    x = g.relu(g.conv(GENDERAGE_NAMES[0], 3, 16, 3, 4))  # 28 x 28
    x = g.relu(g.conv(x, 16, 32, 3, 4))  # 7 x 7
    flat = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    weights = g.tensor((GENDERAGE_WIDTH, 32), float(np.sqrt(1 / 32)))
    fc = g.op("Gemm", [flat, weights, g.tensor((GENDERAGE_WIDTH,), 0, fill=0.0)], transB=1)
    _named(g, fc, GENDERAGE_NAMES[1])
    inputs = [(GENDERAGE_NAMES[0], ["batch", 3, 112, 112])]
    return finish(g, "genderage", inputs, [(GENDERAGE_NAMES[1], ["batch", GENDERAGE_WIDTH])]), g.parameters


MASK_NAMES = ("input_1", "dense_1")  # assumed (a Keras MobileNetV2 export): InsightFace-REST's file was not read


def mask_classifier(side: int = 224, seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """(model, parameters) with the mask classifiers' I/O: a channels-last [N, side, side, 3] crop scaled
    to -1..1 -> [N, 2] softmax of (mask, no mask)."""
    g = GraphBuilder(seed)
    x = g.op("Transpose", [MASK_NAMES[0]], perm=[0, 3, 1, 2])
    x = g.relu(g.conv(x, 3, 16, 3, 4))
    x = g.relu(g.conv(x, 16, 32, 3, 4))
    flat = g.op("Flatten", [g.op("GlobalAveragePool", [x])], axis=1)
    fc = g.op("Gemm", [flat, g.tensor((2, 32), float(np.sqrt(1 / 32))), g.tensor((2,), 0, fill=0.0)], transB=1)
    _named(g, g.op("Softmax", [fc], axis=1), MASK_NAMES[1])
    inputs = [(MASK_NAMES[0], ["batch", side, side, 3])]
    return finish(g, "mask_classifier", inputs, [(MASK_NAMES[1], ["batch", 2])]), g.parameters


SYNTH: dict[str, Callable[[int], tuple[onnx.ModelProto, int]]] = {
    **{
        name: (lambda seed: retinaface(False, seed=seed))
        for name in ("retinaface_mnet025_v0", "retinaface_mnet025_v1", "retinaface_mnet025_v2", "retinaface_r50_v1")
    },
    "mnet_cov2": lambda seed: retinaface(True, seed=seed),
    "centerface": lambda seed: centerface(seed=seed),
    **{
        name: (lambda seed: yolov5_face(seed=seed))
        for name in ("yolov5l-face", "yolov5m-face", "yolov5s-face", "yolov5n-face", "yolov5n-0.5")
    },
    "w600k_mbf": lambda seed: mobilefacenet(seed=seed),
    "genderage_v1": lambda seed: genderage(seed=seed),
    "mask_detector": lambda seed: mask_classifier(224, seed=seed),
    "mask_detector112": lambda seed: mask_classifier(112, seed=seed),
}
