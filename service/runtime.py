"""Open a model on the first execution provider of the chain that really works.

onnxruntime itself falls back silently: ask for CUDA on a host whose cuDNN does not load and
you get a CPU session and a log line nobody reads. Here every provider of the chain is tried
with a real warm-up inference, the session's actual first provider is checked against the one
asked for, and every attempt is kept with its reason, so /info, the metrics and
`facefleet providers` can say exactly why a model runs where it runs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .config import PROVIDER_NAMES, Settings
from .errors import ProviderError

log = logging.getLogger(__name__)

ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


def ort_module() -> Any:
    """onnxruntime, imported late so the CLI can explain a missing install in one line."""
    try:
        import onnxruntime
    except ImportError:
        raise ProviderError(
            "onnxruntime is not installed: `pip install facefleet[cpu]` here, or the onnxruntime-gpu "
            "wheel from the Jetson AI Lab index on a Jetson"
        ) from None
    return onnxruntime


@dataclass(frozen=True)
class Attempt:
    """One provider of the chain: whether it took the model, and why not."""

    provider: str
    ok: bool
    reason: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "ok": self.ok, "reason": self.reason, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class RuntimeFailure:
    """A provider that warmed up fine and then failed mid-service (service/failover.py): kept so
    /info and /health say when the model degraded, from where to where, and why."""

    provider: str
    now_on: str
    error: str
    at: float  # Unix time

    def as_dict(self) -> dict[str, Any]:
        when = datetime.fromtimestamp(self.at, timezone.utc).isoformat(timespec="seconds")
        return {"provider": self.provider, "now_on": self.now_on, "at": when, "error": self.error}


@dataclass
class OpenedSession:
    """A warmed-up session and the story of how it came to run where it runs."""

    session: Any
    provider: str
    attempts: list[Attempt]
    warmup_ms: float
    model_path: str
    input_name: str
    input_shape: tuple[int | None, ...]
    trt_cache_dir: str | None = None
    sha256: str = ""
    warmup_hw: tuple[int, int] = (0, 0)  # what a reopen warms up with (dynamic axes)
    runtime_failures: list[RuntimeFailure] = field(default_factory=list)

    @property
    def fell_back(self) -> bool:
        return any(not a.ok for a in self.attempts)

    def report(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "active_provider": self.provider,
            "attempts": [a.as_dict() for a in self.attempts],
            "warmup_ms": round(self.warmup_ms, 1),
            "model_path": self.model_path,
            "trt_engine_cache": trt_cache_state(self.trt_cache_dir),
            "degraded_at_run_time": bool(self.runtime_failures),
            "runtime_failures": [f.as_dict() for f in self.runtime_failures],
        }


def device_tag(device_id: int, dt_model: Path = Path("/proc/device-tree/model")) -> str:
    """A TensorRT engine is only valid on the GPU it was built for: key caches by board + device."""
    try:
        board = dt_model.read_bytes().rstrip(b"\x00\n").decode(errors="replace")
    except OSError:
        board = "gpu"
    return re.sub(r"[^A-Za-z0-9]+", "-", board).strip("-").lower() + f"-dev{device_id}"


def trt_cache_state(cache_dir: str | None) -> dict[str, Any] | None:
    if not cache_dir:
        return None
    path = Path(cache_dir)
    files = [p for p in path.glob("*") if p.is_file()] if path.is_dir() else []
    engines = [p for p in files if p.suffix == ".engine"]
    return {"path": cache_dir, "engines": len(engines), "bytes": sum(p.stat().st_size for p in files)}


def provider_entry(short: str, settings: Settings, model_sha256: str) -> tuple[str, dict[str, Any], str | None]:
    """(provider name, its options, TensorRT cache folder) for one link of the chain."""
    name = PROVIDER_NAMES[short]
    if short == "tensorrt":
        cache = Path(settings.cache_dir) / "trt" / model_sha256[:16] / device_tag(settings.device_id)
        options = {
            "device_id": settings.device_id,
            "trt_fp16_enable": settings.trt_fp16,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
        }
        return name, options, str(cache)
    if short == "cuda":
        return name, {"device_id": settings.device_id}, None
    return name, {}, None


def session_options(settings: Settings) -> Any:
    ort = ort_module()
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the fallback story is told by the attempts, not by ORT's log
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Detector and recognizer run one after the other: a pool that spins after its run steals
    # the cores the next model needs (seen: +30 % detector time on 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if settings.cpu_threads:
        options.intra_op_num_threads = settings.cpu_threads
    # The arena keeps the peak of every batch's activations for the life of the process
    # (measured: 465 MiB against 286 MiB without it after 8 concurrent clients, for ~8 % less
    # throughput); on an 8 GB Jetson that memory is the GPU's too.
    options.enable_cpu_mem_arena = settings.cpu_mem_arena
    return options


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:400]


def warmup_input(session: Any, fallback_hw: tuple[int, int], batch: int = 1) -> tuple[str, np.ndarray]:
    """Zeros of the model's real input shape; dynamic axes take the configured size."""
    meta = session.get_inputs()[0]
    dims = list(meta.shape)
    defaults = [batch, 3, fallback_hw[0], fallback_hw[1]]
    shape = [d if isinstance(d, int) and d > 0 else defaults[i] for i, d in enumerate(dims)]
    return meta.name, np.zeros(shape, dtype=ONNX_DTYPES.get(meta.type, np.float32))


