"""The application layer's image use cases (facefleet.app: extract, draw, the which-face and threshold rules)
on the real models and photos, with no HTTP server and no Flask: what /extract, /draw_detections, the
galleries and `facefleet detect` all call."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError, replace

import cv2
import numpy as np
import pytest

from facefleet.app.draw import DrawRequest, annotate, draw
from facefleet.app.extract import ExtractRequest, extract
from facefleet.app.faces import ALL, LARGEST, ONE_FACE, REQUESTED, choose, detection_threshold, largest
from facefleet.app.faces import verification_threshold as verify_rule
from facefleet.engine.decode import decode_image
from facefleet.engine.pipeline import Face, FaceEngine, largest_first
from facefleet.errors import ImageError
from facefleet.models.thresholds import DEFAULT_DET_THRESHOLD, DEFAULT_VERIFY_THRESHOLD, det_threshold
from tests.conftest import FACE_COUNTS

DET, REC = "scrfd_2.5g", "mobilefacenet"


@pytest.fixture(scope="module")
def engine(engine_factory) -> FaceEngine:
    return engine_factory(DET, REC)


def test_extract_finds_the_known_faces_of_every_shared_photo(engine, image_bytes):
    names = sorted(FACE_COUNTS)
    found = extract(engine, [image_bytes(n) for n in names])
    assert found.ok and len(found.images) == len(names)
    assert {n: len(r.faces) for n, r in zip(names, found.images, strict=True)} == FACE_COUNTS
    faces = [f for r in found.images for f in r.faces]
    assert all(f.embedding is not None and abs(float(np.linalg.norm(f.embedding)) - 1) < 1e-3 for f in faces)
    assert found.threshold == engine.detector.spec.det_threshold  # no request, no setting: the manifest's
    ms = found.timings.ms()
    assert all(ms[s] > 0 for s in ("decode", "det_run", "align", "rec_run"))


def test_extract_options_filter_and_keep_what_was_asked(engine, image_bytes):
    solvay = image_bytes("solvay_conference_1927.png")
    every = extract(engine, [solvay], ExtractRequest(embed=False)).images[0].faces
    assert len(every) == 29 and all(f.embedding is None and f.crop is None for f in every)
    sizes = sorted((f.size for f in every), reverse=True)
    areas = sorted((f.area for f in every), reverse=True)

    three = extract(engine, [solvay], ExtractRequest(embed=False, limit_faces=3, keep_crops=True)).images[0].faces
    assert [round(f.area, 3) for f in three] == [round(a, 3) for a in areas[:3]]  # the largest, largest first
    assert [f.num_det for f in three] == [0, 1, 2]  # numbered after the limit, as InsightFace-REST
    assert all(f.crop is not None and f.crop.shape == (112, 112, 3) for f in three)

    cut = sizes[10]
    big = extract(engine, [solvay], ExtractRequest(embed=False, min_face_size=cut)).images[0].faces
    assert len(big) == sum(s >= cut for s in sizes)


def test_a_bad_input_fails_alone(engine, image_bytes):
    found = extract(engine, [b"not an image", ImageError("cannot read it"), image_bytes("biden.jpg")])
    assert [r.ok for r in found.images] == [False, False, True] and not found.ok
    assert [r.error.code for r in found.images[:2] if r.error] == ["bad_image", "bad_image"]
    assert len(found.images[2].faces) == 1


def test_embed_only_takes_each_input_as_one_aligned_face(engine, image_bytes):
    crop = extract(engine, [image_bytes("biden.jpg")], ExtractRequest(keep_crops=True)).images[0].faces[0]
    assert crop.crop is not None and crop.embedding is not None
    again = extract(engine, [crop.crop], ExtractRequest(embed_only=True))
    assert again.threshold is None and len(again.images[0].faces) == 1
    vector = again.images[0].faces[0].embedding
    assert vector is not None and float(vector @ crop.embedding) > 0.99


def test_requests_and_results_are_frozen():
    with pytest.raises(FrozenInstanceError):
        ExtractRequest().threshold = 0.1  # type: ignore[misc]


def _face(side: float, x: float = 0) -> Face:
    return Face(np.array([x, 0, x + side, side], np.float32), 0.9, np.zeros((5, 2), np.float32))


def test_the_which_face_rule_is_the_largest_first_of_equals():
    faces = [_face(10), _face(30, 50), _face(30, 100), _face(20)]
    assert list(largest_first(np.array([f.size for f in faces]))) == [1, 2, 3, 0]
    assert largest(faces) == 1
    assert choose(faces, None, False).used == (1,) and choose(faces, None, False).chosen == LARGEST
    assert choose(faces, None, False).ambiguous
    assert choose(faces, 3, False).used == (3,) and choose(faces, 3, False).chosen == REQUESTED
    assert choose(faces, None, True).used == (0, 1, 2, 3) and choose(faces, None, True).chosen == ALL
    assert not choose(faces[:1], None, False).ambiguous
    with pytest.raises(ValueError):
        largest([])


def test_the_engine_limit_keeps_the_face_the_rule_chooses(engine, image_bytes):
    """limit_faces=ONE_FACE (enrolment) and `largest` (compare, verify) pick the same face."""
    image = image_bytes("two_people.jpg")
    every = extract(engine, [image], ExtractRequest(embed=False)).images[0].faces
    one = extract(engine, [image], ExtractRequest(embed=False, limit_faces=ONE_FACE)).images[0].faces
    assert len(every) == 2 and len(one) == 1
    assert np.array_equal(one[0].bbox, every[largest(every)].bbox)


def test_threshold_rule_request_over_setting_over_manifest_over_default(engine, engine_factory, make_settings):
    det, rec = engine.detector.spec, engine.recognizer.spec
    assert detection_threshold(engine) == det.det_threshold
    assert detection_threshold(engine, 0.0) == 0.0  # 0 is a request, not "none"
    assert verify_rule(engine) == rec.verify_threshold
    assert verify_rule(engine, 0.9) == 0.9
    configured = engine_factory(DET, REC, det_threshold=0.33, verify_threshold=0.25)
    assert detection_threshold(configured) == 0.33 and detection_threshold(configured, 0.8) == 0.8
    assert verify_rule(configured) == 0.25 and verify_rule(configured, 0.6) == 0.6
    assert configured.detector.threshold == 0.33 and configured.recognizer.threshold == 0.25
    detector_only = FaceEngine.from_settings(make_settings(det_name=DET, rec_name=REC), with_recognizer=False)
    assert verify_rule(detector_only) == DEFAULT_VERIFY_THRESHOLD  # no recognizer: the global default
    assert det_threshold(replace(det, det_threshold=None), None) == DEFAULT_DET_THRESHOLD  # no manifest value


def test_a_request_threshold_changes_what_is_found(engine, image_bytes):
    solvay = [image_bytes("solvay_conference_1927.png")]
    strict = extract(engine, solvay, ExtractRequest(threshold=0.95, embed=False))
    assert strict.threshold == 0.95
    assert all(f.score >= 0.95 for f in strict.images[0].faces)
    assert len(strict.images[0].faces) < 29


def test_draw_returns_a_jpeg_of_the_image_with_its_faces(engine, image_bytes):
    image = decode_image(image_bytes("two_people.jpg"))
    drawing = draw(engine, image, DrawRequest(sizes=True))
    assert drawing.jpeg[:3] == b"\xff\xd8\xff"
    decoded = cv2.imdecode(np.frombuffer(drawing.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape
    assert len(drawing.found.images[0].faces) == 2
    assert all(f.embedding is None for f in drawing.found.images[0].faces)  # drawing embeds nothing
    canvas = annotate(image, drawing.found.images[0].faces)
    assert canvas.shape == image.shape and not np.array_equal(canvas, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    nobody = draw(engine, image, DrawRequest(ExtractRequest(embed=False, threshold=1.0)))
    assert nobody.found.images[0].faces == [] and nobody.jpeg[:3] == b"\xff\xd8\xff"


def test_the_use_cases_and_the_contract_load_without_flask_or_the_api():
    """The CLI and the benchmarks call these; the HTTP adapter must not come with them."""
    code = (
        "import sys, facefleet.app.extract, facefleet.app.draw, facefleet.app.compare, facefleet.contract.faces\n"
        "print(sorted(m for m in sys.modules if m == 'flask' or m.startswith('facefleet.api')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
