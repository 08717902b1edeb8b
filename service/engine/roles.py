"""Does a model fit its place? A detector's file where the recognizer goes opens, warms up and
answers, and then every request fails in post-processing: these checks refuse it at start-up.

What a place takes and answers comes from the code that reads the answers: service/engine/scrfd.py
(per stride a score, a box and optionally keypoints: [N, k] without a batch axis, [B, N, k] with
one), service/engine/yunet.py (per stride cls, obj, bbox and kps by name, [B, N, k]) and
service/engine/recognizer.py (one [B, D] embedding per crop). The answer checked is the one the
session gave to its warm-up run (facefleet.engine.runtime), so no model runs once more for it; the
detector's answer is then decoded as a request's would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facefleet.engine import families, scrfd, yunet
from facefleet.engine.dims import Shape, fits, shape_text
from facefleet.engine.runtime import OpenedSession
from facefleet.errors import ModelRoleError
from facefleet.models.manifest import ATTRIBUTE_WIDTHS, ModelSpec

CROP = 112  # the recognizer's aligned crop (facefleet.engine.align.CROP_SIZE)
SCRFD_WIDTHS = (1, 4, 10)  # per anchor: score, box distances, 5 keypoints
ROLE_NAMES = {"detection": "detector", "genderage": "gender/age model", "mask": "mask classifier"}
YUNET_WIDTHS = (1, 1, 4, 10)  # per anchor: cls, obj, box, 5 keypoints


def check_role(spec: ModelSpec, opened: OpenedSession) -> None:
    """Raise ModelRoleError, one sentence, when the opened model cannot do its manifest task."""
    session = opened.session
    inputs = session.get_inputs()
    names = [o.name for o in session.get_outputs()]
    declared = [tuple(o.shape) for o in session.get_outputs()]
    answered: list[Shape] = [tuple(np.shape(a)) for a in opened.warmup_outputs] or declared
    takes: Shape = tuple(inputs[0].shape) if inputs else ()
    problem = _problem(spec, takes, names, answered, _input_hw(opened))
    if not problem and spec.task == "detection":
        problem = _decodes(spec, names, opened, _input_hw(opened))
    elif not problem and opened.warmup_outputs and not np.isfinite(np.asarray(opened.warmup_outputs[0])).all():
        problem = "its warm-up answer is not finite"
    if problem:
        raise _refusal(spec, Path(opened.model_path).name, problem, takes, names, answered)


def check_file_role(spec: ModelSpec, path: str | Path, warmup_hw: tuple[int, int]) -> None:
    """The same check on the file's declared inputs and outputs, before any session: when no provider
    could open or warm up a file, a file of the wrong kind is the reason to give (the prepared copy of
    a detector fails in a recognizer's preparation with an onnxruntime message that names neither)."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # not even an ONNX file: the provider's own error says more
        return
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    takes: Shape = _dims(inputs[0]) if inputs else ()
    names = [o.name for o in graph.output]
    declared = [_dims(o) for o in graph.output]
    fixed = [d if isinstance(d, int) else None for d in takes]
    hw = (
        fixed[2] if len(fixed) > 3 and fixed[2] else warmup_hw[0],
        fixed[3] if len(fixed) > 3 and fixed[3] else warmup_hw[1],
    )
    problem = _problem(spec, takes, names, declared, hw)
    if problem:
        raise _refusal(spec, Path(path).name, problem, takes, names, declared)


def _dims(value: Any) -> Shape:
    """An ONNX graph input's or output's shape: numbers where fixed, names (or None) where not."""
    return tuple(d.dim_value if d.dim_value > 0 else (d.dim_param or None) for d in value.type.tensor_type.shape.dim)


def _problem(spec: ModelSpec, takes: Shape, names: list[str], answered: list[Shape], hw: tuple[int, int]) -> str:
    if spec.task == "detection":
        return _input_problem(takes, None) or _detector_problem(spec, names, answered, hw)
    if spec.task in ATTRIBUTE_WIDTHS:
        return _attribute_problem(spec, takes, answered)
    return _input_problem(takes, CROP) or _recognizer_problem(spec, answered)


def _attribute_problem(spec: ModelSpec, takes: Shape, answered: list[Shape]) -> str:
    """A gender/age model takes the crop as [N, 3, 112, 112] and answers [N, 202]; a mask classifier takes it
    channels-last, [N, side, side, 3], and answers [N, 2]."""
    if spec.task == "mask":
        if len(takes) != 4 or not fits(takes[3], 3) or not fits(takes[1], takes[2]):
            return "its input is not a channels-last [N, side, side, 3] crop"
    elif problem := _input_problem(takes, CROP):
        return problem
    width = ATTRIBUTE_WIDTHS[spec.task]
    if not answered or len(answered[0]) != 2 or not fits(answered[0][1], width):
        return f"its first output is not [N, {width}]"
    return ""


def _refusal(
    spec: ModelSpec, file: str, problem: str, takes: Shape, names: list[str], answered: list[Shape]
) -> ModelRoleError:
    role = ROLE_NAMES.get(spec.task, "recognizer")
    if spec.task == "detection":
        expected = _detector_answer(spec)
    elif spec.task in ATTRIBUTE_WIDTHS:
        takes_text = "[N, side, side, 3]" if spec.task == "mask" else f"[N, 3, {CROP}, {CROP}]"
        expected = f"takes {takes_text} and answers [N, {ATTRIBUTE_WIDTHS[spec.task]}]"
    else:
        expected = f"takes [N, 3, {CROP}, {CROP}] and answers one [N, {spec.embedding_size or 'D'}]"
    return ModelRoleError(
        f"model {spec.name} ({file}) does not fit the {role}'s place: {problem}; it takes {shape_text(takes)} and "
        f"answers {_answers(names, answered)}, where {_article(spec.family)} {spec.family} {role} {expected}"
    )


def _input_problem(takes: Shape, side: int | None) -> str:
    if len(takes) != 4 or not fits(takes[1], 3):
        return "its input is not an [N, 3, H, W] image"
    if side is not None and not (fits(takes[2], side) and fits(takes[3], side)):
        return f"its input is not a {side} x {side} face crop"
    return ""


def _detector_problem(spec: ModelSpec, names: list[str], answered: list[Shape], hw: tuple[int, int]) -> str:
    if spec.family in families.SHAPED:
        return families.layout_problem(spec, names, answered, hw)
    strides = spec.strides
    rank = 2 if spec.layout == "scrfd_flat" else 3
    if spec.family == "yunet":
        missing = [f"{k}_{s}" for s in strides for k in ("cls", "obj", "bbox", "kps") if f"{k}_{s}" not in names]
        if missing:
            return f"it has no output named {', '.join(missing[:4])}"
        groups: Sequence[Sequence[int | None]] = yunet.group_outputs(names, strides)
        widths: tuple[int, ...] = YUNET_WIDTHS
    else:
        if len(answered) not in (2 * len(strides), 3 * len(strides)):
            return f"it answers {_outputs(len(answered))}, not {3 * len(strides)} (or {2 * len(strides)})"
        groups = scrfd.group_outputs(names, strides)
        widths = SCRFD_WIDTHS
    if any(len(shape) != rank for shape in answered):
        return f"its outputs are not of rank {rank} ({spec.layout} layout)"
    for stride, group in zip(strides, groups, strict=True):
        anchors = (hw[0] // stride) * (hw[1] // stride) * spec.anchors
        for index, width in zip(group, widths, strict=False):
            if index is None:
                continue
            if not fits(answered[index][-1], width) or not fits(answered[index][-2], anchors):
                wanted = f"[{anchors}, {width}] for stride {stride}"
                return f"output {names[index]} is {shape_text(answered[index])}, not {wanted}"
    return ""


def _decodes(spec: ModelSpec, names: list[str], opened: OpenedSession, hw: tuple[int, int]) -> str:
    """The warm-up answer through the family's own decoding, every anchor a candidate (threshold 0)."""
    outputs = [np.asarray(a) for a in opened.warmup_outputs]
    if not outputs:
        return ""
    if not all(np.isfinite(a).all() for a in outputs):
        return "its warm-up answer is not finite"
    index = None if spec.layout == "scrfd_flat" else 0
    try:
        families.decoder(spec, names)(outputs, hw, 0.0, index)
    except (ValueError, IndexError) as exc:
        return f"its warm-up answer cannot be decoded: {exc}"
    return ""


def _recognizer_problem(spec: ModelSpec, answered: list[Shape]) -> str:
    if len(answered) != 1 or len(answered[0]) != 2:
        return "it does not answer one [N, D] embedding"
    if spec.embedding_size and not fits(answered[0][1], spec.embedding_size):
        return f"its embedding has {answered[0][1]} values, not the manifest's {spec.embedding_size}"
    return ""


def _detector_answer(spec: ModelSpec) -> str:
    if spec.family in families.SHAPED:
        return families.expected(spec)
    strides = ", ".join(str(s) for s in spec.strides)
    if spec.family == "yunet":
        return f"takes [1, 3, H, W] and answers cls, obj, bbox and kps [1, N, 1|1|4|10] for strides {strides}"
    per = "[N, 1|4|10]" if spec.layout == "scrfd_flat" else "[B, N, 1|4|10]"
    return f"takes [1, 3, H, W] and answers score, bbox and kps {per} for strides {strides}"


def _input_hw(opened: OpenedSession) -> tuple[int, int]:
    """The warm-up input's height and width: the file's fixed ones, else the configured size."""
    shape = opened.input_shape
    h = shape[2] if len(shape) > 3 and shape[2] else opened.warmup_hw[0]
    w = shape[3] if len(shape) > 3 and shape[3] else opened.warmup_hw[1]
    return int(h), int(w)


def _answers(names: list[str], shapes: list[Shape]) -> str:
    shown = ", ".join(f"{name} {shape_text(shape)}" for name, shape in zip(names[:3], shapes[:3], strict=False))
    more = f", ... ({_outputs(len(shapes))})" if len(shapes) > 3 else ""
    return shown + more


def _outputs(count: int) -> str:
    return f"{count} output" + ("" if count == 1 else "s")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
