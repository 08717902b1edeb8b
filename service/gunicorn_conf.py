"""gunicorn configuration of the facefleet service (`facefleet serve` passes it with -c).

Everything comes from the same FACEFLEET_* settings as the engine. Threaded workers: the
engine releases the GIL inside onnxruntime, and one process's threads share one copy of the
models (on a Jetson the CPU and GPU share 8 GB; each extra worker is another copy).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

from service.config import Settings

_settings = Settings.from_env()

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
worker_class = "gthread"
threads = _settings.gunicorn_threads
# A worker builds its TensorRT engines while it boots (minutes on an Orin Nano, once per model
# and device; cached after): a short timeout would kill it mid-build, again and again.
timeout = 900
graceful_timeout = 30
keepalive = 5
accesslog = None  # the app logs one line per request, with its request id
errorlog = "-"
loglevel = _settings.log_level.lower()
proc_name = "facefleet"


def empty_folder(folder: Path) -> None:
    """Remove what is inside `folder`, never the folder itself: in the container it is a bind
    mount (/metrics), and removing a mount point fails with EBUSY."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def on_starting(server) -> None:
    """A fresh metrics folder per service start: samples of a previous run must not linger."""
    empty_folder(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


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


def post_worker_init(worker) -> None:
    from gunicorn import util

    util.write_error = _write_json_error


control_socket_disable = True  # several services on one host must not fight over one socket
