"""Two sources of the same figures behind one interface: the embedded poller (default), and
Prometheus over its HTTP API for fleets too large for one poller. Pages and the JSON API only
ever call `fleet()` and `appliance(name)`."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from typing import Any, ClassVar, Protocol

from facefleet.dashboard.poller import FIGURES, Poller, fetch
from facefleet.dashboard.status import ORDER, classify, gpu_expected, provider_states
from facefleet.dashboard.store import Store
from facefleet.settings import DashboardSettings

SPARK_WINDOW_S = 3600


class Backend(Protocol):
    def fleet(self) -> dict[str, Any]: ...

    def appliance(self, name: str) -> dict[str, Any] | None: ...


def _summary(views: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    counts = dict.fromkeys(ORDER, 0)
    for view in views:
        counts[view["status"]] += 1
    ordered = sorted(views, key=lambda v: (ORDER[v["status"]], v["group"], v["name"]))
    return {"appliances": ordered, "counts": counts, "generated": time.time(), **extra}


class PollerBackend:
    def __init__(self, settings: DashboardSettings) -> None:
        self.store = Store(settings.database, settings.retention_h)
        self.poller = Poller(settings, self.store)

    def fleet(self) -> dict[str, Any]:
        settings = self.poller.settings
        # a cycle lasts up to the per-host timeout, so "three missed polls" is measured in cycles
        stale_after = 3 * max(settings.poll_interval_s, settings.timeout_s, self.poller.last_cycle_s or 0.0)
        now = time.time()
        views = []
        for current in list(self.poller.views.values()):
            view = {**current, "spark": [r["p95_s"] for r in self.store.history(current["name"], SPARK_WINDOW_S)]}
            if view["status"] in ("ok", "degraded") and now - view["polled"] > stale_after:
                view.update(status="stale", reason=f"no poll for {now - view['polled']:.0f} s")
            views.append(view)
        return _summary(views, cycle_s=self.poller.last_cycle_s, error=self.poller.fleet_error, backend="poller")

    def appliance(self, name: str) -> dict[str, Any] | None:
        view = self.poller.views.get(name)
        if view is None:
            return None
        history = self.store.history(name, 24 * 3600)
        return {**view, "history": history, "provider_changes": provider_changes(history)}


def provider_changes(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """When each model's provider changed, from the stored polls."""
    changes: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    for row in history:
        for model, provider in row["providers"].items():
            if model in last and last[model] != provider:
                changes.append({"at": row["at"], "model": model, "from": last[model], "to": provider})
            last[model] = provider
    return changes


