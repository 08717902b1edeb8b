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

from .errors import ConfigError

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHAPE_POLICIES = ("fixed", "fit")


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
    det_threshold: float = 0.5
    nms_iou: float = 0.4
    det_size: tuple[int, int] = (640, 640)
    shape_policy: str = "fixed"
    det_batch_size: int = 1
    rec_batch_size: int = 16
    max_pixels: int = 40_000_000
    cpu_threads: int = 0
    device_id: int = 0
    trt_fp16: bool = True
    verify_models: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment; `overrides` (CLI flags) win over it."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
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
    "det_threshold": _opt("FACEFLEET_DET_THRESH", _unit_float, "DEF_DET_THRESH", doc="face score threshold"),
    "nms_iou": _opt("FACEFLEET_NMS_IOU", _unit_float, doc="IoU above which overlapping boxes merge"),
    "det_size": _opt("FACEFLEET_DET_SIZE", _parse_size, "MAX_SIZE", doc="detector input WIDTH,HEIGHT"),
    "shape_policy": _opt("FACEFLEET_SHAPE_POLICY", _parse_policy, doc="fixed (W x H) or fit (image aspect)"),
    "det_batch_size": _opt("FACEFLEET_DET_BATCH_SIZE", _positive_int, "DET_BATCH_SIZE", doc="images per run"),
    "rec_batch_size": _opt("FACEFLEET_REC_BATCH_SIZE", _positive_int, "REC_BATCH_SIZE", doc="faces per run"),
    "max_pixels": _opt("FACEFLEET_MAX_PIXELS", _positive_int, doc="largest image accepted, in pixels"),
    "cpu_threads": _opt("FACEFLEET_CPU_THREADS", _non_negative_int, doc="CPU intra-op threads (0 = all)"),
    "device_id": _opt("FACEFLEET_DEVICE_ID", _non_negative_int, doc="CUDA / TensorRT device"),
    "trt_fp16": _opt("FACEFLEET_TRT_FP16", _parse_bool, "FORCE_FP16", doc="TensorRT FP16 kernels"),
    "verify_models": _opt("FACEFLEET_VERIFY_MODELS", _parse_bool, doc="check sha256 before loading"),
}
