"""PyPI's real onnxruntime-gpu on a machine without CUDA: the chain's fallback end to end.

These run only where the installed onnxruntime offers CUDA or TensorRT: CI runs the suite a
second time with `onnxruntime-gpu` installed in place of `onnxruntime`. The wheel really offers
both providers while their libraries (CUDA, cuDNN, TensorRT) and the NVIDIA driver are absent,
which is what a Jetson with a wheel that does not match its JetPack looks like. What each
reason must name is taken from onnxruntime itself, asked in a child process, never hard-coded.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from facefleet.engine import gpuprobe
from facefleet.engine.runtime import open_session
from facefleet.models.manifest import load_manifest
from facefleet.settings import PROVIDER_NAMES, Settings

GPU_OFFERED = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in ort.get_available_providers()]
pytestmark = pytest.mark.skipif(
    not GPU_OFFERED,
    reason=f"onnxruntime {ort.__version__} here is the CPU build (no CUDA or TensorRT provider): "
    "install onnxruntime-gpu in its place to test the real GPU wheel's fallback",
)
BANNER = re.compile(r"\[[EWF]:onnxruntime|\x1b\[|EP Error|Falling back to")


def onnxruntime_says(short: str, model: Path) -> str:
    """The library onnxruntime itself reports missing when asked for `short`: a plain session in
    a child process (no facefleet), whose stderr carries onnxruntime's own E line."""
    name = PROVIDER_NAMES[short]
    code = f"import onnxruntime as o; o.InferenceSession({str(model)!r}, providers=[{name!r}, 'CPUExecutionProvider'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert BANNER.search(proc.stderr + proc.stdout), "onnxruntime printed nothing: these tests would prove nothing"
    match = re.search(r"Failed to load library \S+ with error: (\S+?): cannot open shared object file", proc.stderr)
    assert match, proc.stderr
    return match.group(1)


@pytest.fixture(scope="module")
def model(shared_models: Path) -> Path:
    return shared_models / load_manifest().get("mobilefacenet").file


def test_the_chain_ends_on_cpu_and_each_reason_names_what_is_missing(model, cache_dir, capfd):
    settings = Settings.of(cache_dir=str(cache_dir), providers=("tensorrt", "cuda", "cpu"))
    opened = open_session(model, "ab" * 32, settings, (112, 112))
    assert opened.provider == "cpu" and [a.provider for a in opened.attempts] == ["tensorrt", "cuda", "cpu"]
    out, err = capfd.readouterr()
    assert not BANNER.search(out + err), out + err
    reasons = {a.provider: a.reason for a in opened.attempts if not a.ok}
    for short in ("tensorrt", "cuda"):
        if PROVIDER_NAMES[short] not in GPU_OFFERED:
            continue
        reason = reasons[short]
        library = onnxruntime_says(short, model)
        assert f"libonnxruntime_providers_{short}.so does not load: missing " in reason
        assert library in reason, (library, reason)
        assert f"built for CUDA {gpuprobe.built_for().rsplit('CUDA ', 1)[-1]}" in reason
        if gpuprobe.load_error(gpuprobe.DRIVER) is not None:
            assert reason.endswith("; no NVIDIA driver (libcuda.so.1 not found)")
        assert "not loadable?" not in reason


def test_facefleet_providers_names_the_causes_without_onnxruntime_banners(shared_models, model, tmp_path):
    """The real CLI in a child process, as an operator runs it on a Jetson whose libraries do not
    match: both models end on the CPU, each fallback says what is missing, and neither stdout nor
    stderr carries one of onnxruntime's coloured E/W lines or its EP Error block."""
    command = [sys.executable, "-m", "facefleet", "providers", "--providers", "tensorrt,cuda,cpu"]
    command += ["--models-dir", str(shared_models), "--cache-dir", str(tmp_path), "--det", "scrfd_500m_bnkps"]
    command += ["--rec", "mobilefacenet"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not BANNER.search(proc.stdout + proc.stderr), proc.stdout + proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert "scrfd_500m_bnkps: runs on cpu" in proc.stdout and "mobilefacenet: runs on cpu" in proc.stdout
    for short in ("tensorrt", "cuda"):
        if PROVIDER_NAMES[short] not in GPU_OFFERED:
            continue
        library = onnxruntime_says(short, model)
        attempts = [line for line in lines if line.startswith(f"  {short:9} no: ")]
        assert len(attempts) == 2 and all(library in line for line in attempts), attempts
