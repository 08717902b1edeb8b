"""An image with its faces drawn, for humans checking results (/draw_detections, `facefleet detect --draw`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from facefleet.app.extract import ExtractRequest, ExtractResult, extract
from facefleet.engine.draw import draw_faces
from facefleet.engine.pipeline import Face, FaceEngine
from facefleet.errors import FacefleetError

JPEG_QUALITY = 90


class EncodeError(FacefleetError):
    """The annotated image could not be encoded (a server fault, not the client's)."""

    code = "encode_failed"


@dataclass(frozen=True)
class DrawRequest:
    """Which faces (the detection options) and what to write beside each box."""

    find: ExtractRequest = field(default_factory=lambda: ExtractRequest(embed=False))
    scores: bool = True
    landmarks: bool = True
    sizes: bool = False


@dataclass(frozen=True)
class Drawing:
    """The JPEG, and the detection result it shows (its faces and timings)."""

    jpeg: bytes
    found: ExtractResult


def annotate(image: np.ndarray, faces: Sequence[Face], request: DrawRequest | None = None) -> np.ndarray:
    """A BGR copy of the RGB `image` with the faces outlined (ready for cv2.imwrite / imencode)."""
    request = request or DrawRequest()
    return draw_faces(image, list(faces), request.scores, request.landmarks, request.sizes)


def draw(engine: FaceEngine, image: np.ndarray, request: DrawRequest | None = None) -> Drawing:
    """Find the faces of one decoded RGB image and draw them into a JPEG. The caller decodes, so
    an unreadable image is its error before any model runs."""
    request = request or DrawRequest()
    found = extract(engine, [image], request.find)
    ok, jpeg = cv2.imencode(
        ".jpg", annotate(image, found.images[0].faces, request), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise EncodeError("could not encode the annotated image")
    return Drawing(jpeg.tobytes(), found)
