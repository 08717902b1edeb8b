"""Times raw InferenceSession.run for bench/ort_versions.py inside one onnxruntime version's venv.

Stdlib, numpy and onnxruntime only: it runs in a venv that has nothing of facefleet, so the figures are the
kernels' alone. Reads one JSON job on stdin, writes one JSON answer on stdout:

    job:    {"provider": "cpu" | "openvino", "threads": 2, "warmup": 3, "runs": 4,
             "models": [{"label": ..., "path": ..., "batches": [1, 8], "hw": [640, 640]}]}
    answer: {"onnxruntime": "1.32.0", "numpy": ..., "providers": [...],
             "models": {label: {"load_ms": ..., "ran_on": [...], "ms": {"1": [...], "8": [...]}} | {"error": ...}}}

The session is made as service/engine/runtime.py session_options makes it (ORT_ENABLE_ALL, intra-op threads
given, no spinning after a run, no CPU arena), so what is timed is what the appliance would run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np
import onnxruntime as ort

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


def session_options(threads: int) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    options.enable_cpu_mem_arena = False
    return options


def open_session(path: str, provider: str, threads: int) -> Any:
    """A CPU session, or an OpenVINO one on its CPU device (CPU provider behind it for what it leaves).
    OpenVINO builds before 2024 spell the device CPU_FP32: the second spelling is tried when the first fails."""
    options = session_options(threads)
    if provider == "cpu":
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    error: Exception | None = None
    for device in ("CPU", "CPU_FP32"):
        ov = {"device_type": device, "num_of_threads": str(threads)}
        try:
            session = ort.InferenceSession(
                path,
                options,
                providers=["OpenVINOExecutionProvider", "CPUExecutionProvider"],
                provider_options=[ov, {}],
            )
        except Exception as exc:
            error = exc
            continue
        if session.get_providers()[0] == "OpenVINOExecutionProvider":
            return session
        error = RuntimeError(f"OpenVINO did not take the model (providers {session.get_providers()})")
    raise RuntimeError(str(error).splitlines()[0][:300])


def feed(session: Any, batch: int, hw: list[int]) -> dict[str, np.ndarray] | str:
    """Random input of the model's shape at `batch` (dynamic height and width take `hw`), or why it cannot."""
    meta = session.get_inputs()[0]
    dims = list(meta.shape)
    if isinstance(dims[0], int) and dims[0] > 0 and dims[0] != batch:
        return f"input batch is fixed at {dims[0]}"
    wanted = [batch, 3, hw[0], hw[1]]
    shape = [d if isinstance(d, int) and d > 0 else wanted[i] for i, d in enumerate(dims)]
    rng = np.random.default_rng(0)
    dtype = DTYPES.get(meta.type, np.float32)
    data = rng.integers(0, 256, shape) if dtype == np.uint8 else rng.standard_normal(shape)
    return {meta.name: data.astype(dtype)}


def time_runs(session: Any, inputs: dict[str, np.ndarray], warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        session.run(None, inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, inputs)
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure(model: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        session = open_session(model["path"], job["provider"], job["threads"])
    except Exception as exc:
        return {"error": f"load: {str(exc).splitlines()[0][:300]}"}
    out: dict[str, Any] = {"load_ms": (time.perf_counter() - start) * 1000, "ran_on": session.get_providers()}
    out["ms"], out["skipped"] = {}, {}
    for batch in model["batches"]:
        inputs = feed(session, batch, model["hw"])
        if isinstance(inputs, str):
            out["skipped"][str(batch)] = inputs
            continue
        try:
            out["ms"][str(batch)] = time_runs(session, inputs, job["warmup"], job["runs"])
        except Exception as exc:
            out["skipped"][str(batch)] = f"run: {str(exc).splitlines()[0][:300]}"
    return out


def main() -> int:
    # Some builds print to the C stdout (OpenVINO's plugin notices): the answer gets its own copy of fd 1,
    # everything else written to fd 1 goes to stderr.
    answer_out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    job = json.load(sys.stdin)
    answer = {
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "providers": ort.get_available_providers(),
        "models": {m["label"]: measure(m, job) for m in job["models"]},
    }
    json.dump(answer, answer_out)
    answer_out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
