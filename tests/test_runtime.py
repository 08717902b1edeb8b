"""The provider chain on a CPU-only machine: real sessions, real silent fallback, and GPU behaviour
reproduced by named fakes that raise onnxruntime's own error texts and write its profile format.

Runs with either build installed, PyPI's CPU `onnxruntime` or its `onnxruntime-gpu` (whose CUDA
libraries are absent here): what an attempt at a GPU provider says depends on which, see
`gpu_reason`. tests/test_gpu_wheel.py checks the GPU build's reasons against onnxruntime's own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import onnxruntime as ort
import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import REGISTRY

from facefleet.cli import print_providers
from facefleet.engine import gpuprobe
from facefleet.engine.loader import load_model, trt_fixed_hw
from facefleet.engine.observer import ModelReport
from facefleet.engine.ortlog import first_error, onnxruntime_output_to_log
from facefleet.engine.placement import read_profile
from facefleet.engine.runtime import (
    ModelInput,
    device_tag,
    open_session,
    provider_entry,
    trt_profile_shapes,
)
from facefleet.errors import ConfigError, ProviderError
from facefleet.models.manifest import load_manifest
from facefleet.ops import metrics
from facefleet.ops.diagnose import environment_report
from facefleet.settings import PROVIDER_NAMES, Settings

MIB = 1024 * 1024
GPU_ORT = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
OFFERED = ort.get_available_providers()
# What onnxruntime-gpu says when TensorRT meets dynamic input dims and when CUDA has no device.
TRT_ERROR = (
    "[ONNXRuntimeError] : 1 : FAIL : TensorRT EP failed to create engine from network for fused node: "
    "TensorrtExecutionProvider_TRTKernel_graph_main_graph_0"
)
CUDA_ERROR = (
    "[ONNXRuntimeError] : 1 : FAIL : CUDA failure 100: no CUDA-capable device is detected ; "
    "GPU=0 ; hostname=jetson ; file=cuda_execution_provider.cc ; line=245"
)


def gpu_reason(short: str) -> str:
    """What an attempt at a GPU provider must say on this machine, which has no GPU: 'not offered'
    by the CPU build; with the GPU build, the probe's cause (tests/test_gpu_wheel.py checks that
    against onnxruntime's own message)."""
    if PROVIDER_NAMES[short] not in OFFERED:
        return "not offered by this onnxruntime"
    problem = gpuprobe.provider_problem(short, 0)
    assert problem, f"the GPU build offers {short} on a machine without a GPU: the probe must name a cause"
    return problem


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


