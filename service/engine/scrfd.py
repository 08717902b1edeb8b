"""SCRFD output decoding: anchor-free distances on strides 8/16/32 to boxes and 5 keypoints.

Two published layouts: InsightFace's own files (no batch axis, outputs [N, k]) and the
InsightFace-REST re-exports (batch axis, outputs [B, N, k] named score_8 ... kps_32).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from facefleet.models.manifest import ModelSpec


@lru_cache(maxsize=64)
def anchor_centers(input_hw: tuple[int, int], stride: int, anchors: int) -> np.ndarray:
    """(x, y) of every anchor of one stride, in the input's pixels, row-major like the network."""
    rows, cols = input_hw[0] // stride, input_hw[1] // stride
    ys, xs = np.mgrid[:rows, :cols]
    centers = (np.stack([xs, ys], axis=-1).reshape(-1, 2) * stride).astype(np.float32)
    centers = np.repeat(centers, anchors, axis=0) if anchors > 1 else centers
    centers.setflags(write=False)
    return centers


def group_outputs(names: list[str], strides: tuple[int, ...]) -> list[tuple[int, int, int | None]]:
    """Per stride, the indices of its (score, bbox, kps) outputs.

    Named outputs (score_8, bbox_8, kps_8) are matched by name; InsightFace's numbered outputs
    follow its export order: all scores, then all boxes, then all keypoints."""
    if all(f"score_{s}" in names for s in strides):
        kps = [names.index(f"kps_{s}") if f"kps_{s}" in names else None for s in strides]
        return [(names.index(f"score_{s}"), names.index(f"bbox_{s}"), k) for s, k in zip(strides, kps, strict=True)]
    n = len(strides)
    has_kps = len(names) >= 3 * n
    return [(i, i + n, i + 2 * n if has_kps else None) for i in range(n)]


def decode(
    outputs: list[np.ndarray],
    groups: list[tuple[int, int, int | None]],
    spec: ModelSpec,
    input_hw: tuple[int, int],
    threshold: float,
    index: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (x1, y1, x2, y2), scores and keypoints (K x 5 x 2) above threshold, in input pixels.

    `index` picks one image of a batched output; None for the layout without a batch axis."""

    def pick(a: np.ndarray) -> np.ndarray:
        return a[index] if index is not None else a

    all_boxes, all_scores, all_kps = [], [], []
    for stride, (si, bi, ki) in zip(spec.strides, groups, strict=True):
        scores = pick(outputs[si]).reshape(-1)
        hit = np.flatnonzero(scores >= threshold)
        if hit.size == 0:
            continue
        centers = anchor_centers(input_hw, stride, spec.anchors)[hit]
        dist = pick(outputs[bi]).reshape(-1, 4)[hit] * stride
        all_boxes.append(np.concatenate([centers - dist[:, :2], centers + dist[:, 2:]], axis=1))
        all_scores.append(scores[hit])
        if ki is not None:
            offsets = pick(outputs[ki]).reshape(-1, 5, 2)[hit] * stride
            all_kps.append(centers[:, None, :] + offsets)
        else:
            all_kps.append(np.zeros((hit.size, 5, 2), np.float32))
    if not all_scores:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_kps)
