"""The one typed snapshot of an appliance and of the fleet that the pages and the JSON API show,
built by one function whichever backend looked (the embedded poller or Prometheus): each backend
only says what it saw (`Observation`), and `appliance_view` turns that into a status, a reason,
providers, versions and figures the same way for both."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from facefleet.dashboard.answers import GallerySeen, InfoSeen
from facefleet.dashboard.status import ORDER, classify, gpu_expected, provider_states

FIGURES = (
    "p50_s",
    "p95_s",
    "rate_rps",
    "error_ratio",
    "client_error_ratio",
    "auth_failure_ratio",
    "gpu_load",
    "temperature",
    "power_watts",
)
# Fields only some views have (the poller's, or an appliance's detail): left out of the JSON when None.
OPTIONAL = ("service", "exporter", "polled", "galleries", "spark", "history", "provider_changes")


@dataclass(frozen=True)
class Numbers:
    """The figures a row shows; None where the appliance has no such figure (yet)."""

    p50_s: float | None = None
    p95_s: float | None = None
    rate_rps: float | None = None
    error_ratio: float | None = None  # server errors (5xx)
    client_error_ratio: float | None = None  # client errors (4xx), auth failures included
    auth_failure_ratio: float | None = None  # 401 and 403 alone
    gpu_load: float | None = None
    temperature: float | None = None
    power_watts: float | None = None


@dataclass(frozen=True)
class Observation:
    """What one look at one appliance saw, whichever backend looked. The empty strings are the
    one-line reasons of what went wrong (none: nothing did)."""

    name: str
    group: str
    answered_at: float | None  # when this look was answered (if its status says so); None: it was not
    unreachable: str = ""
    timed_out: str = ""
    unauthorized: str = ""
    info_error: str = ""
    exporter_error: str = ""
    probe_failure: str = ""  # why the exporter's own probe of the service fails
    health: Mapping[str, Any] = field(default_factory=dict)
    info: InfoSeen | None = None
    providers: Mapping[str, str] = field(default_factory=dict)  # from metrics, where /info has none
    fallbacks: Mapping[str, float] = field(default_factory=dict)
    jetson: Mapping[str, str] | None = None
    power_mode: str | None = None
    numbers: Numbers = Numbers()


@dataclass(frozen=True)
class GalleryView:
    version: int
    checksum: str
    subjects: int | None
    lagging_behind: int | None = None  # the fleet's newest version, where this one is older

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "checksum": self.checksum,
            "lagging_behind": self.lagging_behind,
            "subjects": self.subjects,
        }


@dataclass(frozen=True)
class ApplianceView:
    """One appliance as a row of the overview, its page and the JSON API show it."""

    name: str
    group: str
    status: str
    reason: str
    last_seen: float | None
    providers: Mapping[str, str]
    chains: Mapping[str, list[str]]
    gpu_expected: str  # why a GPU is expected; "" on a CPU appliance (its charts say "no GPU")
    provider_states: Mapping[str, str]
    versions: Mapping[str, str]
    info: Mapping[str, Any] | None
    power_mode: str | None
    p50_s: float | None = None
    p95_s: float | None = None
    rate_rps: float | None = None
    error_ratio: float | None = None
    client_error_ratio: float | None = None
    auth_failure_ratio: float | None = None
    gpu_load: float | None = None
    temperature: float | None = None
    power_watts: float | None = None
    failures: tuple[tuple[float, str], ...] = ()
    # the poller's view only
    service: str | None = None
    exporter: str | None = None
    polled: float | None = None
    galleries: Mapping[str, GalleryView] | None = None
    # the overview's row only / an appliance's detail only
    spark: tuple[float | None, ...] | None = None
    history: tuple[Mapping[str, Any], ...] | None = None
    provider_changes: tuple[Mapping[str, Any], ...] | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "group": self.group,
            "status": self.status,
            "reason": self.reason,
            "last_seen": self.last_seen,
            "providers": dict(self.providers),
            "chains": {model: list(chain) for model, chain in self.chains.items()},
            "gpu_expected": self.gpu_expected,
            "provider_states": dict(self.provider_states),
            "versions": dict(self.versions),
            "info": self.info,
            "power_mode": self.power_mode,
            "failures": [list(failure) for failure in self.failures],
            **{k: getattr(self, k) for k in FIGURES},
        }
        optional: dict[str, Any] = {
            "service": self.service,
            "exporter": self.exporter,
            "polled": self.polled,
            "galleries": None if self.galleries is None else {n: g.as_json() for n, g in self.galleries.items()},
            "spark": None if self.spark is None else list(self.spark),
            "history": None if self.history is None else [dict(row) for row in self.history],
            "provider_changes": None if self.provider_changes is None else [dict(c) for c in self.provider_changes],
        }
        return out | {k: v for k, v in optional.items() if v is not None}


@dataclass(frozen=True)
class FleetView:
    """Every appliance, worst first, with the counts per status."""

    appliances: tuple[ApplianceView, ...]
    counts: Mapping[str, int]
    generated: float
    cycle_s: float | None
    error: str
    backend: str

    def as_json(self) -> dict[str, Any]:
        return {
            "appliances": [a.as_json() for a in self.appliances],
            "counts": dict(self.counts),
            "generated": self.generated,
            "cycle_s": self.cycle_s,
            "error": self.error,
            "backend": self.backend,
        }


def fleet_view(views: Iterable[ApplianceView], cycle_s: float | None, error: str, backend: str) -> FleetView:
    views = list(views)
    counts = dict.fromkeys(ORDER, 0)
    for view in views:
        counts[view.status] += 1
    ordered = sorted(views, key=lambda v: (ORDER[v.status], v.group, v.name))
    return FleetView(tuple(ordered), counts, time.time(), cycle_s, error, backend)


def _versions(info: InfoSeen | None, jetson: Mapping[str, str] | None) -> dict[str, str]:
    out = {}
    if info and info.version:
        out["facefleet"] = info.version
    if info and info.onnxruntime:
        out["onnxruntime"] = info.onnxruntime
    if info and info.tensorrt:
        out["TensorRT"] = info.tensorrt
    for label, key in (("L4T", "l4t"), ("JetPack", "jetpack")):
        if jetson and key in jetson:
            out[label] = jetson[key]
    return out


def appliance_view(seen: Observation, previous: ApplianceView | None = None) -> ApplianceView:
    """The view of one appliance from what one look saw (and the view before it, whose /info and
    last sighting stand in for what this look could not read)."""
    info = seen.info
    providers = {m.name: m.provider for m in info.models} if info else {}
    providers = providers or dict(seen.providers)
    chains = {m.name: list(m.chain) for m in info.models} if info else {}
    gpu = gpu_expected(chains, info.configured if info else (), seen.jetson, seen.numbers.gpu_load, seen.fallbacks)
    status, reason = classify(
        {
            "unreachable": seen.unreachable,
            "timed_out": seen.timed_out,
            "unauthorized": seen.unauthorized,
            "health": seen.health,
            "info_error": seen.info_error,
            "providers": providers,
            "error_ratio": seen.numbers.error_ratio,
            "auth_failure_ratio": seen.numbers.auth_failure_ratio,
            "jetson": seen.jetson,
            "gpu_expected": gpu,
        }
    )
    if seen.exporter_error and status == "ok":
        reason = seen.exporter_error
    elif seen.probe_failure and status == "ok":
        reason = f"the exporter's probe of the service fails ({seen.probe_failure})"
    answered = seen.answered_at is not None and status in ("ok", "degraded")
    return ApplianceView(
        name=seen.name,
        group=seen.group,
        status=status,
        reason=reason,
        last_seen=seen.answered_at if answered else (previous.last_seen if previous else None),
        providers=providers,
        chains=chains,
        gpu_expected=gpu,
        provider_states=provider_states(providers, gpu),
        versions=_versions(info, seen.jetson),
        info=(info.shown if info else None) or (previous.info if previous else None),
        power_mode=seen.power_mode,
        **asdict(seen.numbers),
    )


def gallery_views(found: Mapping[str, GallerySeen]) -> dict[str, GalleryView]:
    return {name: GalleryView(g.version, g.checksum, g.subjects) for name, g in found.items()}


def newest_galleries(galleries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The newest version of each gallery in the fleet (from each appliance's {gallery: version})."""
    newest: dict[str, int] = {}
    for found in galleries:
        for name, version in found.items():
            newest[name] = max(newest.get(name, 0), version)
    return newest


def flag_lagging(views: list[ApplianceView]) -> list[ApplianceView]:
    """Each appliance's galleries whose version is behind the newest in the fleet marked: an
    appliance the last bundle did not reach still answers, with yesterday's identities."""
    newest = newest_galleries({n: g.version for n, g in (v.galleries or {}).items()} for v in views)

    def flagged(g: GalleryView, name: str) -> GalleryView:
        return replace(g, lagging_behind=newest[name] if g.version < newest[name] else None)

    return [
        replace(v, galleries={n: flagged(g, n) for n, g in v.galleries.items()}) if v.galleries is not None else v
        for v in views
    ]