class FakeGpuOnnxruntime:
    """FAKE: onnxruntime-gpu on a Jetson whose libraries load, as far as the chain can see. A
    session asked for TensorRT or CUDA is a real CPU session of the same file with the same options
    (profiling included) that claims the provider; its profile is onnxruntime's real one with the
    providers rewritten the way the GPU build assigns nodes: TensorRT fuses what it takes into one
    TRTKernel node, CUDA runs node by node, and the op types in `left_on_cpu` stay on
    CPUExecutionProvider. Providers in `refuse` raise onnxruntime-gpu's creation error. `calls`
    keeps every providers list handed over, option dicts included, as onnxruntime receives them."""

    def __init__(self, left_on_cpu: frozenset[str] = frozenset(), refuse: frozenset[str] = frozenset()):
        self.left_on_cpu, self.refuse = left_on_cpu, refuse
        self.calls: list[list[tuple[str, dict]]] = []

    def __call__(self, path, sess_options=None, providers=None):
        self.calls.append([(name, dict(options)) for name, options in providers])
        first = providers[0][0]
        if first in self.refuse:
            raise RuntimeError(TRT_ERROR if first.startswith("Tensorrt") else CUDA_ERROR)
        real = ort.InferenceSession(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
        return real if first == "CPUExecutionProvider" else _ClaimingSession(real, first, self.left_on_cpu)


class _ClaimingSession:
    """FAKE: a real CPU session that says it runs on `provider` and profiles like it would."""

    def __init__(self, real, provider: str, left_on_cpu: frozenset[str]):
        self._real, self._provider, self._left = real, provider, left_on_cpu

    def get_providers(self):
        return [self._provider, "CPUExecutionProvider"]

    def get_inputs(self):
        return self._real.get_inputs()

    def get_outputs(self):
        return self._real.get_outputs()

    def run(self, *args, **kwargs):
        return self._real.run(*args, **kwargs)

    def end_profiling(self) -> str:
        path = Path(self._real.end_profiling())
        path.write_text(json.dumps(_reassign(json.loads(path.read_text()), self._provider, self._left)))
        return str(path)


def _reassign(events: list[dict], provider: str, left_on_cpu: frozenset[str]) -> list[dict]:
    """onnxruntime's profile events as a GPU build would write them (see FakeGpuOnnxruntime)."""
    out, fused = [], False
    for event in events:
        args = event.get("args", {})
        taken = event.get("cat") == "Node" and args.get("op_name") not in left_on_cpu
        if not taken:
            out.append(event)
        elif provider != "TensorrtExecutionProvider":
            out.append({**event, "args": {**args, "provider": provider}})
        elif not fused:
            fused = True
            kernel = "TRTKernel_graph_main_graph_4217370513340093734_0"
            name = f"TensorrtExecutionProvider_{kernel}_0_kernel_time"
            out.append({**event, "name": name, "args": {**args, "op_name": kernel, "provider": provider}})
    return out


def _model(shared_models: Path, name: str = "scrfd_500m") -> Path:
    return shared_models / load_manifest().get(name).file


def test_gpu_providers_this_build_cannot_run_are_explained(shared_models, cache_dir):
    settings = Settings.of(cache_dir=str(cache_dir))
    opened = open_session(_model(shared_models), "ab" * 32, settings, (640, 640))
    assert opened.provider == "cpu"
    reasons = {a.provider: a.reason for a in opened.attempts}
    assert gpu_reason("tensorrt") in reasons["tensorrt"]
    assert gpu_reason("cuda") in reasons["cuda"]
    assert opened.attempts[-1].ok and opened.warmup_ms > 0


def test_real_silent_fallback_is_detected_and_its_cause_named_quietly(shared_models, cache_dir, capfd):
    """CUDA asked of the real onnxruntime without the probe (a factory stands for the build): it
    quietly builds a CPU session. That counts as a fallback, with onnxruntime's own cause (the
    library the GPU build could not load, or the CPU build's warning), and nothing on the terminal."""
    settings = Settings.of(cache_dir=str(cache_dir), providers=("cuda", "cpu"))
    opened = open_session(
        _model(shared_models),
        "ab" * 32,
        settings,
        (640, 640),
        available=["CUDAExecutionProvider", "CPUExecutionProvider"],
        session_factory=ort.InferenceSession,
    )
    assert opened.provider == "cpu" and opened.fell_back
    cuda = opened.attempts[0]
    assert not cuda.ok
    assert "fell back silently" in cuda.reason and "CPUExecutionProvider" in cuda.reason
    gpu_build = "CUDAExecutionProvider" in OFFERED
    cause = "Failed to load library" if gpu_build else "Specified provider 'CUDAExecutionProvider' is not in available"
    assert f"(onnxruntime: {cause}" in cuda.reason
    out, err = capfd.readouterr()
    assert "onnxruntime" not in out + err and "\x1b[" not in out + err


def test_forced_creation_and_warmup_failures_walk_the_chain(shared_models, cache_dir):
    factory = FakeGpuSessionFactory({"TensorrtExecutionProvider": "create", "CUDAExecutionProvider": "run"})
    settings = Settings.of(cache_dir=str(cache_dir))
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


def test_no_provider_left_raises_with_every_reason(tmp_path, cache_dir, capfd):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    settings = Settings.of(cache_dir=str(cache_dir), providers=("cuda", "cpu"))
    with pytest.raises(ProviderError) as err:
        open_session(broken, "cd" * 32, settings, (112, 112))
    message = str(err.value)
    assert "no provider could run broken.onnx" in message
    assert f"cuda: {gpu_reason('cuda')}" in message and "cpu: session creation failed" in message
    # The profiled session that never loaded says "Could not write a profile": into the log.
    assert "onnxruntime" not in capfd.readouterr().err


def test_tensorrt_options_cache_by_model_and_device(cache_dir):
    settings = Settings.of(cache_dir=str(cache_dir), device_id=1, trt_fp16=True)
    name, options, cache = provider_entry("tensorrt", settings, "0123456789abcdef" * 4)
    assert name == "TensorrtExecutionProvider"
    assert options["trt_fp16_enable"] is True and options["device_id"] == 1
    assert options["trt_engine_cache_enable"] and options["trt_timing_cache_enable"]
    assert options["trt_engine_cache_path"] == cache == options["trt_timing_cache_path"]
    assert "/trt/0123456789abcdef/" in cache and cache.endswith("-dev1")
    assert options["trt_max_workspace_size"] == 1024 * MIB  # bounded by default
    unbounded = provider_entry("tensorrt", Settings.of(cache_dir=str(cache_dir), trt_workspace_mb=0), "ab" * 32)[1]
    assert "trt_max_workspace_size" not in unbounded


def test_tensorrt_profiles_span_the_batch_of_every_dynamic_input():
    inputs = [ModelInput("images", (None, 3, None, None)), ModelInput("fixed", (1, 3, 112, 112))]
    assert trt_profile_shapes(inputs, 4, (384, 640)) == {
        "trt_profile_min_shapes": "images:1x3x384x640",
        "trt_profile_opt_shapes": "images:4x3x384x640",
        "trt_profile_max_shapes": "images:4x3x384x640",
    }
    two = [ModelInput("a", (None, 3, 112, 112)), ModelInput("b", (None, 5))]
    assert trt_profile_shapes(two, 16, (112, 112))["trt_profile_max_shapes"] == "a:16x3x112x112,b:16x5"
    assert trt_profile_shapes([ModelInput("x", (1, 3, 640, 640))], 4, (640, 640)) == {}


def test_options_handed_to_onnxruntime_for_tensorrt_and_cuda(shared_models, cache_dir):
    """What onnxruntime-gpu receives (FAKE build, real files): TensorRT profiles from the prepared
    file's dynamic batch axis up to the configured batch, a bounded workspace in bytes, and the
    CUDA options from the settings on the CUDA entry behind TensorRT and on CUDA's own attempt."""
    fake = FakeGpuOnnxruntime(refuse=frozenset({"TensorrtExecutionProvider"}))
    settings = Settings.of(
        models_dir=str(shared_models),
        cache_dir=str(cache_dir),
        rec_batch_size=8,
        trt_workspace_mb=512,
        gpu_mem_limit_mb=256,
    )
    opened, _ = load_model(load_manifest().get("mobilefacenet"), settings, available=GPU_ORT, session_factory=fake)
    assert opened.provider == "cuda" and opened.batch == 8
    (trt, cuda_behind_trt), [cuda] = fake.calls[0], fake.calls[1]
    assert trt[0] == "TensorrtExecutionProvider"
    assert trt[1]["trt_profile_min_shapes"] == "input0:1x3x112x112"
    assert trt[1]["trt_profile_opt_shapes"] == trt[1]["trt_profile_max_shapes"] == "input0:8x3x112x112"
    assert trt[1]["trt_max_workspace_size"] == 512 * MIB and isinstance(trt[1]["trt_max_workspace_size"], int)
    want = {
        "device_id": 0,
        "cudnn_conv_algo_search": "HEURISTIC",
        "arena_extend_strategy": "kSameAsRequested",
        "gpu_mem_limit": 256 * MIB,
    }
    assert cuda_behind_trt == cuda == ("CUDAExecutionProvider", want)


def test_detector_profiles_follow_its_batch_and_fixed_copies_need_none(shared_models, cache_dir):
    fake = FakeGpuOnnxruntime()
    settings = Settings.of(models_dir=str(shared_models), cache_dir=str(cache_dir), det_batch_size=4)
    manifest = load_manifest()
    batched, _ = load_model(manifest.get("scrfd_500m_bnkps"), settings, available=GPU_ORT, session_factory=fake)
    options = fake.calls[-1][0][1]
    assert batched.provider == "tensorrt" and options["trt_profile_min_shapes"] == "input.1:1x3x640x640"
    assert options["trt_profile_max_shapes"] == options["trt_profile_opt_shapes"] == "input.1:4x3x640x640"
    # batch 1 and dynamic H x W: TensorRT gets a fixed-size copy, a static engine, no profile at all
    load_model(manifest.get("scrfd_500m"), settings, available=GPU_ORT, session_factory=fake)
    assert not [key for key in fake.calls[-1][0][1] if key.startswith("trt_profile")]


def test_cuda_options_default_to_heuristic_search_and_an_unbounded_exact_arena(cache_dir):
    name, options, cache = provider_entry("cuda", Settings.of(cache_dir=str(cache_dir), device_id=2), "ab" * 32)
    assert (name, cache) == ("CUDAExecutionProvider", None)
    assert options == {
        "device_id": 2,
        "cudnn_conv_algo_search": "HEURISTIC",
        "arena_extend_strategy": "kSameAsRequested",
    }


def test_nodes_are_counted_per_provider_on_a_real_cpu_run(shared_models, cache_dir, tmp_path, monkeypatch):
    """The warm-up run's profile counts every kernel: as many as the nodes of the graph onnxruntime
    optimised and ran (saved by onnxruntime itself for the comparison), all on the CPU; the profile
    file is gone afterwards."""
    import onnx

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    settings = Settings.of(cache_dir=str(cache_dir), providers=("cpu",))
    opened = open_session(_model(shared_models), "ab" * 32, settings, (640, 640))
    placement = opened.placement
    assert placement is not None and list(placement.nodes) == ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(_model(shared_models)), options, providers=["CPUExecutionProvider"])
    assert placement.cpu_nodes == len(onnx.load(options.optimized_model_filepath).graph.node) > 50
    assert "Conv" in placement.cpu_ops
    report = opened.report()
    assert report["partial_fallback"] is False and report["node_placement"]["cpu_nodes"] == placement.cpu_nodes
    assert not list(temporary.iterdir())


