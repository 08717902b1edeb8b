"""Check model files against the manifest: digest, loadability, and the input/output layout
the family's decoder expects. Each problem is one line an operator can act on."""

from __future__ import annotations

from pathlib import Path

import onnx

from facefleet.models.manifest import ATTRIBUTE_WIDTHS, ModelSpec
from facefleet.models.modelfiles import file_sha256, model_path


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _detector_problems(spec: ModelSpec, outputs: list[onnx.ValueInfoProto]) -> list[str]:
    names = [o.name for o in outputs]
    n = len(spec.strides)
    if spec.family not in ("scrfd", "yunet"):
        # RetinaFace, CenterFace, YOLOv5-face: their layout check lives with their decoder (facefleet.engine.families,
        # a layer above this one); `models verify` runs it through facefleet.app.models, the service at start-up.
        return []
    if spec.family == "yunet":
        missing = [f"{k}_{s}" for s in spec.strides for k in ("cls", "obj", "bbox", "kps") if f"{k}_{s}" not in names]
        return [f"lacks the YuNet outputs {', '.join(missing)}"] if missing else []
    problems = []
    if len(outputs) not in (2 * n, 3 * n):
        problems.append(f"has {len(outputs)} outputs, SCRFD with {n} strides has {2 * n} or {3 * n}")
    rank = 3 if spec.layout == "scrfd_batched" else 2
    wrong = [o.name for o in outputs if len(_dims(o)) != rank]
    if wrong:
        problems.append(f"outputs {', '.join(wrong)} are not of rank {rank} as layout {spec.layout} needs")
    widths = [_dims(o)[-1] for o in outputs[: 3 * n : n]] if len(outputs) >= 2 * n else []
    if widths and widths[:2] != [1, 4]:
        problems.append(f"output widths {widths} do not match SCRFD's score(1)/box(4)/keypoints(10)")
    return problems


def _recognizer_problems(
    spec: ModelSpec, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
) -> list[str]:
    problems = []
    if len(outputs) != 1:
        problems.append(f"has {len(outputs)} outputs, a recognizer has 1")
    elif spec.embedding_size and _dims(outputs[0])[-1] != spec.embedding_size:
        problems.append(f"embeds to {_dims(outputs[0])[-1]} values, the manifest says {spec.embedding_size}")
    if _dims(inputs[0])[2:] != [112, 112]:
        problems.append(f"input is {_dims(inputs[0])[2:]}, ArcFace-style recognizers take 112 x 112")
    return problems


def _layout_problems(
    spec: ModelSpec, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto]
) -> list[str]:
    if not inputs:
        return ["has no graph input"]
    problems = []
    if inputs[0].name != spec.input_name:
        problems.append(f"input is named {inputs[0].name!r}, the manifest says {spec.input_name!r}")
    if len(_dims(inputs[0])) != 4:
        return [*problems, f"input has shape {_dims(inputs[0])}, expected [N, 3, H, W]"]
    if spec.task == "detection":
        return problems + _detector_problems(spec, outputs)
    if spec.task in ATTRIBUTE_WIDTHS:
        width = ATTRIBUTE_WIDTHS[spec.task]
        answer = _dims(outputs[0]) if outputs else []
        return problems + ([] if answer[-1:] == [width] else [f"answers {answer}, a {spec.task} model [N, {width}]"])
    return problems + _recognizer_problems(spec, inputs, outputs)


def verify_model(spec: ModelSpec, models_dir: str) -> list[str]:
    """Problems with one model's file, each prefixed with the model's name; [] means good."""
    path: Path = model_path(spec, models_dir)
    if not path.is_file():
        return [f"{spec.name}: {path} is missing (facefleet models pull {spec.name})"]
    problems = []
    digest = file_sha256(path)
    if spec.sha256 and digest != spec.sha256:
        problems.append(f"{spec.name}: sha256 {digest} does not match the pinned {spec.sha256}")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        return [*problems, f"{spec.name}: {path} does not load as ONNX: {str(exc).splitlines()[0][:200]}"]
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    inits = {init.name for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in inits and i.name in used]
    problems += [f"{spec.name}: {p}" for p in _layout_problems(spec, real_inputs, list(graph.output))]
    return problems
