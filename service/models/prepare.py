"""Graph fixes that make published ONNX files run well, written to a cache, never in place.

The cache key is the source file's sha256 plus the variant, so a changed source file or a
different fixed size never reuses a stale copy, and read-only model folders stay untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facefleet.errors import ModelError
from facefleet.models.manifest import ModelSpec
from facefleet.models.modelfiles import atomic_target

if TYPE_CHECKING:  # onnx takes about a second to import: only a copy not yet in the cache needs it
    import onnx

log = logging.getLogger(__name__)


def drop_dangling_inputs(model: onnx.ModelProto) -> int:
    """Remove declared graph inputs no node reads (old weight names in the SFace int8 file):
    onnxruntime refuses a graph whose inputs it cannot feed. Inputs that merely shadow an
    initializer go too, since onnxruntime cannot constant-fold weights a caller could override."""
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used |= {out.name for out in graph.output}
    inits = {init.name for init in graph.initializer}
    keep = [inp for inp in graph.input if inp.name in used and inp.name not in inits]
    dropped = len(graph.input) - len(keep)
    del graph.input[:]
    graph.input.extend(keep)
    return dropped


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """y = (x - zero_point) * scale with ONNX DequantizeLinear's per-tensor, per-axis and
    blocked broadcasting rules."""
    x = x.astype(np.float32)
    zero = np.zeros_like(scale, dtype=np.float32) if zero is None else zero.astype(np.float32)
    if scale.size == 1:
        return (x - zero.reshape(())) * scale.reshape(())
    axis = axis % x.ndim
    if block > 0:
        scale = np.repeat(scale, block, axis=axis).take(range(x.shape[axis]), axis=axis)
        zero = np.repeat(zero, block, axis=axis).take(range(x.shape[axis]), axis=axis)
        return (x - zero) * scale
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x - zero.reshape(shape)) * scale.reshape(shape)


def fold_blocked_dequantize(model: onnx.ModelProto) -> int:
    """Replace each DequantizeLinear whose inputs are all initializers by its float32 result.

    onnxruntime 1.32 loads OpenCV Zoo's block-quantized YuNet but refuses it at the first run
    ("block_size must be 0 for per-tensor quantization"); folded weights run everywhere,
    TensorRT included."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    folded, keep_nodes = 0, []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not all(n in inits for n in node.input if n):
            keep_nodes.append(node)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        x, scale = (numpy_helper.to_array(inits[n]) for n in node.input[:2])  # both required by the op
        zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
        value = _dequantize(x, scale, zero, attrs.get("axis", 1), attrs.get("block_size", 0))
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), node.output[0]))
        folded += 1
    del graph.node[:]
    graph.node.extend(keep_nodes)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    live = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    return folded


