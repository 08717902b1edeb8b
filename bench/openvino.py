"""OpenVINO against the CPU provider, model by model, FP32 and INT8: the figures FACEFLEET_PROVIDER_CHOICE=fastest
decides on, taken the long way (many runs, batch 1 and 8) so docs/benchmarks.md can show where each wins.

Usage (in a venv with the `openvino` extra, which offers both providers):
    .cache/venv-openvino/bin/python bench/openvino.py --models-dir DIR
        [--models scrfd_2.5g,mobilefacenet,yunet_2023mar_int8bq,sface_2021dec_int8bq,glintr100]
        [--runs 30] [--batches 1,8] [--json OUT]

Each model of --models, and its `NAME@int8` copy where `facefleet models quantize` left one in DIR, is
prepared as the service prepares it, opened once on each provider (the same options as the service's), and
run on the same input (the model's warm-up shape, a fixed ramp) in turns: CPU, OpenVINO, CPU, OpenVINO...
so a burst of load from elsewhere on the host hits both alike. Reported per row: median and min ms per run
of each provider, CPU / OpenVINO (above 1: OpenVINO faster), the nodes OpenVINO left to the CPU, and
whether the service would serve the file (an INT8 copy needs a passing accuracy gate report). A file
OpenVINO refuses is a row with its reason: the service's chain serves it on the CPU.
Recognizers with a batch axis also run at batch 8 (ms per image).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import BenchInputError, one_line, require_dir  # noqa: E402
from facefleet.engine.loader import open_model_file, trt_fixed_hw, warmup_hw  # noqa: E402
from facefleet.engine.ort import ort_module  # noqa: E402
from facefleet.engine.runtime import OpenedSession, warmup_input  # noqa: E402
from facefleet.errors import FacefleetError  # noqa: E402
from facefleet.models.manifest import ModelSpec, load_manifest  # noqa: E402
from facefleet.models.modelfiles import model_path, require_model_file, sha256_file  # noqa: E402
from facefleet.models.prepare import prepare_model  # noqa: E402
from facefleet.settings import Settings  # noqa: E402

MODELS = "scrfd_2.5g,mobilefacenet,yunet_2023mar_int8bq,sface_2021dec_int8bq,glintr100"
PROVIDERS = ("cpu", "openvino")


def open_on(spec: ModelSpec, settings: Settings, provider: str) -> OpenedSession:
    """The model's file prepared and opened as the service does, on `provider` alone."""
    path = model_path(spec, settings.models.models_dir)
    digest = sha256_file(path)
    runnable = prepare_model(spec, path, digest, settings.models.cache_dir, trt_fixed_hw(spec, settings))
    pinned = settings.replace(providers=(provider,), provider_choice="first")
    return open_model_file(spec, pinned, runnable, digest, source=path)


def served(spec: ModelSpec, settings: Settings) -> str:
    """'yes', or why the service would refuse the file (an INT8 copy without a passing gate report)."""
    try:
        require_model_file(spec, settings.models.models_dir, settings.models.verify_models)
    except FacefleetError as exc:
        return f"no: {str(exc).splitlines()[0][:120]}"
    return "yes"


def feed(opened: OpenedSession, hw: tuple[int, int], batch: int) -> dict[str, np.ndarray]:
    """The same ramp for every provider: zeros could take shortcuts real pixels do not."""
    name, blob = warmup_input(opened.session, hw, batch)
    low, high = (-1.0, 1.0) if blob.dtype.kind == "f" else (0.0, 255.0)
    blob[...] = np.linspace(low, high, blob.size, dtype=np.float32).reshape(blob.shape).astype(blob.dtype)
    return {name: blob}


def alternate(sessions: dict[str, OpenedSession], feeds: dict[str, dict], runs: int, warmup: int = 3) -> dict:
    """ms per run of each provider, the providers in turns."""
    for provider, opened in sessions.items():
        for _ in range(warmup):
            opened.session.run(None, feeds[provider])
    times: dict[str, list[float]] = {p: [] for p in sessions}
    for _ in range(runs):
        for provider, opened in sessions.items():
            start = time.perf_counter()
            opened.session.run(None, feeds[provider])
            times[provider].append((time.perf_counter() - start) * 1000)
    return times


