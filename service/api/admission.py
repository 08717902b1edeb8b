"""A bounded queue in front of the engine: past it, 503 with Retry-After, never unbounded waits.

`max_concurrent` requests are inside the engine at once (enough to fill cross-request
batches); up to `queue_size` more wait, each at most `queue_timeout_s`. Everything beyond is
refused at once, so under overload latency stays bounded and clients back off.

Slots are handed out in arrival order (`FifoSlots`): a released slot goes to the oldest waiter,
never to a request that arrives in between. With `threading.Semaphore` a newcomer could take the
slot before the woken waiter ran, and the waiter went back to the end of the queue: under 4
clients sending crowd photos some requests waited three turns instead of one (in a simulation of
the service's admission and batcher, crowd p50 0.6 s and max 7.3 s; arrival order: 1.2 and 1.24 s).

Camera frames (app/streams.py) come after HTTP. A frame waits at most its `timeout_s` (the camera's frame
interval: by then a newer frame is due) and enters only when no request waits for a slot, two slots are free
(it never takes the last free slot: that is HTTP's; with a single slot, frames may take it), it is the oldest
camera waiting (so cameras on one clock do not shed the same camera's frames every time), and, with the default
`stream_share="idle"`, no HTTP request is in the engine at all, in this worker or, through the shared
`HttpBoard` (ops/board.py), in any other: the cores go to requests first, and the streams use the time between
them. `"free-slot"` lets frames run beside requests (more cameras keep up on
many cores; HTTP latency shares the cores with them). A frame that cannot enter in time is shed (counted).
Measured in docs/benchmarks.md, "Camera streams".

The engine's comings and goings are told to the worker's heap trimmer (facefleet.ops.malloc):
busy when a request or frame enters, idle when the last one leaves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from facefleet.api.errors import APIError
from facefleet.ops import metrics
from facefleet.ops.board import HttpBoard
from facefleet.ops.malloc import Trimmer, worker_trimmer
from facefleet.settings.env import STREAM_SHARES


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
    def free(self) -> int:
        """Slots nobody holds now."""
        return self._free

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


BOARD_POLL_S = 0.005  # how often a waiting frame looks at the other workers' requests


class Admission:
    def __init__(
        self,
        max_concurrent: int,
        queue_size: int,
        timeout_s: float,
        trimmer: Trimmer | None = None,
        stream_share: str = "idle",
        board: HttpBoard | None = None,
    ) -> None:
        if stream_share not in STREAM_SHARES:
            raise ValueError(f"stream_share must be one of {', '.join(STREAM_SHARES)}, not {stream_share!r}")
        self._slots = FifoSlots(max_concurrent)
        self._share = stream_share
        self._spare = 2 if max_concurrent > 1 else 1  # free slots a frame needs: it never takes HTTP's last one
        self._turns = threading.Condition()  # guards the two below; told whenever a slot may have come free
        self._http = 0  # requests inside the engine or queued for it
        self._frame_queue: deque[object] = deque()  # cameras waiting, oldest first
        self._board = board  # the other workers' requests (None: this process is the only one)
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
        self._count_http(+1)
        try:
            with self._http_slot(endpoint) as queued:
                yield queued
        finally:
            self._count_http(-1)

    def _count_http(self, change: int) -> None:
        with self._turns:
            self._http += change
            if self._board is not None:
                self._board.set(self._http)
            if change < 0:
                self._turns.notify_all()

    @contextmanager
    def _http_slot(self, endpoint: str) -> Iterator[float]:
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

    def try_enter(self, timeout_s: float = 0.0) -> bool:
        """A camera's frame (app/streams.py's EngineGate): waits at most `timeout_s` for its turn (the module's
        docstring says when that is); False: the frame is shed. A True is ended by `leave`."""
        deadline = time.monotonic() + timeout_s
        turn = object()
        with self._turns:
            self._frame_queue.append(turn)
            try:
                while not (self._frame_queue[0] is turn and self._frame_may_enter()):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    # the other workers' requests do not wake this one: look again soon while they are in
                    polling = self._share == "idle" and self._others_busy()
                    self._turns.wait(min(left, BOARD_POLL_S) if polling else left)
            finally:
                self._frame_queue.remove(turn)
                self._turns.notify_all()  # the next camera in line may go, or stop waiting behind this one
        self._entered()
        return True

    def _frame_may_enter(self) -> bool:
        """HTTP first (called with `_turns` held): takes the slot when the frame may have it."""
        if self._slots.free < self._spare:
            return False
        if self._share == "idle" and (self._http or self._others_busy()):
            return False
        return self._slots.acquire(blocking=False)  # fails while requests queue for a slot

    def _others_busy(self) -> bool:
        return self._board is not None and self._board.others() > 0

    def leave(self) -> None:
        """The end of a `try_enter` that succeeded."""
        self._slots.release()
        with self._turns:
            self._turns.notify_all()
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
