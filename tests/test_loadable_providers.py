"""roles/onnxruntime/files/loadable_providers.py: the onnxruntime role's check of which execution providers
really load (a session per offered provider), run here with this environment's real onnxruntime: the CPU
wheel, or PyPI's onnxruntime-gpu (test,gpu) whose TensorRT and CUDA providers cannot load on this machine."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import onnxruntime

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "roles" / "onnxruntime" / "files" / "loadable_providers.py"
# onnxruntime-gpu 1.23.2's own log line when CUDA's libraries are missing (seen on this machine), as the
# script's file-descriptor capture receives it: coloured, with the source location.
CUDA_LOG = (
    "\x1b[1;31m2026-12-03 04:38:51.089973682 [E:onnxruntime:Default, provider_bridge_ort.cc:2251 "
    "TryGetProviderInfo_CUDA] /onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:1844 "
    "onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load "
    "library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: "
    "No such file or directory\n\x1b[m\n"
)


def load_script():
    spec = importlib.util.spec_from_file_location("loadable_providers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_hand_serialized_model_is_what_onnx_helper_makes():
    from onnx import TensorProto, checker, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    checker.check_model(model)
    assert load_script().tiny_model() == model.SerializeToString()


def test_the_reason_is_onnxruntimes_own_cause_on_one_line():
    module = load_script()
    reason = module.reason_from_log(module.ANSI.sub("", CUDA_LOG), "fallback")
    assert reason == (
        "libcublasLt.so.12: cannot open shared object file: No such file or directory "
        "(loading libonnxruntime_providers_cuda.so)"
    )
    assert module.reason_from_log("nothing said\n", "onnxruntime fell back") == "onnxruntime fell back"


def test_report_of_this_environments_onnxruntime():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, f"onnxruntime's own output leaked onto stdout: {result.stdout[:500]}"
    assert "\x1b[" not in result.stderr and "EP Error" not in result.stderr, result.stderr[:500]
    report = json.loads(lines[0])
    assert report["version"] == onnxruntime.__version__
    assert report["offered"] == onnxruntime.get_available_providers()
    assert "CPUExecutionProvider" in report["loadable"]
    assert set(report["loadable"]) | set(report["failed"]) == set(report["offered"])
    for provider, reason in report["failed"].items():
        assert reason and "\n" not in reason and "\x1b" not in reason, (provider, reason)
    if "CUDAExecutionProvider" in report["offered"] and not Path("/dev/nvidia0").exists():
        # PyPI's onnxruntime-gpu on this GPU-less machine: the cause is the library that failed to load
        assert "CUDAExecutionProvider" in report["failed"]
        assert ".so" in report["failed"]["CUDAExecutionProvider"], report["failed"]
