"""CenterFace output decoding (Star-Clouds/CenterFace, as its own demo and InsightFace-REST do it).

One stride (4) and four NCHW maps, in this output order: heatmap [N, 1, H/4, W/4] (a sigmoid: the face
score of each cell), scale [N, 2, ...] (log height, log width in stride units), offset [N, 2, ...]
(y, x of the centre within its cell) and landmarks [N, 10, ...] (per point y then x, as fractions of the
box's height and width from its top-left corner). Boxes are clipped to the input, as CenterFace does.
"""

from __future__ import annotations

import numpy as np

from facefleet.engine.candidates import Candidates, none_found
from facefleet.engine.dims import Shape, map_problem
from facefleet.models.manifest import ModelSpec

CHANNELS = (1, 2, 2, 10)  # heatmap, scale, offset, landmarks


def group_outputs(names: list[str], spec: ModelSpec) -> list[tuple[int, ...]]:
    """The four maps in export order (the file names them 537..540; the order is what is read)."""
    return [(0, 1, 2, 3)]


def decode(
    outputs: list[np.ndarray],
    groups: list[tuple[int, ...]],
    spec: ModelSpec,
    input_hw: tuple[int, int],
    threshold: float,
    index: int | None,
) -> Candidates:
    """Boxes, scores and landmarks of the cells at or above threshold, in input pixels, clipped to it."""
    b = 0 if index is None else index
    stride = spec.strides[0]
    heat, scale, offset, marks = (outputs[i][b] for i in groups[0])
    rows, cols = np.nonzero(heat[0] >= threshold)
    if rows.size == 0:
        return none_found()
    height = np.exp(scale[0, rows, cols]) * stride
    width = np.exp(scale[1, rows, cols]) * stride
    limit_h, limit_w = input_hw
    x1 = np.clip((cols + offset[1, rows, cols] + 0.5) * stride - width / 2, 0, limit_w)
    y1 = np.clip((rows + offset[0, rows, cols] + 0.5) * stride - height / 2, 0, limit_h)
    boxes = np.stack([x1, y1, np.minimum(x1 + width, limit_w), np.minimum(y1 + height, limit_h)], axis=1)
    points = marks[:, rows, cols].T.reshape(-1, 5, 2)  # per point (y, x) fractions
    kps = np.stack(
        [points[:, :, 1] * width[:, None] + x1[:, None], points[:, :, 0] * height[:, None] + y1[:, None]], -1
    )
    return Candidates(boxes.astype(np.float32), heat[0, rows, cols].astype(np.float32), kps.astype(np.float32))


def layout_problem(spec: ModelSpec, names: list[str], shapes: list[Shape], hw: tuple[int, int] | None) -> str:
    """Why these outputs are not CenterFace's four maps; "" when they are."""
    if len(shapes) != len(CHANNELS):
        return f"it answers {len(shapes)} outputs, not 4 (heatmap, scale, offset, landmarks)"
    for name, shape, channels in zip(names, shapes, CHANNELS, strict=True):
        problem = map_problem(name, shape, channels, hw, spec.strides[0])
        if problem:
            return problem
    return ""


def expected(spec: ModelSpec) -> str:
    """What a CenterFace file answers, for a refusal's text."""
    s = spec.strides[0]
    return f"takes [1, 3, H, W] and answers heatmap, scale, offset and landmarks [N, 1|2|2|10, H/{s}, W/{s}]"
