"""One log line per request, with a request id the client sees too (X-Request-ID)."""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time
import uuid

from flask import Flask, Response, g, request

from facefleet.ops import metrics

log = logging.getLogger("facefleet.request")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def endpoint_label() -> str:
    """A bounded label: the matched route, never the raw path."""
    rule = request.url_rule
    return route_name(rule.rule) if rule else "unmatched"


@functools.cache  # a handful of routes; asked twice per request (request and refusal metrics)
def route_name(rule: str) -> str:
    """A route rule as a person and PromQL read it: `/galleries/<name>/search` is
    `galleries_name_search`, a catch-all (`/docs/<path:path>`, the Swagger UI's files) is the
    folder it serves (`docs`), `/openapi.json` is `openapi_json`, `/` is `root`. Plain routes
    keep their names (`extract`, `info`), so queries on them stay as they are."""
    parts = []
    for segment in rule.strip("/").split("/"):
        if segment.startswith("<path:"):
            break  # everything under a folder is that folder
        parts.append(segment.strip("<>").rpartition(":")[2] if segment.startswith("<") else segment)
    return re.sub(r"[^a-z0-9_]+", "_", "_".join(parts).lower()).strip("_") or "root"


def register(app: Flask) -> None:
    @app.before_request
    def start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex[:16]
        g.start = time.perf_counter()

    @app.after_request
    def finish(response: Response) -> Response:
        seconds = time.perf_counter() - g.get("start", time.perf_counter())
        endpoint = endpoint_label()
        response.headers["X-Request-ID"] = g.get("request_id", "-")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if endpoint not in ("metrics", "livez"):
            metrics.REQUESTS.labels(endpoint, str(response.status_code)).inc()
            metrics.REQUEST_SECONDS.labels(endpoint).observe(seconds)
        fields = {
            "request_id": g.get("request_id"),
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "ms": round(seconds * 1000, 1),
        }
        log.info(
            "%s %s %s %.1f ms id=%s",
            request.method,
            request.path,
            response.status_code,
            seconds * 1000,
            fields["request_id"],
            extra={"fields": fields},
        )
        return response
