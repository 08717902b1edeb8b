"""Request bodies in, responses out: JSON, or msgpack both ways as InsightFace-REST does it."""

from __future__ import annotations

import json
from typing import Any

import msgpack
from flask import Request, Response, jsonify

from facefleet.api.errors import APIError

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")


def _body_kind(request: Request) -> str:
    """JSON or msgpack by Content-Type; anything else is a 415. Strict on purpose: a browser
    page of another origin can send text/plain or a form without asking first (no CORS
    preflight), but not JSON or msgpack, so a service with authentication off cannot be driven
    from a web page its users visit."""
    kind = (request.mimetype or "").lower()
    if kind in MSGPACK_TYPES:
        return "msgpack"
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        return "json"
    raise APIError(
        415,
        "unsupported_media",
        f"Content-Type must be application/json or application/msgpack, not {kind or 'none'}",
    )


def read_body(request: Request) -> dict[str, Any]:
    """The request's JSON or msgpack object; anything else is a 400 (415 for another Content-Type)
    with the reason."""
    kind = _body_kind(request)
    data = request.get_data(cache=True)
    if not data:
        raise APIError(400, "invalid_body", "empty request body: send a JSON (or msgpack) object")
    decode = (lambda raw: msgpack.unpackb(raw, raw=False, strict_map_key=False)) if kind == "msgpack" else json.loads
    try:
        body = decode(data)
    # TypeError: a msgpack map whose key is a list or a map (unhashable in Python)
    except (ValueError, TypeError, RecursionError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        what = "msgpack" if kind == "msgpack" else "JSON"
        detail = "nested too deeply" if isinstance(exc, RecursionError | msgpack.StackError) else str(exc)[:200]
        raise APIError(400, "invalid_body", f"request body is not valid {what}: {detail}") from None
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", f"request body must be an object, not {type(body).__name__}")
    return body


def wants_msgpack(request: Request, body: dict[str, Any]) -> bool:
    accept = request.headers.get("Accept", "")
    return bool(body.get("msgpack")) or any(t in accept for t in MSGPACK_TYPES)


def respond(payload: dict[str, Any], as_msgpack: bool, status: int = 200) -> Response:
    if as_msgpack:
        # float32, as InsightFace-REST packs its answers (half the bytes of a vector; a float32 model's precision)
        packed = msgpack.packb(payload, use_bin_type=True, use_single_float=True)
        return Response(packed, status=status, mimetype="application/x-msgpack")
    response = jsonify(payload)
    response.status_code = status
    return response
