"""A listen address that is taken or wrong is one line naming the port and the setting that
changes it, not a traceback (the exporter) or gunicorn retrying and then failing (the dashboard)."""

from __future__ import annotations

import errno
import socket

from facefleet.errors import FacefleetError


def listen_error(host: str, port: int, setting: str, exc: OSError) -> FacefleetError:
    """The one line for a failed bind, naming the flag and the variable that move it."""
    if exc.errno == errno.EADDRINUSE:
        return FacefleetError(f"port {port} on {host} is already in use: choose another with {setting}")
    return FacefleetError(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def require_free(host: str, port: int, setting: str) -> None:
    """Bind and release the address as gunicorn will (SO_REUSEADDR), before gunicorn is started."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FacefleetError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise listen_error(host, port, setting, exc) from None
