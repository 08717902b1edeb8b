"""One face as the HTTP answers and `facefleet detect --json` show it: InsightFace-REST's shape and order.

The API (/extract, gallery search) and the CLI share this mapping, so it lives with the contract, which
either may import, rather than in an adapter.
"""

from __future__ import annotations

import base64
from typing import Any

import cv2

from facefleet.contract import models as m
from facefleet.engine.pipeline import Face

GA_UNAVAILABLE = "not available: no gender/age model is configured on this appliance"


def face_fields(
    face: Face, index: int, landmarks: bool = False, face_data: bool = False, ga: bool = False, vector: bool = True
) -> dict[str, Any]:
    """One face's fields in InsightFace-REST's shape and order, optional ones as the request asked."""
    out: dict[str, Any] = {
        "bbox": [round(float(v), 2) + 0.0 for v in face.bbox],  # + 0.0: -0.0 becomes 0.0
        "prob": round(face.score, 5),
        "size": round(face.size, 1),
        "num_det": index,
    }
    if landmarks:
        out["landmarks"] = [[round(float(x), 2) + 0.0, round(float(y), 2) + 0.0] for x, y in face.landmarks]
    if face.embedding is not None and vector:
        out["norm"] = round(float(face.norm or 0.0), 5)
        out["vec"] = [round(float(v), 7) + 0.0 for v in face.embedding]
    if face_data and face.crop is not None:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR))
        out["facedata"] = base64.b64encode(jpeg.tobytes()).decode() if ok else None
    if ga:
        out.update({"gender": None, "age": None, "ga_error": GA_UNAVAILABLE})
    return out


def face_json(face: Face, index: int, landmarks: bool = False, face_data: bool = False, ga: bool = False) -> dict:
    """One face as /extract answers it (the CLI's `detect --json` prints the same)."""
    return m.Face.model_validate(face_fields(face, index, landmarks, face_data, ga)).dump()
