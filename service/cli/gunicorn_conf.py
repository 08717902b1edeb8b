"""gunicorn under `facefleet serve`: the settings object goes in, each worker builds its app from it.

`facefleet serve` reads the settings once and runs `service_application(settings)`: gunicorn's
options come from the same `Settings`, and each worker calls `create_app(settings)` with that
object, so nothing travels through environment variables but PROMETHEUS_MULTIPROC_DIR (which
prometheus_client reads itself). Threaded workers: the engine releases the GIL inside
onnxruntime, and one process's threads share one copy of the models (on a Jetson the CPU and
GPU share 8 GB; each extra worker is another copy).
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facefleet.ops.board import HttpBoard
from facefleet.ops.gunicorn_app import FactoryApplication
from facefleet.settings import Settings

if TYPE_CHECKING:
    from flask import Flask


def options(settings: Settings, board: HttpBoard | None = None) -> dict[str, Any]:
    """gunicorn's settings for the service (what `-c gunicorn_conf.py` held before); `board` is the workers'
    shared HTTP count, whose slot the master empties when a worker exits."""
    metrics_dir = Path(settings.metrics_path)
    return {
        "bind": f"{settings.server.host}:{settings.server.port}",
        "workers": settings.server.workers,
        "worker_class": "gthread",
        "threads": settings.server.gunicorn_threads,
        # A worker builds its TensorRT engines while it boots (minutes on an Orin Nano, once per model
        # and device; cached after): a short timeout would kill it mid-build, again and again.
        "timeout": 900,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": None,  # the app logs one line per request, with its request id
        "errorlog": "-",
        "loglevel": settings.server.log_level.lower(),
        "proc_name": "facefleet",
        "on_starting": lambda server: empty_folder(metrics_dir),
        "child_exit": lambda server, worker: child_exit(server, worker, board),
        "post_worker_init": post_worker_init,
        "control_socket_disable": True,  # several services on one host must not fight over one socket
    }


def service_application(settings: Settings) -> FactoryApplication:
    """gunicorn running the service's app, built in each worker from the settings it was given. With several
    workers the master makes the board they share their HTTP counts on (ops/board.py) before it forks them."""
    board = HttpBoard() if settings.server.workers > 1 else None

    def build() -> Flask:
        from facefleet.api import create_app

        return create_app(settings, http_board=board)

    return FactoryApplication(options(settings, board), build)


def empty_folder(folder: Path) -> None:
    """Remove what is inside `folder`, never the folder itself: in the container it is a bind
    mount (/metrics), and removing a mount point fails with EBUSY. A fresh metrics folder per
    service start: samples of a previous run must not linger."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def child_exit(server: object, worker: Any, board: HttpBoard | None = None) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    if board is not None:
        board.release(worker.pid)  # a worker that died mid-request leaves no count behind


def _write_json_error(sock: socket.socket, status: int, reason: str, message: str) -> None:
    """What gunicorn answers itself (a request that is not valid HTTP, a header or request line
    over its limits), in the app's shape: JSON error, nosniff, instead of an HTML page."""
    from gunicorn import util

    code = "internal" if status >= 500 else "bad_http"
    body = json.dumps({"error": {"code": code, "message": f"{reason}: {message}" if message else reason}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


def post_worker_init(worker: object) -> None:
    from gunicorn import util

    util.write_error = _write_json_error
