"""1:1 comparison of two images (`facefleet compare`, `POST /verify`): which face of each image
is compared is chosen in the open, never silently.

Every face of both images is found and aligned first, so the caller knows how many there are
(and can warn when there is more than one); then only the faces compared are embedded. Faces
are numbered in detection order, as `facefleet detect` and /extract's `num_det` number them.
By default an image contributes its largest face; a caller may name one face of an image, or
ask for all of them (every pair is scored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facefleet.engine.pipeline import Face, FaceEngine, ImageResult
from facefleet.errors import ImageError
from facefleet.timing import Timings

LARGEST, REQUESTED, ALL = "largest", "requested", "all"


@dataclass
class Side:
    """One image of a comparison: every face found, and the indices (0-based) of those compared."""

    faces: list[Face]
    used: list[int]
    chosen: str  # LARGEST, REQUESTED or ALL

    @property
    def ambiguous(self) -> bool:
        """More than one face, and the largest taken by default: the caller must say so."""
        return self.chosen == LARGEST and len(self.faces) > 1


def find_faces(
    engine: FaceEngine, inputs: Sequence[bytes | np.ndarray | ImageError], timings: Timings | None = None
) -> list[ImageResult]:
    """Every face of each input, aligned (crops kept) but not embedded yet."""
    return engine.process(inputs, embed=False, keep_crops=True, timings=timings)


def largest(faces: Sequence[Face]) -> int:
    """The index of the largest face (the first of equals, as limit_faces=1 keeps it)."""
    return max(range(len(faces)), key=lambda k: (faces[k].size, -k))


def choose(faces: list[Face], index: int | None, all_faces: bool) -> Side:
    """The faces of one image to compare: `index` when given (the caller checked its range),
    else every face when `all_faces`, else the largest. `faces` must not be empty."""
    if index is not None:
        return Side(faces, [index], REQUESTED)
    if all_faces:
        return Side(faces, list(range(len(faces))), ALL)
    return Side(faces, [largest(faces)], LARGEST)


def similarities(engine: FaceEngine, a: Side, b: Side, timings: Timings | None = None) -> np.ndarray:
    """Cosine similarity of every compared face of `a` (rows) with every one of `b` (columns);
    only these faces are embedded."""
    first, second = [a.faces[k] for k in a.used], [b.faces[k] for k in b.used]
    engine.embed_faces(first + second, timings)
    rows = np.stack([f.embedding for f in first if f.embedding is not None])
    columns = np.stack([f.embedding for f in second if f.embedding is not None])
    similarity: np.ndarray = rows @ columns.T
    return similarity


def best_pair(scores: np.ndarray) -> tuple[int, int]:
    """(row, column) of the highest similarity."""
    row, column = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(row), int(column)
