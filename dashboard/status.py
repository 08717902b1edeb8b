"""One status per appliance, with the reason an operator acts on: ok, degraded, unauthorized,
down, stale."""

from __future__ import annotations

from typing import Any

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
    if snapshot.get("jetson"):
        on_cpu = sorted(m for m, p in snapshot.get("providers", {}).items() if p == "cpu")
        if on_cpu:
            return "degraded", f"Jetson running {', '.join(on_cpu)} on CPU (TensorRT/CUDA fell back)"
    ratio = snapshot.get("error_ratio")
    if ratio is not None and ratio > ERROR_RATIO_DEGRADED:
        return "degraded", f"{ratio:.0%} of requests fail"
    return "ok", "healthy"