def _try_provider(
    short: str,
    path: str,
    settings: Settings,
    model_sha256: str,
    available: Sequence[str],
    warmup_hw: tuple[int, int],
    factory: Callable[..., Any],
) -> tuple[Any, Attempt, float, str | None]:
    name, options, cache = provider_entry(short, settings, model_sha256)
    providers: list[tuple[str, dict[str, Any]]] = [(name, options)]
    if short == "tensorrt" and PROVIDER_NAMES["cuda"] in available:
        # TensorRT hands the layers it cannot build to CUDA rather than to the CPU.
        providers.append(provider_entry("cuda", settings, model_sha256)[:2])
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        session = factory(path, sess_options=session_options(settings), providers=providers)
    except Exception as exc:
        reason = f"session creation failed: {first_line(exc)}"
        return None, Attempt(short, False, reason, time.perf_counter() - start), 0, None
    actual = session.get_providers()[0]
    if actual != name:
        reason = f"onnxruntime fell back silently: asked for {name}, the session runs on {actual}"
        if short in ("cuda", "tensorrt"):
            reason += " (GPU libraries not loadable? see `facefleet providers`)"
        return None, Attempt(short, False, reason, time.perf_counter() - start), 0, None
    warm = time.perf_counter()
    try:
        input_name, zeros = warmup_input(session, warmup_hw)
        session.run(None, {input_name: zeros})
    except Exception as exc:
        return None, Attempt(short, False, f"warm-up failed: {first_line(exc)}", time.perf_counter() - start), 0, None
    now = time.perf_counter()
    return session, Attempt(short, True, "", now - start), (now - warm) * 1000, cache


def open_session(
    path: str | Path,
    model_sha256: str,
    settings: Settings,
    warmup_hw: tuple[int, int],
    *,
    available: Sequence[str] | None = None,
    session_factory: Callable[..., Any] | None = None,
) -> OpenedSession:
    """Walk the provider chain; the first provider that creates, stays and warms up wins.

    `available` and `session_factory` default to onnxruntime's own; tests pass others to
    reproduce GPU failures on a CPU-only machine."""
    ort = ort_module()
    available = list(ort.get_available_providers() if available is None else available)
    factory = session_factory or ort.InferenceSession
    attempts: list[Attempt] = []
    for short in settings.providers:
        if PROVIDER_NAMES[short] not in available:
            reason = f"not offered by this onnxruntime {ort.__version__} build (it offers {', '.join(available)})"
            attempts.append(Attempt(short, False, reason))
            continue
        session, attempt, warmup_ms, cache = _try_provider(
            short, str(path), settings, model_sha256, available, warmup_hw, factory
        )
        attempts.append(attempt)
        if session is None:
            log.warning("%s: %s: %s", Path(path).name, short, attempt.reason)
            continue
        meta = session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in meta.shape)
        return OpenedSession(
            session, short, attempts, warmup_ms, str(path), meta.name, shape, cache, model_sha256, warmup_hw
        )
    tried = "; ".join(f"{a.provider}: {a.reason}" for a in attempts)
    raise ProviderError(f"no provider could run {Path(path).name}: {tried}")
