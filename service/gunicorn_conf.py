"""gunicorn configuration of the facefleet service (`facefleet serve` passes it with -c).

Everything comes from the same FACEFLEET_* settings as the engine. Threaded workers: the
engine releases the GIL inside onnxruntime, and one process's threads share one copy of the
models (on a Jetson the CPU and GPU share 8 GB; each extra worker is another copy).
"""

from __future__ import annotations

import os
import shutil
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


def on_starting(server) -> None:
    """A fresh metrics folder per service start: samples of a previous run must not linger."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if folder.is_dir():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


control_socket_disable = True  # several services on one host must not fight over one socket
