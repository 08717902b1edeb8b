"""Architecture-faithful ONNX graphs with random weights, for speed measurements where the real
weights cannot be had: a run's time depends on the architecture, not on the weights.

IResNet-100 (glintr100's architecture, InsightFace arcface_torch `iresnet100`): a 3x3 stem of
64 channels, four stages of 3, 13, 30 and 3 IBasicBlocks (BN, conv3x3, BN, PReLU, conv3x3
with the stage's stride, BN; a 1x1 conv + BN shortcut where the shape changes) of widths 64,
128, 256, 512, then BN, flatten, a 25088 -> 512 fully connected layer and a 1-D BN: about 65.1 M
parameters. Input `input.1` [N, 3, 112, 112], one [N, 512] output, like the InsightFace-REST file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IRESNET100_LAYERS = (3, 13, 30, 3)
IRESNET_WIDTHS = (64, 128, 256, 512)


class GraphBuilder:
    """Nodes and random initializers, named in order; parameters counted as PyTorch counts them
    (weights, biases, BN scale and shift, PReLU slopes; not BN running statistics)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.parameters = 0
        self._n = 0

    def name(self, kind: str) -> str:
        self._n += 1
        return f"{kind}_{self._n}"

    def tensor(self, shape: tuple[int, ...], scale: float, trainable: bool = True, fill: float | None = None) -> str:
        name = self.name("w")
        value = (
            np.full(shape, fill, np.float32)
            if fill is not None
            else (self.rng.standard_normal(shape).astype(np.float32) * scale)
        )
        self.inits.append(numpy_helper.from_array(value, name))
        self.parameters += value.size if trainable else 0
        return name

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
        w = self.tensor((cout, cin, k, k), float(np.sqrt(2.0 / (cin * k * k))))
        out = self.name("conv")
        self.nodes.append(
            helper.make_node("Conv", [x, w], [out], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        )
        return out

    def bn(self, x: str, c: int) -> str:
        scale, bias = self.tensor((c,), 0, fill=1.0), self.tensor((c,), 0, fill=0.0)
        mean, var = self.tensor((c,), 0, False, 0.0), self.tensor((c,), 0, False, 1.0)
        out = self.name("bn")
        self.nodes.append(helper.make_node("BatchNormalization", [x, scale, bias, mean, var], [out], epsilon=1e-5))
        return out

    def prelu(self, x: str, c: int) -> str:
        slope = self.tensor((c, 1, 1), 0, fill=0.25)
        out = self.name("prelu")
        self.nodes.append(helper.make_node("PRelu", [x, slope], [out]))
        return out

    def add(self, a: str, b: str) -> str:
        out = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [out]))
        return out


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
    layers: tuple[int, ...] = IRESNET100_LAYERS, embedding: int = 512, seed: int = 0
) -> tuple[onnx.ModelProto, int]:
    """(model, trainable parameter count) of an IResNet with the given stage depths."""
    g = GraphBuilder(seed)
    x = g.prelu(g.bn(g.conv("input.1", 3, 64, 3), 64), 64)
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
    g.nodes.append(helper.make_node("BatchNormalization", [fc, scale, bias, mean, var], ["683"], epsilon=1e-5))
    graph = helper.make_graph(
        g.nodes,
        "iresnet",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["batch", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["batch", embedding])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facefleet-synth")
    model.ir_version = 8
    return model, g.parameters


SYNTH = {"glintr100": lambda seed: iresnet(IRESNET100_LAYERS, 512, seed)}


def synthesize(name: str, target: Path, seed: int = 0) -> tuple[Path, int]:
    """Write the named architecture with random weights to target; returns (path, parameters)."""
    if name not in SYNTH:
        from .errors import FacefleetError

        raise FacefleetError(f"no synthetic architecture for {name!r}; known: {', '.join(SYNTH)}")
    model, parameters = SYNTH[name](seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return target, parameters
