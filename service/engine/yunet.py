"""YuNet output decoding, as OpenCV's FaceDetectorYN does it: one anchor per location,
score = sqrt(cls * obj), box centre offsets and log-sizes in stride units."""

from __future__ import annotations

import numpy as np

from facefleet.engine.scrfd import anchor_centers
from facefleet.models.manifest import ModelSpec


def group_outputs(names: list[str], strides: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """Per stride, the indices of its (cls, obj, bbox, kps) outputs, found by name."""
    return [
        (names.index(f"cls_{s}"), names.index(f"obj_{s}"), names.index(f"bbox_{s}"), names.index(f"kps_{s}"))
        for s in strides
    ]


def decode(
    outputs: list[np.ndarray],
    groups: list[tuple[int, int, int, int]],
    spec: ModelSpec,
    input_hw: tuple[int, int],
    threshold: float,
    index: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    b = 0 if index is None else index
    all_boxes, all_scores, all_kps = [], [], []
    for stride, (ci, oi, bi, ki) in zip(spec.strides, groups, strict=True):
        cls = np.clip(outputs[ci][b].reshape(-1), 0, 1)
        obj = np.clip(outputs[oi][b].reshape(-1), 0, 1)
        scores = np.sqrt(cls * obj)
        hit = np.flatnonzero(scores >= threshold)
        if hit.size == 0:
            continue
        cells = anchor_centers(input_hw, stride, 1)[hit] / stride
        raw = outputs[bi][b].reshape(-1, 4)[hit]
        centre = (cells + raw[:, :2]) * stride
        size = np.exp(raw[:, 2:]) * stride
        all_boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
        all_scores.append(scores[hit])
        all_kps.append((outputs[ki][b].reshape(-1, 5, 2)[hit] + cells[:, None, :]) * stride)
    if not all_scores:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_kps)
