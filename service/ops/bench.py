"""`facefleet bench providers`: each configured model on each provider of the chain that this
onnxruntime offers, timed the way the reference Jetson report did it (warm-up, then N runs;
average, every run, speedup over the CPU), with the first run (TensorRT's engine build) apart.

Inputs are the model's real input shape filled with a fixed pattern: a run's time does not
depend on the pixel values."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facefleet.engine import gpuprobe
from facefleet.engine.loader import load_model
from facefleet.engine.ort import ort_module
from facefleet.engine.runtime import warmup_input
from facefleet.errors import FacefleetError, ProviderError
from facefleet.models.manifest import load_manifest
from facefleet.settings import PROVIDER_NAMES, Settings


def _time_model(name: str, settings: Settings, provider: str, runs: int, warmup: int) -> dict[str, Any]:
    pinned = settings.replace(providers=(provider,))
    start = time.perf_counter()
    opened, _ = load_model(load_manifest().get(name), pinned)
    first_s = time.perf_counter() - start  # includes a TensorRT engine build on its first run
    width, height = settings.engine.det_size
    input_name, blob = warmup_input(opened.session, _fixed_hw(opened.input_shape, (height, width)))
    blob[...] = np.linspace(-1, 1, blob.size, dtype=np.float32).reshape(blob.shape)
    for _ in range(warmup):
        opened.session.run(None, {input_name: blob})
    times = []
    for _ in tqdm(range(runs), desc=f"{name} on {provider}", leave=False, unit="run"):
        t0 = time.perf_counter()
        opened.session.run(None, {input_name: blob})
        times.append((time.perf_counter() - t0) * 1000)
    return {
        "provider": provider,
        "first_open_s": round(first_s, 3),
        "input_shape": list(blob.shape),
        "mean_ms": round(statistics.fmean(times), 2),
        "median_ms": round(statistics.median(times), 2),
        "times_ms": [round(t, 2) for t in times],
    }


def _fixed_hw(shape: tuple[int | None, ...], fallback: tuple[int, int]) -> tuple[int, int]:
    """The model's own input height and width where it fixes them, else the configured detection size."""
    if len(shape) == 4 and shape[2] and shape[3]:
        return shape[2], shape[3]
    return fallback


def why_not(provider: str, settings: Settings, offered: list[str]) -> str | None:
    """Why `provider` cannot be timed here, or None. onnxruntime-gpu offers TensorRT and CUDA even
    where their libraries or the driver are missing: the GPU probe says so before a session would
    quietly fall back to the CPU and the table would show CPU times under a GPU's name."""
    if PROVIDER_NAMES[provider] not in offered:
        return "not offered by this onnxruntime"
    engine = settings.engine
    return None if provider == "cpu" else gpuprobe.provider_problem(provider, engine.device_id, engine.openvino_device)


def bench_providers(settings: Settings, models: list[str], runs: int, warmup: int) -> dict[str, Any]:
    """{model: [one row per provider of the chain that can run here]}, rows with a CPU-relative
    speedup; the providers that cannot run, with the reason, under "skipped"."""
    offered = ort_module().get_available_providers()
    skipped = {p: reason for p in settings.engine.providers if (reason := why_not(p, settings, offered))}
    chain = [p for p in settings.engine.providers if p not in skipped]
    if not chain:
        reasons = "; ".join(f"{p}: {reason}" for p, reason in skipped.items())
        raise FacefleetError(f"none of {', '.join(settings.engine.providers)} can run here ({reasons})")
    report: dict[str, Any] = {
        "onnxruntime": ort_module().__version__,
        "offered": offered,
        "skipped": skipped,
        "models": {},
    }
    for name in models:
        rows = []
        for provider in chain:
            try:
                rows.append(_time_model(name, settings, provider, runs, warmup))
            except ProviderError as exc:  # this provider refuses this model (OpenVINO and a blocked-int8 file)
                report.setdefault("refused", {}).setdefault(name, {})[provider] = _refusal(exc.message, provider)
        if not rows:
            raise FacefleetError(f"no provider of {', '.join(chain)} could run {name}: {report['refused'][name]}")
        cpu = next((r["mean_ms"] for r in rows if r["provider"] == "cpu"), None)
        for row in rows:
            row["speedup"] = round(cpu / row["mean_ms"], 2) if cpu else None
        report["models"][name] = rows
        # What FACEFLEET_PROVIDER_CHOICE=fastest would pick from these runs (it decides on its own 5 at start-up).
        report.setdefault("fastest", {})[name] = min(rows, key=lambda r: r["median_ms"])["provider"]
    return report


def _refusal(message: str, provider: str) -> str:
    """The provider's own reason out of the chain's one-line error ("no provider could run F: openvino: ...")."""
    _, found, reason = message.partition(f"{provider}: ")
    return reason if found else message


def table(report: dict[str, Any]) -> str:
    """The table operators know from the reference report."""
    lines = []
    for name, rows in report["models"].items():
        lines += [f"{name}", "Execution Provider | Average | Individual times | Speedup", "---|---|---|---"]
        for r in rows:
            shown = ", ".join(f"{t:.1f}" for t in r["times_ms"][:10]) + (" ..." if len(r["times_ms"]) > 10 else "")
            speed = f"{r['speedup']:.2f}x" if r["speedup"] else "n/a (no CPU row)"
            lines.append(f"{r['provider']} | {r['mean_ms']:.1f} ms | {shown} | {speed}")
        if len(rows) > 1:
            best = min(rows, key=lambda r: r["median_ms"])
            lines.append(f"fastest: {best['provider']} (median {best['median_ms']:.1f} ms)")
        lines.append("")
    lines += [f"{provider}: not timed, {reason}" for provider, reason in report.get("skipped", {}).items()]
    lines += [
        f"{provider}: refused {name}: {reason}"
        for name, refusals in report.get("refused", {}).items()
        for provider, reason in refusals.items()
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Box plots of every model x provider's run times."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FacefleetError("the plot needs matplotlib: pip install facefleet[bench]") from None
    rows = [(f"{m}\n{r['provider']}", r["times_ms"]) for m, rs in report["models"].items() for r in rs]
    figure, axis = plt.subplots(figsize=(max(6.5, 1.6 * len(rows)), 4))
    axis.boxplot([t for _, t in rows], tick_labels=[label for label, _ in rows])
    axis.set_ylabel("ms per run")
    axis.set_title(f"facefleet bench providers (onnxruntime {report['onnxruntime']})")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2))
