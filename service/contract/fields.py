"""Field types of the request models: what the OpenAPI document says of a field and the check that
refuses it, declared once, on the same annotation.

Each check runs before pydantic's own validation and raises `APIError` with the service's own
sentence (InsightFace-REST clients read these), so pydantic's constraints only ever see values
the check let through: the constraints are there for the JSON schema, and as a safety net.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from facefleet.contract.errors import APIError
from facefleet.galleries.store import NAME, GalleryError, check_subject
from facefleet.settings import HEADERS_SCHEMA, check_headers

Check = Callable[[Any, ValidationInfo], Any]


def bad(message: str) -> APIError:
    """The 400 of a malformed field, with the sentence that says what to send instead."""
    return APIError(400, "invalid_request", message)


def number_check(low: float, high: float | None = None) -> Check:
    """A finite number in [low, high]; null means the default. Integers too large for a float
    (JSON has no limit) count as infinity rather than failing the request."""

    def check(value: Any, info: ValidationInfo) -> float | None:
        key = info.field_name
        if value is None:
            return None
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

    return check


def whole_check(value: Any, info: ValidationInfo) -> int | None:
    """A whole number >= 0 (2.0 counts, as JSON Schema's integer does); null means the default."""
    key = info.field_name
    if value is None:
        return None
    whole = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(whole, bool) or not isinstance(whole, int):
        raise bad(f"{key} must be a whole number")
    if whole < 0:
        raise bad(f"{key} must be >= 0")
    return whole


def flag_check(value: Any, info: ValidationInfo) -> bool | None:
    """true or false; null means the default."""
    if value is not None and not isinstance(value, bool):
        raise bad(f"{info.field_name} must be true or false, not {type(value).__name__}")
    return value


def headers_check(value: Any, info: ValidationInfo) -> Any:
    """Header names to values for the request's image downloads (facefleet.settings.check_headers)."""
    if value is None:
        return None
    try:
        return check_headers(value)
    except ValueError as exc:
        raise bad(f"{info.field_name}: {exc}") from None


def images_check(value: Any, info: ValidationInfo) -> Any:
    """`{"data": [...], "urls": [...]}` with at least one image, each of the right kind."""
    if value is None:
        raise bad('missing field "images": expected {"images": {"data": [base64, ...]}} or {"images": {"urls": [...]}}')
    if not isinstance(value, dict):
        raise bad(f'"images" must be an object with "data" and/or "urls", not {type(value).__name__}')
    count = 0
    for kind, types in (("data", (str, bytes)), ("urls", (str,))):
        items = value.get(kind)
        if items is None:
            continue
        if not isinstance(items, list):
            raise bad(f"images.{kind} must be a list, not {type(items).__name__}")
        for i, item in enumerate(items):
            if not isinstance(item, types):
                expected = "a base64 string" if kind == "data" else "a URL string"
                raise bad(f"images.{kind}[{i}] must be {expected}, not {type(item).__name__}")
        count += len(items)
    if not count:
        raise bad("images.data and images.urls are both empty: send at least one image")
    return value


MISSING_IMAGES = 'missing field "images": expected {"images": {"data": [base64, ...]}} or {"images": {"urls": [...]}}'


def gallery_check(value: Any, info: ValidationInfo) -> Any:
    if value is not None and not isinstance(value, str):
        raise bad("gallery must be a gallery's name")
    return value


def name_check(value: Any, info: ValidationInfo) -> Any:
    """The gallery store checks the name itself (its pattern, with its sentence)."""
    if not isinstance(value, str):
        raise bad('missing field "name": the gallery\'s name')
    return value


def subject_check(value: Any, info: ValidationInfo) -> Any:
    """The gallery store's own rule and sentence (a GalleryError, answered like every other)."""
    return check_subject(value)


def metadata_check(value: Any, info: ValidationInfo) -> Any:
    """Any JSON object; its size limit (16 KB) is the gallery store's."""
    if value is not None and not isinstance(value, dict):
        raise GalleryError("metadata must be a JSON object")
    return value


def top_k_check(value: Any, info: ValidationInfo) -> int:
    """1 to 100 matches per face; a fractional number is cut, as it always was."""
    return int(number_check(1, MAX_TOP_K)(value, info) or 1)


def pair_check(value: Any, info: ValidationInfo) -> Any:
    """/verify's two vectors; their length and values are checked against the recognizer."""
    if not isinstance(value, list) or len(value) != 2:
        raise bad("embeddings must be a list of exactly two vectors")
    return value


def vectors_check(value: Any, info: ValidationInfo) -> Any:
    """Enrolment's vectors; their length and values are checked against the recognizer."""
    if not isinstance(value, list) or not value or not all(isinstance(v, list) for v in value):
        raise bad("embeddings must be a non-empty list of vectors")
    return value


def indices_check(value: Any, info: ValidationInfo) -> Any:
    """`face_indices`: [i, j], each a face's num_det (0-based, detection order) or null for the default."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise bad("face_indices must be a list of two face numbers (num_det, from 0) or nulls")
    indices: list[int | None] = []
    for i, raw in enumerate(value):
        # 1.0 is an integer to JSON Schema, as in whole_check()
        item = int(raw) if isinstance(raw, float) and raw.is_integer() else raw
        if item is not None and (isinstance(item, bool) or not isinstance(item, int) or item < 0):
            raise bad(f"face_indices[{i}] must be a face's num_det (a whole number from 0) or null")
        indices.append(item)
    return indices


FORM_TRUE = ("true", "1", "yes", "on")
FORM_FALSE = ("false", "0", "no", "off")
FormWord = Literal["true", "false", "1", "0", "yes", "no", "on", "off"]


def form_flag_check(value: Any, info: ValidationInfo) -> Any:
    """A multipart flag: true/1/yes/on or false/0/no/off, any letter case."""
    if not isinstance(value, str):
        return value
    if value.lower() in FORM_TRUE:
        return True
    if value.lower() in FORM_FALSE:
        return False
    raise bad(f"{info.field_name} must be true or false")


def form_number(value: Any, info: ValidationInfo) -> Any:
    """A form field as JSON would carry it: empty is null, else the number it spells."""
    if not isinstance(value, str):
        return value
    if value == "":
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise bad(f"{info.field_name} must be a number") from None


class Base64:
    """An image inline: base64 text in JSON, raw bytes in msgpack (InsightFace-REST does both).
    Documented as a base64 string (`format: byte`), the form a JSON client sends."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.union_schema([core_schema.str_schema(strict=True), core_schema.bytes_schema(strict=True)])

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(core_schema.str_schema()), "format": "byte"}


