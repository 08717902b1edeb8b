"""1:1 comparison (`facefleet compare`, `POST /verify`): of two images, or of two embeddings.

Which face of each image is compared is chosen in the open, never silently (facefleet.app.faces):
every face of both images is found and aligned first, so the caller knows how many there are (and
can warn when there is more than one); then only the faces compared are embedded. By default an
image contributes its largest face; a caller may name one face of an image, or ask for all of them
(every pair is scored). The verdict uses the one threshold rule (request > setting > manifest > default).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facefleet.app.faces import Side, choose, verification_threshold
from facefleet.engine.pipeline import FaceEngine, ImageResult
from facefleet.errors import FacefleetError, ImageError
from facefleet.timing import Timings

Input = bytes | np.ndarray | ImageError


class SideError(FacefleetError):
    """One image of a pair cannot be compared. `image` is 0-based; `reason` says why without naming
    the image (each adapter names it its own way: "image 2", a path); `found` is its face count."""

    def __init__(self, image: int, code: str, reason: str, found: int = 0) -> None:
        super().__init__(f"image {image + 1}: {reason}")
        self.code, self.image, self.reason, self.found = code, image, reason, found


class NoSuchFaceError(SideError):
    """The caller named a face the image does not have."""

    def __init__(self, image: int, index: int, found: int) -> None:
        super().__init__(image, "no_such_face", f"has {found} face(s); there is no face {index}", found)
        self.index = index


class EmbeddingError(FacefleetError):
    """A caller's vector that cannot be compared: wrong length, zero, or not finite."""

    code = "bad_embedding"


@dataclass(frozen=True)
class CompareRequest:
    """`face_indices`: a 0-based face per image, None for the default (the largest); `all_pairs`:
    every face of both images; `threshold` None: the one threshold rule picks it."""

    face_indices: tuple[int | None, int | None] = (None, None)
    all_pairs: bool = False
    threshold: float | None = None


@dataclass(frozen=True)
class Pair:
    """Two compared faces (indices into each image's faces) and their verdict."""

    a: int
    b: int
    similarity: float
    same_person: bool


@dataclass(frozen=True)
class Comparison:
    """The verdict on the most similar compared pair, with everything an answer may show."""

    similarity: float
    threshold: float
    recognizer: str
    sides: tuple[Side, Side] | None = None  # None: two embeddings were compared
    scores: np.ndarray | None = None  # rows: faces used of image 1, columns: of image 2
    images: tuple[ImageResult, ...] = ()
    timings: Timings = field(default_factory=Timings)

    @property
    def same_person(self) -> bool:
        return self.similarity >= self.threshold

    @property
    def best(self) -> tuple[int, int]:
        """(face of image 1, face of image 2) of the most similar pair."""
        assert self.sides is not None and self.scores is not None
        row, column = best_pair(self.scores)
        return self.sides[0].used[row], self.sides[1].used[column]

    def pairs(self) -> list[Pair]:
        """Every compared pair, image 1's faces in the outer loop."""
        if self.sides is None or self.scores is None:
            return []
        first, second = self.sides
        scores = self.scores
        return [
            Pair(i, j, float(scores[r, c]), bool(scores[r, c] >= self.threshold))
            for r, i in enumerate(first.used)
            for c, j in enumerate(second.used)
        ]


def find_faces(engine: FaceEngine, inputs: Sequence[Input], timings: Timings | None = None) -> list[ImageResult]:
    """Every face of each input, aligned (crops kept) but not embedded yet."""
    return engine.process(inputs, embed=False, keep_crops=True, timings=timings)


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


def _side(i: int, result: ImageResult, index: int | None, all_pairs: bool) -> Side:
    """The faces of image `i` to compare, or the SideError that refuses it."""
    if result.error is not None:
        raise SideError(i, result.error.code, result.error.message)
    if not result.faces:
        raise SideError(i, "no_face", "no face found")
    if index is not None and not 0 <= index < len(result.faces):
        raise NoSuchFaceError(i, index, len(result.faces))
    return choose(result.faces, index, all_pairs)


def compare_images(engine: FaceEngine, inputs: Sequence[Input], request: CompareRequest | None = None) -> Comparison:
    """Compare the faces of two images; the first image that cannot be used raises its SideError."""
    request = request or CompareRequest()
    if engine.recognizer is None:
        raise FacefleetError("no recognizer is loaded")
    if len(inputs) != 2:
        raise ValueError(f"compare_images takes two images, not {len(inputs)}")
    timings = Timings()
    results = find_faces(engine, inputs, timings)
    first, second = (
        _side(i, result, index, request.all_pairs)
        for i, (result, index) in enumerate(zip(results, request.face_indices, strict=True))
    )
    scores = similarities(engine, first, second, timings)
    row, column = best_pair(scores)
    return Comparison(
        similarity=float(scores[row, column]),
        threshold=verification_threshold(engine, request.threshold),
        recognizer=engine.recognizer.spec.name,
        sides=(first, second),
        scores=scores,
        images=tuple(results),
        timings=timings,
    )


def unit_vector(values: Sequence[float], index: int, size: int) -> np.ndarray:
    """A caller's vector, normalised. Its length must be the recognizer's (`size`), which no
    request schema can state, so a wrong one is an EmbeddingError, like a zero or infinite one."""
    if len(values) != size:
        raise EmbeddingError(f"embeddings[{index}] must be a list of {size} numbers")
    try:
        vector = np.asarray(values, dtype=np.float64)
    except OverflowError:  # an integer beyond any float
        vector = np.full(size, np.inf)
    peak = float(np.abs(vector).max()) if size else 0.0
    if not np.isfinite(peak) or peak == 0:
        raise EmbeddingError(f"embeddings[{index}] must be finite and non-zero")
    vector /= peak  # scaled first, so a vector of 1e300s still has a norm
    unit: np.ndarray = (vector / np.linalg.norm(vector)).astype(np.float32)
    return unit


def compare_vectors(engine: FaceEngine, a: np.ndarray, b: np.ndarray, threshold: float | None = None) -> Comparison:
    """Compare two unit vectors of the loaded recognizer (`unit_vector` makes them from a caller's lists)."""
    if engine.recognizer is None:
        raise FacefleetError("no recognizer is loaded")
    return Comparison(
        similarity=float(np.dot(a, b)),
        threshold=verification_threshold(engine, threshold),
        recognizer=engine.recognizer.spec.name,
    )
