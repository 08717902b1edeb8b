"""One log line per request, with a request id the client sees too (X-Request-ID).

A client must not be able to write into the log what the service did not (issue 18): a path
holding `%0A` was decoded into a second, forged line, and an X-Request-ID of spaces and `=`
forged fields or a whole entry inside the line. So a client's X-Request-ID is kept only when it
looks like an id (`REQUEST_ID`), else a fresh one replaces it, and the text format escapes
control characters (C0, DEL, C1, U+2028/2029, lone surrogates) and backslashes in every message:
one record is one line, whatever a log call was given. JSON lines are escaped by json.dumps.
"""

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


REQUEST_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
# What could end a line or disguise one, for a terminal, a log shipper or a viewer: C0 and C1
# controls, DEL, the Unicode line and paragraph separators, lone surrogates (which would also
# break the UTF-8 handler), and the backslash itself, so an escape cannot be typed in by a client.
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\\\\]")
NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(text: str) -> str:
    """`text` on one line: `\\n`, `\\r`, `\\t`, `\\\\`, `\\xNN` or `\\uNNNN` for what could break it."""
    return UNPRINTABLE.sub(lambda m: NAMED_ESCAPES.get(m[0]) or _code_escape(m[0]), text)


def _code_escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def request_id(incoming: str) -> str:
    """The client's X-Request-ID when it looks like one (a UUID, a trace id), else a fresh id."""
    return incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex[:16]


class TextFormatter(logging.Formatter):
    """The plain format, one line per message: the message is escaped (`printable`); a traceback,
    the service's own text, keeps its lines after it."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return printable(super().formatMessage(record))


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
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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
        g.request_id = request_id(request.headers.get("X-Request-ID", ""))
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
        text = "%s %s %s %.1f ms id=%s"
        args = [request.method, request.path, response.status_code, seconds * 1000, fields["request_id"]]
        if "trusted_network" in g:  # served without a key by FACEFLEET_TRUSTED_NETWORKS (api/auth.py)
            fields["trusted_network"] = g.trusted_network
            text, args = f"{text} trusted_network=%s", [*args, g.trusted_network]
        log.info(text, *args, extra={"fields": fields})
        return response
