"""Architecture-faithful ONNX graphs with random weights, for speed measurements where the real
weights cannot be had: a run's time depends on the architecture, not on the weights.

SCRFD (InsightFace `detection/scrfd` configs `scrfd_*_bnkps`): a ResNetV1e backbone (deep stem
of three 3x3 convs, max pool, BasicBlock stages whose downsampling shortcut is an average pool
and a 1x1 conv), a PAFPN neck on stages 2-4 without activations, and per stride (8, 16, 32) a
head of stacked 3x3 conv + norm + ReLU with 3x3 score, box and keypoint convs, a learned box
scale and a sigmoid. Norms are folded into the convs as the exported files have them (BN), or
kept as GroupNorm's Reshape / InstanceNormalization pattern (the `gnkps` re-export). Parameters
are counted as PyTorch counts them, so they compare with the published 4.23 M and 0.82 M.

IResNet-100 (glintr100's architecture, InsightFace arcface_torch `iresnet100`): a 3x3 stem of
64 channels, four stages of 3, 13, 30 and 3 IBasicBlocks (BN, conv3x3, BN, PReLU, conv3x3
with the stage's stride, BN; a 1x1 conv + BN shortcut where the shape changes) of widths 64,
128, 256, 512, then BN, flatten, a 25088 -> 512 fully connected layer and a 1-D BN: about 65.1 M
parameters. Input `input.1` [N, 3, 112, 112], one [N, 512] output, like the InsightFace-REST file.
AdaFace IR-101 (`adaface_ir101_webface12m`) is the same network with AdaFace's input and output names.

`scrfd_10g_gnkps_norm` is SCRFD-10G with its input normalisation as the graph's first nodes (it takes
the raw BGR image). The registry also names the I/O-exact stand-ins of facefleet.models.synth_zoo
(RetinaFace, CenterFace, YOLOv5-face, a MobileFaceNet-style w600k_mbf), which are not architecture-faithful.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from facefleet.models import synth_zoo
from facefleet.models.synth_graph import GraphBuilder

IRESNET100_LAYERS = (3, 13, 30, 3)
IRESNET_WIDTHS = (64, 128, 256, 512)


def _ibasic_block(g: GraphBuilder, x: str, cin: int, cout: int, stride: int) -> str:
    y = g.bn(x, cin)
    y = g.conv(y, cin, cout, 3)
    y = g.bn(y, cout)
    y = g.prelu(y, cout)
    y = g.conv(y, cout, cout, 3, stride)
    y = g.bn(y, cout)
    shortcut = x if (stride == 1 and cin == cout) else g.bn(g.conv(x, cin, cout, 1, stride), cout)
    return g.add(y, shortcut)


def iresnet(
    layers: tuple[int, ...] = IRESNET100_LAYERS,
    embedding: int = 512,
    seed: int = 0,
    names: tuple[str, str] = ("input.1", "683"),
) -> tuple[onnx.ModelProto, int]:
    """(model, trainable parameter count) of an IResNet with the given stage depths; `names` are the
    input's and the embedding's (glintr100's by default)."""
    g = GraphBuilder(seed)
    x = g.prelu(g.bn(g.conv(names[0], 3, 64, 3), 64), 64)
    cin = 64
    for depth, width in zip(layers, IRESNET_WIDTHS, strict=True):
        for i in range(depth):
            x = _ibasic_block(g, x, cin, width, 2 if i == 0 else 1)
            cin = width
    x = g.bn(x, 512)
    flat = g.name("flatten")
    g.nodes.append(helper.make_node("Flatten", [x], [flat], axis=1))
    fc_w = g.tensor((embedding, 512 * 7 * 7), float(np.sqrt(1.0 / (512 * 7 * 7))))
    fc_b = g.tensor((embedding,), 0, fill=0.0)
    fc = g.name("fc")
    g.nodes.append(helper.make_node("Gemm", [flat, fc_w, fc_b], [fc], transB=1))
    scale, bias = g.tensor((embedding,), 0, fill=1.0), g.tensor((embedding,), 0, fill=0.0)
    mean, var = g.tensor((embedding,), 0, False, 0.0), g.tensor((embedding,), 0, False, 1.0)
    g.nodes.append(helper.make_node("BatchNormalization", [fc, scale, bias, mean, var], [names[1]], epsilon=1e-5))
    graph = helper.make_graph(
        g.nodes,
        "iresnet",
        [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, ["batch", 3, 112, 112])],
        [helper.make_tensor_value_info(names[1], TensorProto.FLOAT, ["batch", embedding])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facefleet-synth")
    model.ir_version = 8
    return model, g.parameters


@dataclass(frozen=True)
class ScrfdConfig:
    """The fields of an InsightFace SCRFD config that shape the network."""

    stage_blocks: tuple[int, ...]
    stage_planes: tuple[int, ...]
    base_channels: int
    neck_channels: int
    stacked_convs: int
    feat_channels: int
    group_norm: bool = False
    anchors: int = 2


SCRFD_10G = ScrfdConfig((3, 4, 2, 3), (56, 88, 88, 224), 56, 56, 3, 80)
SCRFD_2_5G = ScrfdConfig((3, 5, 3, 2), (24, 48, 48, 80), 24, 24, 2, 64)
SCRFD_STRIDES = (8, 16, 32)


def _basic_block(g: GraphBuilder, x: str, cin: int, cout: int, stride: int) -> str:
    """mmdet BasicBlock of ResNetV1e: the shortcut downsamples by average pooling, then 1x1 conv."""
    y = g.relu(g.folded(x, cin, cout, 3, stride))
    y = g.folded(y, cout, cout, 3)
    shortcut = x
    if stride != 1 or cin != cout:
        pooled = x
        if stride != 1:
            pooled = g.op("AveragePool", [x], stride, kernel_shape=[stride] * 2, strides=[stride] * 2, ceil_mode=1)
        shortcut = g.folded(pooled, cin, cout, 1)
    return g.relu(g.add(y, shortcut))


def _backbone(g: GraphBuilder, x: str, cfg: ScrfdConfig) -> list[str]:
    """Outputs of stages 2, 3 and 4 (strides 8, 16, 32), the levels the neck starts from."""
    stem = cfg.base_channels // 2
    x = g.relu(g.folded(x, 3, stem, 3, 2))
    x = g.relu(g.folded(x, stem, stem, 3))
    x = g.relu(g.folded(x, stem, cfg.base_channels, 3))
    x = g.op("MaxPool", [x], 2, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin, levels = cfg.base_channels, []
    for stage, (blocks, planes) in enumerate(zip(cfg.stage_blocks, cfg.stage_planes, strict=True)):
        for i in range(blocks):
            x = _basic_block(g, x, cin, planes, 2 if i == 0 and stage > 0 else 1)
            cin = planes
        levels.append(x)
    return levels[1:]


def _pafpn(g: GraphBuilder, levels: list[str], cfg: ScrfdConfig) -> list[str]:
    """FPN top-down then PANet bottom-up, plain convs with bias (the config sets no norm or act)."""
    out = cfg.neck_channels
    lateral = [g.conv(x, c, out, 1, bias=True) for x, c in zip(levels, cfg.stage_planes[1:], strict=True)]
    scales = g.const(np.array([1, 1, 2, 2], np.float32))
    for i in range(len(lateral) - 1, 0, -1):
        up = g.op("Resize", [lateral[i], "", scales], mode="nearest")
        g.hw[up] = g.hw.get(lateral[i - 1], (0, 0))
        lateral[i - 1] = g.add(lateral[i - 1], up)
    inter = [g.conv(x, out, out, 3, bias=True) for x in lateral]
    for i in range(len(inter) - 1):
        inter[i + 1] = g.add(inter[i + 1], g.conv(inter[i], out, out, 3, 2, bias=True))
    return [inter[0]] + [g.conv(x, out, out, 3, bias=True) for x in inter[1:]]


def _group_norm(g: GraphBuilder, x: str, channels: int, groups: int = 16) -> str:
    """GroupNorm as torch exports it: Reshape to groups, InstanceNormalization, Reshape, affine."""
    grouped = g.op("Reshape", [x, g.const(np.array([1, groups, -1], np.int64))])
    ones, zeros = g.const(np.ones(groups, np.float32)), g.const(np.zeros(groups, np.float32))
    normed = g.op("InstanceNormalization", [grouped, ones, zeros], epsilon=1e-5)
    back = g.op("Reshape", [normed, g.op("Shape", [x])])
    g.follow(x, back)
    gamma, beta = g.tensor((channels, 1, 1), 0, fill=1.0), g.tensor((channels, 1, 1), 0, fill=0.0)
    return g.op("Add", [g.op("Mul", [back, gamma]), beta])


def _head(g: GraphBuilder, x: str, cfg: ScrfdConfig) -> tuple[str, str, str]:
    """One stride's (score, box, keypoint) maps; strides do not share head weights."""
    cin = cfg.neck_channels
    for _ in range(cfg.stacked_convs):
        if cfg.group_norm:
            x = g.relu(_group_norm(g, g.conv(x, cin, cfg.feat_channels, 3), cfg.feat_channels))
        else:
            x = g.relu(g.folded(x, cin, cfg.feat_channels, 3))
        cin = cfg.feat_channels
    score = g.op("Sigmoid", [g.conv(x, cin, cfg.anchors, 3, bias=True)])
    box = g.op("Mul", [g.conv(x, cin, cfg.anchors * 4, 3, bias=True), g.tensor((1,), 0, fill=1.0)])
    kps = g.conv(x, cin, cfg.anchors * 10, 3, bias=True)
    return score, box, kps


def _flatten(g: GraphBuilder, x: str, width: int, batched: bool, name: str) -> None:
    """NCHW map -> rows of `width` per anchor: [N, width] (InsightFace) or [1, N, width] (re-export)."""
    shape = np.array([1, -1, width] if batched else [-1, width], np.int64)
    transposed = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    g.nodes.append(helper.make_node("Reshape", [transposed, g.const(shape)], [name]))


def _normalise(g: GraphBuilder, x: str) -> str:
    """SCRFD's input normalisation as a graph prefix: raw BGR 0-255 in, (RGB - 127.5) / 128 out."""
    rgb = g.op("Gather", [x, g.const(np.array([2, 1, 0], np.int64))], axis=1)
    out = g.op(
        "Mul", [g.op("Sub", [rgb, g.const(np.array(127.5, np.float32))]), g.const(np.array(1 / 128, np.float32))]
    )
    g.follow(x, out)
    return out


def scrfd(
    cfg: ScrfdConfig = SCRFD_10G,
    batched: bool = True,
    input_hw: tuple[int, int] = (480, 640),
    seed: int = 0,
    normalised: bool = False,
) -> tuple[onnx.ModelProto, int, int]:
    """(model, parameters, multiply-accumulates at input_hw) of an SCRFD detector with keypoints.

    `batched` writes the InsightFace-REST layout (outputs score_8 ... kps_32 of [1, N, k], input
    fixed at 640 x 640, as the manifest's scrfd_10g files); otherwise InsightFace's own (numbered
    outputs of [N, k], input H and W free, as scrfd_2.5g.onnx). `normalised` puts the input's
    normalisation inside the graph, which then takes the raw BGR image (InsightFace-REST's
    scrfd_10g_gnkps_norm, a layout reconstructed from its history); the same seed gives the same weights,
    so the two variants answer alike for the same picture."""
    g = GraphBuilder(seed)
    g.hw["input.1"] = input_hw
    features = _normalise(g, "input.1") if normalised else "input.1"
    heads = [_head(g, x, cfg) for x in _pafpn(g, _backbone(g, features, cfg), cfg)]
    outputs: list[onnx.ValueInfoProto] = []
    for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
        for stride, maps in zip(SCRFD_STRIDES, heads, strict=True):
            name = f"{kind}_{stride}" if batched else str(len(outputs) + 1)
            _flatten(g, maps[("score", "bbox", "kps").index(kind)], width, batched, name)
            dims: list[str | int] = [1, "anchors", width] if batched else ["anchors", width]
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    input_dims: list[str | int] = [1, 3, 640, 640] if batched else [1, 3, "height", "width"]
    graph = helper.make_graph(
        g.nodes, "scrfd", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, input_dims)], outputs, g.inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facefleet-synth")
    model.ir_version = 8
    return model, g.parameters, g.macs


def _scrfd_entry(
    cfg: ScrfdConfig, batched: bool, normalised: bool = False
) -> Callable[[int], tuple[onnx.ModelProto, int]]:
    def build(seed: int) -> tuple[onnx.ModelProto, int]:
        model, parameters, _ = scrfd(cfg, batched, seed=seed, normalised=normalised)
        return model, parameters

    return build


SYNTH: dict[str, Callable[[int], tuple[onnx.ModelProto, int]]] = {
    "glintr100": lambda seed: iresnet(IRESNET100_LAYERS, 512, seed),
    "scrfd_10g_bnkps": _scrfd_entry(SCRFD_10G, True),
    "scrfd_10g_gnkps": _scrfd_entry(replace(SCRFD_10G, group_norm=True), True),
    "scrfd_2.5g": _scrfd_entry(SCRFD_2_5G, False),
    "scrfd_10g_gnkps_norm": _scrfd_entry(replace(SCRFD_10G, group_norm=True), True, normalised=True),
    "adaface_ir101_webface12m": lambda seed: iresnet(IRESNET100_LAYERS, 512, seed, synth_zoo.ADAFACE_NAMES),
    **synth_zoo.SYNTH,
}
ALIASES = {"scrfd_10g_kps": "scrfd_10g_gnkps"}


def synthesize(name: str, target: Path, seed: int = 0) -> tuple[Path, int]:
    """Write the named architecture with random weights to target; returns (path, parameters)."""
    name = ALIASES.get(name, name)
    if name not in SYNTH:
        from facefleet.errors import FacefleetError

        raise FacefleetError(f"no synthetic architecture for {name!r}; known: {', '.join([*SYNTH, *ALIASES])}")
    model, parameters = SYNTH[name](seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target, parameters