def _constant_values(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    values = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def _batch_from_input(node: onnx.NodeProto, rest: np.ndarray) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing [batch of node's data input, *rest]: a shape that follows the batch."""
    import onnx
    from onnx import numpy_helper

    base = f"{node.output[0]}_ffbatch"
    starts = numpy_helper.from_array(np.array([0], np.int64), f"{base}_start")
    ends = numpy_helper.from_array(np.array([1], np.int64), f"{base}_end")
    tail = numpy_helper.from_array(rest.astype(np.int64), f"{base}_rest")
    nodes = [
        onnx.helper.make_node("Shape", [node.input[0]], [f"{base}_shape"]),
        onnx.helper.make_node("Slice", [f"{base}_shape", starts.name, ends.name], [f"{base}_n"]),
        onnx.helper.make_node("Concat", [f"{base}_n", tail.name], [f"{base}_sizes"], axis=0),
    ]
    return nodes, [starts, ends, tail]


def dynamic_batch(model: onnx.ModelProto) -> int:
    """Make axis 0 of the input and outputs symbolic and rewrite what pins it to 1.

    Activation Reshapes to a constant [1, -1] turn a batch of 8 into one row of 8x values, and a
    Resize to constant sizes [1, C, H, W] silently broadcasts the first image's features onto
    every other image of the batch (seen in the InsightFace-REST SCRFD re-exports)."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name for init in graph.initializer}
    for value in [*[i for i in graph.input if i.name not in inits], *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "batch"
    del graph.value_info[:]
    constants = _constant_values(graph)
    fixed, nodes = 0, []
    for node in graph.node:
        if node.input and node.input[0] not in inits:
            if node.op_type == "Reshape" and node.input[1] in constants:
                tensor = constants[node.input[1]]
                shape = numpy_helper.to_array(tensor).copy()
                if shape.ndim == 1 and shape.size > 1 and shape[0] == 1:
                    shape[0] = 0
                    tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
                    fixed += 1
            elif node.op_type == "Resize" and len(node.input) > 3 and node.input[3] in constants:
                sizes = numpy_helper.to_array(constants[node.input[3]])
                if sizes.size == 4 and sizes[0] == 1:
                    extra_nodes, extra_inits = _batch_from_input(node, sizes[1:])
                    nodes.extend(extra_nodes)
                    graph.initializer.extend(extra_inits)
                    node.input[3] = extra_nodes[-1].output[0]
                    fixed += 1
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return fixed


def dynamic_size(model: onnx.ModelProto) -> int:
    """Make the batch, height and width of the input (and of rank-4 outputs) symbolic: CenterFace's
    published file declares placeholder dims, input [10, 3, 32, 32], that its own demo and InsightFace-REST
    rewrite before running it. Only for fully convolutional graphs, which run at any size once freed."""
    graph = model.graph
    inits = {init.name for init in graph.initializer}
    changed = 0
    inputs = [i for i in graph.input if i.name not in inits]
    for value in [*inputs, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            # one batch for all; an output's own names for its height and width (a stride apart from the input's)
            own = "" if value in inputs else f"{value.name}_"
            for axis, name in ((0, "batch"), (2, f"{own}height"), (3, f"{own}width")):
                dims[axis].dim_param = name
            changed += 1
    del graph.value_info[:]
    return changed


def fix_input_size(model: onnx.ModelProto, height: int, width: int) -> None:
    """TensorRT builds one engine per input shape: a fixed H x W lets it build once and cache."""
    graph = model.graph
    inits = {init.name for init in graph.initializer}
    for value in graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        dims[2].dim_value, dims[3].dim_value = height, width
    del graph.value_info[:]


STEPS = {
    "drop_dangling_inputs": drop_dangling_inputs,
    "fold_blocked_dequantize": fold_blocked_dequantize,
    "dynamic_batch": dynamic_batch,
    "dynamic_size": dynamic_size,
}


def variant_name(spec: ModelSpec, fixed_hw: tuple[int, int] | None) -> str:
    parts = list(spec.prepare) + ([f"{fixed_hw[1]}x{fixed_hw[0]}"] if fixed_hw else [])
    return "-".join(parts) or "original"


def prepared_path(spec: ModelSpec, source_sha256: str, cache_dir: str, fixed_hw: tuple[int, int] | None) -> Path:
    return Path(cache_dir) / "prepared" / source_sha256[:16] / f"{spec.name}.{variant_name(spec, fixed_hw)}.onnx"


def prepare_model(
    spec: ModelSpec, source: Path, source_sha256: str, cache_dir: str, fixed_hw: tuple[int, int] | None = None
) -> Path:
    """The path of the copy to run: the source itself when nothing needs fixing, else a cached
    prepared copy, written once (atomically, so concurrent workers never read half a file)."""
    if not spec.prepare and not fixed_hw:
        return source
    target = prepared_path(spec, source_sha256, cache_dir, fixed_hw)
    if target.is_file():
        return target
    import onnx

    try:
        model = onnx.load(str(source))
    except Exception as exc:
        raise ModelError(f"model {spec.name}: {source} is not a readable ONNX file ({exc})") from None
    for step in spec.prepare:
        count = STEPS[step](model)
        log.info("prepare %s: %s changed %d places", spec.name, step, count)
    if fixed_hw:
        fix_input_size(model, *fixed_hw)
    with atomic_target(target) as tmp:
        onnx.save(model, str(tmp))
    return target
