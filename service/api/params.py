"""InsightFace-REST's request fields, validated with one clear message per mistake."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import APIError

FLAGS = (
    "embed_only",
    "return_face_data",
    "return_landmarks",
    "extract_embedding",
    "extract_ga",
    "verbose_timings",
    "msgpack",
)


@dataclass(frozen=True)
class ImageRef:
    """One image of a request: inline data (base64 text or raw msgpack bytes) or a URL/path."""

    kind: str  # "data" | "url"
    value: str | bytes


@dataclass(frozen=True)
class ExtractParams:
    images: list[ImageRef]
    threshold: float
    limit_faces: int
    min_face_size: float
    embed_only: bool = False
    return_face_data: bool = False
    return_landmarks: bool = False
    extract_embedding: bool = True
    extract_ga: bool = False
    verbose_timings: bool = False
    msgpack: bool = False


def bad(message: str) -> APIError:
    return APIError(400, "invalid_request", message)


def number(body: dict[str, Any], key: str, default: float, low: float, high: float | None = None) -> float:
    """A finite number in [low, high]; null means the default. Integers too large for a float
    (JSON has no limit) count as infinity rather than failing the request."""
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad(f"{key} must be a number, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise bad(f"{key} must be a finite number")
    if value < low or (high is not None and value > high):
        raise bad(f"{key} must be from {low:g} to {high:g}" if high is not None else f"{key} must be >= {low:g}")
    try:
        return float(value)
    except OverflowError:
        return math.inf


def whole(body: dict[str, Any], key: str, default: int) -> int:
    """A whole number >= 0 (2.0 counts, as JSON Schema's integer does); null means the default."""
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"{key} must be a whole number")
    if value < 0:
        raise bad(f"{key} must be >= 0")
    return value


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"{key} must be true or false, not {type(value).__name__}")
    return value


def image_refs(body: dict[str, Any], max_images: int) -> list[ImageRef]:
    images = body.get("images")
    if images is None:
        raise bad('missing field "images": expected {"images": {"data": [base64, ...]}} or {"images": {"urls": [...]}}')
    if not isinstance(images, dict):
        raise bad(f'"images" must be an object with "data" and/or "urls", not {type(images).__name__}')
    refs: list[ImageRef] = []
    for kind, types in (("data", (str, bytes)), ("urls", (str,))):
        items = images.get(kind)
        if items is None:
            items = []
        if not isinstance(items, list):
            raise bad(f"images.{kind} must be a list, not {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, types):
                expected = "a base64 string" if kind == "data" else "a URL string"
                raise bad(f"images.{kind}[{i}] must be {expected}, not {type(item).__name__}")
            refs.append(ImageRef("data" if kind == "data" else "url", item))
    if not refs:
        raise bad("images.data and images.urls are both empty: send at least one image")
    if len(refs) > max_images:
        raise APIError(413, "too_many_images", f"{len(refs)} images in one request; the limit is {max_images}")
    return refs


def extract_params(body: dict[str, Any], default_threshold: float, max_images: int) -> ExtractParams:
    flags = {key: flag(body, key, key == "extract_embedding") for key in FLAGS}
    return ExtractParams(
        images=image_refs(body, max_images),
        threshold=number(body, "threshold", default_threshold, 0, 1),
        limit_faces=whole(body, "limit_faces", 0),
        min_face_size=number(body, "min_face_size", 0, 0),
        **flags,
    )
