"""bench/ort_versions.py's timing worker and table, on this venv's real onnxruntime and a shared model: the
worker must answer JSON even where a model cannot run a batch, and the table must say which versions fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.ort_versions import WORKER, summarise, table


def run_worker(job: dict) -> dict:
    done = subprocess.run(
        [sys.executable, str(WORKER)], input=json.dumps(job), capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout)


def test_worker_times_each_batch_and_says_why_it_skips_one(shared_models: Path):
    mobilefacenet = {"label": "mobilefacenet", "path": str(shared_models / "mobilefacenet.onnx"), "hw": [640, 640]}
    missing = {"label": "missing", "path": str(shared_models / "no-such.onnx"), "batches": [1], "hw": [640, 640]}
    job = {"provider": "cpu", "threads": 2, "warmup": 1, "runs": 3, "models": [{**mobilefacenet, "batches": [1, 8]}]}
    job["models"].append(missing)
    answer = run_worker(job)
    result = answer["models"]["mobilefacenet"]
    assert len(result["ms"]["1"]) == 3 and all(ms > 0 for ms in result["ms"]["1"])
    assert result["skipped"] == {"8": "input batch is fixed at 1"}  # the raw file; the prepared copy batches
    assert result["ran_on"][0] == "CPUExecutionProvider"
    assert answer["models"]["missing"]["error"].startswith("load:")

    merged = {
        "onnxruntime==new": {"models": {"mobilefacenet": {"ms": {"1": [4.0, 2.0, 3.0]}, "load_ms": [9.0]}}},
        "onnxruntime==old": {"models": {"mobilefacenet": {"ms": {"1": [2.0, 1.0, 1.5]}, "load_ms": [9.0]}}},
        "onnxruntime==broken": {"models": {"mobilefacenet": {"ms": {}, "load_ms": [], "error": "load: opset"}}},
    }
    results = summarise(merged, {"mobilefacenet": "recognition"})
    assert results["onnxruntime==new"]["models"]["mobilefacenet"]["figures"]["1"]["median_ms"] == 3.0
    rows = table(results, "onnxruntime==new").splitlines()
    assert rows[0] == "| version | mobilefacenet b1 | fp32 vs base | int8 vs base |"
    assert rows[2] == "| onnxruntime==new | 3.0 (4.0) | 1.00 | - |"
    assert rows[3] == "| onnxruntime==old | 1.5 (2.0) | 0.50 | - |"
    assert rows[4] == "| onnxruntime==broken | fails | - | - |"
