"""The provider chain on a CPU-only machine: real sessions, real silent fallback, and GPU failures
reproduced by a named fake that raises onnxruntime's own error texts."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from service.config import Settings
from service.errors import ConfigError, ProviderError
from service.loader import load_model, trt_fixed_hw
from service.manifest import load_manifest
from service.runtime import device_tag, open_session, provider_entry

GPU_ORT = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
# What onnxruntime-gpu says when TensorRT meets dynamic input dims and when CUDA has no device.
TRT_ERROR = (
    "[ONNXRuntimeError] : 1 : FAIL : TensorRT EP failed to create engine from network for fused node: "
    "TensorrtExecutionProvider_TRTKernel_graph_main_graph_0"
)
CUDA_ERROR = (
    "[ONNXRuntimeError] : 1 : FAIL : CUDA failure 100: no CUDA-capable device is detected ; "
    "GPU=0 ; hostname=jetson ; file=cuda_execution_provider.cc ; line=245"
)


class FakeGpuSessionFactory:
    """FAKE: a GPU onnxruntime on a CPU machine. Sessions asked for TensorRT or CUDA fail the way
    onnxruntime-gpu fails (at creation or at the first run); CPU sessions are real."""

    def __init__(self, fail_at: dict[str, str]):
        self.fail_at = fail_at  # provider name -> "create" | "run"
        self.calls: list[str] = []

    def __call__(self, path, sess_options=None, providers=None):
        first = providers[0][0]
        self.calls.append(first)
        if first == "CPUExecutionProvider":
            return ort.InferenceSession(path, sess_options=sess_options, providers=providers)
        message = TRT_ERROR if first.startswith("Tensorrt") else CUDA_ERROR
        if self.fail_at.get(first) == "create":
            raise RuntimeError(message)
        return _FailingRunSession(path, first, message)


class _FailingRunSession:
    """FAKE: a session that claims the GPU provider and raises at run, like a cuDNN mismatch."""

    def __init__(self, path: str, provider: str, message: str):
        self._real = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self._provider, self._message = provider, message

    def get_providers(self):
        return [self._provider, "CPUExecutionProvider"]

    def get_inputs(self):
        return self._real.get_inputs()

    def run(self, *args, **kwargs):
        raise RuntimeError(self._message)


def _model(shared_models: Path, name: str = "scrfd_500m") -> Path:
    return shared_models / load_manifest().get(name).file


def test_cpu_only_build_reports_gpu_providers_as_not_offered(shared_models, cache_dir):
    settings = Settings(cache_dir=str(cache_dir))
    opened = open_session(_model(shared_models), "ab" * 32, settings, (640, 640))
    assert opened.provider == "cpu"
    reasons = {a.provider: a.reason for a in opened.attempts}
    assert "not offered by this onnxruntime" in reasons["tensorrt"]
    assert "not offered" in reasons["cuda"]
    assert opened.attempts[-1].ok and opened.warmup_ms > 0


def test_real_silent_fallback_is_detected(shared_models, cache_dir):
    """CUDA is listed as available (as onnxruntime-gpu lists it even when libcudnn does not load),
    onnxruntime quietly builds a CPU session: that must count as a fallback, with its reason."""
    settings = Settings(cache_dir=str(cache_dir), providers=("cuda", "cpu"))
    opened = open_session(
        _model(shared_models),
        "ab" * 32,
        settings,
        (640, 640),
        available=["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert opened.provider == "cpu" and opened.fell_back
    cuda = opened.attempts[0]
    assert not cuda.ok
    assert "fell back silently" in cuda.reason and "CPUExecutionProvider" in cuda.reason


def test_forced_creation_and_warmup_failures_walk_the_chain(shared_models, cache_dir):
    factory = FakeGpuSessionFactory({"TensorrtExecutionProvider": "create", "CUDAExecutionProvider": "run"})
    settings = Settings(cache_dir=str(cache_dir))
    opened = open_session(
        _model(shared_models), "ab" * 32, settings, (640, 640), available=GPU_ORT, session_factory=factory
    )
    assert factory.calls == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt, cuda, cpu = opened.attempts
    assert trt.reason.startswith("session creation failed:") and "TensorRT EP failed" in trt.reason
    assert cuda.reason.startswith("warm-up failed:") and "no CUDA-capable device" in cuda.reason
    assert cpu.ok and opened.provider == "cpu"
    report = opened.report()
    assert report["active_provider"] == "cpu" and len(report["attempts"]) == 3


def test_no_provider_left_raises_with_every_reason(tmp_path, cache_dir):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    settings = Settings(cache_dir=str(cache_dir), providers=("cuda", "cpu"))
    with pytest.raises(ProviderError) as err:
        open_session(broken, "cd" * 32, settings, (112, 112))
    message = str(err.value)
    assert "no provider could run broken.onnx" in message
    assert "cuda: not offered" in message and "cpu: session creation failed" in message


def test_tensorrt_options_cache_by_model_and_device(cache_dir):
    settings = Settings(cache_dir=str(cache_dir), device_id=1, trt_fp16=True)
    name, options, cache = provider_entry("tensorrt", settings, "0123456789abcdef" * 4)
    assert name == "TensorrtExecutionProvider"
    assert options["trt_fp16_enable"] is True and options["device_id"] == 1
    assert options["trt_engine_cache_enable"] and options["trt_timing_cache_enable"]
    assert options["trt_engine_cache_path"] == cache == options["trt_timing_cache_path"]
    assert "/trt/0123456789abcdef/" in cache and cache.endswith("-dev1")


def test_device_tag_reads_the_jetson_board(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert device_tag(0, model) == "nvidia-jetson-agx-orin-developer-kit-dev0"
    assert device_tag(2, tmp_path / "absent") == "gpu-dev2"


def test_tensorrt_chain_runs_dynamic_detectors_at_a_fixed_size(shared_models, cache_dir):
    spec = load_manifest().get("scrfd_2.5g")
    trt = Settings(cache_dir=str(cache_dir), det_size=(640, 384))
    assert trt_fixed_hw(spec, trt) == (384, 640)
    assert trt_fixed_hw(spec, Settings(providers=("cuda", "cpu"))) is None
    opened, _ = load_model(spec, Settings(models_dir=str(shared_models), cache_dir=str(cache_dir), det_size=(640, 384)))
    assert opened.input_shape[2:] == (384, 640)  # the fixed copy fell back to CPU and still runs


def test_provider_chain_comes_from_the_environment():
    settings = Settings.from_env({"FACEFLEET_PROVIDERS": "cuda, cpu", "DET_NAME": "scrfd_2.5g"})
    assert settings.providers == ("cuda", "cpu") and settings.det_name == "scrfd_2.5g"
    with pytest.raises(ConfigError, match="FACEFLEET_PROVIDERS='gpu,cpu'"):
        Settings.from_env({"FACEFLEET_PROVIDERS": "gpu,cpu"})
    with pytest.raises(ConfigError, match="MAX_SIZE"):
        Settings.from_env({"MAX_SIZE": "641,480"})
