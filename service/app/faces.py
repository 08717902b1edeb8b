"""Which face counts, and which thresholds apply: the two rules every use case shares.

Which face: faces are numbered in detection order (as /extract's `num_det` and `facefleet detect`
number them). When one face of an image must stand for it, it is the largest by box area, the first of equals
(`largest_first`, the same order the engine's `limit_faces` keeps); a caller may instead name one face
(REQUESTED) or take them all (ALL). Enrolment keeps one face per photo with `limit_faces=ONE_FACE`.

Thresholds: request > setting > model manifest > default, in facefleet.models.thresholds; the two
functions here only hand it the engine's models and settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facefleet.engine.pipeline import Face, FaceEngine, largest_first
from facefleet.models.thresholds import det_threshold, verify_threshold

LARGEST, REQUESTED, ALL = "largest", "requested", "all"
ONE_FACE = 1  # limit_faces that keeps only the face `largest` would choose


def largest(faces: Sequence[Face]) -> int:
    """The index of the largest face (the first of equals, as limit_faces=1 keeps it)."""
    if not faces:
        raise ValueError("largest() of no faces")
    return int(largest_first(np.array([f.area for f in faces]))[0])


@dataclass(frozen=True)
class Side:
    """One image of a comparison: every face found, and the indices (0-based) of those compared."""

    faces: tuple[Face, ...]
    used: tuple[int, ...]
    chosen: str  # LARGEST, REQUESTED or ALL

    @property
    def ambiguous(self) -> bool:
        """More than one face, and the largest taken by default: the caller must say so."""
        return self.chosen == LARGEST and len(self.faces) > 1


def choose(faces: Sequence[Face], index: int | None, all_faces: bool) -> Side:
    """The faces of one image to compare: `index` when given (the caller checked its range),
    else every face when `all_faces`, else the largest. `faces` must not be empty."""
    found = tuple(faces)
    if index is not None:
        return Side(found, (index,), REQUESTED)
    if all_faces:
        return Side(found, tuple(range(len(found))), ALL)
    return Side(found, (largest(found),), LARGEST)


def detection_threshold(engine: FaceEngine, requested: float | None = None) -> float:
    """Face score threshold of a call: the request's, else FACEFLEET_DET_THRESH, else the detector's."""
    return det_threshold(engine.detector.spec, engine.settings.engine.det_threshold, requested)


def verification_threshold(engine: FaceEngine, requested: float | None = None) -> float:
    """Same-person similarity of a call: the request's, else FACEFLEET_VERIFY_THRESH, else the
    recognizer's, else the default (no recognizer loaded)."""
    spec = engine.recognizer.spec if engine.recognizer is not None else None
    return verify_threshold(spec, engine.settings.engine.verify_threshold, requested)
