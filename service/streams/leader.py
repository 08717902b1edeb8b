"""One process runs the cameras: the holder of an exclusive lock on a file in the streams folder.

gunicorn's workers are equals and any may die; each worker's thread tries the lock every few seconds and the
one that holds it runs the cameras. The kernel drops a dead process's lock, so a replaced worker's successor
(or a sibling) takes over within one retry, and a restarted service never needs a stale lock cleaned up.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class Leadership:
    """Calls `lead()` once this process holds the lock (on its own thread); never lets it go until exit."""

    def __init__(self, path: str | Path, lead: Callable[[], None], retry_s: float = 5.0) -> None:
        self.path, self._lead, self.retry_s = Path(path), lead, retry_s
        self._stop = threading.Event()
        self._fd: int | None = None
        self._thread = threading.Thread(target=self._run, name="streams-leader", daemon=True)

    @property
    def leading(self) -> bool:
        return self._fd is not None

    def start(self) -> Leadership:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def try_lock(self) -> bool:
        """Take the lock if no other process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.try_lock():
                log.info("streams: this worker (pid %d) runs the cameras", os.getpid())
                self._lead()
                return
            self._stop.wait(self.retry_s)