def batches_for(opened: OpenedSession, spec: ModelSpec, wanted: list[int]) -> list[int]:
    """Batch 1 for everything; the larger ones only for a recognizer whose file has a batch axis."""
    batchable = opened.input_shape[0] is None and spec.task == "recognition"
    return [b for b in wanted if b == 1 or batchable]


def bench_model(spec: ModelSpec, settings: Settings, runs: int, batches: list[int]) -> list[dict[str, Any]]:
    """The model's rows; OpenVINO refusing the file is a row too (the service would serve it on the CPU)."""
    cpu = open_on(spec, settings, "cpu")
    try:
        sessions = {"cpu": cpu, "openvino": open_on(spec, settings, "openvino")}
    except FacefleetError as exc:
        reason = str(exc).split("openvino: ", 2)[-1].splitlines()[0][:160]
        return [{"model": spec.name, "batch": 1, "openvino_failed": reason, "served": served(spec, settings)}]
    placement = sessions["openvino"].placement
    hw = warmup_hw(spec, settings)
    rows = []
    for batch in batches_for(cpu, spec, batches):
        feeds = {p: feed(o, hw, batch) for p, o in sessions.items()}
        times = alternate(sessions, feeds, runs)
        row: dict[str, Any] = {
            "model": spec.name,
            "batch": batch,
            "input": list(next(iter(feeds["cpu"].values())).shape),
        }
        for provider, values in times.items():
            row[f"{provider}_median_ms"] = round(statistics.median(values) / batch, 2)
            row[f"{provider}_min_ms"] = round(min(values) / batch, 2)
        row["cpu_over_openvino"] = round(row["cpu_median_ms"] / row["openvino_median_ms"], 2)
        row["openvino_nodes_left_to_cpu"] = placement.cpu_nodes if placement else None
        row["served"] = served(spec, settings)
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "model | batch | CPU median (min) ms | OpenVINO median (min) ms | CPU / OpenVINO | OV nodes on CPU | served",
        "---|---|---|---|---|---|---",
    ]
    for r in rows:
        if "openvino_failed" in r:
            lines.append(f"{r['model']} | 1 | | OpenVINO refuses it: {r['openvino_failed']} | | | {r['served']}")
            continue
        lines.append(
            f"{r['model']} | {r['batch']} | {r['cpu_median_ms']} ({r['cpu_min_ms']}) | "
            f"{r['openvino_median_ms']} ({r['openvino_min_ms']}) | {r['cpu_over_openvino']} | "
            f"{r['openvino_nodes_left_to_cpu']} | {r['served']}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--cache-dir", default=str(ROOT / ".cache" / "bench-openvino-cache"))
    parser.add_argument("--models", default=MODELS, help="comma-separated manifest names; each NAME@int8 follows")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--json")
    args = parser.parse_args()
    require_dir(args.models_dir, "--models-dir")
    if "OpenVINOExecutionProvider" not in ort_module().get_available_providers():
        raise BenchInputError("this onnxruntime has no OpenVINO provider: run it in a venv with the openvino extra")
    settings = Settings.from_env(models_dir=args.models_dir, cache_dir=args.cache_dir)
    manifest, rows = load_manifest(), []
    batches = [int(b) for b in args.batches.split(",")]
    for name in args.models.split(","):
        for variant in (name, f"{name}@int8"):
            spec = manifest.get(variant)
            if not model_path(spec, args.models_dir).is_file():
                if variant == name:
                    print(f"{name}: not in {args.models_dir}, skipped", file=sys.stderr)
                continue
            found = bench_model(spec, settings, args.runs, batches)
            print("\n".join(table(found).splitlines()[2:]), file=sys.stderr)
            rows += found
    report = {"onnxruntime": ort_module().__version__, "cpu_threads": settings.engine.cpu_threads, "rows": rows}
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("openvino", main))
