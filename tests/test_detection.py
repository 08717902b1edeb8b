"""Detection on real models and photos, against the known answers of ../shared/models/README.md."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facefleet.engine.detector import Detector
from facefleet.engine.loader import load_model
from facefleet.engine.nms import nms
from facefleet.models.manifest import load_manifest

from .conftest import decode_file

ASTRONAUT = {
    "scrfd_500m": ((180.1, 60.2, 271.6, 179.7), 0.80),
    "scrfd_2.5g": ((180.8, 55.7, 270.8, 178.4), 0.82),
}
ASTRONAUT_KPS_500M = [(204.1, 100.6), (246.8, 103.6), (223.8, 129.2), (202.0, 139.7), (245.7, 142.3)]


def make_detector(make_settings, name: str, **overrides) -> Detector:
    settings = make_settings(**overrides)
    spec = load_manifest().get(name)
    opened, _ = load_model(spec, settings)
    return Detector(spec, opened, settings)


@pytest.mark.parametrize("name", sorted(ASTRONAUT))
def test_astronaut_box_matches_known_answer(make_settings, astronaut, name):
    found = make_detector(make_settings, name).detect([astronaut])[0]
    box, score = ASTRONAUT[name]
    assert len(found) == 1
    np.testing.assert_allclose(found.boxes[0], box, atol=2.0)
    assert found.scores[0] == pytest.approx(score, abs=0.01)


def test_astronaut_keypoints_match_known_answer(make_settings, astronaut):
    found = make_detector(make_settings, "scrfd_500m").detect([astronaut])[0]
    np.testing.assert_allclose(found.landmarks[0], ASTRONAUT_KPS_500M, atol=2.0)


def test_face_counts_with_scrfd_2_5g(make_settings, images_dir):
    detector = make_detector(make_settings, "scrfd_2.5g")
    two, solvay = (decode_file(images_dir / n) for n in ("two_people.jpg", "solvay_conference_1927.png"))
    counts = [len(d) for d in detector.detect([two, solvay])]
    assert counts == [2, 29]


def test_batched_layout_gives_the_same_boxes_as_the_flat_one(make_settings, images_dir, astronaut):
    """scrfd_500m (no batch axis) and its re-export scrfd_500m_bnkps (batch axis, fixed 640)."""
    images = [astronaut, decode_file(images_dir / "two_people.jpg"), decode_file(images_dir / "obama.jpg")]
    flat = make_detector(make_settings, "scrfd_500m").detect(images)
    batched = make_detector(make_settings, "scrfd_500m_bnkps", det_batch_size=3).detect(images)
    for a, b in zip(flat, batched, strict=True):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)


def test_one_run_for_n_images_agrees_with_n_runs(make_settings, images_dir, astronaut):
    names = ["two_people.jpg", "biden.jpg", "person_b_1.jpg"]
    images = [astronaut, *(decode_file(images_dir / n) for n in names)]
    batched = make_detector(make_settings, "scrfd_500m_bnkps", det_batch_size=4)
    single = make_detector(make_settings, "scrfd_500m_bnkps", det_batch_size=1)
    assert batched.max_batch == 4
    for a, b in zip(batched.detect(images), single.detect(images), strict=True):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, atol=0.5)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.5)


def test_fit_policy_pads_to_the_image_aspect_and_finds_the_same_faces(make_settings, images_dir):
    image = decode_file(images_dir / "two_people.jpg")  # 1126 x 661
    fixed = make_detector(make_settings, "scrfd_2.5g", shape_policy="fixed")
    fit = make_detector(make_settings, "scrfd_2.5g", shape_policy="fit")
    from facefleet.engine.shapes import plan

    assert plan(image.shape[:2], fit.det_size, fit.policy).input_hw == (384, 640)
    a, b = fixed.detect([image])[0], fit.detect([image])[0]
    assert len(a) == len(b) == 2
    np.testing.assert_allclose(a.boxes, b.boxes, atol=1.0)


def test_fixed_input_file_forces_fixed_policy(make_settings):
    detector = make_detector(make_settings, "scrfd_500m_bnkps", shape_policy="fit")
    assert (detector.policy, detector.det_size) == ("fixed", (640, 640))


def test_yunet_decoding_matches_opencv_face_detector_yn(make_settings, shared_models, astronaut):
    """OpenCV's own FaceDetectorYN is the reference decoder of YuNet."""
    model = str(shared_models / "yunet_2026may.onnx")
    reference = cv2.FaceDetectorYN.create(model, "", (512, 512), 0.5, 0.4)
    _, faces = reference.detect(cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    ours = make_detector(make_settings, "yunet_2026may", shape_policy="fit", det_size=(512, 512)).detect([astronaut])[0]
    assert len(ours) == len(faces) == 1
    x, y, w, h = faces[0][:4]
    np.testing.assert_allclose(ours.boxes[0], (x, y, x + w, y + h), atol=0.5)
    np.testing.assert_allclose(ours.landmarks[0].reshape(-1), faces[0][4:14], atol=0.5)
    assert ours.scores[0] == pytest.approx(faces[0][14], abs=0.01)


def test_default_pack_yunet_int8_runs_after_prepare(make_settings, default_pack, astronaut, images_dir):
    detector = make_detector(make_settings, "yunet_2023mar_int8bq", models_dir=str(default_pack))
    found = detector.detect([astronaut, decode_file(images_dir / "two_people.jpg")])
    assert [len(f) for f in found] == [1, 2]
    # Known answer (../shared/models/README.md): OpenCV's x, y, w, h = 178.0, 62.6, 90.4, 113.9.
    np.testing.assert_allclose(found[0].boxes[0][:2], (178.0, 62.6), atol=3.0)


def _greedy_reference(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list[int]:
    from facefleet.engine.nms import iou_matrix

    order, kept = list(np.argsort(-scores, kind="stable")), []
    iou = iou_matrix(boxes)
    while order:
        best = order.pop(0)
        kept.append(best)
        order = [j for j in order if iou[best, j] <= thr]
    return kept


@pytest.mark.parametrize("seed", range(20))
def test_vectorised_nms_equals_textbook_greedy_nms(seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (60, 2))
    wh = rng.uniform(10, 80, (60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0, 1, 60)
    assert nms(boxes, scores, 0.3).tolist() == _greedy_reference(boxes, scores, 0.3)


def test_nms_of_nothing_is_nothing():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4).size == 0
