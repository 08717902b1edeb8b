"""Boxes, scores and landmarks drawn onto a copy of the image, for humans checking results."""

from __future__ import annotations

import cv2
import numpy as np

from facefleet.engine.pipeline import Face

LANDMARK_COLOURS = ((0, 0, 255), (0, 255, 255), (255, 0, 255), (0, 255, 0), (255, 0, 0))


def draw_faces(
    image_rgb: np.ndarray, faces: list[Face], scores: bool = True, landmarks: bool = True, sizes: bool = False
) -> np.ndarray:
    """A BGR copy (ready for cv2.imencode) with every face outlined."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    thickness = max(1, round(max(canvas.shape[:2]) / 500))
    for face in faces:
        x1, y1, x2, y2 = (round(float(v)) for v in face.bbox)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        labels = ([f"{face.score:.2f}"] if scores else []) + (
            [f"w:{int(face.size)}"] if sizes else []
        )  # InsightFace-REST's size label
        if labels:
            cv2.putText(
                canvas,
                " ".join(labels),
                (x1, max(0, y1 - 4)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4 * thickness,
                (0, 255, 0),
                thickness,
            )
        if landmarks:
            for (x, y), colour in zip(face.landmarks, LANDMARK_COLOURS, strict=True):
                cv2.circle(canvas, (round(float(x)), round(float(y))), thickness + 1, colour, -1)
    return canvas
