"""From a manifest name to a warmed-up session: file check, prepared copy, provider chain, and a
check that the model fits its place (facefleet.engine.roles)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from facefleet.engine.roles import check_file_role, check_role
from facefleet.engine.runtime import OpenedSession, open_session
from facefleet.errors import ProviderError
from facefleet.models.manifest import ModelSpec
from facefleet.models.modelfiles import require_model_file
from facefleet.models.prepare import prepare_model
from facefleet.settings import Settings


def trt_fixed_hw(spec: ModelSpec, settings: Settings) -> tuple[int, int] | None:
    """A detector with dynamic H x W gets a fixed-size copy when TensorRT leads the chain:
    TensorRT rejects dynamic spatial dimensions without optimisation profiles, and one fixed
    shape builds one cached engine."""
    if (
        spec.task != "detection"
        or spec.fixed_hw
        or not settings.engine.providers
        or settings.engine.providers[0] != "tensorrt"
    ):
        return None
    width, height = settings.engine.det_size
    return (height, width)


def largest_batch(spec: ModelSpec, settings: Settings) -> int:
    """The largest batch the engine runs the model with, where TensorRT's optimisation profile
    ends: the recognizer's batch size; the detector's, unless its outputs have no batch axis
    (the flat SCRFD layout, run one image at a time; service/engine/detector.py decides the same)."""
    size: int = settings.engine.rec_batch_size
    if spec.task == "detection":
        size = settings.engine.det_batch_size if spec.layout != "scrfd_flat" else 1
    return size


def load_model(
    spec: ModelSpec,
    settings: Settings,
    *,
    available: Sequence[str] | None = None,
    session_factory: Callable[..., Any] | None = None,
) -> tuple[OpenedSession, str]:
    """The opened session and the source file's sha256 (its identity in reports and caches).
    Raises ModelRoleError when the file does not fit its manifest entry's task."""
    path, digest = require_model_file(spec, settings.models.models_dir, settings.models.verify_models)
    runnable = prepare_model(spec, path, digest, settings.models.cache_dir, trt_fixed_hw(spec, settings))
    opened = open_model_file(
        spec, settings, runnable, digest, source=path, available=available, session_factory=session_factory
    )
    return opened, digest


def warmup_hw(spec: ModelSpec, settings: Settings) -> tuple[int, int]:
    """The input height x width a model warms up with: its own fixed size, else what the engine feeds it."""
    if spec.task == "detection":
        return spec.fixed_hw or (settings.engine.det_size[1], settings.engine.det_size[0])
    if spec.task == "mask":  # channels-last [N, side, side, 3]
        return (spec.input_shape[1] or 224, spec.input_shape[2] or 224)
    return spec.fixed_hw or (112, 112)


def open_model_file(
    spec: ModelSpec,
    settings: Settings,
    runnable: str | Path,
    digest: str,
    *,
    source: Path | None = None,
    available: Sequence[str] | None = None,
    session_factory: Callable[..., Any] | None = None,
) -> OpenedSession:
    """A runnable file opened as `spec` on the provider chain and checked against its role; also how
    an INT8 candidate is opened for its accuracy gate before it is installed (facefleet.app.int8gate)."""
    hw = warmup_hw(spec, settings)
    try:
        opened = open_session(
            runnable,
            digest,
            settings,
            hw,
            batch=largest_batch(spec, settings),
            available=available,
            session_factory=session_factory,
        )
    except ProviderError:
        check_file_role(spec, source or Path(runnable), hw)  # a file of the wrong kind is the clearer reason
        raise
    check_role(spec, opened)  # a detector's file in the recognizer's place may open fine, then fail every request
    return opened
