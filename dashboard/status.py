"""One status per appliance, with the reason an operator acts on: ok, degraded, down, stale."""

from __future__ import annotations

from typing import Any

ORDER = {"down": 0, "degraded": 1, "stale": 2, "ok": 3}
ERROR_RATIO_DEGRADED = 0.05


def classify(snapshot: dict[str, Any]) -> tuple[str, str]:
    """(status, reason) of one poll: what was reachable, /health, providers, errors."""
    if snapshot.get("unreachable"):
        return "down", snapshot["unreachable"]
    if snapshot.get("timed_out"):
        return "stale", snapshot["timed_out"]
    health = snapshot.get("health") or {}
    if health.get("status") != "ok":
        return "degraded", f"/health failing: {health.get('reason', 'no answer')}"
    if snapshot.get("jetson"):
        on_cpu = sorted(m for m, p in snapshot.get("providers", {}).items() if p == "cpu")
        if on_cpu:
            return "degraded", f"Jetson running {', '.join(on_cpu)} on CPU (TensorRT/CUDA fell back)"
    ratio = snapshot.get("error_ratio")
    if ratio is not None and ratio > ERROR_RATIO_DEGRADED:
        return "degraded", f"{ratio:.0%} of requests fail"
    return "ok", "healthy"
