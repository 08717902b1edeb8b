"""One face as the HTTP answers and `facefleet detect --json` show it: InsightFace-REST's shape and order.

Its published client validates every face with pydantic models in which each of `num_det, prob, size,
bbox, landmarks, norm, vec, facedata` must be present (null allowed) and `bbox` and `size` are integers,
so every face carries all of them, null when the request did not ask for them, and coordinates are its
truncated integers (`int()` of the float, as its `astype(int)`); `size` is the box width, as it defines
it. `float_coords` (facefleet's addition) asks for the sub-pixel floats instead.

The API (/extract, gallery search) and the CLI share this mapping, so it lives with the contract, which
either may import, rather than in an adapter.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Protocol

import cv2

from facefleet.contract import models as m
from facefleet.engine.pipeline import Face

GA_UNAVAILABLE = "not available: no gender/age model is configured on this appliance"
MASK_UNAVAILABLE = "not available: no mask model is configured on this appliance"
# A detector's own mask score (RetinaFace mnet_cov2) at or above which the face wears one: the threshold of
# InsightFace's RetinaFaceAntiCov example (InsightFace-REST computes the score and never shows it)
DETECTOR_MASK_THRESHOLD = 0.2
# A mask classifier's answer is a mask when its mask probability wins and reaches this (InsightFace-REST's rule)
CLASSIFIER_MASK_THRESHOLD = 0.89


class FaceFlags(Protocol):
    """The request fields that shape a face (the image requests of facefleet.contract.models have them)."""

    return_landmarks: bool
    return_face_data: bool
    extract_ga: bool
    extract_embedding: bool
    detect_masks: bool
    float_coords: bool


@dataclass(frozen=True)
class FaceOptions:
    """What a face's answer holds beyond the fields it always has."""

    landmarks: bool = False
    face_data: bool = False
    ga: bool = False
    vector: bool = True
    masks: bool = False
    float_coords: bool = False

    @classmethod
    def of(cls, request: FaceFlags, vector: bool = True) -> FaceOptions:
        return cls(
            request.return_landmarks,
            request.return_face_data,
            request.extract_ga,
            vector and request.extract_embedding,
            request.detect_masks,
            request.float_coords,
        )


def coordinate(value: float, float_coords: bool) -> int | float:
    """InsightFace-REST's truncated integer (toward zero), or facefleet's 2-decimal float."""
    return round(float(value), 2) + 0.0 if float_coords else int(value)  # + 0.0: -0.0 becomes 0.0


def face_fields(face: Face, options: FaceOptions) -> dict[str, Any]:
    """One face's fields in InsightFace-REST's key order; what the request did not ask for is null."""
    exact = options.float_coords
    with_vector = face.embedding is not None and options.vector
    out: dict[str, Any] = {
        "bbox": [coordinate(v, exact) for v in face.bbox],
        "landmarks": [[coordinate(x, exact), coordinate(y, exact)] for x, y in face.landmarks]
        if options.landmarks
        else None,
        "prob": round(face.score, 5),
        "num_det": face.num_det,
        "scale": round(face.scale, 6),
        "facedata": _face_data(face) if options.face_data else None,
        "norm": round(float(face.norm or 0.0), 5) if with_vector else None,
        "vec": [round(float(v), 7) + 0.0 for v in face.embedding]
        if with_vector and face.embedding is not None
        else None,
        "gender": None,
        "age": None,
        "mask": None,
        "mask_probs": None,
        "size": round(face.size, 1) if exact else int(face.size),
    }
    if options.ga and face.gender is not None:
        out["gender"], out["age"] = face.gender, face.age
    elif options.ga:
        out["ga_error"] = GA_UNAVAILABLE
    if options.masks and face.mask_probs is not None:
        mask, no_mask = face.mask_probs
        out["mask"] = mask > no_mask and mask >= CLASSIFIER_MASK_THRESHOLD
        out["mask_probs"] = {"mask": round(mask, 5), "no_mask": round(no_mask, 5)}
    elif options.masks and face.mask_score is not None:
        out["mask"] = face.mask_score >= DETECTOR_MASK_THRESHOLD
        out["mask_probs"] = {"mask": round(face.mask_score, 5), "no_mask": round(1.0 - face.mask_score, 5)}
    elif options.masks:
        out["mask_error"] = MASK_UNAVAILABLE
    return out


def _face_data(face: Face) -> str | None:
    """The aligned 112 x 112 crop as base64 JPEG (BGR encoded, as OpenCV writes it)."""
    if face.crop is None:
        return None
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR))
    return base64.b64encode(jpeg.tobytes()).decode() if ok else None


def face_json(face: Face, options: FaceOptions | None = None) -> dict[str, Any]:
    """One face as /extract answers it (the CLI's `detect --json` prints the same)."""
    return m.Face.model_validate(face_fields(face, options or FaceOptions())).dump()
