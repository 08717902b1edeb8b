"""The 1:1 comparison use case (facefleet.app.compare, behind /verify and `facefleet compare`) on the real
models and the labelled photos of ../shared/images, with no HTTP server and no Flask."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from facefleet.app.compare import (
    CompareRequest,
    EmbeddingError,
    NoSuchFaceError,
    SideError,
    compare_images,
    compare_vectors,
    unit_vector,
)
from facefleet.app.extract import extract
from facefleet.app.faces import ALL, LARGEST, REQUESTED, largest
from facefleet.engine.pipeline import FaceEngine
from tests.conftest import IDENTITIES

DET, REC = "scrfd_2.5g", "mobilefacenet"


@pytest.fixture(scope="module")
def engine(engine_factory) -> FaceEngine:
    return engine_factory(DET, REC)


def test_labelled_pairs_get_the_right_verdict(engine, image_bytes):
    """Every same-person pair, and one photo of each person against one of every other (test_recognition
    scores the whole matrix on the engine; this is the use case's verdict)."""
    names = sorted(IDENTITIES)
    photos = {n: image_bytes(n) for n in names}
    threshold = engine.recognizer.spec.verify_threshold
    one_each = sorted({IDENTITIES[n]: n for n in reversed(names)}.values())
    same = [(a, b) for a, b in itertools.combinations(names, 2) if IDENTITIES[a] == IDENTITIES[b]]
    for a, b in same + list(itertools.combinations(one_each, 2)):
        comparison = compare_images(engine, [photos[a], photos[b]])
        assert comparison.threshold == threshold and comparison.recognizer == REC
        assert comparison.same_person == (IDENTITIES[a] == IDENTITIES[b]), (a, b, comparison.similarity)
        assert [s.chosen for s in comparison.sides] == [LARGEST, LARGEST]
        assert not any(s.ambiguous for s in comparison.sides)


def test_a_request_threshold_decides_the_verdict(engine, image_bytes):
    pair = [image_bytes("person_a_1.jpg"), image_bytes("person_a_2.jpg")]
    same = compare_images(engine, pair)
    assert same.same_person
    stricter = compare_images(engine, pair, CompareRequest(threshold=min(1.0, same.similarity + 0.01)))
    assert not stricter.same_person and stricter.similarity == pytest.approx(same.similarity, abs=1e-6)


def test_several_faces_take_the_largest_and_say_so(engine, image_bytes):
    two = image_bytes("two_people.jpg")
    faces = extract(engine, [two], None).images[0].faces
    comparison = compare_images(engine, [two, image_bytes("biden.jpg")])
    first, second = comparison.sides
    assert first.ambiguous and first.used == (largest(faces),) and len(first.faces) == 2
    assert not second.ambiguous


def test_every_pair_and_a_requested_face(engine, image_bytes):
    two = image_bytes("two_people.jpg")
    every = compare_images(engine, [two, two], CompareRequest(all_pairs=True))
    assert [s.chosen for s in every.sides] == [ALL, ALL] and every.scores.shape == (2, 2)
    pairs = every.pairs()
    assert [(p.a, p.b) for p in pairs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(p.same_person == (p.a == p.b) for p in pairs)  # each face is itself, not the other
    assert every.best in ((0, 0), (1, 1)) and every.similarity == pytest.approx(1.0, abs=1e-3)
    asked = compare_images(engine, [two, two], CompareRequest(face_indices=(0, 1)))
    assert [s.chosen for s in asked.sides] == [REQUESTED, REQUESTED] and asked.best == (0, 1)
    assert not asked.same_person


def test_an_unusable_image_is_refused_with_its_reason(engine, image_bytes):
    biden = image_bytes("biden.jpg")
    with pytest.raises(SideError) as bad:
        compare_images(engine, [biden, b"not an image"])
    assert (bad.value.image, bad.value.code) == (1, "bad_image")
    _, blank = cv2.imencode(".png", np.full((200, 200, 3), 127, np.uint8))
    with pytest.raises(SideError) as none:
        compare_images(engine, [blank.tobytes(), biden])
    assert (none.value.image, none.value.code, none.value.reason) == (0, "no_face", "no face found")
    with pytest.raises(NoSuchFaceError) as missing:
        compare_images(engine, [biden, biden], CompareRequest(face_indices=(None, 1)))
    assert (missing.value.image, missing.value.found, missing.value.code) == (1, 1, "no_such_face")


def test_embeddings_compare_as_the_images_do(engine, image_bytes):
    pair = [image_bytes("person_b_1.jpg"), image_bytes("person_b_2.jpg")]
    vectors = [r.faces[0].embedding for r in extract(engine, pair).images]
    a, b = (unit_vector([float(v) * 3 for v in vec], i, engine.recognizer.size) for i, vec in enumerate(vectors))
    by_vector = compare_vectors(engine, a, b)
    assert by_vector.same_person and by_vector.sides is None and by_vector.pairs() == []
    assert by_vector.similarity == pytest.approx(compare_images(engine, pair).similarity, abs=1e-4)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0, 2.0], "embeddings[0] must be a list of 4 numbers"),
        ([0.0] * 4, "embeddings[0] must be finite and non-zero"),
        ([float("inf"), 1.0, 1.0, 1.0], "embeddings[0] must be finite and non-zero"),
        ([10**400, 1, 1, 1], "embeddings[0] must be finite and non-zero"),
    ],
)
def test_a_vector_that_cannot_be_compared_says_why(values, message):
    with pytest.raises(EmbeddingError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        unit_vector(values, 0, 4)
    assert error.value.code == "bad_embedding"


def test_huge_vectors_still_normalise():
    vector = unit_vector([1e300, 1e300, 0.0, 0.0], 0, 4)
    assert np.isfinite(vector).all() and float(np.linalg.norm(vector)) == pytest.approx(1.0)
