"""An appliance's /info as the poller and the pages read it: whatever JSON came back, the
containers they walk have the types they expect, so one appliance answering garbage cannot
take the poll cycle (every appliance's view) or its own page down. Scalars are left as they
are: the pages print them escaped."""

from __future__ import annotations

from typing import Any


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
