"""5-point alignment onto the ArcFace 112 x 112 template, from the full-resolution image.

Recognizers were trained on crops made exactly this way; a crop from the letterboxed
detector input would lose the resolution the embedding needs.
"""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
CROP_SIZE = 112


def similarity_transform(landmarks: np.ndarray) -> np.ndarray:
    """2 x 3 rotation + uniform scale + translation taking the 5 points onto the template
    (least squares; LMEDS keeps one bad landmark from skewing it)."""
    matrix, _ = cv2.estimateAffinePartial2D(landmarks.astype(np.float32), ARCFACE_TEMPLATE, method=cv2.LMEDS)
    if matrix is None:  # degenerate landmarks (all on one point): plain crop-free scale
        matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    return matrix


def align(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """One aligned 112 x 112 crop in the image's channel order."""
    return cv2.warpAffine(image, similarity_transform(landmarks), (CROP_SIZE, CROP_SIZE), borderValue=0.0)


def align_all(image: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
    return [align(image, points) for points in landmarks]
