"""The event a camera stream publishes, one typed value with one JSON form.

A tracked face produces `track_started` when it first appears, `identified` when recognition names it (again
when a better crop changes the identity or raises its score) and `track_ended` when the tracker loses it. The
same JSON goes to MQTT, to webhooks and into the outbox, so a consumer reads one schema (`EVENT_SCHEMA`, in
docs/streams.md). Names that become MQTT topic levels (appliance, camera) are checked here, once, because a
`/`, `+` or `#` in them would silently publish to another topic.
"""

from __future__ import annotations

import base64
import json
import math
import numbers
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Literal, cast

EventKind = Literal["track_started", "identified", "track_ended"]
KINDS: tuple[EventKind, ...] = ("track_started", "identified", "track_ended")
UNKNOWN = "unknown"  # the subject of a face no gallery entry matched (or not yet recognised)
SCHEMA_VERSION = 1
TOPIC_PREFIX = "facefleet"
# An appliance or camera name: one MQTT topic level and a safe file/label name. No `/`, `+`, `#` or spaces.
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_NAME = re.compile(NAME_PATTERN)


def check_name(what: str, value: str) -> str:
    """`value` if it can be one MQTT topic level, else ValueError naming `what` and the rule."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"{what} name {value!r} is not usable: 1-64 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (it is an MQTT topic level)"
        )
    return value


def utc_iso(moment: datetime) -> str:
    """`moment` as UTC ISO 8601 with milliseconds and a `Z`: `2026-12-04T05:10:36.123Z`."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_utc(text: str) -> datetime:
    """The inverse of `utc_iso` (any ISO 8601 with an offset; `Z` accepted on Python 3.10)."""
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is None:
        raise ValueError(f"event time {text!r} has no UTC offset")
    return moment.astimezone(timezone.utc)


def now_utc() -> datetime:
    """Now, in UTC, at millisecond precision (what the JSON keeps, so an event survives a round trip equal)."""
    moment = datetime.now(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class StreamEvent:
    """One event of one track on one camera of one appliance.

    `subject` is the gallery subject or `UNKNOWN`; `score` the match score (None before recognition ran);
    `gallery` the gallery searched (None when the stream has none); `bbox` the face's box in frame pixels
    (x1, y1, x2, y2); `crop` the face crop as JPEG bytes (None: no crop). Build with keywords; `event_id` and
    `time` default to a fresh uuid4 and now.
    """

    kind: EventKind
    appliance: str
    camera: str
    track_id: int
    subject: str = UNKNOWN
    score: float | None = None
    gallery: str | None = None
    bbox: tuple[int, int, int, int] | None = None
    crop: bytes | None = field(default=None, repr=False)
    time: datetime = field(default_factory=now_utc)
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"event kind {self.kind!r} is not one of {', '.join(KINDS)}")
        check_name("appliance", self.appliance)
        check_name("camera", self.camera)
        # numpy scalars (what a tracker hands over) become plain numbers: the JSON and the equality stay exact
        if isinstance(self.track_id, bool) or not isinstance(self.track_id, numbers.Integral) or self.track_id < 0:
            raise ValueError(f"track id {self.track_id!r} is not a non-negative integer")
        object.__setattr__(self, "track_id", int(self.track_id))
        if not self.subject:
            raise ValueError("an event's subject is a gallery subject or 'unknown', not empty")
        if self.score is not None:
            if not isinstance(self.score, numbers.Real) or not math.isfinite(self.score):
                raise ValueError(f"event score {self.score!r} is not a finite number")
            object.__setattr__(self, "score", float(self.score))
        if self.bbox is not None:
            if len(self.bbox) != 4:
                raise ValueError(f"event bbox {self.bbox!r} is not (x1, y1, x2, y2)")
            object.__setattr__(self, "bbox", tuple(round(float(v)) for v in self.bbox))
        if self.time.tzinfo is None:
            raise ValueError("an event's time must carry its time zone (UTC)")
        object.__setattr__(self, "time", self.time.astimezone(timezone.utc))
        uuid.UUID(self.event_id)  # ValueError when it is not one

    def topic(self, prefix: str = TOPIC_PREFIX) -> str:
        """The MQTT topic: `<prefix>/<appliance>/<camera>/<kind>`."""
        return f"{prefix}/{self.appliance}/{self.camera}/{self.kind}"

    def without_crop(self) -> StreamEvent:
        return replace(self, crop=None) if self.crop is not None else self

    def to_dict(self, include_crop: bool = True) -> dict[str, Any]:
        """The JSON object of `EVENT_SCHEMA`; `include_crop=False` leaves the crop out (`"crop": null`)."""
        crop = self.crop if include_crop else None
        return {
            "schema_version": SCHEMA_VERSION,
            "event_id": self.event_id,
            "kind": self.kind,
            "appliance": self.appliance,
            "camera": self.camera,
            "track_id": self.track_id,
            "time": utc_iso(self.time),
            "subject": self.subject,
            "score": None if self.score is None else round(float(self.score), 4),
            "gallery": self.gallery,
            "bbox": None if self.bbox is None else list(self.bbox),
            "crop": None if crop is None else base64.b64encode(crop).decode("ascii"),
        }

    def to_json(self, include_crop: bool = True) -> str:
        return json.dumps(self.to_dict(include_crop), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StreamEvent:
        """An event from its JSON object (what the outbox stores, what a consumer receives)."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"event schema version {version!r} is not {SCHEMA_VERSION}")
        bbox = data.get("bbox")
        crop = data.get("crop")
        return cls(
            kind=cast(EventKind, data["kind"]),
            appliance=data["appliance"],
            camera=data["camera"],
            track_id=data["track_id"],
            subject=data["subject"],
            score=data.get("score"),
            gallery=data.get("gallery"),
            bbox=None if bbox is None else (bbox[0], bbox[1], bbox[2], bbox[3]),
            crop=None if crop is None else base64.b64decode(crop, validate=True),
            time=parse_utc(data["time"]),
            event_id=data["event_id"],
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> StreamEvent:
        return cls.from_dict(json.loads(text))


_NAME_SCHEMA = {"type": "string", "pattern": f"^{NAME_PATTERN}$"}
# JSON Schema (draft 2020-12) of `StreamEvent.to_dict`; docs/streams.md documents each field.
EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://facefleet.invalid/schemas/stream-event-1.json",
    "title": "facefleet stream event",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "schema_version",
        "event_id",
        "kind",
        "appliance",
        "camera",
        "track_id",
        "time",
        "subject",
        "score",
        "gallery",
        "bbox",
        "crop",
    ],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "event_id": {"type": "string", "format": "uuid"},
        "kind": {"enum": list(KINDS)},
        "appliance": _NAME_SCHEMA,
        "camera": _NAME_SCHEMA,
        "track_id": {"type": "integer", "minimum": 0},
        "time": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"},
        "subject": {"type": "string", "minLength": 1},
        "score": {"type": ["number", "null"]},
        "gallery": {"type": ["string", "null"]},
        "bbox": {
            "oneOf": [
                {"type": "null"},
                {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
            ]
        },
        "crop": {"type": ["string", "null"], "contentEncoding": "base64", "contentMediaType": "image/jpeg"},
    },
}
