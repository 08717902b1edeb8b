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


# Camera streams (docs/streams.md): only the worker that runs the cameras writes these.
STREAM_FRAMES = Counter(
    "facefleet_stream_frames",
    "A camera's frames by stage: decoded, sampled (kept at its rate), processed (by the engine), dropped (the "
    "buffer was full), shed (HTTP requests had the engine).",
    ["camera", "stage"],
)
STREAM_DECODE_ERRORS = Counter("facefleet_stream_decode_errors", "Packets a camera's decoder refused.", ["camera"])
STREAM_RECONNECTS = Counter("facefleet_stream_reconnects", "Attempts to reopen a camera after a loss.", ["camera"])
STREAM_GAP_SECONDS = Counter(
    "facefleet_stream_gap_seconds", "Seconds a camera gave no frames after losses.", ["camera"]
)
STREAM_UP = Gauge(
    "facefleet_stream_up", "1 while a camera delivers frames, else 0.", ["camera"], multiprocess_mode="livemax"
)
STREAM_TRACKS = Gauge(
    "facefleet_stream_active_tracks", "Faces tracked on a camera now.", ["camera"], multiprocess_mode="livemax"
)
STREAM_PROCESS_SECONDS = Histogram(
    "facefleet_stream_frame_seconds", "Engine time of one camera frame.", ["camera"], buckets=STAGE_BUCKETS
)
STREAM_EVENTS = Counter("facefleet_stream_events", "Events a camera's tracks made, by kind.", ["camera", "kind"])
STREAM_EVENT_LATENCY = Histogram(
    "facefleet_stream_event_latency_seconds",
    "From a frame's decoding to its event in the outbox.",
    ["camera"],
    buckets=REQUEST_BUCKETS,
)
EVENTS_PUBLISHED = Counter("facefleet_events_published", "Events delivered, by publisher.", ["publisher"])
EVENTS_FAILED = Counter(
    "facefleet_events_failed", "Failed delivery attempts, by publisher and why.", ["publisher", "reason"]
)
EVENTS_DROPPED = Counter(
    "facefleet_events_dropped", "Events never delivered, by publisher and why.", ["publisher", "reason"]
)
EVENTS_QUEUE = Gauge(
    "facefleet_events_queue_depth", "Events waiting for a publisher.", ["publisher"], multiprocess_mode="livemax"
)


class StreamMetrics:
    """The cameras' and the events' observer (app/streams.py's WatchObserver, streams/counters.py's
    DeliveryObserver) as the series above."""

    def state_changed(self, source: str, state: object, error: str | None) -> None:
        STREAM_UP.labels(source).set(1 if getattr(state, "value", state) == "running" else 0)

    def frame_decoded(self, source: str) -> None:
        STREAM_FRAMES.labels(source, "decoded").inc()

    def frame_sampled(self, source: str) -> None:
        STREAM_FRAMES.labels(source, "sampled").inc()

    def frame_dropped(self, source: str) -> None:
        STREAM_FRAMES.labels(source, "dropped").inc()

    def decode_error(self, source: str) -> None:
        STREAM_DECODE_ERRORS.labels(source).inc()

    def reconnecting(self, source: str) -> None:
        STREAM_RECONNECTS.labels(source).inc()

    def gap_closed(self, source: str, seconds: float) -> None:
        STREAM_GAP_SECONDS.labels(source).inc(seconds)

    def frame_processed(self, camera: str, faces: int, seconds: float) -> None:
        STREAM_FRAMES.labels(camera, "processed").inc()
        STREAM_PROCESS_SECONDS.labels(camera).observe(seconds)

    def frame_shed(self, camera: str) -> None:
        STREAM_FRAMES.labels(camera, "shed").inc()

    def tracks_active(self, camera: str, count: int) -> None:
        STREAM_TRACKS.labels(camera).set(count)

    def event_emitted(self, camera: str, kind: str, latency_s: float) -> None:
        STREAM_EVENTS.labels(camera, kind).inc()
        STREAM_EVENT_LATENCY.labels(camera).observe(latency_s)

    def published(self, publisher: str, count: int) -> None:
        EVENTS_PUBLISHED.labels(publisher).inc(count)

    def failed(self, publisher: str, reason: str) -> None:
        EVENTS_FAILED.labels(publisher, reason).inc()

    def dropped(self, publisher: str, count: int, reason: str) -> None:
        EVENTS_DROPPED.labels(publisher, reason).inc(count)

    def queue_depth(self, publisher: str, depth: int) -> None:
        EVENTS_QUEUE.labels(publisher).set(depth)


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
