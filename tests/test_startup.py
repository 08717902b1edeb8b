"""Start-up that tells the truth: a model that does not fit its place, fails its warm-up inference, or
is a corrupt file (verification off) leaves the service up but unready, with the reason on /health,
on every engine route and in ONE log line; never a traceback, never a worker boot error (exit 3).
Real model files, real onnxruntime; the wrong-kind case under real gunicorn."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import onnx
import pytest
import requests
from onnx import TensorProto, helper

from facefleet.api import create_app
from facefleet.settings import Settings

from .server import Service, until

DETECTOR = "face_detection_yunet_2023mar_int8bq.onnx"  # the default pack's files
RECOGNIZER = "face_recognition_sface_2021dec_int8bq.onnx"


@pytest.fixture(autouse=True)
def root_log_handlers():
    """create_app points the root logger at the sys.stderr of the moment, capsys's here: put the
    handlers back, or later tests would log into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def models_dir(target: Path, files: dict[str, Path]) -> Path:
    """A models folder where each place's file name holds the given file."""
    target.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copy(source, target / name)
    return target


def unready_answers(client) -> str:
    """The unready app's answers, checked route by route; returns the reason /health gives."""
    assert client.get("/livez").status_code == 200
    health = client.get("/health")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "unready" and body["reason"]
    for method, path in (("post", "/extract"), ("post", "/verify"), ("get", "/galleries"), ("get", "/info")):
        answer = getattr(client, method)(path, json={})
        assert answer.status_code == 503, path
        error = answer.get_json()["error"]
        assert error["code"] == "not_ready" and body["reason"] in error["message"], path
    assert client.get("/metrics").status_code == 200
    return str(body["reason"])


def one_error_line(text: str) -> str:
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text
    assert "Traceback" not in text
    return errors[0]


def app_settings(models: Path, cache_dir: Path, **overrides: object) -> Settings:
    values = {
        "models_dir": str(models),
        "cache_dir": str(cache_dir),
        "gallery_db": str(models / "galleries.sqlite3"),
        "providers": ("cpu",),
        "auth": "off",
        "verify_models": False,
    }
    return Settings.of(**{**values, **overrides})


