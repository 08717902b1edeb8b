"""RetinaFace output decoding, as InsightFace's MXNet RetinaFace (and InsightFace-REST) does it.

Per stride (32, 16, 8, in that output order) three NCHW maps: class probabilities [N, 2A, H, W] (channels
A..2A are the face probability, already a softmax), box deltas [N, 4A, H, W] and landmark deltas
[N, 10A, H, W]; the mask variant (mnet_cov2, RetinaFaceAntiCov) adds a fourth, type probabilities
[N, 3A, H, W] whose channels 2A..3A are the mask score. Channels are anchor-major: anchor a's box
delta k is channel 4a + k, its landmark p's x and y are channels 10a + 2p and 10a + 2p + 1.

Anchors follow MXNet-rcnn's "+1" convention: two per location (A = 2), ratio 1, a 16-pixel base box
[0, 0, 15, 15] scaled by 32 and 16 (stride 32), 8 and 4 (stride 16), 2 and 1 (stride 8), so each anchor
of cell (x, y) is centred on (7.5 + x * stride, 7.5 + y * stride) with side 16 * scale, the larger first.
Boxes: centre + delta * side, side * exp(delta), corners at centre -/+ (side - 1) / 2; landmarks:
centre + delta * landmark_std * side (std 1.0 for the `net3` files, 0.2 for `net3l`: the manifest says
which). No variances, no clipping (InsightFace-REST clips nothing either).
"""

from __future__ import annotations

import numpy as np

from facefleet.engine.candidates import Candidates, none_found
from facefleet.engine.dims import Shape, map_problem
from facefleet.models.manifest import ModelSpec

BASE_SIZE = 16
# Anchor scales per stride, the larger first: InsightFace's RetinaFace anchor config (the same for net3 and net3l).
SCALES = {32: (32.0, 16.0), 16: (8.0, 4.0), 8: (2.0, 1.0)}
KINDS = ("cls_prob_reshape", "bbox_pred", "landmark_pred", "type_prob_reshape")
CHANNELS = (2, 4, 10, 3)  # per anchor, in KINDS order


def with_mask(spec: ModelSpec) -> bool:
    """The mask variant: a fourth output per stride."""
    return spec.layout == "retinaface_mask"


def group_outputs(names: list[str], spec: ModelSpec) -> list[tuple[int, ...]]:
    """Per stride, the indices of its (cls, bbox, landmark[, type]) outputs.

    Named outputs (face_rpn_cls_prob_reshape_stride32, ...) are matched by name; otherwise the export order
    InsightFace-REST reads: stride by stride (32, 16, 8), each stride's maps together."""
    kinds = KINDS if with_mask(spec) else KINDS[:3]
    wanted = [[f"face_rpn_{k}_stride{s}" for k in kinds] for s in spec.strides]
    if all(n in names for group in wanted for n in group):
        return [tuple(names.index(n) for n in group) for group in wanted]
    per = len(kinds)
    return [tuple(range(i * per, (i + 1) * per)) for i in range(len(spec.strides))]


def _anchors(rows: int, cols: int, stride: int, anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres (K x 2) and sides (K) of every anchor of one stride, in (row, column, anchor) order."""
    ys, xs = np.mgrid[:rows, :cols]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride + 0.5 * (BASE_SIZE - 1)
    sides = np.asarray(SCALES[stride][:anchors], np.float32) * BASE_SIZE
    return np.repeat(centres, anchors, axis=0), np.tile(sides, rows * cols)


def _rows(a: np.ndarray, width: int) -> np.ndarray:
    """[C, H, W] -> [H * W * A, width]: anchor-major channels to one row per anchor."""
    return np.ascontiguousarray(a.transpose(1, 2, 0)).reshape(-1, width)


def decode(
    outputs: list[np.ndarray],
    groups: list[tuple[int, ...]],
    spec: ModelSpec,
    input_hw: tuple[int, int],
    threshold: float,
    index: int | None,
) -> Candidates:
    """Boxes, scores, landmarks (and mask scores for mnet_cov2) at or above threshold, in input pixels."""
    b = 0 if index is None else index
    a = spec.anchors
    found: list[tuple[np.ndarray, ...]] = []
    for stride, group in zip(spec.strides, groups, strict=True):
        cls = outputs[group[0]][b]
        rows, cols = cls.shape[1:]
        scores = _rows(cls[a : 2 * a], 1)[:, 0]
        hit = np.flatnonzero(scores >= threshold)
        if hit.size == 0:
            continue
        centres, sides = _anchors(rows, cols, stride, a)
        centres, sides = centres[hit], sides[hit, None]
        deltas = _rows(outputs[group[1]][b], 4)[hit]
        mid = centres + deltas[:, :2] * sides
        half = 0.5 * (np.exp(deltas[:, 2:]) * sides - 1.0)
        marks = _rows(outputs[group[2]][b], 10)[hit].reshape(-1, 5, 2) * spec.landmark_std
        found.append(
            (
                np.concatenate([mid - half, mid + half], axis=1),
                scores[hit],
                centres[:, None, :] + marks * sides[:, :, None],
                *([_rows(outputs[group[3]][b][2 * a : 3 * a], 1)[hit, 0]] if len(group) > 3 else []),
            )
        )
    if not found:
        return none_found(with_mask(spec))
    joined = [np.concatenate(parts).astype(np.float32) for parts in zip(*found, strict=True)]
    return Candidates(joined[0], joined[1], joined[2], joined[3] if len(joined) > 3 else None)


def layout_problem(spec: ModelSpec, names: list[str], shapes: list[Shape], hw: tuple[int, int] | None) -> str:
    """Why these outputs are not RetinaFace's maps for the manifest's strides; "" when they are."""
    per = 4 if with_mask(spec) else 3
    if len(shapes) != per * len(spec.strides):
        return f"it answers {len(shapes)} outputs, not {per * len(spec.strides)} ({per} maps per stride)"
    for stride, group in zip(spec.strides, group_outputs(names, spec), strict=True):
        for index, channels in zip(group, CHANNELS, strict=False):
            problem = map_problem(names[index], shapes[index], channels * spec.anchors, hw, stride)
            if problem:
                return problem
    return ""


def expected(spec: ModelSpec) -> str:
    """What a RetinaFace file answers, for a refusal's text."""
    maps = "cls, bbox, landmark and type" if with_mask(spec) else "cls, bbox and landmark"
    widths = "2A|4A|10A|3A" if with_mask(spec) else "2A|4A|10A"
    strides = ", ".join(str(s) for s in spec.strides)
    return (
        f"takes [1, 3, H, W] and answers {maps} maps [N, {widths}, H/s, W/s] for strides {strides} (A = {spec.anchors})"
    )
