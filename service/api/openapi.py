"""The OpenAPI 3.1 description of the service, written to match the handlers exactly
(tests/test_api.py validates real responses against these schemas; tests/test_fuzz.py runs
schemathesis on every operation against the real service)."""

from __future__ import annotations

from typing import Any

from .. import __version__

NUM = {"type": "number"}
BOOL = {"type": "boolean"}
# Request fields may be null, meaning "the default", as InsightFace-REST's Optional fields do.
NULL_NUM = {"type": ["number", "null"]}
NULL_BOOL = {"type": ["boolean", "null"]}
BASE64 = {"type": "string", "format": "byte"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _json_or_msgpack(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An answer in JSON, or msgpack when the request says "msgpack": true or Accept: application/x-msgpack."""
    types = ("application/json", "application/x-msgpack")
    return {"description": description, "content": {kind: {"schema": schema} for kind in types}}


def _error(description: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = _json(_ref("Error"), description)
    if headers:
        response["headers"] = {
            name: {"description": text, "required": True, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


ERROR = _error("error")
BAD_REQUEST = _error("the request is malformed (invalid_body, invalid_request) or its image is unusable")
TOO_LARGE = _error("the body exceeds FACEFLEET_MAX_BODY_MB, or more images than FACEFLEET_MAX_IMAGES")
UNSUPPORTED_MEDIA = _error("the body is neither JSON nor msgpack (Content-Type)")
UNAUTHORIZED = _error(
    "missing or invalid API key (authentication on)", {"WWW-Authenticate": 'Bearer realm="facefleet"'}
)
OVERLOADED = _error("the bounded queue is full or its wait timed out; retry", {"Retry-After": "seconds to wait"})
# Authentication off (FACEFLEET_AUTH=off) makes every operation open; these are open by default.
OPEN: list[dict[str, list[str]]] = []
SECURITY = [{"ApiKeyHeader": []}, {"Bearer": []}]
SECURITY_SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY, the same keys"},
}
IMAGE_REQUEST_FLAGS = {
    "threshold": {**NULL_NUM, "minimum": 0, "maximum": 1, "description": "face score threshold"},
    "embed_only": {**NULL_BOOL, "description": "each image is an aligned 112x112 face crop: embed it"},
    "return_face_data": {**NULL_BOOL, "description": "add the aligned crop as base64 JPEG (facedata)"},
    "return_landmarks": NULL_BOOL,
    "extract_embedding": {**NULL_BOOL, "default": True},
    "extract_ga": {**NULL_BOOL, "description": "gender/age: answered 'not available' unless a model is configured"},
    "limit_faces": {"type": ["integer", "null"], "minimum": 0, "description": "keep the largest N faces (0: all)"},
    "min_face_size": {**NULL_NUM, "minimum": 0, "description": "drop faces smaller than this many pixels"},
    "verbose_timings": NULL_BOOL,
    "msgpack": {**NULL_BOOL, "description": "answer in msgpack"},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Images": {
        "type": "object",
        "description": "at least one image; at most FACEFLEET_MAX_IMAGES (64) in all, more is a 413",
        "properties": {
            "data": {
                "type": ["array", "null"],
                "items": BASE64,
                "description": "base64 images, optionally with a data:...;base64, prefix (raw bytes in msgpack)",
            },
            "urls": {
                "type": ["array", "null"],
                "items": {"type": "string"},
                "description": "http(s) URLs (when enabled) or paths relative to the images root",
            },
        },
        "anyOf": [
            {"required": ["data"], "properties": {"data": {"type": "array", "minItems": 1}}},
            {"required": ["urls"], "properties": {"urls": {"type": "array", "minItems": 1}}},
        ],
    },
    "VerifyImages": {
        "type": "object",
        "description": "exactly two images in all: two data, two urls, or one of each",
        "properties": {
            "data": {"type": ["array", "null"], "items": BASE64, "maxItems": 2},
            "urls": {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 2},
        },
        "anyOf": [
            {"required": ["data"], "properties": {"data": {"type": "array", "minItems": 2}, "urls": {"maxItems": 0}}},
            {"required": ["urls"], "properties": {"urls": {"type": "array", "minItems": 2}, "data": {"maxItems": 0}}},
            {
                "required": ["data", "urls"],
                "properties": {
                    "data": {"type": "array", "minItems": 1, "maxItems": 1},
                    "urls": {"type": "array", "minItems": 1, "maxItems": 1},
                },
            },
        ],
    },
    "ExtractRequest": {
        "type": "object",
        "required": ["images"],
        "properties": {
            "images": _ref("Images"),
            **IMAGE_REQUEST_FLAGS,
            "gallery": {
                "type": ["string", "null"],
                "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
                "description": "facefleet's addition: each face gets `match`, its best subject in this gallery "
                "(/galleries) at or above gallery_threshold, or null. The match needs each face's embedding, so "
                "faces are embedded even with extract_embedding false; vec and norm are then left out of the "
                "answer, the matches are not. An unknown gallery is 404, another recognizer's 409.",
            },
            "gallery_threshold": {
                **NULL_NUM,
                "minimum": -1,
                "maximum": 1,
                "description": "with gallery: the lowest similarity that is a match (default: the recognizer's)",
            },
        },
    },
    "DrawRequest": {
        "type": "object",
        "required": ["images"],
        "properties": {
            "images": _ref("Images"),
            **IMAGE_REQUEST_FLAGS,
            "draw_scores": {**NULL_BOOL, "default": True},
            "draw_landmarks": {**NULL_BOOL, "default": True},
            "draw_sizes": {**NULL_BOOL, "default": False},
        },
        "description": "only the first image is drawn; extract_embedding, embed_only and msgpack do not apply",
    },
    "Face": {
        "type": "object",
        "required": ["bbox", "prob", "size", "num_det"],
        "properties": {
            "bbox": {"type": "array", "items": NUM, "minItems": 4, "maxItems": 4},
            "prob": NUM,
            "size": NUM,
            "num_det": {"type": "integer"},
            "landmarks": {
                "type": "array",
                "items": {"type": "array", "items": NUM, "minItems": 2, "maxItems": 2},
                "minItems": 5,
                "maxItems": 5,
            },
            "norm": NUM,
            "vec": {"type": "array", "items": NUM},
            "facedata": {"type": ["string", "null"]},
            "gender": {"type": "null"},
            "age": {"type": "null"},
            "ga_error": {"type": "string"},
            "match": {
                "type": ["object", "null"],
                "description": "only with the request's gallery: the best subject, or null when none reaches the "
                "threshold",
                "required": ["subject", "score"],
                "properties": {"subject": {"type": "string"}, "score": NUM},
            },
        },
    },
    "ImageResult": {
        "type": "object",
        "required": ["status", "took_ms", "faces"],
        "properties": {
            "status": {"enum": ["ok", "failed"]},
            "took_ms": NUM,
            "faces": {"type": "array", "items": _ref("Face")},
            "error": _ref("Error/properties/error"),
        },
    },
    "ExtractResponse": {
        "type": "object",
        "required": ["took", "data"],
        "properties": {
            "took": {
                "type": "object",
                "required": ["total_ms", "read_imgs_ms", "embed_all_ms"],
                "properties": {
                    "total_ms": NUM,
                    "read_imgs_ms": NUM,
                    "embed_all_ms": NUM,
                    "queue_ms": NUM,
                    "stages_ms": {"type": "object", "additionalProperties": NUM},
                },
            },
            "data": {"type": "array", "items": _ref("ImageResult")},
            "gallery": {
                "type": "object",
                "description": "only with the request's gallery: the gallery searched, its version and threshold",
                "required": ["name", "version", "threshold"],
                "properties": {"name": {"type": "string"}, "version": {"type": "integer"}, "threshold": NUM},
            },
        },
    },
    "VerifyRequest": {
        "type": "object",
        "description": "two images or two embeddings; embeddings win when both are sent. Of an image with several "
        "faces, the largest is compared unless face_indices names one, or all_pairs asks for every pair; the answer "
        "says which face of each image was compared (faces) and warns when the largest was taken from several.",
        "properties": {
            "images": _ref("VerifyImages"),
            "embeddings": {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": NUM,
                    "description": "as many numbers as the recognizer's embedding (/info); finite, not all zero",
                },
                "minItems": 2,
                "maxItems": 2,
            },
            "threshold": {**NULL_NUM, "minimum": -1, "maximum": 1},
            "msgpack": NULL_BOOL,
            "face_indices": {
                "type": ["array", "null"],
                "items": {"type": ["integer", "null"], "minimum": 0},
                "minItems": 2,
                "maxItems": 2,
                "description": "the face of each image to compare: its num_det as /extract numbers it (from 0, "
                "detection order), or null for the largest; a number past the image's faces is 422 no_such_face. "
                "Ignored with embeddings.",
            },
            "all_pairs": {
                **NULL_BOOL,
                "description": "compare every face of the first image with every face of the second (an image "
                "named in face_indices keeps its one face): `pairs` has each, and similarity and same_person are "
                "the most similar pair's. Ignored with embeddings.",
            },
        },
        "anyOf": [{"required": ["images"]}, {"required": ["embeddings"]}],
    },
    "VerifyResponse": {
        "type": "object",
        "required": ["similarity", "threshold", "same_person", "recognizer", "took_ms"],
        "properties": {
            "similarity": NUM,
            "threshold": NUM,
            "same_person": BOOL,
            "recognizer": {"type": "string"},
            "took_ms": NUM,
            "faces": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "description": "with images: for each image, how many faces were found, how the compared one(s) "
                "were chosen, and their num_det and bbox",
                "items": {
                    "type": "object",
                    "required": ["faces_found", "chosen", "compared"],
                    "properties": {
                        "faces_found": {"type": "integer"},
                        "chosen": {"enum": ["largest", "requested", "all"]},
                        "compared": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["num_det", "bbox"],
                                "properties": {
                                    "num_det": {"type": "integer"},
                                    "bbox": {"type": "array", "items": NUM, "minItems": 4, "maxItems": 4},
                                },
                            },
                        },
                    },
                },
            },
            "pairs": {
                "type": "array",
                "description": "with all_pairs: every pair compared (num_det of each image's face)",
                "items": {
                    "type": "object",
                    "required": ["a", "b", "similarity", "same_person"],
                    "properties": {
                        "a": {"type": "integer"},
                        "b": {"type": "integer"},
                        "similarity": NUM,
                        "same_person": BOOL,
                    },
                },
            },
            "warnings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "one per image whose largest face was compared by default while it had several",
            },
        },
    },
    "Attempt": {
        "type": "object",
        "required": ["provider", "ok", "reason", "seconds"],
        "properties": {"provider": {"type": "string"}, "ok": BOOL, "reason": {"type": "string"}, "seconds": NUM},
    },
    "ModelInfo": {
        "type": "object",
        "required": ["name", "task", "sha256", "active_provider", "attempts", "warmup_ms", "trt_engine_cache"],
        "properties": {
            "name": {"type": "string"},
            "task": {"enum": ["detection", "recognition"]},
            "family": {"type": "string"},
            "file": {"type": "string"},
            "sha256": {"type": "string"},
            "licence": {"type": "string"},
            "batch": {"type": "object"},
            "active_provider": {"enum": ["tensorrt", "cuda", "cpu"]},
            "attempts": {"type": "array", "items": _ref("Attempt")},
            "warmup_ms": NUM,
            "model_path": {"type": "string"},
            "trt_engine_cache": {"type": ["object", "null"]},
            "partial_fallback": {
                "type": ["boolean", "null"],
                "description": "true when the model runs on TensorRT or CUDA but some of its nodes ran on the CPU",
            },
            "node_placement": {
                "type": ["object", "null"],
                "description": "nodes of the profiled warm-up run per provider, and the CPU's operator types",
                "properties": {
                    "nodes": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "cpu_nodes": {"type": "integer"},
                    "cpu_ops": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
    "Info": {
        "type": "object",
        "required": ["version", "onnxruntime", "models", "defaults"],
        "properties": {
            "version": {"type": "string"},
            "python": {"type": "string"},
            "onnxruntime": {
                "type": "object",
                "required": ["version", "available_providers"],
                "properties": {
                    "version": {"type": "string"},
                    "device": {"type": "string"},
                    "available_providers": {"type": "array", "items": {"type": "string"}},
                },
            },
            "models": {"type": "object", "additionalProperties": _ref("ModelInfo")},
            "defaults": {"type": "object"},
        },
    },
    "Live": {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}},
    "Health": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"enum": ["ok", "failing"]},
            "reason": {"type": "string"},
            "checks": {"type": "object"},
        },
    },
}


def _post(summary: str, request: str, ok: dict[str, Any], extra: dict[int, Any] | None = None) -> dict[str, Any]:
    responses = {
        "200": ok,
        "400": BAD_REQUEST,
        "401": UNAUTHORIZED,
        "413": TOO_LARGE,
        "415": UNSUPPORTED_MEDIA,
        "503": OVERLOADED,
    }
    responses.update({str(k): v for k, v in (extra or {}).items()})
    return {
        "post": {
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref(request)},
                    "application/msgpack": {"schema": _ref(request)},
                },
            },
            "responses": responses,
        }
    }


def _get(summary: str, responses: dict[str, Any], open_: bool = False) -> dict[str, Any]:
    """A GET operation; `open_` ones are answered without a key by default (FACEFLEET_AUTH_OPEN_PATHS)."""
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if open_:
        operation["security"] = OPEN
    else:
        operation["responses"] = {**responses, "401": UNAUTHORIZED}
    return {"get": operation}


JPEG = {"description": "the first image with its faces drawn", "content": {"image/jpeg": {"schema": {}}}}


FORM_FLAG = {"enum": ["true", "false", "1", "0", "yes", "no", "on", "off"], "description": "any letter case"}


def _multipart_draw() -> dict[str, Any]:
    form = {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "the image (JPEG, PNG, WebP, BMP)"},
            "threshold": {"type": "number", "minimum": 0, "maximum": 1},
            "draw_landmarks": FORM_FLAG,
            "draw_scores": FORM_FLAG,
            "draw_sizes": FORM_FLAG,
            "limit_faces": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "post": {
            "summary": "Draw the detected faces of an uploaded image",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
            "responses": {
                "200": JPEG,
                "400": BAD_REQUEST,
                "401": UNAUTHORIZED,
                "413": TOO_LARGE,
                "503": OVERLOADED,
            },
        }
    }


def spec() -> dict[str, Any]:
    from . import openapi_galleries

    document = _core()
    document["paths"].update(openapi_galleries.paths())
    document["components"]["schemas"] = {**SCHEMAS, **openapi_galleries.SCHEMAS}
    return document


def _core() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "facefleet",
            "version": __version__,
            "description": "Face detection and recognition, compatible with InsightFace-REST v0.9.",
        },
        "security": SECURITY,
        "paths": {
            "/extract": _post(
                "Detect faces and extract embeddings",
                "ExtractRequest",
                _json_or_msgpack(_ref("ExtractResponse"), "one entry per image, failed ones included"),
                {
                    404: _error("with gallery: no such gallery (not_found)"),
                    409: _error("with gallery: made with another recognizer (wrong_recognizer)"),
                },
            ),
            "/draw_detections": _post("Draw the detected faces of the first image", "DrawRequest", JPEG),
            "/multipart/draw_detections": _multipart_draw(),
            "/verify": _post(
                "Same person? Two images or two embeddings",
                "VerifyRequest",
                _json_or_msgpack(_ref("VerifyResponse"), "similarity and decision"),
                {422: _error("an image has no face (no_face), or not the face face_indices names (no_such_face)")},
            ),
            "/info": _get(
                "Versions, models, providers and fallbacks, defaults",
                {"200": _json(_ref("Info"), "appliance information")},
            ),
            "/health": _get(
                "Readiness: every model runs on a fixed input",
                {"200": _json(_ref("Health"), "ready"), "503": _json(_ref("Health"), "not ready, with the reason")},
                open_=True,
            ),
            "/livez": _get("Liveness", {"200": _json(_ref("Live"), "alive")}, open_=True),
            "/metrics": _get(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                open_=True,
            ),
            "/openapi.json": _get(
                "This description", {"200": _json({"type": "object"}, "the OpenAPI document")}, open_=True
            ),
        },
        "components": {"schemas": SCHEMAS, "securitySchemes": SECURITY_SCHEMES},
    }
