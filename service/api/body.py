"""Request bodies read safely whatever reads them: JSON and msgpack (codec.py), multipart forms
(werkzeug's parser) and gallery bundles all read `wsgi.input`, so the checks live on that stream.

Two holes a chunked body (`Transfer-Encoding: chunked`, no Content-Length) opened under gunicorn:

- a malformed chunk (a size that is not hex, a chunk without its CRLF) raises gunicorn's
  `ParseException` while the app reads; werkzeug's stream wrapper catches only OSError and
  ValueError, so it reached the 500 handler. Here it is a 400 `invalid_body` naming the fault.
- werkzeug enforces MAX_CONTENT_LENGTH on a body of unknown length by reading up to the limit
  and then stopping as if the body had ended: a body over the limit was silently truncated and
  the first 64 MB parsed. Here the stream looks one byte past the limit: if the body goes on,
  the request is a 413 `too_large`; a body of exactly the limit is still read.

A body with a Content-Length is left to the server and werkzeug (a declared length over the limit
is refused before anything is read), and is never read past its length.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import IO

from flask import Flask, request
from gunicorn.http.errors import ParseException

from facefleet.api.errors import APIError

REASONS = {
    "InvalidChunkSize": "a chunk size is not a hexadecimal number",
    "ChunkMissingTerminator": "a chunk does not end with CRLF",
    "InvalidChunkExtension": "a chunk extension is malformed",
}


def too_large(limit: int) -> APIError:
    """The same 413 a declared Content-Length over the limit gets (api/errors.py)."""
    return APIError(413, "too_large", f"request body exceeds the limit of {limit / 1e6:g} MB")


class CheckedInput:
    """`wsgi.input` with the server's framing errors as a 400 and, for a body of unknown length,
    the size limit kept as a 413 instead of a silent end. Read-only, as WSGI's input is."""

    def __init__(self, stream: IO[bytes], limit: int | None) -> None:
        self._stream = stream
        self._limit = limit  # None: the length is known (Content-Length), nothing to count
        self._count = 0

    def read(self, size: int | None = -1) -> bytes:
        return self._counted(self._checked(self._stream.read, size))

    def readline(self, size: int | None = -1) -> bytes:
        return self._counted(self._checked(self._stream.readline, size))

    def __iter__(self) -> CheckedInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def _checked(self, read: Callable[[int], bytes], size: int | None) -> bytes:
        try:
            return read(-1 if size is None else size)
        except ParseException as exc:
            reason = REASONS.get(type(exc).__name__, "its framing is malformed")
            raise APIError(400, "invalid_body", f"malformed chunked request body: {reason}") from None

    def _counted(self, data: bytes) -> bytes:
        if self._limit is None or not data:
            return data
        self._count += len(data)
        if self._count > self._limit:
            raise too_large(self._limit)
        if self._count == self._limit and self._checked(self._stream.read, 1):
            raise too_large(self._limit)  # the body goes on past the limit: refused, not cut
        return data


def register(app: Flask) -> None:
    """Check every request's input stream before any handler (or werkzeug's form parser) reads it."""

    @app.before_request
    def checked_input() -> None:
        environ = request.environ
        unknown_length = not environ.get("CONTENT_LENGTH")
        limit = request.max_content_length if unknown_length else None
        environ["wsgi.input"] = CheckedInput(environ["wsgi.input"], limit)


def drain_body() -> None:
    """Read and drop the rest of the request's body before answering without it (a 503): a framing
    error or a body over the limit found while draining must not replace that answer."""
    with contextlib.suppress(APIError):
        request.get_data(cache=False)
