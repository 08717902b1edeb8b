"""Image references of a request to bytes: base64, raw msgpack bytes, URLs, local paths.

A reference that cannot be read fails its own image only (an ImageError kept in its slot).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from facefleet.api.fetch import FetchPolicy, URLRefused, fetch
from facefleet.contract.models import ImageRef
from facefleet.errors import ImageError
from facefleet.settings import Settings


def from_base64(text: str) -> bytes:
    """Standard base64, with or without a `data:image/...;base64,` prefix."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("invalid base64 image data") from None


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
