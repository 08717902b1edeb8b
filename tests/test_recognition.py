"""Recognition with the real recognizers on the real photos: identities separate, batching is exact."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facefleet.engine.align import ARCFACE_TEMPLATE, align, similarity_transform

from .conftest import IDENTITIES

PAIRS = [
    ("scrfd_2.5g", "mobilefacenet", False),
    ("yunet_2023mar_int8bq", "sface_2021dec_int8bq", True),
]


def _largest_embeddings(engine, image_bytes) -> dict[str, np.ndarray]:
    names = sorted(IDENTITIES)
    results = engine.process([image_bytes(n) for n in names])
    out = {}
    for name, result in zip(names, results, strict=True):
        assert result.ok and result.faces, name
        out[name] = max(result.faces, key=lambda f: f.size).embedding
    return out


@pytest.mark.parametrize(("det", "rec", "default_pack_models"), PAIRS)
def test_every_same_person_pair_scores_above_every_different_pair(
    request, engine_factory, image_bytes, det, rec, default_pack_models
):
    overrides = {"models_dir": str(request.getfixturevalue("default_pack"))} if default_pack_models else {}
    engine = engine_factory(det, rec, **overrides)
    emb = _largest_embeddings(engine, image_bytes)
    same, different = [], []
    for a, b in itertools.combinations(sorted(emb), 2):
        (same if IDENTITIES[a] == IDENTITIES[b] else different).append(float(emb[a] @ emb[b]))
    assert min(same) > max(different)
    threshold = engine.recognizer.spec.verify_threshold
    assert min(same) >= threshold > max(different)
    if rec == "mobilefacenet":  # the known answer of ../shared/models/README.md
        assert min(same) > 0.6 and max(different) < 0.2


def test_embeddings_are_unit_vectors_with_raw_norms(engine_factory, image_bytes):
    result = engine_factory("scrfd_2.5g", "mobilefacenet").process([image_bytes("two_people.jpg")])[0]
    for face in result.faces:
        assert face.embedding.shape == (128,)
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-5)
        assert face.norm > 1.0


def test_batched_and_single_embeddings_agree(engine_factory, image_bytes):
    """mobilefacenet ships with batch 1 and a Reshape to [1, -1]; prepared, a batch must be exact."""
    images = [image_bytes(n) for n in ("two_people.jpg", "biden.jpg", "person_a_1.jpg", "obama2.jpg")]
    batched = engine_factory("scrfd_2.5g", "mobilefacenet", rec_batch_size=8)
    single = engine_factory("scrfd_2.5g", "mobilefacenet", rec_batch_size=1)
    assert batched.recognizer.max_batch == 8 and single.recognizer.max_batch == 1
    a = [f for r in batched.process(images) for f in r.faces]
    b = [f for r in single.process(images) for f in r.faces]
    assert len(a) == len(b) == 5
    for fa, fb in zip(a, b, strict=True):
        assert float(fa.embedding @ fb.embedding) > 0.9999
        np.testing.assert_allclose(fa.bbox, fb.bbox, atol=0.5)


def test_alignment_maps_landmarks_onto_the_arcface_template(engine_factory, image_bytes):
    engine = engine_factory("scrfd_2.5g", "mobilefacenet")
    result = engine.process([image_bytes("obama.jpg")], keep_crops=True)[0]
    face = result.faces[0]
    matrix = similarity_transform(face.landmarks)
    mapped = face.landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 6.0  # 5 real points never fit a template exactly
    assert face.crop.shape == (112, 112, 3)
    # A rotation is undone: turn the photo a quarter (landmarks with it), the crop stays the same.
    from facefleet.engine.decode import decode_image

    image = decode_image(image_bytes("obama.jpg"))
    turned = np.ascontiguousarray(np.rot90(image))  # counter-clockwise: (x, y) -> (y, W - 1 - x)
    points = np.stack([face.landmarks[:, 1], image.shape[1] - 1 - face.landmarks[:, 0]], axis=1)
    crop = align(turned, points)
    assert np.abs(crop.astype(int) - face.crop.astype(int)).mean() < 3.0
