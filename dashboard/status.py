"""One status per appliance, with the reason an operator acts on: ok, degraded, unauthorized,
down, stale. A model on the CPU is an alarm only where a GPU is expected: a CPU appliance on
its CPU is healthy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

GPU_PROVIDERS = ("tensorrt", "cuda")
ORDER = {"down": 0, "unauthorized": 1, "degraded": 2, "stale": 3, "ok": 4}
ERROR_RATIO_DEGRADED = 0.05


def classify(snapshot: dict[str, Any]) -> tuple[str, str]:
    """(status, reason) of one poll: what was reachable, /health, providers, errors."""
    if snapshot.get("unreachable"):
        return "down", snapshot["unreachable"]
    if snapshot.get("timed_out"):
        return "stale", snapshot["timed_out"]
    if snapshot.get("unauthorized"):  # its /info is unknown: never shown as a healthy row with blanks
        return "unauthorized", snapshot["unauthorized"]
    health = snapshot.get("health") or {}
    if health.get("status") != "ok":
        return "degraded", f"/health failing: {health.get('reason', 'no answer')}"
    if snapshot.get("info_error"):
        return "degraded", snapshot["info_error"]
    gpu = snapshot.get("gpu_expected") or ("a Jetson" if snapshot.get("jetson") else "")
    on_cpu = sorted(m for m, p in snapshot.get("providers", {}).items() if p == "cpu") if gpu else []
    if on_cpu and snapshot.get("jetson"):
        return "degraded", f"Jetson running {', '.join(on_cpu)} on CPU (TensorRT/CUDA fell back)"
    if on_cpu:
        return "degraded", f"GPU host running {', '.join(on_cpu)} on CPU ({gpu}; TensorRT/CUDA fell back)"
    ratio = snapshot.get("error_ratio")
    if ratio is not None and ratio > ERROR_RATIO_DEGRADED:
        return "degraded", f"{ratio:.0%} of requests fail (server errors, 5xx)"
    refused = snapshot.get("auth_failure_ratio")
    if refused is not None and refused > ERROR_RATIO_DEGRADED:  # the clients are wrong, not the appliance
        return "ok", f"healthy; {refused:.0%} of requests refused (401/403: a missing or wrong API key)"
    return "ok", "healthy"


def gpu_expected(
    chains: Mapping[str, Sequence[Any]],
    configured: Sequence[Any],
    jetson: Mapping[str, str] | None,
    gpu_load: float | None,
    fallbacks: Mapping[str, float],
) -> str:
    """Why this appliance should run its models on a GPU, or "" for a CPU appliance: a Jetson,
    an exporter that reads a GPU, a provider chain that starts with TensorRT or CUDA (from /info,
    or, without /info, a model whose chain had providers before the CPU that failed)."""
    if jetson:
        return "a Jetson"
    if gpu_load is not None:
        return "its exporter reads a GPU"
    heads = [str(chain[0]) for chain in chains.values() if chain] or [str(p) for p in configured[:1]]
    head = next((h for h in heads if h in GPU_PROVIDERS), "")
    if head:
        return f"its provider chain starts with {head}"
    if not heads and any(count > 0 for count in fallbacks.values()):
        return "GPU providers of its chain failed"
    return ""


def provider_states(providers: Mapping[str, str], gpu: str) -> dict[str, str]:
    """Each model's provider as the pages colour it: `expected`, or `fallback` (the CPU where a
    GPU is expected, the alarm)."""
    return {model: "fallback" if gpu and provider == "cpu" else "expected" for model, provider in providers.items()}
