"""The /galleries part of the OpenAPI description (service/api/galleries.py), merged by openapi.spec()."""

from __future__ import annotations

from typing import Any

from .openapi import (
    BAD_REQUEST,
    IMAGE_REQUEST_FLAGS,
    NUM,
    OVERLOADED,
    TOO_LARGE,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA,
    _error,
    _json,
    _json_or_msgpack,
    _ref,
)

INT = {"type": "integer"}
STR = {"type": "string"}
META = {"type": "object", "description": "any JSON object, at most 16 KB"}
NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
SUBJECT = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": "^[^/\\x00-\\x1f\\x7f]*[^/\\s\\x00-\\x1f\\x7f][^/\\x00-\\x1f\\x7f]*$",
    "description": "no '/' nor control characters, not only spaces",
}
NOT_FOUND = _error("no such gallery or subject (not_found)")
CONFLICT = _error("the gallery exists, or was made with another recognizer (exists, wrong_recognizer)")
NO_FACE = _error("no face could be enrolled from any image (no_face)")
MATCHES = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["subject", "score"],
        "properties": {"subject": STR, "score": NUM},
    },
}

SCHEMAS: dict[str, Any] = {
    "Gallery": {
        "type": "object",
        "required": ["name", "version", "recognizer", "recognizer_sha256", "dim", "checksum", "subjects", "faces"],
        "properties": {
            "name": NAME,
            "version": {**INT, "description": "bumped by every write; a bundle's own version after an import"},
            "recognizer": STR,
            "recognizer_sha256": STR,
            "dim": INT,
            "metadata": {"type": "object"},
            "checksum": {**STR, "description": "the imported bundle's checksum; empty after a local write"},
            "updated": NUM,
            "subjects": INT,
            "faces": INT,
        },
    },
    "GalleryList": {"type": "object", "required": ["galleries"], "properties": {"galleries": {"type": "array"}}},
    "GalleryCreate": {"type": "object", "required": ["name"], "properties": {"name": NAME, "metadata": META}},
    "Subjects": {
        "type": "object",
        "required": ["gallery", "subjects"],
        "properties": {
            "gallery": STR,
            "subjects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["subject", "faces"],
                    "properties": {"subject": STR, "metadata": {"type": "object"}, "faces": INT},
                },
            },
        },
    },
    "EnrolRequest": {
        "type": "object",
        "required": ["subject"],
        "anyOf": [{"required": ["images"]}, {"required": ["embeddings"]}],
        "description": "images (the largest face of each) or embeddings of the appliance's recognizer",
        "properties": {
            "subject": SUBJECT,
            "metadata": META,
            "images": _ref("Images"),
            "embeddings": {"type": "array", "minItems": 1, "items": {"type": "array", "items": NUM}},
        },
    },
    "EnrolResponse": {
        "type": "object",
        "required": ["subject", "added", "faces", "gallery", "images"],
        "properties": {
            "subject": STR,
            "added": INT,
            "faces": INT,
            "gallery": STR,
            "images": {"type": "array", "items": {"type": "object", "required": ["status"]}},
        },
    },
    "SearchRequest": {
        "type": "object",
        "required": ["images"],
        "properties": {
            "images": _ref("Images"),
            **IMAGE_REQUEST_FLAGS,
            "top_k": {"type": ["integer", "number", "null"], "minimum": 1, "maximum": 100},
            "gallery_threshold": {
                "type": ["number", "null"],
                "minimum": -1,
                "maximum": 1,
                "description": "default: the recognizer's verify_threshold",
            },
        },
    },
    "SearchResponse": {
        "type": "object",
        "required": ["gallery", "version", "threshold", "took", "data"],
        "properties": {
            "gallery": STR,
            "version": INT,
            "threshold": NUM,
            "took": {"type": "object"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["status", "faces"],
                    "properties": {
                        "status": {"enum": ["ok", "failed"]},
                        "faces": {"type": "array", "items": {"type": "object", "properties": {"matches": MATCHES}}},
                        "error": _ref("Error"),
                    },
                },
            },
        },
    },
    "BundleImport": {
        "type": "object",
        "required": ["installed", "gallery"],
        "properties": {"installed": {"type": "boolean"}, "gallery": _ref("Gallery")},
    },
}


def _operation(summary: str, ok: dict[str, Any], body: str | None = None, **extra: Any) -> dict[str, Any]:
    """A protected operation with the answers every gallery call can give."""
    responses = {"200": ok, "400": BAD_REQUEST, "401": UNAUTHORIZED, "404": NOT_FOUND, **extra}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        responses.update({"413": TOO_LARGE, "415": UNSUPPORTED_MEDIA})
    return operation


def _engine_operation(summary: str, ok: dict[str, Any], body: str, **extra: Any) -> dict[str, Any]:
    operation = _operation(summary, ok, body, **extra)
    operation["responses"]["503"] = OVERLOADED
    return operation


NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": NAME}
SUBJECT_PARAM = {"name": "subject", "in": "path", "required": True, "schema": SUBJECT}
ZIP = {"application/zip": {"schema": {"type": "string", "format": "binary"}}}


def paths() -> dict[str, Any]:
    created = _json(_ref("Gallery"), "created")
    out: dict[str, Any] = {
        "/galleries": {
            "get": _operation("Every gallery of this appliance", _json(_ref("GalleryList"), "galleries")),
            "post": {
                **_operation("Create a gallery", created, "GalleryCreate", **{"409": CONFLICT}),
                "responses": {
                    "201": created,
                    "400": BAD_REQUEST,
                    "401": UNAUTHORIZED,
                    "409": CONFLICT,
                    "413": TOO_LARGE,
                    "415": UNSUPPORTED_MEDIA,
                },
            },
        },
        "/galleries/{name}": {
            "parameters": [NAME_PARAM],
            "get": _operation("One gallery", _json(_ref("Gallery"), "the gallery")),
            "delete": _operation("Delete a gallery", _json({"type": "object"}, "deleted")),
        },
        "/galleries/{name}/subjects": {
            "parameters": [NAME_PARAM],
            "get": _operation("Its subjects", _json(_ref("Subjects"), "subjects")),
            "post": {
                **_engine_operation(
                    "Enrol faces of a subject",
                    _json(_ref("EnrolResponse"), "enrolled"),
                    "EnrolRequest",
                    **{"409": CONFLICT, "422": NO_FACE},
                ),
            },
        },
        "/galleries/{name}/subjects/{subject}": {
            "parameters": [NAME_PARAM, SUBJECT_PARAM],
            "delete": _operation("Remove a subject and its faces", _json({"type": "object"}, "removed")),
        },
        "/galleries/{name}/search": {
            "parameters": [NAME_PARAM],
            "post": _engine_operation(
                "1:N search of every face of every image",
                _json_or_msgpack(_ref("SearchResponse"), "matches per face"),
                "SearchRequest",
                **{"409": CONFLICT},
            ),
        },
        "/galleries/{name}/bundle": {
            "parameters": [NAME_PARAM],
            "get": _operation("The gallery as a bundle", {"description": "bundle (zip)", "content": ZIP}),
            "put": {
                **_operation("Install a bundle (atomic)", _json(_ref("BundleImport"), "installed or unchanged")),
                "requestBody": {"required": True, "content": ZIP},
            },
        },
    }
    # the bundle import also answers 409 (another recognizer) and 413 (past the body limit)
    out["/galleries/{name}/bundle"]["put"]["responses"].update({"409": CONFLICT, "413": TOO_LARGE})
    return out
