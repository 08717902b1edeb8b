"""The OpenVINO execution provider for real (onnxruntime-openvino, x86_64): the chain openvino,cpu opens
on OpenVINO and answers as the CPU provider does, `fastest` times both and keeps the faster, a broken
OpenVINO attempt falls to the CPU with its reason, and a served /info (keys on) tells it all.

Runs only in a venv with the `openvino` extra (bash .ci/run bootstraps .cache/venv-openvino for it:
onnxruntime-openvino installs the same `onnxruntime` module as the CPU wheel, they cannot share a venv);
skipped elsewhere. tests/test_provider_choice.py covers the chain where OpenVINO is not offered.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import requests

from facefleet.engine import gpuprobe
from facefleet.engine.align import align_all
from facefleet.engine.loader import load_model
from facefleet.engine.pipeline import FaceEngine
from facefleet.engine.runtime import open_session
from facefleet.models.manifest import load_manifest
from facefleet.ops.bench import bench_providers, table

from .conftest import decode_file
from .server import Service, keyed_cpu_service, metric_samples

pytestmark = pytest.mark.skipif(
    "OpenVINOExecutionProvider" not in ort.get_available_providers(),
    reason="needs onnxruntime-openvino (the `openvino` extra, x86_64): bash .ci/run's OpenVINO step makes that venv",
)

KEY = "openvino-test-key-of-issue-20-0001"
DET, REC = "scrfd_2.5g", "mobilefacenet"
PHOTOS = ("two_people.jpg", "obama.jpg", "person_a_1.jpg")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


@pytest.fixture(scope="module")
def engines(make_settings) -> tuple[FaceEngine, FaceEngine]:
    """(CPU provider, OpenVINO first) engines of the same two models."""
    cpu = FaceEngine.from_settings(make_settings(det_name=DET, rec_name=REC))
    openvino = FaceEngine.from_settings(
        make_settings(det_name=DET, rec_name=REC, providers=("openvino", "cpu"), provider_choice="first")
    )
    return cpu, openvino


def test_the_chain_opens_on_openvino_and_its_nodes_run_there(engines):
    _, openvino = engines
    for model in (openvino.detector, openvino.recognizer):
        report = model.slot.opened.report()
        assert report["active_provider"] == "openvino", report["attempts"]
        assert report["choice"]["mode"] == "first" and report["choice"]["chosen"] == "openvino"
        nodes = report["node_placement"]["nodes"]
        assert nodes.get("OpenVINOExecutionProvider", 0) > 0, nodes
        assert report["partial_fallback"] is False, nodes


def test_openvino_answers_match_the_cpu_provider(engines, images_dir: Path):
    cpu, openvino = engines
    for name in PHOTOS:
        image = decode_file(images_dir / name)
        found, found_ov = cpu.detector.detect([image])[0], openvino.detector.detect([image])[0]
        assert len(found) == len(found_ov) > 0, name
        for box in found.boxes:
            assert max(iou(box, other) for other in found_ov.boxes) >= 0.99, name
        crops = align_all(image, found.landmarks)
        embedded, embedded_ov = cpu.recognizer.embed(crops)[0], openvino.recognizer.embed(crops)[0]
        cosines = np.sum(embedded * embedded_ov, axis=1)
        assert cosines.min() >= 0.999, (name, cosines)


def _open(path: Path, make_settings, **overrides):
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return open_session(path, sha, make_settings(**overrides), (640, 640))


def test_fastest_times_both_providers_and_keeps_the_faster(shared_models: Path, make_settings):
    opened = _open(shared_models / "scrfd_2.5g.onnx", make_settings, providers=("openvino", "cpu"))
    choice = opened.report()["choice"]
    assert choice["mode"] == "fastest", "the default of a chain naming openvino"
    measured = {c["provider"]: c for c in choice["candidates"]}
    assert set(measured) == {"openvino", "cpu"} and choice["runs"] >= 3
    assert all(0 < c["min_ms"] <= c["median_ms"] for c in measured.values())
    winner = min(measured.values(), key=lambda c: c["median_ms"])["provider"]
    assert choice["chosen"] == winner == opened.provider, choice
    loser = next(a for a in opened.attempts if a.provider != winner)
    assert loser.ok and "not chosen" in loser.reason and not opened.fell_back
    assert "fastest median" in choice["why"] and "MiB" in choice["why"]
    # what each candidate's session holds: OpenVINO's compiled model keeps its own copy of the weights
    assert measured["openvino"]["resident_mib"] > measured["cpu"]["resident_mib"] > 0, measured


@pytest.mark.skipif(Path("/dev/dri").exists(), reason="this host may have an Intel GPU for OpenVINO")
def test_a_broken_openvino_attempt_falls_to_the_cpu_with_its_reason(shared_models: Path, make_settings):
    """No Intel GPU here: OpenVINO's GPU device is the real failure (onnxruntime quietly builds a CPU
    session and logs OpenVINO's error; the chain catches both)."""
    opened = _open(
        shared_models / "mobilefacenet.onnx", make_settings, providers=("openvino", "cpu"), openvino_device="GPU"
    )
    assert opened.provider == "cpu" and opened.fell_back
    attempt = opened.attempts[0]
    assert attempt.provider == "openvino" and not attempt.ok
    assert "fell back silently" in attempt.reason and "GPU" in attempt.reason, attempt.reason
    assert opened.report()["choice"]["chosen"] == "cpu"


