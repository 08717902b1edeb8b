"""Images in, faces out: the use case behind /extract, /draw_detections, gallery search and `facefleet detect`.

It knows nothing of HTTP: inputs are already read (bytes, a decoded RGB array, or the ImageError of a
reference that could not be read), and the result carries the engine's own faces; each adapter maps
them into its answer (facefleet.contract.faces for the JSON shape both /extract and the CLI print).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facefleet.app.faces import detection_threshold
from facefleet.engine.pipeline import FaceEngine, ImageResult
from facefleet.errors import ImageError
from facefleet.timing import Timings

Input = bytes | np.ndarray | ImageError


@dataclass(frozen=True)
class ExtractRequest:
    """What to find and keep. `threshold` None: the one threshold rule picks it (facefleet.app.faces).
    `embed_only`: each input is already an aligned face crop (InsightFace-REST's option)."""

    threshold: float | None = None
    embed: bool = True
    keep_crops: bool = False
    min_face_size: float = 0
    limit_faces: int = 0
    embed_only: bool = False
    attributes: tuple[str, ...] = ()  # the crop-reading tasks asked for: "genderage" (extract_ga), "mask"


@dataclass(frozen=True)
class ExtractResult:
    """One result per input, in input order (a failed input carries its error), the per-stage
    timings of the call, and the detection threshold used (None with embed_only: nothing detected)."""

    images: tuple[ImageResult, ...]
    timings: Timings = field(default_factory=Timings)
    threshold: float | None = None

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.images)


def extract(engine: FaceEngine, inputs: Sequence[Input], request: ExtractRequest | None = None) -> ExtractResult:
    """Faces of every input; an input that cannot be used fails alone, the others are still answered."""
    request = request or ExtractRequest()
    timings = Timings()
    if request.embed_only:
        return ExtractResult(tuple(engine.embed_crops(inputs, timings)), timings)
    threshold = detection_threshold(engine, request.threshold)
    results = engine.process(
        inputs,
        threshold=threshold,
        embed=request.embed,
        keep_crops=request.keep_crops,
        min_face_size=request.min_face_size,
        limit_faces=request.limit_faces,
        timings=timings,
        attributes=request.attributes,
    )
    return ExtractResult(tuple(results), timings, threshold)
