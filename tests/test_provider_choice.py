"""OpenVINO in the chain wherever the build does not offer it (the CPU and GPU wheels), the settings that
choose among providers, and the probe's verdicts that need no OpenVINO build. The real OpenVINO provider is
tests/test_openvino.py's (its own venv)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from facefleet.engine import gpuprobe
from facefleet.engine.runtime import open_session, provider_entry
from facefleet.errors import ConfigError
from facefleet.settings import Settings

OFFERED = ort.get_available_providers()
CUDA_700 = "[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access was encountered"


class FakeCudaFailingAfterWarmup:
    """FAKE: a CUDA session (no GPU here) that warms up (a real CPU run) and then fails every run with
    onnxruntime-gpu's error 700, as a broken CUDA context does."""

    def __init__(self, path: str) -> None:
        self._real = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self._runs = 0

    def get_providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def get_inputs(self):
        return self._real.get_inputs()

    def run(self, *args, **kwargs):
        self._runs += 1
        if self._runs > 1:
            raise RuntimeError(CUDA_700)
        return self._real.run(*args, **kwargs)


def fake_cuda_build(path, sess_options=None, providers=None):
    """FAKE onnxruntime-gpu: CUDA sessions are FakeCudaFailingAfterWarmup, CPU sessions real."""
    if providers[0][0] == "CPUExecutionProvider":
        return ort.InferenceSession(path, sess_options=sess_options, providers=providers)
    return FakeCudaFailingAfterWarmup(path)


@pytest.mark.skipif("OpenVINOExecutionProvider" in OFFERED, reason="this onnxruntime build offers OpenVINO")
def test_openvino_not_offered_says_so_and_the_cpu_serves(shared_models: Path, make_settings):
    path = shared_models / "mobilefacenet.onnx"
    settings = make_settings(providers=("openvino", "cpu"))
    opened = open_session(path, hashlib.sha256(path.read_bytes()).hexdigest(), settings, (112, 112))
    assert opened.provider == "cpu" and opened.fell_back
    attempt = opened.attempts[0]
    assert attempt.provider == "openvino" and not attempt.ok
    assert attempt.reason.startswith(f"not offered by this onnxruntime {ort.__version__} build"), attempt.reason
    choice = opened.report()["choice"]
    assert choice == {
        "mode": "fastest",
        "chosen": "cpu",
        "why": "the only provider of the chain that works",
        "runs": 0,
        "candidates": [],
        "dropped": {},
    }


def test_fastest_drops_a_provider_that_fails_while_timed(shared_models: Path, make_settings):
    path = shared_models / "mobilefacenet.onnx"
    settings = make_settings(providers=("cuda", "cpu"), provider_choice="fastest")
    opened = open_session(
        path,
        hashlib.sha256(path.read_bytes()).hexdigest(),
        settings,
        (112, 112),
        available=["CUDAExecutionProvider", "CPUExecutionProvider"],
        session_factory=fake_cuda_build,
    )
    assert opened.provider == "cpu" and opened.fell_back
    cuda = opened.attempts[0]
    assert cuda.provider == "cuda" and not cuda.ok and cuda.reason == f"failed while timed: {CUDA_700}"
    choice = opened.report()["choice"]
    assert choice["dropped"] == {"cuda": cuda.reason} and [c["provider"] for c in choice["candidates"]] == ["cpu"]
    assert choice["why"].endswith("the only one that ran every timing run")
    assert opened.session.run(None, {opened.input_name: np.zeros((1, 3, 112, 112), np.float32)})[0].shape == (1, 128)


def test_the_choice_defaults_to_fastest_only_where_the_chain_names_openvino():
    assert Settings.from_env({}).engine.choice == "first"
    assert Settings.from_env({"FACEFLEET_PROVIDERS": "openvino,cpu"}).engine.choice == "fastest"
    chosen = Settings.from_env({"FACEFLEET_PROVIDERS": "openvino,cpu", "FACEFLEET_PROVIDER_CHOICE": "first"})
    assert chosen.engine.choice == "first"
    assert Settings.from_env({"FACEFLEET_PROVIDER_CHOICE": "fastest"}).engine.choice == "fastest"
    with pytest.raises(ConfigError, match="FACEFLEET_PROVIDER_CHOICE='quickest'"):
        Settings.from_env({"FACEFLEET_PROVIDER_CHOICE": "quickest"})


@pytest.mark.parametrize(("given", "device"), [("cpu", "CPU"), ("gpu.1", "GPU.1"), ("AUTO:GPU,CPU", "AUTO:GPU,CPU")])
def test_the_openvino_device_is_spelled_as_openvino_spells_it(given: str, device: str):
    settings = Settings.from_env({"FACEFLEET_OPENVINO_DEVICE": given})
    assert settings.engine.openvino_device == device
    name, options, cache = provider_entry("openvino", settings, "0" * 64)
    assert name == "OpenVINOExecutionProvider" and cache is None
    assert options == {"device_type": device, "precision": "ACCURACY"}


def test_a_malformed_openvino_device_is_refused():
    with pytest.raises(ConfigError, match="expected an OpenVINO device"):
        Settings.from_env({"FACEFLEET_OPENVINO_DEVICE": "GPU 1"})


def test_openvino_threads_follow_the_cpu_threads():
    settings = Settings.from_env({"FACEFLEET_CPU_THREADS": "2"})
    assert provider_entry("openvino", settings, "0" * 64)[1]["num_of_threads"] == 2


@pytest.mark.parametrize("machine", ["aarch64", "armv7l"])
def test_the_probe_never_lets_openvino_run_on_a_jetson(machine: str):
    reason = gpuprobe.openvino_problem("CPU", machine=machine)
    assert reason == f"the OpenVINO provider serves x86_64 hosts; this one is {machine}"


def test_the_probe_asks_onnxruntime_when_the_build_has_no_openvino_library(tmp_path: Path):
    assert gpuprobe.openvino_problem("CPU", machine="x86_64", folder=tmp_path) is None