def test_a_file_openvino_refuses_is_served_by_the_cpu_with_openvinos_cause(default_pack: Path, make_settings):
    """The default pack's SFace int8bq: OpenVINO's ONNX front end refuses its blocked DequantizeLinear."""
    settings = make_settings(models_dir=str(default_pack), providers=("openvino", "cpu"))
    opened, _ = load_model(load_manifest().get("sface_2021dec_int8bq"), settings)
    assert opened.provider == "cpu" and opened.fell_back
    attempt = opened.attempts[0]
    assert attempt.provider == "openvino" and not attempt.ok
    assert attempt.reason.startswith("session creation failed: OpenVINO: "), attempt.reason
    assert "dequantization scale" in attempt.reason and "DequantizeLinear)" in attempt.reason
    assert "std::" not in attempt.reason, "OpenVINO's C++ signatures are not a reason"


def test_the_probe_names_a_missing_device_plugin(tmp_path: Path):
    """A build folder without OpenVINO's CPU plugin (the rest of the real build linked in)."""
    capi = gpuprobe.capi_dir()
    for item in capi.iterdir():
        if item.name != gpuprobe.OPENVINO_PLUGINS["CPU"]:
            (tmp_path / item.name).symlink_to(item)
    assert gpuprobe.openvino_problem("CPU", folder=capi) is None
    reason = gpuprobe.openvino_problem("CPU", folder=tmp_path)
    assert reason and "no OpenVINO CPU plugin" in reason and "libopenvino_intel_cpu_plugin.so" in reason


def test_bench_providers_times_openvino_beside_the_cpu(make_settings):
    settings = make_settings(providers=("openvino", "cpu"))
    report = bench_providers(settings, ["mobilefacenet"], runs=3, warmup=1)
    rows = {row["provider"]: row for row in report["models"]["mobilefacenet"]}
    assert set(rows) == {"openvino", "cpu"} and rows["cpu"]["speedup"] == 1.0
    assert rows["openvino"]["speedup"] == round(rows["cpu"]["mean_ms"] / rows["openvino"]["mean_ms"], 2)
    assert report["fastest"]["mobilefacenet"] == min(rows.values(), key=lambda r: r["median_ms"])["provider"]
    assert f"fastest: {report['fastest']['mobilefacenet']} (median" in table(report)


def test_bench_providers_times_a_model_openvino_refuses_on_the_cpu_and_says_why(default_pack: Path, make_settings):
    """verify.yml's provider benchmark on an x86 appliance of the default pack: SFace is refused by OpenVINO, the
    CPU row stays, the refusal is listed with OpenVINO's cause, the other models are timed on both."""
    settings = make_settings(models_dir=str(default_pack), providers=("openvino", "cpu"))
    report = bench_providers(settings, ["yunet_2023mar_int8bq", "sface_2021dec_int8bq"], runs=2, warmup=1)
    assert [row["provider"] for row in report["models"]["sface_2021dec_int8bq"]] == ["cpu"]
    assert {row["provider"] for row in report["models"]["yunet_2023mar_int8bq"]} == {"openvino", "cpu"}
    refusal = report["refused"]["sface_2021dec_int8bq"]["openvino"]
    assert refusal.startswith("session creation failed: OpenVINO: ") and "dequantization scale" in refusal
    assert f"openvino: refused sface_2021dec_int8bq: {refusal}" in table(report)


@pytest.fixture(scope="module")
def served(shared_models: Path, cache_dir: Path, tmp_path_factory) -> Iterator[Service]:
    folder = tmp_path_factory.mktemp("openvino-served")
    env = {"FACEFLEET_PROVIDERS": "openvino,cpu", "FACEFLEET_DET_NAME": DET, "FACEFLEET_REC_NAME": REC}
    service = keyed_cpu_service(shared_models, cache_dir, folder, KEY, **env)
    try:
        yield service
    finally:
        service.stop()


@pytest.mark.slow
def test_served_info_shows_each_models_choice_and_figures(served: Service, images_dir: Path):
    assert requests.get(f"{served.url}/info", timeout=30).status_code == 401, "keys are on"
    info = requests.get(f"{served.url}/info", headers={"X-API-Key": KEY}, timeout=30).json()
    assert info["defaults"]["providers"] == ["openvino", "cpu"] and info["defaults"]["provider_choice"] == "fastest"
    for task in ("detection", "recognition"):
        model = info["models"][task]
        choice = model["choice"]
        assert {c["provider"] for c in choice["candidates"]} == {"openvino", "cpu"}, model
        assert model["active_provider"] == choice["chosen"]
        # each candidate's memory beside its time: OpenVINO's compiled copy of the weights costs more
        resident = {c["provider"]: c["resident_mib"] for c in choice["candidates"]}
        assert all(mib > 0 for mib in resident.values()) and resident["openvino"] > resident["cpu"], resident
    photo = base64.b64encode((images_dir / "two_people.jpg").read_bytes()).decode()
    body = {"images": {"data": [photo]}}
    answer = requests.post(f"{served.url}/extract", json=body, headers={"X-API-Key": KEY}, timeout=60)
    assert answer.status_code == 200 and len(answer.json()["data"][0]["faces"]) == 2, answer.text
    # the metrics name each model's provider with the short label the rest of the chain uses
    samples = metric_samples(requests.get(f"{served.url}/metrics", timeout=10).text, "facefleet_model_provider")
    for task in ("detection", "recognition"):
        model = info["models"][task]
        label = f'{{model="{model["name"]}",provider="{model["active_provider"]}",task="{task}"}}'
        assert samples.get(label) == 1.0, (label, samples)
