"""Every operation of the HTTP API in one table: method, path, request model, answers. The OpenAPI
document is assembled from it (contract/openapi.py); tests/test_api.py checks that the Flask app
serves exactly these routes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from facefleet.contract import models as m
from facefleet.contract.fields import GalleryName, Subject

JSON = ("application/json",)
JSON_OR_MSGPACK_IN = ("application/json", "application/msgpack")
# An answer in JSON, or msgpack when the request says "msgpack": true or Accept: application/x-msgpack.
JSON_OR_MSGPACK_OUT = ("application/json", "application/x-msgpack")
ANY_BYTES = bytes  # image/jpeg and application/zip bodies: documented as binary


@dataclass(frozen=True)
class Reply:
    """One documented answer: a model (JSON, or the media types given), or a raw body whose schema is
    a Python type's (`raw`), or none at all for image/jpeg (any bytes)."""

    description: str
    model: type[BaseModel] | None = None
    media: tuple[str, ...] = JSON
    raw: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def error(description: str, **headers: str) -> Reply:
    return Reply(description, m.Error, headers={k.replace("_", "-"): v for k, v in headers.items()})


BAD_REQUEST = error("the request is malformed (invalid_body, invalid_request) or its image is unusable")
TOO_LARGE = error(
    "the body exceeds FACEFLEET_MAX_BODY_MB, more images than FACEFLEET_MAX_IMAGES (too_many_images), or more "
    "pixels in all than FACEFLEET_MAX_REQUEST_PIXELS (too_many_pixels)"
)
UNSUPPORTED_MEDIA = error("the body is neither JSON nor msgpack (Content-Type)")
UNAUTHORIZED = error("missing or invalid API key (authentication on)", WWW_Authenticate='Bearer realm="facefleet"')
OVERLOADED = error(
    "the bounded queue is full or its wait timed out (overloaded; retry), or the models could not be made ready "
    "at start-up (not_ready, with the reason; no Retry-After)",
    Retry_After="seconds to wait",
)
NOT_FOUND = error("no such gallery or subject (not_found)")
CONFLICT = error("the gallery exists, or was made with another recognizer (exists, wrong_recognizer)")
HISTORY_UNREADABLE = error("the events file exists but cannot be read (history_unavailable)")
JPEG = Reply("the first image with its faces drawn", media=("image/jpeg",))
ZIP = ("application/zip",)


@dataclass(frozen=True)
class Operation:
    """One route. `body` answers 400/413/415 (400/413 for a form); `query` (the query string's model, each field
    one parameter) answers 400; `engine` ones wait for an engine slot and may answer 503; all but the open paths
    (FACEFLEET_AUTH_OPEN_PATHS) may answer 401 when authentication is on."""

    method: str
    path: str
    summary: str
    ok: dict[int, Reply]
    request: type[BaseModel] | None = None
    media: tuple[str, ...] = JSON_OR_MSGPACK_IN
    raw_request: Any = None
    engine: bool = False
    errors: dict[int, Reply] = field(default_factory=dict)
    query: type[BaseModel] | None = None

    def responses(self, protected: bool) -> dict[int, Reply]:
        out = dict(self.ok)
        if self.request is not None or self.raw_request is not None:
            out[400] = BAD_REQUEST
            out[413] = TOO_LARGE
            if self.media != ("multipart/form-data",) and self.raw_request is None:
                out[415] = UNSUPPORTED_MEDIA
        if self.query is not None:
            out[400] = error("a query parameter is malformed (invalid_request), named in the message")
        if protected:
            out[401] = UNAUTHORIZED
        if self.engine:
            out[503] = OVERLOADED
        out.update(self.errors)
        return dict(sorted(out.items()))


