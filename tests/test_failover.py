"""A provider failing mid-service (issue 8): the model moves down the chain and requests go on.

There is no GPU here: a named FAKE session claims CUDA, runs for real on the CPU for its first
runs (the warm-up included) and then raises onnxruntime's own exception type with the text a
broken CUDA context gives. Every other session, the reopened one included, is a real onnxruntime
CPU session on the real models of ../shared.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors
from prometheus_client.registry import REGISTRY

from facefleet.api import create_app
from facefleet.engine.failover import is_provider_failure
from facefleet.engine.pipeline import FaceEngine, ImageResult
from facefleet.ops.metrics import PrometheusObserver
from tests.test_pipeline import RecordingObserver

DETECTOR, RECOGNIZER = "scrfd_2.5g", "mobilefacenet"
GPU_CHAIN = ("cuda", "cpu")
CUDA_OFFERED = ["CUDAExecutionProvider", "CPUExecutionProvider"]
# What onnxruntime-gpu raises from session.run once the CUDA context is broken.
CUDA_700 = (
    "[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access was encountered ; "
    "GPU=0 ; hostname=jetson ; file=/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_call.cc ; line=129 ; "
    "expr=cudaStreamSynchronize(stream);"
)
LAUNCH_FAILURE = (
    "[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
    "Name:'Conv_0' Status Message: CUDA error cudaErrorLaunchFailure:unspecified launch failure"
)


class FlakySession:
    """FAKE: a session that claims `provider` and runs for real on the CPU `good_runs` times (the
    warm-up counts), then raises onnxruntime's Fail with the CUDA 700 text on every run, as a
    broken CUDA context does. With a barrier, failing runs wait until all parties fail together."""

    def __init__(self, path: str, sess_options, provider: str, good_runs: int, barrier: threading.Barrier | None):
        self._real = ort.InferenceSession(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
        self._provider, self._good_runs, self._barrier = provider, good_runs, barrier
        self._lock = threading.Lock()
        self.runs = 0

    def get_providers(self) -> list[str]:
        return [self._provider, "CPUExecutionProvider"]

    def get_inputs(self):
        return self._real.get_inputs()

    def get_outputs(self):
        return self._real.get_outputs()

    def run(self, output_names, feeds):
        with self._lock:
            self.runs += 1
            broken = self.runs > self._good_runs
        if not broken:
            return self._real.run(output_names, feeds)
        if self._barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                self._barrier.wait(timeout=60)  # a guard against a hang, not an assertion
        raise ort_errors.Fail(CUDA_700)


class FlakyFactory:
    """FAKE onnxruntime-gpu: every session asked for a GPU provider is a FlakySession (the other
    models' never fail); the `model` file fails after `good_runs[provider]` runs on the providers
    listed there, the CPU included if listed; all else is a real CPU session. `calls` lists every ask."""

    def __init__(self, model: str, good_runs: dict[str, int], barrier: threading.Barrier | None = None):
        self.model, self.good_runs, self.barrier = model, good_runs, barrier
        self.calls: list[tuple[str, str]] = []
        self.sessions: list[FlakySession] = []  # the `model` file's fake sessions, in order

    def __call__(self, path, sess_options=None, providers=None):
        first, name = providers[0][0], Path(path).name
        self.calls.append((name, first))
        flaky = name.startswith(self.model) and first in self.good_runs
        if not flaky and first == "CPUExecutionProvider":
            return ort.InferenceSession(path, sess_options=sess_options, providers=["CPUExecutionProvider"])
        session = FlakySession(path, sess_options, first, self.good_runs[first] if flaky else sys.maxsize, self.barrier)
        if flaky:
            self.sessions.append(session)
        return session

    def opened(self, provider: str) -> int:
        """How many sessions of the flaky model were asked for on `provider`."""
        return sum(name.startswith(self.model) and asked == provider for name, asked in self.calls)


@pytest.fixture
def gpu_engine(make_settings):
    """An engine whose detector claims CUDA and fails at run time after `good_runs` runs."""

    def make(
        good_runs: int,
        barrier: threading.Barrier | None = None,
        chain: tuple[str, ...] = GPU_CHAIN,
        batching: bool = False,
        **flaky: int,
    ) -> tuple[FaceEngine, FlakyFactory]:
        factory = FlakyFactory(DETECTOR, {"CUDAExecutionProvider": good_runs, **flaky}, barrier)
        settings = make_settings(det_name=DETECTOR, rec_name=RECOGNIZER, providers=chain, batching=batching)
        engine = FaceEngine.from_settings(
            settings,
            observer=PrometheusObserver(),  # what create_app composes: the counters below are Prometheus'
            batching=batching,
            available=CUDA_OFFERED,
            session_factory=factory,
        )
        assert engine.detector.opened.provider == "cuda"  # the fake really took the detector
        return engine, factory

    return make


@pytest.fixture(scope="module")
def photo(image_bytes) -> bytes:
    return image_bytes("two_people.jpg")


def failures_counted(provider: str = "cuda") -> float:
    return (
        REGISTRY.get_sample_value("facefleet_provider_failures_total", {"model": DETECTOR, "provider": provider}) or 0
    )


def assert_same_faces(got: ImageResult, want: ImageResult) -> None:
    assert got.ok and len(got.faces) == len(want.faces) == 2
    for a, b in zip(got.faces, want.faces, strict=True):
        np.testing.assert_allclose(a.bbox, b.bbox, atol=0.05)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)
        assert a.embedding is not None and b.embedding is not None
        assert float(a.embedding @ b.embedding) > 0.999


def test_engine_answers_the_failed_request_on_cpu_with_the_same_faces(gpu_engine, photo):
    """The request that meets the CUDA failure is retried on the reopened CPU session: no error,
    the same two faces (boxes, landmarks, embeddings) as before the failure, and later requests too."""
    engine, factory = gpu_engine(good_runs=2)  # the warm-up and one request
    (before,) = engine.process([photo])
    (during,) = engine.process([photo])
    (after,) = engine.process([photo])
    assert engine.detector.opened.provider == "cpu"
    assert factory.sessions[0].runs == 3  # the request that failed really ran on the broken session
    assert factory.opened("CPUExecutionProvider") == 1
    assert_same_faces(during, before)
    assert_same_faces(after, before)


def test_info_and_health_show_the_run_time_degradation(gpu_engine, make_settings, photo):
    """Through the real Flask app (batching on): the client gets a 200, /info says the detector
    now runs on cpu, that it degraded at run time, when and why; /health stays 200 and says so."""
    engine, _ = gpu_engine(good_runs=1, batching=True)
    assert any(link.startswith("batcher") for link in engine.recognizer.chain.links)
    settings = make_settings(det_name=DETECTOR, rec_name=RECOGNIZER, providers=GPU_CHAIN, batching=True)
    client = create_app(settings, engine=engine).test_client()
    answer = client.post("/extract", json={"images": {"data": [_b64(photo)]}})
    assert answer.status_code == 200 and len(answer.get_json()["data"][0]["faces"]) == 2
    detector = client.get("/info").get_json()["models"]["detection"]
    assert detector["active_provider"] == "cpu" and detector["degraded_at_run_time"] is True
    (failure,) = detector["runtime_failures"]
    assert failure["provider"] == "cuda" and failure["now_on"] == "cpu"
    assert failure["error"].startswith("[ONNXRuntimeError] : 1 : FAIL : CUDA failure 700: an illegal memory access")
    assert datetime.fromisoformat(failure["at"]).tzinfo is not None
    assert [(a["provider"], a["ok"]) for a in detector["attempts"]] == [("cuda", False), ("cpu", True)]
    assert detector["attempts"][0]["reason"].startswith("failed at run time: [ONNXRuntimeError]")
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "ok"
    assert "cuda failed at run time" in health.get_json()["checks"][DETECTOR]["degraded"]


def test_provider_failure_is_counted_once_and_moves_the_provider_gauge(gpu_engine, make_settings, photo, tmp_path):
    """facefleet_provider_failures_total{model,provider} grows by exactly one for one broken
    session however many requests follow; the provider gauge moves; promtool accepts the output."""
    engine, _ = gpu_engine(good_runs=1)
    settings = make_settings(det_name=DETECTOR, rec_name=RECOGNIZER, providers=GPU_CHAIN)
    client = create_app(settings, engine=engine).test_client()
    counted = failures_counted()
    for _ in range(3):
        assert client.post("/extract", json={"images": {"data": [_b64(photo)]}}).status_code == 200
    assert failures_counted() == counted + 1
    gauge = {"model": DETECTOR, "task": "detection"}
    assert REGISTRY.get_sample_value("facefleet_model_provider", {**gauge, "provider": "cpu"}) == 1
    assert REGISTRY.get_sample_value("facefleet_model_provider", {**gauge, "provider": "cuda"}) == 0
    assert REGISTRY.get_sample_value("facefleet_model_fallback_providers", gauge) == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert f'facefleet_provider_failures_total{{model="{DETECTOR}",provider="cuda"}}' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (scripts/test.sh does)"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_observer_hears_one_failure_and_one_failover(make_settings, photo):
    """Through the observer interface (a real recording observer): the failed provider once, then
    the model's new standing (cpu, one fallback), whatever the number of requests after."""
    observer = RecordingObserver()
    factory = FlakyFactory(DETECTOR, {"CUDAExecutionProvider": 1})
    settings = make_settings(det_name=DETECTOR, rec_name=RECOGNIZER, providers=GPU_CHAIN)
    engine = FaceEngine.from_settings(settings, observer=observer, available=CUDA_OFFERED, session_factory=factory)
    assert [(r.name, r.provider) for r in observer.loaded] == [(DETECTOR, "cuda"), (RECOGNIZER, "cuda")]
    for _ in range(3):
        assert engine.process([photo])[0].ok
    assert observer.failures == [(DETECTOR, "cuda")]
    ((report, left),) = observer.failovers
    assert left == "cuda" and (report.name, report.task, report.provider, report.fallbacks) == (
        DETECTOR,
        "detection",
        "cpu",
        1,
    )
    assert [size for model, size in observer.runs if model == DETECTOR] == [1, 1, 1]  # the retry is one run


def test_bad_input_does_not_reopen(gpu_engine, photo):
    """A wrong feed is the caller's error, raised as onnxruntime's InvalidArgument: the detector
    stays on CUDA, nothing is reopened or counted, and good requests still run there."""
    engine, factory = gpu_engine(good_runs=1000)
    counted = failures_counted()
    wrong_channels = np.zeros((1, 4, 640, 640), np.float32)
    with pytest.raises(ort_errors.InvalidArgument):
        engine.detector.run(wrong_channels)
    (result,) = engine.process([photo])
    assert result.ok and len(result.faces) == 2
    assert engine.detector.opened.provider == "cuda" and not engine.detector.opened.runtime_failures
    assert engine.failovers[DETECTOR].reopens == 0 and factory.opened("CPUExecutionProvider") == 0
    assert failures_counted() == counted


def test_concurrent_requests_during_the_failure_reopen_exactly_once(gpu_engine, photo):
    """Four requests whose detector runs all fail on the broken session at the same moment (the
    fake holds them until all four have failed): one reopen, one count, four correct answers."""
    threads = 4
    engine, factory = gpu_engine(good_runs=1, barrier=threading.Barrier(threads))
    reference = _cpu_reference(engine, photo)
    counted = failures_counted()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _: engine.process([photo])[0], range(threads)))
    assert factory.sessions[0].runs == 1 + threads  # every request really met the failure
    assert engine.failovers[DETECTOR].reopens == 1 and factory.opened("CPUExecutionProvider") == 1
    assert failures_counted() == counted + 1
    for result in results:
        assert_same_faces(result, reference)


