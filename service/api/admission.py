"""A bounded queue in front of the engine: past it, 503 with Retry-After, never unbounded waits.

`max_concurrent` requests are inside the engine at once (enough to fill cross-request
batches); up to `queue_size` more wait, each at most `queue_timeout_s`. Everything beyond is
refused at once, so under overload latency stays bounded and clients back off.

Slots are handed out in arrival order (`FifoSlots`): a released slot goes to the oldest waiter,
never to a request that arrives in between. With `threading.Semaphore` a newcomer could take the
slot before the woken waiter ran, and the waiter went back to the end of the queue: under 4
clients sending crowd photos some requests waited three turns instead of one (in a simulation of
the service's admission and batcher, crowd p50 0.6 s and max 7.3 s; arrival order: 1.2 and 1.24 s).

The engine's comings and goings are told to the worker's heap trimmer (facefleet.ops.malloc):
busy when a request enters, idle when the last one leaves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from facefleet.api.errors import APIError
from facefleet.ops import metrics
from facefleet.ops.malloc import Trimmer, worker_trimmer


class FifoSlots:
    """A counting semaphore that serves waiters first come, first served: release hands the slot
    straight to the oldest waiter, so a caller arriving meanwhile cannot take it (no barging)."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self._free = count
        self._waiters: deque[threading.Event] = deque()

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True
            if not blocking:
                return False
            turn = threading.Event()
            self._waiters.append(turn)
        if turn.wait(timeout):
            return True
        with self._lock:
            if turn.is_set():  # handed the slot just as the wait timed out: it is ours
                return True
            self._waiters.remove(turn)
            return False

    @property
    def waiting(self) -> int:
        """Callers queued for a slot now."""
        return len(self._waiters)

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._free += 1


class Admission:
    def __init__(self, max_concurrent: int, queue_size: int, timeout_s: float, trimmer: Trimmer | None = None) -> None:
        self._slots = FifoSlots(max_concurrent)
        self._lock = threading.Lock()
        self._waiting = 0
        self._inside = 0
        self._trimmer = trimmer or worker_trimmer()
        self._queue_size = queue_size
        self._timeout = timeout_s

    def _overloaded(self, why: str) -> APIError:
        return APIError(503, "overloaded", f"the appliance is at capacity ({why}); retry shortly", {"Retry-After": "1"})

    @contextmanager
    def slot(self, endpoint: str) -> Iterator[float]:
        """Hold an engine slot; yields the seconds spent queueing."""
        start = time.perf_counter()
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self._queue_size:
                    metrics.REJECTED.labels(endpoint, "queue_full").inc()
                    raise self._overloaded("queue full")
                self._waiting += 1
                metrics.QUEUE_DEPTH.inc()
            try:
                acquired = self._slots.acquire(timeout=self._timeout)
            finally:
                with self._lock:
                    self._waiting -= 1
                    metrics.QUEUE_DEPTH.dec()
            if not acquired:
                metrics.REJECTED.labels(endpoint, "queue_timeout").inc()
                raise self._overloaded(f"waited {self._timeout:g} s")
        metrics.IN_PROGRESS.inc()
        self._entered()
        try:
            yield time.perf_counter() - start
        finally:
            metrics.IN_PROGRESS.dec()
            self._slots.release()
            self._left()

    def try_enter(self) -> bool:
        """A camera's frame (app/streams.py's EngineGate): an engine slot only when one is free and no request
        waits for one, never a wait; HTTP requests go first and the stream sheds the frame."""
        if not self._slots.acquire(blocking=False):
            return False
        self._entered()
        return True

    def leave(self) -> None:
        """The end of a `try_enter` that succeeded."""
        self._slots.release()
        self._left()

    def _entered(self) -> None:
        with self._lock:  # in order with _left's idle: the trimmer never hears idle after busy
            self._inside += 1
            self._trimmer.busy()

    def _left(self) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0:
                self._trimmer.idle()