PATH_PARAMETERS: dict[str, Any] = {"name": GalleryName, "subject": Subject, "event_id": uuid.UUID}
GALLERY = {400: BAD_REQUEST, 404: NOT_FOUND}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/extract",
        "Detect faces and extract embeddings",
        {200: Reply("one entry per image, failed ones included", m.ExtractResponse, JSON_OR_MSGPACK_OUT)},
        m.ExtractRequest,
        engine=True,
        errors={
            404: error("with gallery: no such gallery (not_found)"),
            409: error("with gallery: made with another recognizer (wrong_recognizer)"),
        },
    ),
    Operation(
        "post",
        "/draw_detections",
        "Draw the detected faces of the first image",
        {200: JPEG},
        m.DrawRequest,
        engine=True,
    ),
    Operation(
        "post",
        "/multipart/draw_detections",
        "Draw the detected faces of an uploaded image",
        {200: JPEG},
        m.DrawForm,
        media=("multipart/form-data",),
        engine=True,
    ),
    Operation(
        "post",
        "/verify",
        "Same person? Two images or two embeddings",
        {200: Reply("similarity and decision", m.VerifyResponse, JSON_OR_MSGPACK_OUT)},
        m.VerifyRequest,
        engine=True,
        errors={422: error("an image has no face (no_face), or not the face face_indices names (no_such_face)")},
    ),
    Operation("get", "/info", "Versions, models, providers and fallbacks, defaults", {200: Reply("appliance", m.Info)}),
    Operation(
        "get",
        "/health",
        "Readiness: every model runs on a fixed input",
        {200: Reply("ready", m.Health), 503: Reply("not ready, with the reason", m.Health)},
    ),
    Operation("get", "/livez", "Liveness", {200: Reply("alive", m.Live)}),
    Operation(
        "get", "/metrics", "Prometheus metrics", {200: Reply("text exposition format", media=("text/plain",), raw=str)}
    ),
    Operation("get", "/openapi.json", "This description", {200: Reply("the OpenAPI document", raw=dict[str, Any])}),
    Operation("get", "/galleries", "Every gallery of this appliance", {200: Reply("galleries", m.GalleryList)}),
    Operation(
        "post",
        "/galleries",
        "Create a gallery",
        {201: Reply("created", m.Gallery)},
        m.GalleryCreate,
        media=JSON,
        errors={409: CONFLICT},
    ),
    Operation("get", "/galleries/{name}", "One gallery", {200: Reply("the gallery", m.Gallery)}, errors=GALLERY),
    Operation("delete", "/galleries/{name}", "Delete a gallery", {200: Reply("deleted", m.Deleted)}, errors=GALLERY),
    Operation(
        "get", "/galleries/{name}/subjects", "Its subjects", {200: Reply("subjects", m.Subjects)}, errors=GALLERY
    ),
    Operation(
        "post",
        "/galleries/{name}/subjects",
        "Enrol faces of a subject",
        {201: Reply("enrolled", m.EnrolResponse)},
        m.EnrolRequest,
        media=JSON,
        engine=True,
        errors={
            **GALLERY,
            409: CONFLICT,
            413: error(
                "more images than FACEFLEET_MAX_IMAGES or pixels than FACEFLEET_MAX_REQUEST_PIXELS, the body or the "
                "metadata (16 KB) too large"
            ),
            422: error("no face could be enrolled from any image (no_face)"),
        },
    ),
    Operation(
        "delete",
        "/galleries/{name}/subjects/{subject}",
        "Remove a subject and its faces",
        {200: Reply("removed", m.Removed)},
        errors=GALLERY,
    ),
    Operation(
        "post",
        "/galleries/{name}/search",
        "1:N search of every face of every image",
        {200: Reply("matches per face", m.SearchResponse, JSON_OR_MSGPACK_OUT)},
        m.SearchRequest,
        media=JSON,
        engine=True,
        errors={**GALLERY, 409: CONFLICT},
    ),
    Operation(
        "get",
        "/galleries/{name}/bundle",
        "The gallery as a bundle",
        {200: Reply("bundle (zip)", media=ZIP, raw=ANY_BYTES)},
        errors=GALLERY,
    ),
    Operation(
        "put",
        "/galleries/{name}/bundle",
        "Install a bundle (atomic)",
        {200: Reply("installed or unchanged", m.BundleImport)},
        media=ZIP,
        raw_request=ANY_BYTES,
        errors={**GALLERY, 409: CONFLICT},
    ),
    Operation("get", "/streams", "The cameras this appliance watches", {200: Reply("cameras", m.StreamList)}),
    Operation(
        "post",
        "/streams",
        "Watch a camera",
        {201: Reply("added; the streams' runner starts it within a second", m.Stream)},
        m.StreamCreate,
        media=JSON,
        errors={409: error("a camera of that name exists (exists)")},
    ),
    Operation(
        "get",
        "/streams/{name}",
        "One camera and its status",
        {200: Reply("the camera", m.Stream)},
        errors={404: error("no such camera (not_found)")},
    ),
    Operation(
        "delete",
        "/streams/{name}",
        "Stop watching a camera",
        {200: Reply("removed", m.Deleted)},
        errors={
            404: error("no such camera (not_found)"),
            409: error("declared in the inventory: removed there (inventory_camera)"),
        },
    ),
    Operation(
        "get",
        "/events",
        "The events history, newest first, paged",
        {200: Reply("a page of events (without their crops)", m.EventList)},
        query=m.EventQuery,
        errors={503: HISTORY_UNREADABLE},
    ),
    Operation(
        "get",
        "/events/{event_id}/crop",
        "An event's face crop",
        {200: Reply("the crop", media=("image/jpeg",), raw=ANY_BYTES)},
        errors={
            400: error("event_id is not a UUID (invalid_request)"),
            404: error("unknown event, or its crop was never stored or was deleted by the crop retention (not_found)"),
            503: HISTORY_UNREADABLE,
        },
    ),
)
