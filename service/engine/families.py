"""Which decoder reads a detector's answer: one place that maps a manifest family to its code, so the
detector, the start-up checks (facefleet.engine.roles) and `facefleet models verify` agree.

SCRFD and YuNet keep their own checks in roles.py and verify.py (they predate this table); the families
InsightFace-REST adds (RetinaFace, CenterFace, YOLOv5-face) bring their layout check with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from facefleet.engine import centerface, retinaface, scrfd, yolo5face, yunet
from facefleet.engine.candidates import Candidates
from facefleet.engine.dims import Shape
from facefleet.models.manifest import ModelSpec

# outputs, input (height, width), threshold, image index in a batched answer (None: no batch axis)
Decode = Callable[[list[np.ndarray], tuple[int, int], float, int | None], Candidates]


@dataclass(frozen=True)
class Family:
    """A detector family's decoder and the description of what it reads."""

    group: Callable[[list[str], ModelSpec], list[tuple[int, ...]]]
    decode: Callable[
        [list[np.ndarray], list[tuple[int, ...]], ModelSpec, tuple[int, int], float, int | None], Candidates
    ]
    problem: Callable[[ModelSpec, list[str], list[Shape], tuple[int, int] | None], str]
    expected: Callable[[ModelSpec], str]


# Families whose layout check lives with their decoder.
SHAPED = {
    "retinaface": Family(retinaface.group_outputs, retinaface.decode, retinaface.layout_problem, retinaface.expected),
    "centerface": Family(centerface.group_outputs, centerface.decode, centerface.layout_problem, centerface.expected),
    "yolov5_face": Family(yolo5face.group_outputs, yolo5face.decode, yolo5face.layout_problem, yolo5face.expected),
}


def decoder(spec: ModelSpec, names: list[str]) -> Decode:
    """The family's decoding of this model's answer, its outputs found once from their names."""
    if spec.family in SHAPED:
        family = SHAPED[spec.family]
        groups = family.group(names, spec)
        return lambda outputs, hw, threshold, index: family.decode(outputs, groups, spec, hw, threshold, index)
    if spec.family == "yunet":
        yunet_groups = yunet.group_outputs(names, spec.strides)
        return lambda outputs, hw, threshold, index: Candidates(
            *yunet.decode(outputs, yunet_groups, spec, hw, threshold, index)
        )
    scrfd_groups = scrfd.group_outputs(names, spec.strides)
    return lambda outputs, hw, threshold, index: Candidates(
        *scrfd.decode(outputs, scrfd_groups, spec, hw, threshold, index)
    )


def layout_problem(spec: ModelSpec, names: list[str], shapes: list[Shape], hw: tuple[int, int] | None) -> str:
    """Why a SHAPED family's model answers what its decoder cannot read; "" when it fits."""
    return SHAPED[spec.family].problem(spec, names, shapes, hw)


def expected(spec: ModelSpec) -> str:
    """What a SHAPED family's model takes and answers, for a refusal's text."""
    return SHAPED[spec.family].expected(spec)
