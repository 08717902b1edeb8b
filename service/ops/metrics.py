"""The service's Prometheus metrics, named by the Prometheus guide: `facefleet_` prefix, base
units, `_total` counters, histograms for latency.

Under gunicorn every worker writes its samples into PROMETHEUS_MULTIPROC_DIR (set by
`facefleet serve` before anything imports prometheus_client); /metrics and the exporter
aggregate that folder, so a scrape never waits on a busy worker and dead workers drop out
(gauges use live* modes, gunicorn's child_exit marks dead pids).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.registry import REGISTRY

from facefleet.engine.observer import ModelReport

# Inference on a CPU takes tens of ms to seconds; on a Jetson with TensorRT a few ms.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)

REQUESTS = Counter(
    "facefleet_http_requests", "HTTP requests answered, by endpoint and status code.", ["endpoint", "code"]
)
REQUEST_SECONDS = Histogram(
    "facefleet_http_request_duration_seconds",
    "Time from request to response, by endpoint.",
    ["endpoint"],
    buckets=REQUEST_BUCKETS,
)
REJECTED = Counter(
    "facefleet_http_rejected_requests", "Requests refused before any work, by reason.", ["endpoint", "reason"]
)
STAGE_SECONDS = Histogram(
    "facefleet_stage_duration_seconds",
    "Time per request spent in each stage of the request path.",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
BATCH_SIZE = Histogram("facefleet_batch_size", "Inputs per model run.", ["model"], buckets=BATCH_BUCKETS)
IMAGES = Counter("facefleet_images", "Images processed, by outcome.", ["status"])
FACES = Counter("facefleet_faces", "Faces detected in processed images.")
QUEUE_DEPTH = Gauge("facefleet_queue_depth", "Requests waiting for an engine slot.", multiprocess_mode="livesum")
IN_PROGRESS = Gauge("facefleet_requests_in_progress", "Requests inside the engine now.", multiprocess_mode="livesum")
MODEL_PROVIDER = Gauge(
    "facefleet_model_provider",
    "1 for the execution provider each model runs on.",
    ["model", "task", "provider"],
    multiprocess_mode="livemax",
)
MODEL_FALLBACKS = Gauge(
    "facefleet_model_fallback_providers",
    "Providers of the chain that could not run this model.",
    ["model", "task"],
    multiprocess_mode="livemax",
)
MODEL_NODES = Gauge(
    "facefleet_model_nodes",
    "Nodes (kernels; a TensorRT subgraph is one) of each model's warm-up run, by the provider that ran them.",
    ["model", "task", "provider"],
    multiprocess_mode="livemax",
)
MODEL_PARTIAL_FALLBACK = Gauge(
    "facefleet_model_partial_fallback",
    "1 when a model on a GPU provider ran some of its nodes on the CPU.",
    ["model", "task"],
    multiprocess_mode="livemax",
)
PROVIDER_FAILURES = Counter(
    "facefleet_provider_failures",
    "Run-time failures of an execution provider that moved a model down the provider chain.",
    ["model", "provider"],
)
MODEL_WARMUP = Gauge(
    "facefleet_model_warmup_seconds", "Warm-up inference time of each model.", ["model"], multiprocess_mode="livemax"
)
BUILD_INFO = Gauge(
    "facefleet_build_info",
    "Always 1; labels carry the facefleet, onnxruntime and Python versions.",
    ["version", "onnxruntime", "python"],
    multiprocess_mode="livemax",
)


class PrometheusObserver:
    """The engine's observer (service/engine/observer.py) as Prometheus metrics: what the engine reports
    becomes the provider, fallback, node, warm-up, failure and batch-size series above."""

    def models_loaded(self, reports: Sequence[ModelReport]) -> None:
        """Provider, fallback count and warm-up time of the engine's models, and the build info."""
        from facefleet import __version__
        from facefleet.engine.ort import ort_module

        BUILD_INFO.labels(__version__, ort_module().__version__, platform.python_version()).set(1)
        for report in reports:
            MODEL_PROVIDER.labels(report.name, report.task, report.provider).set(1)
            _record_standing(report)
            PROVIDER_FAILURES.labels(report.name, report.provider)  # exported as 0 until it happens
            _record_placement(report)

    def model_ran(self, model: str, batch: int) -> None:
        BATCH_SIZE.labels(model).observe(batch)

    def provider_failed(self, model: str, provider: str) -> None:
        """Count a provider's run-time failure (once per failed session)."""
        PROVIDER_FAILURES.labels(model, provider).inc()

    def failed_over(self, report: ModelReport, left: str) -> None:
        """The model now runs on the next provider: move the provider gauge, recount the fallbacks."""
        MODEL_PROVIDER.labels(report.name, report.task, left).set(0)
        MODEL_PROVIDER.labels(report.name, report.task, report.provider).set(1)
        _record_standing(report)
        _record_placement(report, left=left)

    def stage(self, name: str, seconds: float) -> None:
        STAGE_SECONDS.labels(name).observe(seconds)

    def image_done(self, ok: bool, faces: int) -> None:
        IMAGES.labels("ok" if ok else "failed").inc()
        FACES.inc(faces)


def short_provider(name: str) -> str:
    """'CUDAExecutionProvider' -> 'cuda': the provider label the other metrics use."""
    from facefleet.settings import PROVIDER_NAMES

    return next((short for short, full in PROVIDER_NAMES.items() if full == name), name.lower())


def _record_standing(report: ModelReport) -> None:
    MODEL_FALLBACKS.labels(report.name, report.task).set(report.fallbacks)
    MODEL_WARMUP.labels(report.name).set(report.warmup_s)


def _record_placement(report: ModelReport, left: str | None = None) -> None:
    """Nodes per provider and the partial-fallback flag of the model's session; absent when its
    placement is unknown. `left`, the provider a failover left, drops to 0 nodes."""
    if left is not None:
        MODEL_NODES.labels(report.name, report.task, left).set(0)
    if report.nodes is None:
        return
    for provider, count in report.nodes.items():
        MODEL_NODES.labels(report.name, report.task, short_provider(provider)).set(count)
    MODEL_PARTIAL_FALLBACK.labels(report.name, report.task).set(int(bool(report.partial_fallback)))


def exposition() -> bytes:
    """The text exposition of every worker's samples (multiprocess) or of this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)