def test_failure_on_the_last_provider_is_raised_not_looped(gpu_engine, photo):
    """The CPU, last of the chain, has nowhere to go: when it fails too the request gets the error
    (onnxruntime's own, with its text), after exactly one reopen; later requests do not reopen."""
    engine, factory = gpu_engine(good_runs=1, CPUExecutionProvider=1)  # the CPU copy breaks after its warm-up
    for _ in range(2):
        with pytest.raises(ort_errors.Fail, match="CUDA failure 700"):
            engine.process([photo])
    assert engine.detector.opened.provider == "cpu"
    assert engine.failovers[DETECTOR].reopens == 1 and factory.opened("CPUExecutionProvider") == 1


def test_failure_with_no_provider_left_is_raised_as_is(gpu_engine, photo):
    """A chain of CUDA alone: the failure cannot move anywhere and goes up unchanged, no reopen."""
    engine, factory = gpu_engine(good_runs=1, chain=("cuda",))
    with pytest.raises(ort_errors.Fail, match="illegal memory access"):
        engine.process([photo])
    assert engine.detector.opened.provider == "cuda" and factory.opened("CPUExecutionProvider") == 0


@pytest.mark.parametrize(
    ("error", "provider", "expected"),
    [
        (ort_errors.Fail(CUDA_700), "cuda", True),
        (ort_errors.RuntimeException(LAUNCH_FAILURE), "tensorrt", True),
        (RuntimeError("[TensorRT EP] enqueueV3 failed"), "cpu", True),  # the text names the GPU stack
        (ort_errors.Fail("[ONNXRuntimeError] : 1 : FAIL : unknown"), "cuda", True),  # any GPU run error
        (ort_errors.InvalidArgument("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Invalid rank"), "cuda", False),
        (ValueError("Required inputs (['input.1']) are missing from input feed (['x'])."), "cuda", False),
        (ort_errors.Fail("[ONNXRuntimeError] : 1 : FAIL : unknown"), "cpu", False),
    ],
)
def test_errors_are_classified_by_provider_and_text(error: Exception, provider: str, expected: bool):
    """Provider failures (GPU text, or any error of a GPU provider) reopen; bad inputs never do."""
    assert is_provider_failure(error, provider) is expected


def _cpu_reference(engine: FaceEngine, photo: bytes) -> ImageResult:
    """The same photo through a plain CPU engine with the same models: what every answer must be."""
    settings = engine.settings
    cpu = FaceEngine.from_settings(settings.replace(providers=("cpu",)))
    return cpu.process([photo])[0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
