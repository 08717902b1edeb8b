"""The OpenAPI 3.1 description of the service, written to match the handlers exactly
(tests/test_api.py validates real responses against these schemas)."""

from __future__ import annotations

from typing import Any

from .. import __version__

NUM = {"type": "number"}
BOOL = {"type": "boolean"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _json(_ref("Error"), "error")
IMAGE_REQUEST_FLAGS = {
    "threshold": {**NUM, "minimum": 0, "maximum": 1, "description": "face score threshold"},
    "embed_only": {**BOOL, "description": "each image is an aligned 112x112 face crop: embed it"},
    "return_face_data": {**BOOL, "description": "add the aligned crop as base64 JPEG (facedata)"},
    "return_landmarks": BOOL,
    "extract_embedding": {**BOOL, "default": True},
    "extract_ga": {**BOOL, "description": "gender/age: answered 'not available' unless a model is configured"},
    "limit_faces": {"type": "integer", "minimum": 0, "description": "keep the largest N faces (0: all)"},
    "min_face_size": {**NUM, "minimum": 0, "description": "drop faces smaller than this many pixels"},
    "verbose_timings": BOOL,
    "msgpack": {**BOOL, "description": "answer in msgpack"},
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
        "properties": {
            "data": {
                "type": "array",
                "items": {"type": "string"},
                "description": "base64 images, optionally with a data:...;base64, prefix (raw bytes in msgpack)",
            },
            "urls": {
                "type": "array",
                "items": {"type": "string"},
                "description": "http(s) URLs (when enabled) or paths relative to the images root",
            },
        },
    },
    "ExtractRequest": {
        "type": "object",
        "required": ["images"],
        "properties": {"images": _ref("Images"), **IMAGE_REQUEST_FLAGS},
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
        },
    },
    "VerifyRequest": {
        "type": "object",
        "properties": {
            "images": _ref("Images"),
            "embeddings": {"type": "array", "items": {"type": "array", "items": NUM}, "minItems": 2, "maxItems": 2},
            "threshold": {**NUM, "minimum": -1, "maximum": 1},
            "msgpack": BOOL,
        },
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
    responses = {"200": ok, "400": ERROR, "413": ERROR, "503": ERROR}
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


JPEG = {"description": "the first image with its faces drawn", "content": {"image/jpeg": {"schema": {}}}}


def spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "facefleet",
            "version": __version__,
            "description": "Face detection and recognition, compatible with InsightFace-REST v0.9.",
        },
        "paths": {
            "/extract": _post(
                "Detect faces and extract embeddings",
                "ExtractRequest",
                _json(_ref("ExtractResponse"), "one entry per image, failed ones included"),
            ),
            "/draw_detections": _post("Draw the detected faces of the first image", "ExtractRequest", JPEG),
            "/multipart/draw_detections": {
                "post": {
                    "summary": "Draw the detected faces of an uploaded image",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["file"],
                                    "properties": {
                                        "file": {"type": "string", "format": "binary"},
                                        "threshold": {"type": "string"},
                                        "draw_landmarks": {"type": "string"},
                                        "draw_scores": {"type": "string"},
                                        "draw_sizes": {"type": "string"},
                                        "limit_faces": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {"200": JPEG, "400": ERROR, "413": ERROR, "503": ERROR},
                }
            },
            "/verify": _post(
                "Same person? Two images or two embeddings",
                "VerifyRequest",
                _json(_ref("VerifyResponse"), "similarity and decision"),
                {422: ERROR},
            ),
            "/info": {
                "get": {
                    "summary": "Versions, models, providers and fallbacks, defaults",
                    "responses": {"200": _json(_ref("Info"), "appliance information")},
                }
            },
            "/health": {
                "get": {
                    "summary": "Readiness: every model runs on a fixed input",
                    "responses": {
                        "200": _json(_ref("Health"), "ready"),
                        "503": _json(_ref("Health"), "not ready, with the reason"),
                    },
                }
            },
            "/livez": {"get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"}, "alive")}}},
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
        },
        "components": {"schemas": SCHEMAS},
    }
