"""An appliance's /info as the poller and the pages read it.

Two readings of the same answer. `clean_info` is what the JSON API and the appliance page show:
the appliance's own answer with the containers the templates walk of the types they expect, so
one appliance answering garbage cannot take the poll cycle (every appliance's view) or its own
page down; scalars are left as they are (the pages print them escaped). `read_info` is what the
dashboard computes with (providers, chains, versions, galleries): each field is validated with the
type the service's contract (`facefleet.contract.models.Info`) declares for it, strictly, and a
field that is absent or does not match is left out, so an appliance of an older or newer release,
or a hostile one, still gets a view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from facefleet.contract.models import Attempt, GallerySummary, Info, ModelInfo, Runtime

_STRICT = ConfigDict(strict=True)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _model(model: dict[str, Any]) -> dict[str, Any]:
    sha = model.get("sha256")
    return {**model, "attempts": _dicts(model.get("attempts")), "sha256": sha if isinstance(sha, str) else ""}


def clean_info(info: dict[str, Any]) -> dict[str, Any]:
    """`info` with `onnxruntime`, `models` (and each model's `attempts`) and `defaults` of the
    types the poller and the templates walk; anything else in the wrong place is dropped."""
    if not info:
        return {}
    ort = _dict(info.get("onnxruntime"))
    providers = ort.get("available_providers")
    models = _dict(info.get("models"))
    return {
        **info,
        "onnxruntime": {
            **ort,
            "available_providers": [str(p) for p in providers] if isinstance(providers, list) else [],
        },
        "models": {str(task): _model(m) for task, m in models.items() if isinstance(m, dict)},
        "defaults": _dict(info.get("defaults")),
    }


@cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    annotation: Any = model.model_fields[name].annotation
    return TypeAdapter(annotation, config=_STRICT)


def _field(model: type[BaseModel], name: str, container: Any) -> Any:
    """`container[name]` as the contract's `model.name` types it, or None if absent or not of that type."""
    if not isinstance(container, dict) or name not in container:
        return None
    try:
        return _adapter(model, name).validate_python(container[name])
    except ValidationError:
        return None


@dataclass(frozen=True)
class ModelSeen:
    """One model of an appliance: its name, the provider it runs on, the providers it tried."""

    name: str
    provider: str
    chain: tuple[str, ...]


@dataclass(frozen=True)
class GallerySeen:
    """One gallery an appliance serves, as /info lists it."""

    version: int
    checksum: str
    subjects: int | None


@dataclass(frozen=True)
class InfoSeen:
    """The fields of an appliance's /info the dashboard computes with, each of its contract type."""

    shown: dict[str, Any] = field(default_factory=dict)  # clean_info: what the pages and the JSON API show
    version: str | None = None
    onnxruntime: str | None = None
    tensorrt: str | None = None
    models: tuple[ModelSeen, ...] = ()
    configured: tuple[Any, ...] = ()  # defaults.providers: the configured chain
    galleries: dict[str, GallerySeen] = field(default_factory=dict)


def _models(info: dict[str, Any]) -> tuple[ModelSeen, ...]:
    models = _dict(info.get("models"))
    seen = []
    for model in models.values():
        if not isinstance(model, dict):  # InsightFace-REST's keys of the block (det_name, max_size, ...)
            continue
        name = _field(ModelInfo, "name", model)
        if name is None:
            continue
        chain = tuple(p for a in _dicts(model.get("attempts")) if (p := _field(Attempt, "provider", a)) is not None)
        # a provider this release does not know is still shown as the appliance names it
        seen.append(ModelSeen(name, str(model.get("active_provider")), chain))
    return tuple(seen)


def galleries(info: Mapping[str, Any]) -> dict[str, GallerySeen]:
    """{gallery: what /info says of it}; an entry without a contract-typed name and version is skipped."""
    items = info.get("galleries")
    out: dict[str, GallerySeen] = {}
    for g in items if isinstance(items, list) else []:
        name, version = _field(GallerySummary, "name", g), _field(GallerySummary, "version", g)
        if name is not None and version is not None:
            checksum = g.get("checksum", "")
            out[name] = GallerySeen(version, str(checksum), _field(GallerySummary, "subjects", g))
    return out


def read_info(answer: dict[str, Any]) -> InfoSeen:
    """An appliance's /info (any JSON object) as the fields the dashboard computes with."""
    if not answer:
        return InfoSeen()
    ort = answer.get("onnxruntime")
    tensorrt = ort.get("tensorrt") if isinstance(ort, dict) else None  # not in the contract: a build's extra
    configured = _dict(_field(Info, "defaults", answer)).get("providers")
    return InfoSeen(
        shown=clean_info(answer),
        version=_field(Info, "version", answer),
        onnxruntime=_field(Runtime, "version", ort),
        tensorrt=str(tensorrt) if tensorrt else None,
        models=_models(answer),
        configured=tuple(configured) if isinstance(configured, list) else (),
        galleries=galleries(answer),
    )
