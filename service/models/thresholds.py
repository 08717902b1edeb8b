"""One rule for every detection and verification threshold, so no call site keeps its own fallback.

Request value > operator's setting (FACEFLEET_DET_THRESH / FACEFLEET_VERIFY_THRESH) > the model's own
value from models/manifest.yml, chosen per model on a labelled set (bench/thresholds.py, docs/models.md)
> the global default, which only covers a model whose manifest entry has none (or no model at all).
The detector, the recognizer, the HTTP handlers, the galleries and the CLI all come here, through
`Detector.threshold` / `Recognizer.threshold` or facefleet.app.faces' `detection_threshold` /
`verification_threshold`.
"""

from __future__ import annotations

from facefleet.models.manifest import ModelSpec

DEFAULT_DET_THRESHOLD = 0.5  # detector without a `det_threshold` in the manifest
DEFAULT_VERIFY_THRESHOLD = 0.4  # recognizer without a `verify_threshold` in the manifest


def pick(explicit: float | None, model: float | None, default: float) -> float:
    """Explicit > model > default; 0 is an explicit value, only None falls through."""
    if explicit is not None:
        return float(explicit)
    return float(model) if model is not None else default


def det_threshold(spec: ModelSpec, setting: float | None, requested: float | None = None) -> float:
    """Face score threshold: the request's, else FACEFLEET_DET_THRESH, else the detector's manifest value."""
    explicit = requested if requested is not None else setting
    return pick(explicit, spec.det_threshold, DEFAULT_DET_THRESHOLD)


def verify_threshold(spec: ModelSpec | None, setting: float | None, requested: float | None = None) -> float:
    """Cosine similarity at or above which two faces are one person: the request's, else
    FACEFLEET_VERIFY_THRESH, else the recognizer's manifest value (`spec` None: no recognizer loaded)."""
    explicit = requested if requested is not None else setting
    return pick(explicit, spec.verify_threshold if spec else None, DEFAULT_VERIFY_THRESHOLD)
