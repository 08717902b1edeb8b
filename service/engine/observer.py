"""What the engine tells the outside world, through one interface.

The engine (model runs, failovers, loaded models) and the request path (stage timings, image
outcomes) report here instead of naming Prometheus: service/ops/metrics.py implements the interface
(`PrometheusObserver`), tests record with a small class of their own, and the CLI and the
benchmarks pass nothing and get `NullObserver`. Values are plain (names, numbers,
`ModelReport`), so an observer never imports the engine and the engine never imports metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # types only: metrics imports this module without loading the engine
    from facefleet.engine.runtime import OpenedSession
    from facefleet.models.manifest import ModelSpec


@dataclass(frozen=True)
class ModelReport:
    """Where one model runs and how it got there, as the metrics show it."""

    name: str
    task: str
    provider: str  # short name: cuda, tensorrt, cpu
    fallbacks: int  # providers of the chain that could not run it
    warmup_s: float
    nodes: Mapping[str, int] | None = None  # nodes per provider (onnxruntime's full names); None: not known
    partial_fallback: bool | None = None

    @classmethod
    def of(cls, spec: ModelSpec, opened: OpenedSession) -> ModelReport:
        placement = opened.placement
        return cls(
            name=spec.name,
            task=spec.task,
            provider=opened.provider,
            fallbacks=sum(not a.ok for a in opened.attempts),
            warmup_s=opened.warmup_ms / 1000,
            nodes=dict(placement.nodes) if placement is not None else None,
            partial_fallback=opened.partial_fallback,
        )


class EngineObserver(Protocol):
    """Everything the engine and the request path report. Calls come from request threads and
    batcher threads alike: an implementation must be thread-safe and must not raise."""

    def models_loaded(self, reports: Sequence[ModelReport]) -> None:
        """The engine's models are open and warmed up (once, when the engine is built)."""

    def model_ran(self, model: str, batch: int) -> None:
        """One model run of `batch` inputs (after cross-request batching merged them)."""

    def provider_failed(self, model: str, provider: str) -> None:
        """`provider` failed at run time under `model` (once per failed session)."""

    def failed_over(self, report: ModelReport, left: str) -> None:
        """`model` now runs where `report` says, after leaving the provider `left`."""

    def stage(self, name: str, seconds: float) -> None:
        """Time one request spent in one stage of the request path (decode, det_run, ...)."""

    def image_done(self, ok: bool, faces: int) -> None:
        """One image of a request processed: decoded and searched (ok) or failed alone."""


class NullObserver:
    """Reports go nowhere: the CLI, the benchmarks and quantization have no metrics."""

    def models_loaded(self, reports: Sequence[ModelReport]) -> None:
        pass

    def model_ran(self, model: str, batch: int) -> None:
        pass

    def provider_failed(self, model: str, provider: str) -> None:
        pass

    def failed_over(self, report: ModelReport, left: str) -> None:
        pass

    def stage(self, name: str, seconds: float) -> None:
        pass

    def image_done(self, ok: bool, faces: int) -> None:
        pass
