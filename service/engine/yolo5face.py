"""YOLOv5-face output decoding (deepcam-cn/yolov5-face exports, as InsightFace-REST reads them).

One output [N, K, C >= 15], K rows per image already decoded to input pixels by the exported graph (its
grid and anchor maths are inside): columns 0-3 the box centre x, y, width and height, column 4 the face
score (used alone, as InsightFace-REST does: the class column a 16-wide export has after the landmarks
is not multiplied in), columns 5-14 the five landmarks' (x, y). K = 3 anchors x the cells of strides
8, 16 and 32 (25200 at 640 x 640).
"""

from __future__ import annotations

import numpy as np

from facefleet.engine.candidates import Candidates, none_found
from facefleet.engine.dims import Shape, cells, fits, shape_text
from facefleet.models.manifest import ModelSpec

COLUMNS = 15  # box (4), score (1), landmarks (10): the columns read


def group_outputs(names: list[str], spec: ModelSpec) -> list[tuple[int, ...]]:
    """The first output holds everything (the export names it `output`)."""
    return [(0,)]


def decode(
    outputs: list[np.ndarray],
    groups: list[tuple[int, ...]],
    spec: ModelSpec,
    input_hw: tuple[int, int],
    threshold: float,
    index: int | None,
) -> Candidates:
    """Boxes, scores and landmarks of the rows at or above threshold, in input pixels."""
    rows = outputs[groups[0][0]][0 if index is None else index]
    hit = rows[rows[:, 4] >= threshold]
    if hit.shape[0] == 0:
        return none_found()
    centre, size = hit[:, 0:2], hit[:, 2:4]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return Candidates(
        boxes.astype(np.float32), hit[:, 4].astype(np.float32), hit[:, 5:15].reshape(-1, 5, 2).astype(np.float32)
    )


def rows_for(spec: ModelSpec, hw: tuple[int, int] | None) -> int | None:
    """K, the rows an input of hw gives: anchors x cells summed over the strides; None when hw is unknown."""
    if hw is None:
        return None
    total = 0
    for stride in spec.strides:
        rows, cols = cells(hw, stride)
        total += (rows or 0) * (cols or 0) * spec.anchors
    return total


def layout_problem(spec: ModelSpec, names: list[str], shapes: list[Shape], hw: tuple[int, int] | None) -> str:
    """Why the first output is not YOLOv5-face's [N, K, >= 15] rows; "" when it is."""
    if not shapes:
        return "it answers no output"
    shape, k = shapes[0], rows_for(spec, hw)
    width = shape[-1] if shape else None
    if len(shape) != 3 or (isinstance(width, int) and width < COLUMNS) or (k is not None and not fits(shape[1], k)):
        return f"output {names[0]} is {shape_text(shape)}, not [N, {k or 'K'}, >= {COLUMNS}]"
    return ""


def expected(spec: ModelSpec) -> str:
    """What a YOLOv5-face file answers, for a refusal's text."""
    return f"takes [1, 3, H, W] and answers one [N, K, >= {COLUMNS}] of decoded boxes, scores and landmarks"
