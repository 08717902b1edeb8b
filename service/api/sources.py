"""Image references of a request to bytes: base64, raw msgpack bytes, URLs, local paths.

A reference that cannot be read fails its own image only (an ImageError kept in its slot).
"""

from __future__ import annotations

import binascii
import re
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from facefleet.api.fetch import FetchPolicy, URLRefused, fetch
from facefleet.contract.models import ImageRef
from facefleet.errors import ImageError
from facefleet.settings import Settings

INVALID_BASE64 = "invalid base64 image data"
# ASCII whitespace, as bytes.split() knows it: what base64 encoders insert and decoders skip
_WHITESPACE = b" \t\n\r\x0b\x0c"
_NOT_PLAIN = frozenset(_WHITESPACE + b"-_")
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# the whole payload, after whitespace is gone: what b64decode(validate=True) checks on Python 3.10
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_DATA_URI_HEAD = 256  # "data:" + a media type and its parameters


def from_base64(text: str) -> bytes:
    """base64 as encoders write it, decoded with one working copy of the text (not one per step).

    Accepted, as InsightFace-REST accepts them: whitespace anywhere (the line breaks MIME encoders put
    every 76 characters, CRLF, spaces, tabs) and a `data:...;base64,` prefix, also after leading
    whitespace. Accepted beyond it: the URL-safe alphabet (`-` and `_` for `+` and `/`, RFC 4648 §5;
    InsightFace-REST drops them and decodes wrong bytes). Refused, stricter than InsightFace-REST on
    purpose: any other character outside the alphabet (it silently drops them, so a corrupt upload
    decodes to a different image) and missing `=` padding (as it does: a string cut short is a
    truncated upload, not an image). Each refusal fails this image only.
    """
    try:
        raw = text.encode("ascii")  # the working copy (b64decode makes the same one)
    except UnicodeEncodeError:
        raise ImageError(INVALID_BASE64) from None
    if any(byte in raw for byte in _NOT_PLAIN):  # a memchr scan each: no copy for plain base64
        raw = raw.translate(_URLSAFE_TO_STANDARD, _WHITESPACE)
    payload = memoryview(raw)[_payload_start(raw) :]  # a view: no copy of the payload
    if text and not payload:  # "" stays 0 bytes ("empty input"); only spaces or a bare prefix are no base64
        raise ImageError(INVALID_BASE64)
    try:
        return _strict_decode(payload)
    except binascii.Error:
        raise ImageError(INVALID_BASE64) from None


def _strict_decode(payload: memoryview) -> bytes:
    """What b64decode(validate=True) does on each Python, without its copy of the input."""
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(payload, strict_mode=True)
    if not _BASE64.fullmatch(payload):  # Python 3.10 has no strict mode: its b64decode checks so
        raise binascii.Error("Non-base64 digit found")
    return binascii.a2b_base64(payload)


def _payload_start(raw: bytes) -> int:
    """Where the base64 starts: after a `data:` URI's comma (searched in its first bytes only: a
    media type is short, and a payload holds no comma), else at 0."""
    if raw[:5].lower() != b"data:":  # URI schemes ignore case
        return 0
    comma = raw.find(b",", 0, _DATA_URI_HEAD)
    if comma < 0:
        raise ImageError(INVALID_BASE64)
    return comma + 1


def from_path(text: str, root: str) -> bytes:
    """A path relative to the images root; absolute paths and `..` never leave it."""
    if not root:
        raise URLRefused("local image paths are disabled (set FACEFLEET_IMAGES_ROOT to allow them)")
    if "\x00" in text:  # no file name holds one; the OS calls would raise instead of answering
        raise URLRefused("image path contains a NUL byte")
    relative = PurePosixPath(text)
    if relative.is_absolute() or ".." in relative.parts or text.startswith("~"):
        raise URLRefused(f"image path {text[:80]!r} must be relative to the images root, without '..'")
    base = Path(root).resolve()
    path = (base / relative).resolve()
    if base not in path.parents:
        raise URLRefused(f"image path {text[:80]!r} leaves the images root")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {text[:80]!r}: {exc.strerror}") from None


def read(ref: ImageRef, settings: Settings, headers: Mapping[str, str] | None = None) -> bytes:
    """The bytes of one image; `headers` go with a URL's download (the request's img_req_headers)."""
    if ref.kind == "data":
        return ref.value if isinstance(ref.value, bytes) else from_base64(ref.value)
    text = str(ref.value)
    if not text.isascii() and not _is_text(text):
        raise ImageError("an image path or URL must be valid Unicode text (it holds a lone surrogate)")
    if "://" not in text:
        return from_path(text, settings.server.images_root)
    if not settings.server.allow_urls:
        raise URLRefused("image URLs are disabled on this appliance (FACEFLEET_ALLOW_URLS)")
    policy = FetchPolicy(
        settings.server.url_allow,
        int(settings.server.url_max_mb * 1e6),
        settings.server.url_timeout_s,
        tuple((headers or {}).items()),
    )
    return fetch(text, policy)


def _is_text(text: str) -> bool:
    """False for a string JSON let through that no file system or URL can hold ("\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_all(
    refs: list[ImageRef], settings: Settings, headers: Mapping[str, str] | None = None
) -> list[bytes | ImageError]:
    out: list[bytes | ImageError] = []
    for ref in refs:
        try:
            out.append(read(ref, settings, headers))
        except ImageError as exc:
            out.append(exc)
    return out
