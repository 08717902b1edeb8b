"""Random-weight ONNX graphs are built from one helper: nodes and initializers named in order, with the
parameter and multiply-accumulate counts the architecture-faithful generators report (facefleet.models.synth)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Nodes and random initializers, named in order; parameters counted as PyTorch counts them
    (weights, biases, BN scale and shift, PReLU slopes; not BN running statistics)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.parameters = 0
        self.macs = 0
        self.hw: dict[str, tuple[int, int]] = {}
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

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, bias: bool = False) -> str:
        """A convolution; `bias` for one whose norm is folded in (counted apart, see `folded`)."""
        inputs = [x, self.tensor((cout, cin, k, k), float(np.sqrt(2.0 / (cin * k * k))))]
        if bias:
            inputs.append(self.tensor((cout,), 0.01))
        out = self.name("conv")
        self.nodes.append(
            helper.make_node(
                "Conv", inputs, [out], name=out, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4
            )
        )
        self.follow(x, out, stride)
        if out in self.hw:
            h, w = self.hw[out]
            self.macs += cout * cin * k * k * h * w
        return out

    def folded(self, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
        """Conv + BN as exported files have it (the BN folded into the conv's bias); counted as
        PyTorch counts the unfolded pair: weight, BN scale and shift."""
        out = self.conv(x, cin, cout, k, stride, bias=True)
        self.parameters += cout
        return out

    def follow(self, x: str, out: str, stride: int = 1) -> None:
        """Track spatial size (for the MAC count) through an op of the given stride."""
        if x in self.hw:
            h, w = self.hw[x]
            self.hw[out] = (-(-h // stride), -(-w // stride))

    def op(self, kind: str, inputs: list[str], stride: int = 1, **attrs: Any) -> str:
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        self.follow(inputs[0], out, stride)
        return out

    def const(self, value: np.ndarray) -> str:
        name = self.name("const")
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def bn(self, x: str, c: int) -> str:
        scale, bias = self.tensor((c,), 0, fill=1.0), self.tensor((c,), 0, fill=0.0)
        mean, var = self.tensor((c,), 0, False, 0.0), self.tensor((c,), 0, False, 1.0)
        out = self.name("bn")
        self.nodes.append(
            helper.make_node("BatchNormalization", [x, scale, bias, mean, var], [out], name=out, epsilon=1e-5)
        )
        self.follow(x, out)
        return out

    def prelu(self, x: str, c: int) -> str:
        slope = self.tensor((c, 1, 1), 0, fill=0.25)
        out = self.name("prelu")
        self.nodes.append(helper.make_node("PRelu", [x, slope], [out], name=out))
        self.follow(x, out)
        return out

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b])

    def relu(self, x: str) -> str:
        return self.op("Relu", [x])


def finish(
    g: GraphBuilder, name: str, inputs: list[tuple[str, list[Any]]], outputs: list[tuple[str, list[Any]]]
) -> onnx.ModelProto:
    """The model of g's nodes: float32 inputs and outputs of the given dimensions, opset 13, IR 8 (what
    onnxruntime of every supported version loads)."""
    graph = helper.make_graph(
        g.nodes,
        name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n, dims in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n, dims in outputs],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="facefleet-synth")
    model.ir_version = 8
    return model