def schema_only(**keywords: Any) -> Any:
    """Constraints the OpenAPI document states while another part of the service enforces them, with
    its own message (gallery names and subject ids: the gallery store, whichever way they arrive)."""
    return Field(json_schema_extra=keywords)


def nullable(check: Check, documented: Any) -> BeforeValidator:
    """`check` first; the document shows `documented`, or null (which means the field's default)."""
    return BeforeValidator(check, json_schema_input_type=documented | None)


MAX_TOP_K = 100
Flag = Annotated[bool, nullable(flag_check, bool)]
Whole = Annotated[int, Field(ge=0), nullable(whole_check, Annotated[int, Field(ge=0)])]
Score = Annotated[float | None, Field(ge=0, le=1), BeforeValidator(number_check(0, 1))]
Similarity = Annotated[float | None, Field(ge=-1, le=1), BeforeValidator(number_check(-1, 1))]
Pixels = Annotated[float, Field(ge=0), nullable(number_check(0), Annotated[float, Field(ge=0)])]
TopK = Annotated[
    int, nullable(top_k_check, Annotated[float, Field(ge=1, le=MAX_TOP_K)]), Field(description="matches per face")
]
ImageData = Annotated[str | bytes, Base64]
ImagesCheck = BeforeValidator(images_check)
GalleryName = Annotated[str, schema_only(pattern=NAME.pattern)]
GalleryRef = Annotated[str | None, schema_only(pattern=NAME.pattern), BeforeValidator(gallery_check)]
Name = Annotated[str, schema_only(pattern=NAME.pattern), BeforeValidator(name_check)]
SUBJECT_PATTERN = r"^[^/\x00-\x1f\x7f]*[^/\s\x00-\x1f\x7f][^/\x00-\x1f\x7f]*$"
Subject = Annotated[
    str,
    schema_only(minLength=1, maxLength=128, pattern=SUBJECT_PATTERN),
    Field(description="no '/' nor control characters, not only spaces"),
    BeforeValidator(subject_check),
]
Metadata = Annotated[
    Any, nullable(metadata_check, dict[str, Any]), Field(description="any JSON object, at most 16 KB; null: none")
]
VerifyVectors = Annotated[Any, nullable(pair_check, Annotated[list[list[float]], Field(min_length=2, max_length=2)])]
EnrolVectors = Annotated[Any, nullable(vectors_check, Annotated[list[list[float]], Field(min_length=1)])]
FaceIndices = Annotated[
    list[int | None] | None,
    nullable(indices_check, Annotated[list[Annotated[int, Field(ge=0)] | None], Field(min_length=2, max_length=2)]),
]
DownloadHeaders = Annotated[
    dict[str, str] | None,
    nullable(headers_check, Annotated[dict[str, str], Field(json_schema_extra=HEADERS_SCHEMA)]),
]
FormFlag = Annotated[bool, BeforeValidator(form_flag_check, json_schema_input_type=FormWord)]
FormScore = Annotated[
    float | None,
    Field(ge=0, le=1),
    BeforeValidator(number_check(0, 1)),
    BeforeValidator(form_number, json_schema_input_type=Annotated[float, Field(ge=0, le=1)]),
]
FormWhole = Annotated[
    int | None,
    Field(ge=0),
    BeforeValidator(whole_check),
    BeforeValidator(form_number, json_schema_input_type=Annotated[int, Field(ge=0)]),
]
