"""From two scrapes of an appliance's exporter to the figures an operator reads: request rate,
server and client error ratios, latency percentiles over the interval, hardware, versions,
providers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

LATENCY = "facefleet_http_request_duration_seconds"


@dataclass
class Scrape:
    """What one /metrics answer says, reduced to what the dashboard shows."""

    at: float
    requests: dict[tuple[str, str], float] = field(default_factory=dict)  # (endpoint, code) -> count
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count, /extract
    providers: dict[str, str] = field(default_factory=dict)  # model -> provider
    fallbacks: dict[str, float] = field(default_factory=dict)  # model -> providers that failed
    jetson: dict[str, str] | None = None
    build: dict[str, str] = field(default_factory=dict)
    gpu_load: float | None = None
    temperature: float | None = None
    power_watts: float | None = None
    power_mode: str | None = None
    probe_failure: str | None = None  # why the exporter's own probe of the service fails


def _add_sample(
    scrape: Scrape, name: str, labels: dict[str, str], value: float, temps: dict[str, float], rails: dict[str, float]
) -> None:
    """Fold one sample in; a sample without the labels its family must have is left out (an
    appliance's garbage must not take the whole poll cycle down)."""
    if name == "facefleet_http_requests_total":
        key = (labels.get("endpoint", ""), labels.get("code", ""))
        scrape.requests[key] = scrape.requests.get(key, 0.0) + value
    elif name == f"{LATENCY}_bucket" and labels.get("endpoint") == "extract" and "le" in labels:
        le = float(labels["le"])
        scrape.buckets[le] = scrape.buckets.get(le, 0.0) + value
    elif name == "facefleet_model_provider" and value == 1 and {"model", "provider"} <= labels.keys():
        scrape.providers[labels["model"]] = labels["provider"]
    elif name == "facefleet_model_fallback_providers" and "model" in labels:
        scrape.fallbacks[labels["model"]] = value
    elif name == "facefleet_jetson_info":
        scrape.jetson = labels
    elif name == "facefleet_build_info":
        scrape.build = labels
    elif name == "facefleet_jetson_gpu_load_ratio":
        scrape.gpu_load = value
    elif name == "facefleet_jetson_temperature_celsius":
        temps[labels.get("zone", "")] = value
    elif name == "facefleet_jetson_rail_power_watts":
        rails[labels.get("rail", "")] = value
    elif name == "facefleet_jetson_power_mode_info":
        scrape.power_mode = labels.get("mode")
    elif name == "facefleet_probe_failure_reason" and value == 1:
        scrape.probe_failure = labels.get("reason", "unknown")
    elif name == "facefleet_probe_success" and value == 0:
        scrape.probe_failure = scrape.probe_failure or "unknown"


def parse(text: str, at: float) -> Scrape:
    scrape = Scrape(at)
    temps: dict[str, float] = {}
    rails: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            _add_sample(scrape, sample.name, sample.labels, sample.value, temps, rails)
    if temps:
        scrape.temperature = (
            max(temps.get(z, -math.inf) for z in ("gpu-thermal", "tj-thermal"))
            if ("gpu-thermal" in temps or "tj-thermal" in temps)
            else max(temps.values())
        )
    if rails:  # the board's input rail is the total where it has one (as tegrastats reports)
        scrape.power_watts = rails.get("VDD_IN") or rails.get("POM_5V_IN") or sum(rails.values())
    return scrape


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile() as Prometheus computes it, on cumulative bucket counts."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower_le
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return None


@dataclass
class Figures:
    p50_s: float | None = None
    p95_s: float | None = None
    rate_rps: float | None = None
    error_ratio: float | None = None  # server errors (5xx): the appliance failed
    client_error_ratio: float | None = None  # client errors (4xx), auth failures included
    auth_failure_ratio: float | None = None  # 401 and 403 alone: a flood of wrong or missing keys


def between(previous: Scrape | None, current: Scrape) -> Figures:
    """Figures over the interval between two scrapes (counters reset by a restart count from 0)."""
    if previous is None or current.at <= previous.at:
        return Figures()
    dt = current.at - previous.at

    def delta(now: float, before: float) -> float:
        return now - before if now >= before else now

    buckets = {le: delta(v, previous.buckets.get(le, 0.0)) for le, v in current.buckets.items()}
    extract = {k: delta(v, previous.requests.get(k, 0.0)) for k, v in current.requests.items() if k[0] == "extract"}
    every = {k: delta(v, previous.requests.get(k, 0.0)) for k, v in current.requests.items()}
    total = sum(every.values())

    def share(matches: Callable[[str], bool]) -> float | None:
        return sum(v for (_, code), v in every.items() if matches(code)) / total if total else None

    return Figures(
        p50_s=quantile(0.5, buckets),
        p95_s=quantile(0.95, buckets),
        rate_rps=sum(extract.values()) / dt,
        error_ratio=share(lambda code: code.startswith("5")),
        client_error_ratio=share(lambda code: code.startswith("4")),
        auth_failure_ratio=share(lambda code: code in ("401", "403")),
    )
