"""The request path, top to bottom: decode -> detect -> align -> embed -> results.

A bad image fails alone: its error is kept in its own result and every other image of the
call is still detected and embedded, with all faces of all images sharing recognizer runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .align import align_all
from .config import Settings
from .decode import decode_image
from .detector import Detections, Detector
from .errors import FacefleetError, ImageError
from .loader import load_model
from .manifest import Manifest, load_manifest
from .recognizer import Recognizer
from .timing import Timings, maybe


@dataclass
class Face:
    bbox: np.ndarray  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # 5 x 2
    embedding: np.ndarray | None = None
    norm: float | None = None
    crop: np.ndarray | None = None  # aligned 112 x 112 RGB

    @property
    def size(self) -> float:
        """The larger side of the box: what `limit_faces` and `min_face_size` compare."""
        return float(max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]))


@dataclass
class ImageResult:
    faces: list[Face] = field(default_factory=list)
    error: FacefleetError | None = None
    shape: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class FaceEngine:
    """One detector and one recognizer, opened once and shared by every call."""

    def __init__(self, settings: Settings, detector: Detector, recognizer: Recognizer | None, manifest: Manifest):
        self.settings = settings
        self.detector = detector
        self.recognizer = recognizer
        self.manifest = manifest

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        with_recognizer: bool = True,
        available: Sequence[str] | None = None,
        session_factory: Callable[..., Any] | None = None,
    ) -> FaceEngine:
        manifest = load_manifest()
        det_spec = manifest.get(settings.det_name or manifest.default_detection)
        opened, _ = load_model(det_spec, settings, available=available, session_factory=session_factory)
        detector = Detector(det_spec, opened, settings)
        recognizer = None
        if with_recognizer:
            rec_spec = manifest.get(settings.rec_name or manifest.default_recognition)
            opened, _ = load_model(rec_spec, settings, available=available, session_factory=session_factory)
            recognizer = Recognizer(rec_spec, opened, settings)
        return cls(settings, detector, recognizer, manifest)

    def process(
        self,
        inputs: Sequence[bytes | np.ndarray],
        *,
        threshold: float | None = None,
        embed: bool = True,
        keep_crops: bool = False,
        timings: Timings | None = None,
    ) -> list[ImageResult]:
        """Faces of every input, in input order; an input that cannot be decoded fails alone."""
        results = [ImageResult() for _ in inputs]
        images: dict[int, np.ndarray] = {}
        with maybe(timings, "decode"):
            for i, item in enumerate(inputs):
                try:
                    images[i] = item if isinstance(item, np.ndarray) else decode_image(item, self.settings.max_pixels)
                    results[i].shape = images[i].shape[:2]
                except ImageError as exc:
                    results[i].error = exc
        order = list(images)
        detections = self.detector.detect([images[i] for i in order], threshold, timings)
        crops = self._align(order, images, detections, results, timings)
        if embed and self.recognizer is not None:
            vectors, norms = self.recognizer.embed(crops, timings)
            faces = [face for i in order for face in results[i].faces]
            for face, vector, norm in zip(faces, vectors, norms, strict=True):
                face.embedding, face.norm = vector, float(norm)
        if not keep_crops:
            for i in order:
                for face in results[i].faces:
                    face.crop = None
        return results

    def _align(
        self,
        order: list[int],
        images: dict[int, np.ndarray],
        detections: list[Detections],
        results: list[ImageResult],
        timings: Timings | None,
    ) -> list[np.ndarray]:
        crops: list[np.ndarray] = []
        with maybe(timings, "align"):
            for i, found in zip(order, detections, strict=True):
                image_crops = align_all(images[i], found.landmarks)
                crops.extend(image_crops)
                results[i].faces = [
                    Face(found.boxes[k], float(found.scores[k]), found.landmarks[k], crop=image_crops[k])
                    for k in range(len(found))
                ]
        return crops


def timed_process(
    engine: FaceEngine, inputs: Sequence[bytes | np.ndarray], **kwargs: Any
) -> tuple[list[ImageResult], Timings, float]:
    """process() plus its per-stage timings and total wall time in ms."""
    timings = Timings()
    start = time.perf_counter()
    results = engine.process(inputs, timings=timings, **kwargs)
    return results, timings, (time.perf_counter() - start) * 1000
