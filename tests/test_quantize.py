"""`facefleet models quantize`: INT8 copies that still find the same faces and tell people apart."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from facefleet.app.int8gate import gate
from facefleet.app.quantize import (
    BlobReader,
    calibration_blobs,
    calibration_images,
    output_heads,
    quantize,
    ready_for_quantization,
)
from facefleet.engine.align import align_all
from facefleet.engine.detector import Detector
from facefleet.engine.loader import load_model
from facefleet.engine.recognizer import Recognizer
from facefleet.errors import FacefleetError, ModelError
from facefleet.models.gatefile import gate_path, read_report
from facefleet.models.manifest import load_manifest
from facefleet.models.modelfiles import file_sha256
from facefleet.settings import Settings

from .conftest import IDENTITIES, decode_file
from .test_cli import run


@pytest.fixture(scope="module")
def int8(shared_models, labelled_images, tmp_path_factory) -> Settings:
    """scrfd_2.5g and mobilefacenet, each statically quantized and through its accuracy gate on every
    shared photo (the people labelled), in a copy of the models folder."""
    folder = tmp_path_factory.mktemp("int8")
    for name in ("scrfd_2.5g.onnx", "mobilefacenet.onnx"):
        shutil.copy(shared_models / name, folder / name)
    settings = Settings.of(
        models_dir=str(folder), cache_dir=str(folder / "cache"), providers=("cpu",), det_name="scrfd_2.5g"
    )
    photos = calibration_images(labelled_images, 8)
    everything = calibration_images(labelled_images, 100)
    manifest = load_manifest()
    for name in ("scrfd_2.5g", "mobilefacenet"):
        path, report = quantize(manifest.get(name), settings, "static", photos, everything)
        assert path == folder / f"{name}.int8.onnx" and report.passed, report.reason
    return settings


def test_the_gate_judged_every_photo_and_every_labelled_pair(int8):
    """Detection: all 12 photos (29 faces on Solvay), each face found again at IoU >= 0.9. Recognition: all
    45 pairs of the 10 labelled one-face photos, verdicts unchanged, both margins positive, in the report."""
    folder = Path(int8.models.models_dir)
    det = read_report(folder / "scrfd_2.5g.int8.onnx")
    rec = read_report(folder / "mobilefacenet.int8.onnx")
    assert det is not None and rec is not None
    assert det.passed and len(det.checks) == 12 and det.figures["iou_min"] >= 0.9
    assert any(c.name == "solvay_conference_1927.png" and c.detail.startswith("29 faces") for c in det.checks)
    assert rec.passed and rec.figures["pairs"] == 45 and rec.figures["genuine_pairs"] == 8
    assert rec.figures["margin_fp32"] > 0.3 and rec.figures["margin_int8"] > 0.3
    assert det.int8_sha256 == file_sha256(folder / "scrfd_2.5g.int8.onnx")


def test_a_copy_that_loses_faces_fails_its_gate_and_is_never_loaded(int8, labelled_images, tmp_path):
    """The detector quantized with its score heads too (what the FP32 heads avoid): small faces fall under
    the threshold on the crowd photo, so the gate fails, nothing is installed and the name is refused."""
    settings = Settings.of(
        models_dir=str(tmp_path), cache_dir=int8.models.cache_dir, providers=("cpu",), det_name="scrfd_2.5g"
    )
    shutil.copy(Path(int8.models.models_dir) / "scrfd_2.5g.onnx", tmp_path)
    spec = load_manifest().get("scrfd_2.5g")
    candidate = tmp_path / "candidate.onnx"
    pre = tmp_path / "pre.onnx"
    quant_pre_process(str(tmp_path / "scrfd_2.5g.onnx"), str(pre), skip_symbolic_shape=True)
    ready_for_quantization(pre)
    photos = calibration_images(labelled_images, 8)
    blobs = calibration_blobs(spec, settings, photos)
    quantize_static(
        str(pre),
        str(candidate),
        BlobReader(spec.input_name, blobs),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    report = gate(spec, candidate, settings, calibration_images(labelled_images, 100))
    assert not report.passed and "solvay_conference_1927.png" in report.reason
    # Installed under the copy's name with that report: refused at load, with the gate's reason.
    shutil.copy(candidate, tmp_path / "scrfd_2.5g.int8.onnx")
    gate_path(tmp_path / "scrfd_2.5g.int8.onnx").write_text(report.to_json())
    with pytest.raises(ModelError, match=r"failed its accuracy gate .*solvay"):
        load_model(load_manifest().get("scrfd_2.5g@int8"), settings)


def test_a_copy_changed_after_its_gate_or_without_a_report_is_refused(int8, tmp_path):
    folder = Path(int8.models.models_dir)
    for name in ("mobilefacenet.int8.onnx", "mobilefacenet.int8.gate.json"):
        shutil.copy(folder / name, tmp_path / name)
    settings = Settings.of(models_dir=str(tmp_path), cache_dir=int8.models.cache_dir, providers=("cpu",))
    spec = load_manifest().get("mobilefacenet@int8")
    model = onnx.load(str(tmp_path / "mobilefacenet.int8.onnx"))
    model.doc_string = "changed"
    onnx.save(model, str(tmp_path / "mobilefacenet.int8.onnx"))
    with pytest.raises(ModelError, match="changed after its accuracy gate"):
        load_model(spec, settings)
    gate_path(tmp_path / "mobilefacenet.int8.onnx").unlink()
    with pytest.raises(ModelError, match=r"accuracy gate report\) is missing; run `facefleet models quantize"):
        load_model(spec, settings)


def _open(name: str, settings: Settings) -> Detector | Recognizer:
    spec = load_manifest().get(name)
    cls = Detector if spec.task == "detection" else Recognizer
    return cls(spec, load_model(spec, settings)[0], settings)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_int8_detector_finds_the_faces_fp32_finds(int8, images_dir):
    fp32, q8 = _open("scrfd_2.5g", int8), _open("scrfd_2.5g@int8", int8)
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(q8.opened.model_path).graph.node)
    for name in ("solvay_conference_1927.png", "two_people.jpg", "obama.jpg"):
        image = decode_file(images_dir / name)
        want, got = fp32.detect([image])[0], q8.detect([image])[0]
        assert len(got) == len(want), name
        assert min(max(_iou(w, g) for g in got.boxes) for w in want.boxes) > 0.85, name


def test_int8_recognizer_keeps_same_and_different_people_apart(int8, images_dir):
    detector, fp32, q8 = _open("scrfd_2.5g", int8), _open("mobilefacenet", int8), _open("mobilefacenet@int8", int8)
    crops = {}
    for name in IDENTITIES:
        image = decode_file(images_dir / name)
        crops[name] = align_all(image, detector.detect([image])[0].landmarks[:1])[0]
    e32, e8 = fp32.embed(list(crops.values()))[0], q8.embed(list(crops.values()))[0]
    assert np.min(np.sum(e32 * e8, axis=1)) > 0.95
    names = list(crops)
    same, different = [], []
    for i, j in itertools.combinations(range(len(names)), 2):
        (same if IDENTITIES[names[i]] == IDENTITIES[names[j]] else different).append(float(e8[i] @ e8[j]))
    assert min(same) > max(different)


def test_quantizing_twice_or_without_photos_is_refused_clearly(int8, tmp_path):
    with pytest.raises(FacefleetError, match="already quantized"):
        quantize(load_manifest().get("mobilefacenet@int8"), int8, "dynamic", [])
    with pytest.raises(FacefleetError, match="INT8 copies are made of detectors and recognizers"):
        quantize(load_manifest().get("genderage_v1"), int8, "static", [])
    with pytest.raises(FacefleetError, match="no calibration photos"):
        calibration_images(tmp_path, 8)
    env = {"FACEFLEET_MODELS_DIR": int8.models.models_dir, "FACEFLEET_CACHE_DIR": int8.models.cache_dir}
    proc = run("models", "quantize", "mobilefacenet", env_extra=env)
    assert proc.returncode == 2 and "--images DIR" in proc.stderr and "Traceback" not in proc.stderr
    missing = run("bench", "providers", "scrfd_500m@int8", "--runs", "1", env_extra=env)
    assert missing.returncode != 0 and "facefleet models quantize scrfd_500m" in missing.stderr


def test_models_are_readied_for_per_channel_quantization(tmp_path, shared_models):
    """Opset 11 files get opset 13 (DequantizeLinear's axis) and every node a name (exclusions)."""
    model = onnx.load(str(shared_models / "scrfd_2.5g.onnx"))
    for node in model.graph.node[:5]:
        node.name = ""
    onnx.save(model, str(tmp_path / "m.onnx"))
    ready_for_quantization(tmp_path / "m.onnx")
    ready = onnx.load(str(tmp_path / "m.onnx"))
    assert next(o.version for o in ready.opset_import if o.domain in ("", "ai.onnx")) == 13
    names = [node.name for node in ready.graph.node]
    assert all(names) and len(set(names)) == len(names)
    assert set(output_heads(tmp_path / "m.onnx")) >= {"Conv_134", "Sigmoid_141", "Conv_173"}
