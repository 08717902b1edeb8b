"""Two sources of the same figures behind one interface: the embedded poller (default), and
Prometheus over its HTTP API for fleets too large for one poller. Both build their views with
`snapshot.appliance_view`; the pages only ever call `fleet_view()` and `appliance_view(name)`, and
the JSON API serves `fleet()` and `appliance(name)`, their JSON form."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, ClassVar, Protocol

from facefleet.dashboard.poller import Poller, TimedOutError, UnreachableError, fetch
from facefleet.dashboard.snapshot import (
    FIGURES,
    ApplianceView,
    FleetView,
    Numbers,
    Observation,
    appliance_view,
    fleet_view,
)
from facefleet.dashboard.store import Store
from facefleet.settings import DashboardSettings

SPARK_WINDOW_S = 3600
SERVICE_JOB = "facefleet_service"  # the scrape job the monitoring role gives the appliances' services


class Backend(Protocol):
    def fleet_view(self) -> FleetView: ...

    def appliance_view(self, name: str) -> ApplianceView | None: ...


class JsonForm(ABC):
    """`fleet()` and `appliance(name)`: the JSON API's bodies, from the typed views."""

    @abstractmethod
    def fleet_view(self) -> FleetView: ...

    @abstractmethod
    def appliance_view(self, name: str) -> ApplianceView | None: ...

    def fleet(self) -> dict[str, Any]:
        return self.fleet_view().as_json()

    def appliance(self, name: str) -> dict[str, Any] | None:
        view = self.appliance_view(name)
        return None if view is None else view.as_json()


class PollerBackend(JsonForm):
    def __init__(self, settings: DashboardSettings) -> None:
        self.store = Store(settings.database, settings.retention_h)
        self.poller = Poller(settings, self.store)

    def fleet_view(self) -> FleetView:
        settings = self.poller.settings
        # a cycle lasts up to the per-host timeout, so "three missed polls" is measured in cycles
        stale_after = 3 * max(settings.poll_interval_s, settings.timeout_s, self.poller.last_cycle_s or 0.0)
        now = time.time()
        views = []
        for current in list(self.poller.views.values()):
            spark = tuple(r["p95_s"] for r in self.store.history(current.name, SPARK_WINDOW_S))
            polled = current.polled or 0.0
            if current.status in ("ok", "degraded") and now - polled > stale_after:
                views.append(replace(current, spark=spark, status="stale", reason=f"no poll for {now - polled:.0f} s"))
            else:
                views.append(replace(current, spark=spark))
        return fleet_view(views, self.poller.last_cycle_s, self.poller.fleet_error, "poller")

    def appliance_view(self, name: str) -> ApplianceView | None:
        view = self.poller.views.get(name)
        if view is None:
            return None
        history = self.store.history(name, 24 * 3600)
        return replace(view, history=tuple(history), provider_changes=tuple(provider_changes(history)))


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


class PrometheusBackend(JsonForm):
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

    def fleet_view(self) -> FleetView:
        views = []
        for name, raw in self._collect().items():
            seen = Observation(
                name=name,
                group=raw.get("group", ""),
                answered_at=time.time() if raw.get("up") else None,
                unreachable="Prometheus cannot scrape the service" if raw.get("up") == 0 else "",
                probe_failure=raw.get("probe_failure", ""),
                health={
                    "status": "ok" if raw.get("healthy", 1) == 1 else "failing",
                    "reason": "the exporter's probe says /health fails",
                },
                providers=raw["providers"],
                fallbacks=raw["fallbacks"],
                jetson=raw["jetson"],
                numbers=Numbers(**{k: raw.get(k) for k in FIGURES}),
            )
            views.append(replace(appliance_view(seen), spark=()))
        return fleet_view(views, None, "", "prometheus")

    def appliance_view(self, name: str) -> ApplianceView | None:
        for view in self.fleet_view().appliances:
            if view.name == name:
                return replace(view, history=(), provider_changes=(), service=self._service_address(name))
        return None

    def _service_address(self, name: str) -> str | None:
        """The appliance's service as Prometheus scrapes it (`/api/v1/targets`: the active target of job
        facefleet_service whose `appliance` label, or instance, is `name`), e.g. `https://10.0.0.5:8443`: what
        the camera panel reads `/streams` and `/events` from. None when Prometheus has no such target."""
        url = f"{self.url}/api/v1/targets?state=active"
        try:
            answer = json.loads(fetch(url, self.timeout)[1])
        except (UnreachableError, TimedOutError, ValueError):
            return None
        for target in answer.get("data", {}).get("activeTargets", []) if isinstance(answer, dict) else []:
            labels = target.get("labels") or {}
            if labels.get("job") == SERVICE_JOB and self._key(labels) == name:
                parts = urllib.parse.urlsplit(str(target.get("scrapeUrl", "")))
                if parts.scheme in ("http", "https") and parts.netloc:
                    return f"{parts.scheme}://{parts.netloc}"
        return None
