"""How good a face crop is for recognition: size, sharpness, frontalness and the detector's score.

A stream shows the same person in many frames; recognition runs on a track's best few crops only
(service/streams/tracks.py), so the crops need an order. Each part is in [0, 1], from what the detector
gives (box, five landmarks, score) and the aligned crop the recognizer would embed:

- size = clip((w - SIZE_FLOOR) / (SIZE_FULL - SIZE_FLOOR), 0, 1), w the box's width in pixels: a face of
  SIZE_FLOOR px (20) or less carries almost nothing, one of SIZE_FULL px (112, the recognizer's crop width)
  or more fills the crop with real pixels, more adds nothing to the embedding;
- sharpness = v / (v + SHARPNESS_HALF), v the variance of the Laplacian (cv2, 3 x 3) of the grey aligned
  112 x 112 crop's central part (the face, not the border the alignment pads). Measured on the shared
  photos' faces: 1,000 to 25,000 sharp, 300 to 400 once blurred by a Gaussian of about 1.5 px at the crop's
  scale, under 150 at 3 px; SHARPNESS_HALF (500) scores 0.5. An upscaled small face is soft too, which is
  right: the recognizer sees it so. (It also falls with contrast: a dark face scores lower.)
- frontal = clip(1 - |yaw| / YAW_LIMIT, 0, 1), yaw estimated from where the nose falls along the line from
  one eye to the other: t, the projection of nose - left eye on right eye - left eye over that distance, is
  0.5 + NOSE_DEPTH * tan(yaw) for a head whose nose tip stands NOSE_DEPTH eye distances in front of the
  eyes, so yaw = atan((t - 0.5) / NOSE_DEPTH); roll does not change t (alignment undoes roll), pitch is not
  read (five points say little of it). 0 from YAW_LIMIT (60 degrees) on: most recognizers fail there;
- detection = the detector's score.

quality = size^0.3 * sharpness^0.3 * frontal^0.3 * detection^0.1 (a weighted geometric mean: in [0, 1],
on the parts' scale, and 0 when any part is 0, since a crop useless in one way is useless).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from facefleet.engine.align import CROP_SIZE, align

SIZE_FLOOR = 20.0  # px of box width: no use below
SIZE_FULL = float(CROP_SIZE)  # px: the recognizer's crop width, no gain above
SHARPNESS_HALF = 500.0  # variance of the Laplacian (grey levels^2) scored 0.5
NOSE_DEPTH = 0.55  # the nose tip's depth in front of the eyes, in eye distances (an adult head)
YAW_LIMIT = 60.0  # degrees of yaw scored 0
WEIGHTS = {"size": 0.3, "sharpness": 0.3, "frontal": 0.3, "detection": 0.1}
# the aligned crop's part that is face in the ArcFace template (eyes at y 51, mouth at y 92): no padding
_INNER = slice(16, 104)


@dataclass(frozen=True)
class Quality:
    """A crop's parts and their weighted geometric mean `score`, each in [0, 1]."""

    size: float
    sharpness: float
    frontal: float
    detection: float

    @property
    def score(self) -> float:
        parts = {"size": self.size, "sharpness": self.sharpness, "frontal": self.frontal, "detection": self.detection}
        total = 1.0
        for name, weight in WEIGHTS.items():
            total *= max(parts[name], 0.0) ** weight
        return float(total)


def size_score(width: float) -> float:
    return float(np.clip((width - SIZE_FLOOR) / (SIZE_FULL - SIZE_FLOOR), 0.0, 1.0))


def laplacian_variance(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop's grey central part (RGB or grey input)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return float(cv2.Laplacian(grey[_INNER, _INNER], cv2.CV_64F, ksize=3).var())


def sharpness_score(crop: np.ndarray) -> float:
    v = laplacian_variance(crop)
    return v / (v + SHARPNESS_HALF)


def nose_position(landmarks: np.ndarray) -> float:
    """Where the nose falls along the eye-to-eye line: 0 at the left eye, 1 at the right, 0.5 frontal."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    left, right, nose = points[0], points[1], points[2]
    axis = right - left
    length = float(axis @ axis)
    if length < 1e-9:
        return 0.0  # both eyes on one point: nothing to read a pose from
    return float((nose - left) @ axis / length)


def yaw_degrees(landmarks: np.ndarray) -> float:
    """The head's estimated yaw from the five landmarks (0 facing the camera; the sign says which way)."""
    return float(np.degrees(np.arctan((nose_position(landmarks) - 0.5) / NOSE_DEPTH)))


def frontal_score(landmarks: np.ndarray) -> float:
    return float(np.clip(1.0 - abs(yaw_degrees(landmarks)) / YAW_LIMIT, 0.0, 1.0))


def face_crop(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The aligned 112 x 112 crop the recognizer embeds (facefleet.engine.align), in the image's channel order."""
    return align(image, np.asarray(landmarks, dtype=np.float32))


def assess(crop: np.ndarray, box: np.ndarray, landmarks: np.ndarray, score: float) -> Quality:
    """The quality of one face: `crop` its aligned crop (face_crop), `box` x1, y1, x2, y2, `landmarks` 5 x 2,
    `score` the detector's."""
    width = float(box[2] - box[0])
    detection = float(np.clip(score, 0.0, 1.0))
    return Quality(size_score(width), sharpness_score(crop), frontal_score(landmarks), detection)