def test_partial_fallback_is_reported_in_info_metrics_and_the_provider_report(shared_models, cache_dir, caplog, capsys):
    """TensorRT takes the model but leaves its Reshape nodes to the CPU (FAKE build writing
    onnxruntime's profile format): /info's report, the metrics and `facefleet providers` say so."""
    spec = load_manifest().get("mobilefacenet")
    fake = FakeGpuOnnxruntime(left_on_cpu=frozenset({"Reshape"}))
    settings = Settings.of(models_dir=str(shared_models), cache_dir=str(cache_dir))
    with caplog.at_level(logging.WARNING, logger="facefleet.engine.runtime"):
        opened, _ = load_model(spec, settings, available=GPU_ORT, session_factory=fake)
    assert opened.provider == "tensorrt" and not opened.fell_back
    report = opened.report()
    assert report["partial_fallback"] is True
    placement = report["node_placement"]
    assert placement["nodes"]["TensorrtExecutionProvider"] == 1  # one fused TensorRT subgraph
    assert placement["cpu_ops"] == ["Reshape"] and placement["cpu_nodes"] >= 1
    assert f"runs on tensorrt, but {placement['cpu_nodes']} of its" in caplog.text

    metrics.PrometheusObserver().models_loaded([ModelReport.of(spec, opened)])
    labels = {"model": "mobilefacenet", "task": "recognition"}
    assert REGISTRY.get_sample_value("facefleet_model_partial_fallback", labels) == 1
    cpu_nodes = REGISTRY.get_sample_value("facefleet_model_nodes", {**labels, "provider": "cpu"})
    assert cpu_nodes == placement["cpu_nodes"]
    assert REGISTRY.get_sample_value("facefleet_model_nodes", {**labels, "provider": "tensorrt"}) == 1
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (scripts/test.sh does)"
    check = subprocess.run(
        [promtool, "check", "metrics"],
        input=generate_latest(REGISTRY).decode(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0 and "facefleet_model" not in check.stdout + check.stderr, check.stdout + check.stderr

    print_providers({"environment": environment_report(), "chain": ["tensorrt", "cpu"], "models": {spec.name: report}})
    text = capsys.readouterr().out
    assert f"mobilefacenet: runs on tensorrt (warm-up {report['warmup_ms']} ms), PARTIAL FALLBACK: " in text
    assert f"{placement['cpu_nodes']} of {placement['cpu_nodes'] + 1} nodes on the CPU (Reshape)" in text


def test_a_model_entirely_on_the_gpu_is_not_a_partial_fallback(shared_models, cache_dir):
    spec = load_manifest().get("mobilefacenet")
    settings = Settings.of(models_dir=str(shared_models), cache_dir=str(cache_dir), providers=("cuda", "cpu"))
    opened, _ = load_model(spec, settings, available=GPU_ORT, session_factory=FakeGpuOnnxruntime())
    assert opened.partial_fallback is False and opened.placement.cpu_nodes == 0
    assert list(opened.placement.nodes) == ["CUDAExecutionProvider"]
    metrics.PrometheusObserver().models_loaded([ModelReport.of(spec, opened)])
    labels = {"model": "mobilefacenet", "task": "recognition"}
    assert REGISTRY.get_sample_value("facefleet_model_partial_fallback", labels) == 0


def test_onnxruntime_output_goes_to_the_log_not_the_terminal(shared_models, capfd, caplog):
    """onnxruntime's real E line (here: CPU EP listed with CPU fallback disabled) reaches the
    terminal outside the window and only the debug log inside it; another writer's line comes back."""
    model = str(_model(shared_models, "mobilefacenet"))

    def refused() -> None:
        options = ort.SessionOptions()
        options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
        with pytest.raises(Exception, match="Conflicting session configuration"):
            ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    refused()
    assert "[E:onnxruntime" in capfd.readouterr().err  # the control: it does print
    with caplog.at_level(logging.DEBUG, logger="facefleet.engine.ortlog"), onnxruntime_output_to_log() as caught:
        refused()
        os.write(2, b"another writer's line\n")
    out, err = capfd.readouterr()
    assert err == "another writer's line\n" and out == ""
    assert first_error(caught).startswith("Conflicting session configuration: explicitly added the CPU EP")
    assert "onnxruntime: " in caplog.text and "Conflicting session configuration" in caplog.text


def test_read_profile_counts_kernel_events_only(tmp_path):
    profile = tmp_path / "p.json"
    cpu, cuda = "CPUExecutionProvider", "CUDAExecutionProvider"
    events = [
        {"cat": "Session", "name": "session_initialization", "args": {}},
        {"cat": "Node", "name": "Conv_0_kernel_time", "args": {"op_name": "Conv", "provider": cuda}},
        {"cat": "Node", "name": "Conv_0_fence_before", "args": {"op_name": "Conv"}},
        {"cat": "Node", "name": "Shape_1_kernel_time", "args": {"op_name": "Shape", "provider": cpu}},
        {"cat": "Node", "name": "Gather_2_kernel_time", "args": {"op_name": "Gather", "provider": cpu}},
    ]
    profile.write_text(json.dumps(events))
    placement = read_profile(profile)
    assert placement.nodes == {"CPUExecutionProvider": 2, "CUDAExecutionProvider": 1}
    assert placement.cpu_ops == ["Gather", "Shape"] and placement.partial("CUDAExecutionProvider")
    assert not placement.partial("CPUExecutionProvider")


def test_elf_dependencies_are_what_readelf_lists():
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) not installed: nothing to compare with")
    libraries = sorted(gpuprobe.capi_dir().glob("libonnxruntime*.so*"))
    assert libraries
    for library in libraries:
        dump = subprocess.run([readelf, "-d", str(library)], capture_output=True, text=True, check=True).stdout
        listed = [line.split("[", 1)[1].rstrip("]") for line in dump.splitlines() if "(NEEDED)" in line]
        assert gpuprobe.elf_dependencies(library)[0] == listed, library.name


class FakeLibcuda:
    """FAKE: the three CUDA driver API calls the probe makes (CUresult codes, out-parameters
    written through ctypes.byref), for a driver with `devices` GPUs or failing cuInit."""

    def __init__(self, init_status: int = 0, devices: int = 1):
        self.init_status, self.devices = init_status, devices
        self.names = {100: b"CUDA_ERROR_NO_DEVICE", 35: b"CUDA_ERROR_INSUFFICIENT_DRIVER"}

    def cuInit(self, flags: int) -> int:  # noqa: N802 (the driver's own name)
        return self.init_status

    def cuGetErrorName(self, status: int, name_ref) -> int:  # noqa: N802
        name_ref._obj.value = self.names.get(status)
        return 0 if status in self.names else 1

    def cuDeviceGetCount(self, count_ref) -> int:  # noqa: N802
        count_ref._obj.value = self.devices
        return 0


def test_driver_and_device_problems_are_named():
    assert gpuprobe.driver_problem(0, FakeLibcuda()) is None
    assert "cuInit: CUDA_ERROR_NO_DEVICE" in gpuprobe.driver_problem(0, FakeLibcuda(init_status=100))
    assert gpuprobe.driver_problem(1, FakeLibcuda(devices=1)) == (
        "no CUDA device 1: the driver sees 1 (FACEFLEET_DEVICE_ID)"
    )
    if gpuprobe.load_error(gpuprobe.DRIVER) is not None:  # this machine: no NVIDIA driver at all
        assert gpuprobe.driver_problem(0).startswith("no NVIDIA driver (libcuda.so.1 not found")


def test_device_tag_reads_the_jetson_board(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert device_tag(0, model) == "nvidia-jetson-agx-orin-developer-kit-dev0"
    assert device_tag(2, tmp_path / "absent") == "gpu-dev2"


def test_tensorrt_chain_runs_dynamic_detectors_at_a_fixed_size(shared_models, cache_dir):
    spec = load_manifest().get("scrfd_2.5g")
    trt = Settings.of(cache_dir=str(cache_dir), det_size=(640, 384))
    assert trt_fixed_hw(spec, trt) == (384, 640)
    assert trt_fixed_hw(spec, Settings.of(providers=("cuda", "cpu"))) is None
    opened, _ = load_model(
        spec, Settings.of(models_dir=str(shared_models), cache_dir=str(cache_dir), det_size=(640, 384))
    )
    assert opened.input_shape[2:] == (384, 640)  # the fixed copy fell back to CPU and still runs


def test_provider_chain_comes_from_the_environment():
    settings = Settings.from_env({"FACEFLEET_PROVIDERS": "cuda, cpu", "DET_NAME": "scrfd_2.5g"})
    assert settings.engine.providers == ("cuda", "cpu") and settings.models.det_name == "scrfd_2.5g"
    with pytest.raises(ConfigError, match="FACEFLEET_PROVIDERS='gpu,cpu'"):
        Settings.from_env({"FACEFLEET_PROVIDERS": "gpu,cpu"})
    with pytest.raises(ConfigError, match="MAX_SIZE"):
        Settings.from_env({"MAX_SIZE": "641,480"})