class PrometheusBackend:
    """The same figures through PromQL; appliances are told apart by the `appliance` label the
    file_sd targets carry (falling back to `instance`)."""

    QUERIES: ClassVar[dict[str, str]] = {
        "up": 'up{job="facefleet_service"}',
        "healthy": "facefleet_probe_healthy",
        "p50_s": (
            "histogram_quantile(0.5, sum by (appliance, instance, le) (rate("
            'facefleet_http_request_duration_seconds_bucket{job="facefleet_service", endpoint="extract"}[5m])))'
        ),
        "p95_s": (
            "histogram_quantile(0.95, sum by (appliance, instance, le) (rate("
            'facefleet_http_request_duration_seconds_bucket{job="facefleet_service", endpoint="extract"}[5m])))'
        ),
        "rate_rps": (
            "sum by (appliance, instance) (rate("
            'facefleet_http_requests_total{job="facefleet_service", endpoint="extract"}[5m]))'
        ),
        "error_ratio": (
            'sum by (appliance, instance) (rate(facefleet_http_requests_total{job="facefleet_service",'
            ' code=~"5.."}[5m])) / sum by (appliance, instance) (rate('
            'facefleet_http_requests_total{job="facefleet_service"}[5m]))'
        ),
        "client_error_ratio": (
            'sum by (appliance, instance) (rate(facefleet_http_requests_total{job="facefleet_service",'
            ' code=~"4.."}[5m])) / sum by (appliance, instance) (rate('
            'facefleet_http_requests_total{job="facefleet_service"}[5m]))'
        ),
        "auth_failure_ratio": (
            'sum by (appliance, instance) (rate(facefleet_http_requests_total{job="facefleet_service",'
            ' code=~"401|403"}[5m])) / sum by (appliance, instance) (rate('
            'facefleet_http_requests_total{job="facefleet_service"}[5m]))'
        ),
        "gpu_load": "facefleet_jetson_gpu_load_ratio",
        "temperature": (
            'max by (appliance, instance) (facefleet_jetson_temperature_celsius{zone=~"gpu-thermal|tj-thermal"})'
        ),
        "power_watts": "sum by (appliance, instance) (facefleet_jetson_rail_power_watts)",
    }
    PROBE_FAILURE = "facefleet_probe_failure_reason == 1"
    FALLBACKS = "max by (appliance, instance, model) (facefleet_model_fallback_providers)"

    def __init__(self, settings: DashboardSettings) -> None:
        self.url, self.timeout = settings.prometheus_url.rstrip("/"), settings.timeout_s
        self.groups: dict[str, str] = {}

    def _query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = json.loads(fetch(url, self.timeout)[1])
        return answer.get("data", {}).get("result", []) if answer.get("status") == "success" else []

    @staticmethod
    def _key(metric: dict[str, str]) -> str:
        return metric.get("appliance") or metric.get("instance", "?")

    def _collect(self) -> dict[str, dict[str, Any]]:
        views: dict[str, dict[str, Any]] = {}

        def new() -> dict[str, Any]:
            return {"providers": {}, "jetson": None, "fallbacks": {}}

        for field, expr in self.QUERIES.items():
            for result in self._query(expr):
                view = views.setdefault(self._key(result["metric"]), new())
                view["group"] = view.get("group") or result["metric"].get("group", "")
                value = float(result["value"][1])
                view[field] = None if math.isnan(value) else value  # NaN: no traffic in the window
        for result in self._query("max by (appliance, instance, model, provider) (facefleet_model_provider) == 1"):
            views.setdefault(self._key(result["metric"]), new())["providers"][result["metric"]["model"]] = result[
                "metric"
            ]["provider"]
        for result in self._query(self.FALLBACKS):
            views.setdefault(self._key(result["metric"]), new())["fallbacks"][result["metric"].get("model", "?")] = (
                float(result["value"][1])
            )
        for result in self._query(self.PROBE_FAILURE):
            views.setdefault(self._key(result["metric"]), new())["probe_failure"] = result["metric"].get(
                "reason", "unknown"
            )
        for result in self._query("facefleet_jetson_info"):
            views.setdefault(self._key(result["metric"]), new())["jetson"] = result["metric"]
        return views

    def fleet(self) -> dict[str, Any]:
        views = []
        for name, raw in self._collect().items():
            gpu = gpu_expected({}, [], raw["jetson"], raw.get("gpu_load"), raw["fallbacks"])
            snapshot = {
                "health": {
                    "status": "ok" if raw.get("healthy", 1) == 1 else "failing",
                    "reason": "the exporter's probe says /health fails",
                },
                "providers": raw["providers"],
                "jetson": raw["jetson"],
                "error_ratio": raw.get("error_ratio"),
                "auth_failure_ratio": raw.get("auth_failure_ratio"),
                "gpu_expected": gpu,
            }
            if raw.get("up") == 0:
                snapshot["unreachable"] = "Prometheus cannot scrape the service"
            status, reason = classify(snapshot)
            if raw.get("probe_failure") and status == "ok":
                reason = f"the exporter's probe of the service fails ({raw['probe_failure']})"
            jetson = raw["jetson"] or {}
            views.append(
                {
                    "name": name,
                    "group": raw.get("group", ""),
                    "status": status,
                    "reason": reason,
                    "providers": raw["providers"],
                    "chains": {},
                    "gpu_expected": gpu,
                    "provider_states": provider_states(raw["providers"], gpu),
                    "last_seen": time.time() if raw.get("up") else None,
                    "versions": {
                        k: v for k, v in (("L4T", jetson.get("l4t")), ("JetPack", jetson.get("jetpack"))) if v
                    },
                    "spark": [],
                    "failures": [],
                    "info": None,
                    "power_mode": None,
                    **{k: raw.get(k) for k in FIGURES},
                }
            )
        return _summary(views, cycle_s=None, error="", backend="prometheus")

    def appliance(self, name: str) -> dict[str, Any] | None:
        for view in self.fleet()["appliances"]:
            if view["name"] == name:
                return {**view, "history": [], "provider_changes": []}
        return None
