"""API keys: who may use the service.

Keys come from a file (`FACEFLEET_API_KEYS_FILE`, which the Ansible roles write from vault
variables) and/or `FACEFLEET_API_KEYS`. A presented key is compared with every configured key
in constant time, so neither the answer nor its timing tells how much of a key was right. The
service refuses to start without keys unless `FACEFLEET_AUTH=off` says so explicitly, and then
it says so in its log and in /info.
"""

from __future__ import annotations

import hmac
import logging

from flask import Flask, Request, Response, request

from facefleet.api.errors import error_response
from facefleet.settings import Settings
from facefleet.settings.keys import load_keys

# load_keys lives with the settings (the CLI checks keys without importing the HTTP layer); kept here for create_app.
__all__ = ["ALWAYS_OPEN", "is_open", "key_matches", "load_keys", "presented_key", "register"]

log = logging.getLogger("facefleet.api")
ALWAYS_OPEN = ("/livez",)


def presented_key(req: Request) -> bytes | None:
    """`X-API-Key: KEY` (InsightFace-REST clients add headers easily) or `Authorization: Bearer KEY`."""
    key = req.headers.get("X-API-Key", "")
    if not key:
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    return key.encode() if key else None


def key_matches(presented: bytes, keys: tuple[bytes, ...]) -> bool:
    """Compare with every key, without stopping at the first match."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


def is_open(path: str, open_paths: tuple[str, ...]) -> bool:
    """Exact paths, plus everything under /docs/ when /docs is open (the Swagger UI's assets)."""
    return path in open_paths or any(p == "/docs" and path.startswith("/docs/") for p in open_paths)


def register(app: Flask, settings: Settings, keys: tuple[bytes, ...]) -> None:
    if settings.auth.mode == "off":
        log.warning("authentication is OFF (FACEFLEET_AUTH=off): anyone who reaches this port can use the service")
        return
    open_paths = (*ALWAYS_OPEN, *settings.auth.open_paths)

    @app.before_request
    def require_key() -> Response | None:
        if is_open(request.path, open_paths):
            return None
        presented = presented_key(request)
        if presented is not None and key_matches(presented, keys):
            return None
        why = "missing API key" if presented is None else "invalid API key"
        return error_response(
            401,
            "unauthorized",
            f"{why}: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
            {"WWW-Authenticate": 'Bearer realm="facefleet"'},
        )
