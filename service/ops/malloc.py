"""glibc's allocator in a long-running worker: few arenas, and freed heap given back to the kernel.

Measured (docs/reliability.md, "Soak"): after 180 s of 16 clients the idle worker was resident at
440 MiB while glibc had 61 MiB in use in its two arenas (the arena cap does reach the workers);
the rest was freed photo and blob buffers kept inside the heap (glibc raises its mmap threshold
after each large free, so buffers of up to 32 MiB come from the heap and fragment it). Not a
leak: `malloc_trim(0)` took it back to 203 MiB. So a worker trims on its own thread, so that no
request waits for it: once it has been idle for `quiet_s`, and every `interval_s` while it
stays busy (a trim takes 20 to 115 ms here; each one gives back 200 to 450 MiB, refilled within
seconds under 16 clients, so the resident size under load follows what the requests in flight
hold). A fixed mmap threshold instead (`MALLOC_MMAP_THRESHOLD_=4194304`) held less, but made
every request slower (88 -> 162 ms for one photo), so operators may choose it, it is not the default.

Not glibc (musl, macOS): nothing to cap or trim; every function here is then a no-op.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from facefleet.engine import resident
from facefleet.engine.resident import rss_mib, trim

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def cap_arenas(environ: Mapping[str, str] = os.environ) -> bool:
    """Cap glibc's malloc arenas at 2, as MALLOC_ARENA_MAX=2 does (glibc reads that variable only when
    a process starts, so a running process asks with mallopt). With one arena per thread, each request
    thread would keep the image buffers it freed. Called in gunicorn's master before it forks: the
    workers inherit the cap. An operator's own MALLOC_ARENA_MAX wins. True when capped here."""
    libc = resident.libc()
    if "MALLOC_ARENA_MAX" in environ or libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, ARENAS))


BUDGET_FACTOR = 1.5  # of the model files' bytes
BUDGET_BASE = 250 * 2**20  # Python, onnxruntime, Flask, gunicorn and the buffers of the requests in flight


def memory_budget(model_bytes: int) -> int:
    """The resident memory a worker may use (docs/reliability.md): an 8 GB Orin Nano shares it with its GPU."""
    return int(BUDGET_FACTOR * model_bytes + BUDGET_BASE)


def trim_after_load() -> None:
    """Give back what loading the models freed. onnxruntime parses the whole file, copies its weights into
    tensors and rewrites them while optimising the graph; the parsed copies are freed but stay in the heap
    (measured with a 261 MB IResNet-100: resident 917 MiB after loading, 360 MiB after this trim), and the
    trimmer's own first trim waits for the first request, so an idle worker would sit on them."""
    before, start = rss_mib(), time.perf_counter()
    if trim():
        log.info(
            "models loaded: malloc_trim: resident %.0f -> %.0f MiB in %.1f ms",
            before,
            rss_mib(),
            (time.perf_counter() - start) * 1000,
        )


class Trimmer:
    """Trims the heap on its own thread after engine work: once the worker has been idle for
    `quiet_s`, or every `interval_s` while it stays busy. Admission tells it when requests enter
    and leave the engine (`busy`, `idle`); both calls are cheap and never block on a trim."""

    def __init__(self, quiet_s: float = 2.0, interval_s: float = 5.0, trim: Callable[[], bool] = trim) -> None:
        self.quiet_s, self.interval_s, self._trim = quiet_s, interval_s, trim
        self._cond = threading.Condition()
        self._dirty = False  # engine work since the last trim
        self._idle_since: float | None = None
        self._last = time.monotonic()
        self._thread: threading.Thread | None = None
        self.trims = 0

    def busy(self) -> None:
        """A request entered the engine."""
        with self._cond:
            self._idle_since = None
            self._dirty = True
            self._start()

    def idle(self) -> None:
        """The last request in the engine left it."""
        with self._cond:
            self._idle_since = time.monotonic()
            self._cond.notify()

    def _start(self) -> None:
        """The thread, started in the process that serves (a gunicorn worker), never in the master."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="malloc-trim", daemon=True)
            self._thread.start()

    def _due(self) -> float:
        """Seconds until the next trim is due (0: now)."""
        now = time.monotonic()
        left = self._last + self.interval_s - now
        if self._idle_since is not None:
            left = min(left, self._idle_since + self.quiet_s - now)
        return max(0.0, left)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty)
                while (left := self._due()) > 0:
                    self._cond.wait(left)
                self._dirty = self._idle_since is None  # still busy: more work to trim after next interval
            before, start = rss_mib(), time.perf_counter()
            self._trim()
            self._last = time.monotonic()
            self.trims += 1
            log.info(
                "malloc_trim: resident %.0f -> %.0f MiB in %.1f ms",
                before,
                rss_mib(),
                (time.perf_counter() - start) * 1000,
            )


_worker_trimmer = Trimmer()


def worker_trimmer() -> Trimmer:
    """The process's one trimmer: the heap is the process's, whichever app or admission frees into it."""
    return _worker_trimmer
