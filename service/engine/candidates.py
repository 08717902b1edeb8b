"""What a detector family's decoder hands back: candidate faces of one image, in the input's pixels,
before NMS. One type for every family, so the detector, the start-up checks and the tests read them alike."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Candidates(NamedTuple):
    """Boxes (K x 4: x1, y1, x2, y2), scores (K), keypoints (K x 5 x 2) and, for a family whose model
    also scores masks (RetinaFace's mnet_cov2), each candidate's mask score (K); None for the others."""

    boxes: np.ndarray
    scores: np.ndarray
    kps: np.ndarray
    mask: np.ndarray | None = None


def none_found(with_mask: bool = False) -> Candidates:
    """No candidate: the empty arrays of the right shapes."""
    mask = np.zeros(0, np.float32) if with_mask else None
    return Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32), mask)
