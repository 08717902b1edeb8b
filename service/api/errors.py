"""Every error leaves the service as `{"error": {"code": ..., "message": ...}}`, never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from facefleet.contract.errors import APIError

__all__ = ["APIError", "error_response", "register"]

log = logging.getLogger("facefleet.api")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media",
}


def register(app: Flask) -> None:
    @app.errorhandler(APIError)
    def api_error(exc: APIError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body exceeds the limit of {limit / 1e6:g} MB" if limit else message
        # Keep the exception's own headers (a 405's Allow, which RFC 9110 requires), not its HTML type.
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(status, HTTP_CODES.get(status, "http_error"), message, headers)

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        request_id = g.get("request_id", "-")
        log.exception("unhandled error in request %s", request_id)
        return error_response(
            500, "internal", f"internal error; the service log has the details (request {request_id})"
        )