def failing_detector(path: Path) -> Path:
    """A real ONNX detector in SCRFD's flat layout (9 outputs [N, 1|4|10]) whose every inference fails:
    its first node reshapes the 1 x 3 x H x W image to 7 rows, which 640 x 640 x 3 values cannot fill."""
    image = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "height", "width"])
    nodes = [helper.make_node("Reshape", ["input.1", "seven"], ["rows"])]
    outputs = []
    for stride in (8, 16, 32):
        for kind, width in (("score", 1), ("bbox", 4), ("kps", 10)):
            name = f"{kind}_{stride}"
            nodes.append(helper.make_node("Reshape", ["rows", f"width_{width}"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["anchors", width]))
    shapes = [helper.make_tensor("seven", TensorProto.INT64, [2], [7, -1])]
    shapes += [helper.make_tensor(f"width_{w}", TensorProto.INT64, [2], [-1, w]) for w in (1, 4, 10)]
    graph = helper.make_graph(nodes, "fails_at_run_time", [image], outputs, initializer=shapes)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_a_recognizer_in_the_detectors_place_keeps_the_app_unready(default_pack, cache_dir, tmp_path, capsys):
    models = models_dir(
        tmp_path / "models", {DETECTOR: default_pack / RECOGNIZER, RECOGNIZER: default_pack / RECOGNIZER}
    )
    client = create_app(app_settings(models, cache_dir)).test_client()
    reason = unready_answers(client)
    assert reason.startswith("model yunet_2023mar_int8bq (face_detection_yunet_2023mar_int8bq.onnx) does not fit")
    assert "detector's place" in reason and "fc1 [1, 128]" in reason
    assert reason in one_error_line(capsys.readouterr().err)


def test_a_model_that_fails_its_warm_up_keeps_the_app_unready(shared_models, cache_dir, tmp_path, capsys):
    models = models_dir(tmp_path / "models", {"mobilefacenet.onnx": shared_models / "mobilefacenet.onnx"})
    failing_detector(models / "scrfd_500m.onnx")
    settings = app_settings(models, cache_dir, det_name="scrfd_500m", rec_name="mobilefacenet")
    reason = unready_answers(create_app(settings).test_client())
    assert reason.startswith("no provider could run scrfd_500m.onnx: cpu: warm-up failed:") and "Reshape" in reason
    assert reason in one_error_line(capsys.readouterr().err)


def test_a_corrupt_model_file_with_verification_off_is_one_line(default_pack, cache_dir, tmp_path, capsys):
    models = models_dir(tmp_path / "models", {DETECTOR: default_pack / DETECTOR})
    (models / RECOGNIZER).write_bytes((default_pack / RECOGNIZER).read_bytes()[:50_000])  # cut short
    reason = unready_answers(create_app(app_settings(models, cache_dir)).test_client())
    assert RECOGNIZER in reason
    assert reason in one_error_line(capsys.readouterr().err)


def test_a_detector_in_the_recognizers_place_leaves_gunicorn_up_and_unready(default_pack, cache_dir, tmp_path):
    """Before: /health said 200 and every /extract was a 500 (or the worker failed to boot: exit 3)."""
    models = models_dir(tmp_path / "models", {DETECTOR: default_pack / DETECTOR, RECOGNIZER: default_pack / DETECTOR})
    env = {
        "FACEFLEET_MODELS_DIR": str(models),
        "FACEFLEET_CACHE_DIR": str(cache_dir),
        "FACEFLEET_METRICS_DIR": str(tmp_path / "metrics"),
        "FACEFLEET_GALLERY_DB": str(tmp_path / "galleries.sqlite3"),
        "FACEFLEET_PROVIDERS": "cpu",
        "FACEFLEET_VERIFY_MODELS": "false",
        "FACEFLEET_WORKERS": "1",
    }
    service = Service(env, tmp_path / "service.log")
    try:
        until("the service to answer", lambda: requests.get(f"{service.url}/livez", timeout=5).ok, timeout=120)
        health = requests.get(f"{service.url}/health", timeout=10)
        assert health.status_code == 503 and health.json()["status"] == "unready"
        reason = health.json()["reason"]
        assert "sface_2021dec_int8bq" in reason and "does not fit the recognizer's place" in reason
        extract = requests.post(f"{service.url}/extract", json={"images": {"data": ["x"]}}, timeout=10)
        assert extract.status_code == 503 and extract.json()["error"]["code"] == "not_ready"
        assert requests.get(f"{service.url}/metrics", timeout=10).status_code == 200
        assert service.proc.poll() is None  # gunicorn's master is still there: no boot error, no exit 3
        assert reason in one_error_line(service.log.read_text())
    finally:
        service.stop()


@pytest.mark.parametrize(("place", "source"), [("detector", "mobilefacenet.onnx"), ("recognizer", "scrfd_500m.onnx")])
def test_shared_models_of_the_wrong_kind_are_named_by_the_role_check(shared_models, cache_dir, tmp_path, place, source):
    """The flat SCRFD and the 128-d MobileFaceNet, each in the other's place (both open and warm up fine)."""
    files = {
        "scrfd_500m.onnx": shared_models / "scrfd_500m.onnx",
        "mobilefacenet.onnx": shared_models / "mobilefacenet.onnx",
    }
    files["scrfd_500m.onnx" if place == "detector" else "mobilefacenet.onnx"] = shared_models / source
    models = models_dir(tmp_path / "models", files)
    settings = app_settings(models, cache_dir, det_name="scrfd_500m", rec_name="mobilefacenet")
    reason = unready_answers(create_app(settings).test_client())
    assert f"does not fit the {place}'s place" in reason
