"""`facefleet models quantize`: INT8 copies that still find the same faces and tell people apart."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import onnx
import pytest

from facefleet.app.quantize import calibration_images, output_heads, quantize, ready_for_quantization
from facefleet.engine.align import align_all
from facefleet.engine.detector import Detector
from facefleet.engine.loader import load_model
from facefleet.engine.recognizer import Recognizer
from facefleet.errors import FacefleetError
from facefleet.models.manifest import load_manifest
from facefleet.settings import Settings

from .conftest import IDENTITIES, decode_file
from .test_cli import run


@pytest.fixture(scope="module")
def int8(shared_models, images_dir, tmp_path_factory) -> Settings:
    """scrfd_2.5g and mobilefacenet, each statically quantized, in a copy of the models folder."""
    folder = tmp_path_factory.mktemp("int8")
    for name in ("scrfd_2.5g.onnx", "mobilefacenet.onnx"):
        shutil.copy(shared_models / name, folder / name)
    settings = Settings.of(
        models_dir=str(folder), cache_dir=str(folder / "cache"), providers=("cpu",), det_name="scrfd_2.5g"
    )
    photos = calibration_images(images_dir, 8)
    manifest = load_manifest()
    for name in ("scrfd_2.5g", "mobilefacenet"):
        assert quantize(manifest.get(name), settings, "static", photos) == folder / f"{name}.int8.onnx"
    return settings


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
