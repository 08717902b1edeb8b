"""Engine settings, read from FACEFLEET_* environment variables.

InsightFace-REST's variable names are accepted as aliases so an existing deployment's
environment keeps working; the FACEFLEET_ name wins where both are set. An invalid value
stops start-up with one line naming the variable, rather than failing on the first request.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHAPE_POLICIES = ("fixed", "fit")
# onnxruntime's CUDA provider values, by their lower-case spelling (what a user may type).
CONV_ALGO_SEARCHES = {name.lower(): name for name in ("HEURISTIC", "EXHAUSTIVE", "DEFAULT")}
ARENA_STRATEGIES = {name.lower(): name for name in ("kSameAsRequested", "kNextPowerOfTwo")}


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "facefleet")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_providers(text: str) -> tuple[str, ...]:
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    unknown = [n for n in names if n not in PROVIDER_NAMES]
    if not names or unknown:
        raise ValueError(f"expected a comma-separated list of {', '.join(PROVIDER_NAMES)}")
    return names


def _parse_size(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.replace("x", ",").split(",")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 32 or any(p % 32 for p in parts):
        raise ValueError("expected WIDTH,HEIGHT, each a multiple of 32 (e.g. 640,640)")
    return parts[0], parts[1]


def _parse_policy(text: str) -> str:
    if text not in SHAPE_POLICIES:
        raise ValueError(f"expected one of {', '.join(SHAPE_POLICIES)}")
    return text


def _one_of(choices: dict[str, str]) -> Callable[[str], str]:
    """A parser for one of onnxruntime's spellings, case-insensitive, returned as onnxruntime spells it."""

    def parse(text: str) -> str:
        value = choices.get(text.strip().lower())
        if value is None:
            raise ValueError(f"expected one of {', '.join(choices.values())}")
        return value

    return parse


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("expected a whole number >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("expected a whole number >= 0")
    return value


def _unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a number from 0 to 1")
    return value


def _cosine(text: str) -> float:
    value = float(text)
    if not -1.0 <= value <= 1.0:
        raise ValueError("expected a number from -1 to 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("expected a number >= 0")
    return value


def _host_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _auth_mode(text: str) -> str:
    if text.strip().lower() not in ("on", "off"):
        raise ValueError("expected on or off")
    return text.strip().lower()


def _path_list(text: str) -> tuple[str, ...]:
    paths = _host_list(text)
    if any(not p.startswith("/") for p in paths):
        raise ValueError("expected a comma-separated list of paths, each starting with /")
    return paths


def key_lines(text: str) -> list[str]:
    """The keys of an API key file: one per line, blank lines and `#` comments skipped (the
    service reads it, and so does a dashboard running on an appliance)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("expected text or json")
    return text


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _opt(env: str, parse: Callable[[str], Any], *aliases: str, doc: str) -> dict[str, Any]:
    return {"env": env, "parse": parse, "aliases": aliases, "doc": doc}


@dataclass(frozen=True)
class Settings:
    """Every knob of the engine; docs/configuration.md lists them with their variables."""

    models_dir: str = "./models"
    cache_dir: str = field(default_factory=_default_cache_dir)
    providers: tuple[str, ...] = ("tensorrt", "cuda", "cpu")
    det_name: str = ""
    rec_name: str = ""
    det_threshold: float | None = None  # None: the detector's manifest value (service/thresholds.py)
    verify_threshold: float | None = None  # None: the recognizer's manifest value
    nms_iou: float = 0.4
    det_size: tuple[int, int] = (640, 640)
    shape_policy: str = "fixed"
    det_batch_size: int = 4
    rec_batch_size: int = 16
    max_pixels: int = 40_000_000
    max_faces: int = 100
    cpu_threads: int = 0
    device_id: int = 0
    trt_fp16: bool = True
    trt_workspace_mb: int = 1024
    cudnn_conv_algo_search: str = "HEURISTIC"
    gpu_mem_limit_mb: int = 0
    gpu_arena_extend_strategy: str = "kSameAsRequested"
    verify_models: bool = True
    cpu_mem_arena: bool = False
    # ---- HTTP service (facefleet serve)
    host: str = "127.0.0.1"
    port: int = 18080
    workers: int = 1
    threads: int = 0
    max_body_mb: float = 64.0
    max_images: int = 64
    max_concurrent: int = 0
    queue_size: int = 16
    queue_timeout_s: float = 30.0
    batching: bool = True
    batch_wait_ms: float = 2.0
    allow_urls: bool = False
    url_allow: tuple[str, ...] = ()
    url_max_mb: float = 20.0
    url_timeout_s: float = 10.0
    images_root: str = ""
    gallery_db: str = ""
    metrics_dir: str = ""
    log_format: str = "text"
    log_level: str = "INFO"
    auth: str = "on"
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    api_keys_file: str = ""
    auth_open_paths: tuple[str, ...] = ("/", "/livez", "/health", "/metrics", "/docs", "/openapi.json")
    # ---- exporter (facefleet exporter)
    exporter_host: str = "127.0.0.1"
    exporter_port: int = 18090
    sysfs_root: str = "/"
    service_url: str = ""
    nvpmodel: str = "nvpmodel"

    @property
    def engine_slots(self) -> int:
        """Requests inside the engine at once: enough to form batches, few enough that their
        buffers stay small (0 = one per core, at most 4; 2 on a 2-core machine measured
        214 MiB resident under 8 clients against 291 MiB with 4)."""
        return self.max_concurrent or min(4, os.cpu_count() or 1)

    @property
    def gunicorn_threads(self) -> int:
        """Enough threads that the bounded queue, not gunicorn's backlog, is where requests wait,
        plus a few so /livez, /health and /metrics answer while the engine is saturated."""
        return self.threads or self.engine_slots + self.queue_size + 4

    @property
    def gallery_path(self) -> str:
        return self.gallery_db or str(Path(self.cache_dir) / "galleries.sqlite3")

    @property
    def metrics_path(self) -> str:
        return self.metrics_dir or str(Path(self.cache_dir) / "metrics")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults < the FACEFLEET_CONFIG file < environment < `overrides` (CLI flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = _read_config_file(environ.get("FACEFLEET_CONFIG", ""))
        for f in fields(cls):
            spec = OPTIONS[f.name]
            for var in (spec["env"], *spec["aliases"]):
                raw = environ.get(var)
                if raw is None or raw == "":
                    continue
                try:
                    values[f.name] = spec["parse"](raw)
                except ValueError as exc:
                    raise ConfigError(f"invalid {var}={raw!r}: {exc}") from None
                break
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


OPTIONS: dict[str, dict[str, Any]] = {
    "models_dir": _opt("FACEFLEET_MODELS_DIR", str, "MODELS_DIR", doc="folder holding the model files"),
    "cache_dir": _opt("FACEFLEET_CACHE_DIR", str, doc="prepared models and TensorRT engine/timing caches"),
    "providers": _opt("FACEFLEET_PROVIDERS", _parse_providers, doc="provider chain, tried in order"),
    "det_name": _opt("FACEFLEET_DET_NAME", str, "DET_NAME", doc="detector (manifest name)"),
    "rec_name": _opt("FACEFLEET_REC_NAME", str, "REC_NAME", doc="recognizer (manifest name)"),
    "det_threshold": _opt(
        "FACEFLEET_DET_THRESH", _unit_float, "DEF_DET_THRESH", doc="face score threshold (unset: the detector's own)"
    ),
    "verify_threshold": _opt(
        "FACEFLEET_VERIFY_THRESH", _cosine, doc="same-person cosine similarity (unset: the recognizer's own)"
    ),
    "nms_iou": _opt("FACEFLEET_NMS_IOU", _unit_float, doc="IoU above which overlapping boxes merge"),
    "det_size": _opt("FACEFLEET_DET_SIZE", _parse_size, "MAX_SIZE", doc="detector input WIDTH,HEIGHT"),
    "shape_policy": _opt("FACEFLEET_SHAPE_POLICY", _parse_policy, doc="fixed (W x H) or fit (image aspect)"),
    "det_batch_size": _opt("FACEFLEET_DET_BATCH_SIZE", _positive_int, "DET_BATCH_SIZE", doc="images per run"),
    "rec_batch_size": _opt("FACEFLEET_REC_BATCH_SIZE", _positive_int, "REC_BATCH_SIZE", doc="faces per run"),
    "max_pixels": _opt("FACEFLEET_MAX_PIXELS", _positive_int, doc="largest image accepted, in pixels"),
    "max_faces": _opt("FACEFLEET_MAX_FACES", _positive_int, doc="most faces kept per image, best scores first"),
    "cpu_threads": _opt("FACEFLEET_CPU_THREADS", _non_negative_int, doc="CPU intra-op threads (0 = all)"),
    "device_id": _opt("FACEFLEET_DEVICE_ID", _non_negative_int, doc="CUDA / TensorRT device"),
    "trt_fp16": _opt("FACEFLEET_TRT_FP16", _parse_bool, "FORCE_FP16", doc="TensorRT FP16 kernels"),
    "trt_workspace_mb": _opt(
        "FACEFLEET_TRT_WORKSPACE_MB", _non_negative_int, doc="TensorRT builder workspace bound (0 = TensorRT's choice)"
    ),
    "cudnn_conv_algo_search": _opt(
        "FACEFLEET_CUDNN_CONV_ALGO_SEARCH", _one_of(CONV_ALGO_SEARCHES), doc="cuDNN convolution algorithm search"
    ),
    "gpu_mem_limit_mb": _opt("FACEFLEET_GPU_MEM_LIMIT_MB", _non_negative_int, doc="CUDA arena bound (0 = none)"),
    "gpu_arena_extend_strategy": _opt(
        "FACEFLEET_GPU_ARENA_EXTEND_STRATEGY", _one_of(ARENA_STRATEGIES), doc="how the CUDA arena grows"
    ),
    "verify_models": _opt("FACEFLEET_VERIFY_MODELS", _parse_bool, doc="check sha256 before loading"),
    "cpu_mem_arena": _opt("FACEFLEET_CPU_MEM_ARENA", _parse_bool, doc="onnxruntime's CPU arena (keeps peak memory)"),
    "host": _opt("FACEFLEET_HOST", str, doc="address the service listens on"),
    "port": _opt("FACEFLEET_PORT", _positive_int, "PORT", doc="port the service listens on"),
    "workers": _opt("FACEFLEET_WORKERS", _positive_int, "NUM_WORKERS", doc="gunicorn worker processes"),
    "threads": _opt("FACEFLEET_THREADS", _non_negative_int, doc="threads per worker (0 = derived)"),
    "max_body_mb": _opt("FACEFLEET_MAX_BODY_MB", _non_negative_float, doc="largest request body"),
    "max_images": _opt("FACEFLEET_MAX_IMAGES", _positive_int, doc="most images in one request"),
    "max_concurrent": _opt("FACEFLEET_MAX_CONCURRENT", _non_negative_int, doc="requests in the engine (0 = auto)"),
    "queue_size": _opt("FACEFLEET_QUEUE_SIZE", _non_negative_int, doc="requests that may wait; past it 503"),
    "queue_timeout_s": _opt("FACEFLEET_QUEUE_TIMEOUT_S", _non_negative_float, doc="longest wait for the engine"),
    "batching": _opt("FACEFLEET_BATCHING", _parse_bool, doc="cross-request batching"),
    "batch_wait_ms": _opt("FACEFLEET_BATCH_WAIT_MS", _non_negative_float, doc="longest wait to fill a batch"),
    "allow_urls": _opt("FACEFLEET_ALLOW_URLS", _parse_bool, doc="accept images.urls"),
    "url_allow": _opt("FACEFLEET_URL_ALLOW", _host_list, doc="hosts/CIDRs allowed despite being private"),
    "url_max_mb": _opt("FACEFLEET_URL_MAX_MB", _non_negative_float, doc="largest image fetched from a URL"),
    "url_timeout_s": _opt("FACEFLEET_URL_TIMEOUT_S", _non_negative_float, doc="time limit of one URL fetch"),
    "images_root": _opt("FACEFLEET_IMAGES_ROOT", str, doc="folder local image paths are read from"),
    "gallery_db": _opt("FACEFLEET_GALLERY_DB", str, doc="SQLite file of the galleries"),
    "metrics_dir": _opt("FACEFLEET_METRICS_DIR", str, doc="prometheus multiprocess folder"),
    "log_format": _opt("FACEFLEET_LOG_FORMAT", _log_format, doc="text or json"),
    "log_level": _opt("FACEFLEET_LOG_LEVEL", _log_level, "LOG_LEVEL", doc="log level"),
    "auth": _opt("FACEFLEET_AUTH", _auth_mode, doc="on: every request needs an API key; off: open (logged)"),
    "api_keys": _opt("FACEFLEET_API_KEYS", _host_list, doc="API keys, comma-separated (prefer the file)"),
    "api_keys_file": _opt("FACEFLEET_API_KEYS_FILE", str, doc="file of API keys, one per line, # comments"),
    "auth_open_paths": _opt("FACEFLEET_AUTH_OPEN_PATHS", _path_list, doc="paths answered without a key"),
    "exporter_host": _opt("FACEFLEET_EXPORTER_HOST", str, doc="address the exporter listens on"),
    "exporter_port": _opt("FACEFLEET_EXPORTER_PORT", _positive_int, doc="port the exporter listens on"),
    "sysfs_root": _opt("FACEFLEET_SYSFS_ROOT", str, doc="root of /sys, /etc, /proc for hardware"),
    "service_url": _opt("FACEFLEET_SERVICE_URL", str, doc="service the exporter probes"),
    "nvpmodel": _opt("FACEFLEET_NVPMODEL", str, doc="nvpmodel command"),
}


def _read_config_file(path: str) -> dict[str, Any]:
    """An optional YAML file of setting names (or their variables) to values; values are parsed
    exactly as environment values are, so one set of rules and error messages serves both."""
    if not path:
        return {}
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read FACEFLEET_CONFIG={path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"FACEFLEET_CONFIG={path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"FACEFLEET_CONFIG={path} must be a mapping of settings to values")
    by_env = {spec["env"]: name for name, spec in OPTIONS.items()}
    by_env.update({alias: name for name, spec in OPTIONS.items() for alias in spec["aliases"]})
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key if key in OPTIONS else by_env.get(str(key))
        if name is None:
            raise ConfigError(f"FACEFLEET_CONFIG={path}: unknown setting {key!r}")
        text = (
            ",".join(map(str, value))
            if isinstance(value, list)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        try:
            values[name] = OPTIONS[name]["parse"](text)
        except ValueError as exc:
            raise ConfigError(f"FACEFLEET_CONFIG={path}: invalid {key}={value!r}: {exc}") from None
    return values
