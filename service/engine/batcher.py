"""Cross-request batching: concurrent requests' inputs to one model share model runs.

Each batched model gets one thread that owns its session. Callers hand in an N x ... input
and block; the thread gathers jobs of the same input shape for up to `max_wait` (only while
other requests are in flight: a lone request never waits), runs them as one batch, and hands
each caller back its own rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

RunFn = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class _Job:
    blob: np.ndarray
    submitted: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None
    waited: float = 0.0


class Batcher:
    """Callable like a model run: `batcher(blob) -> outputs`, batched with other callers."""

    def __init__(
        self,
        name: str,
        run: RunFn,
        max_batch: int,
        max_wait_s: float,
        active: Callable[[], int],
        observe: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._max_batch = max_batch
        self._max_wait = max_wait_s
        self._active = active
        self._observe = observe or (lambda size: None)
        self._cv = threading.Condition()
        self._pending: list[_Job] = []
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        job = _Job(blob)
        with self._cv:
            self._pending.append(job)
            self._cv.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.outputs is not None
        return job.outputs

    def _take(self) -> list[_Job]:
        """Jobs for one run: the oldest job's shape, up to max_batch rows (a job is never split)."""
        with self._cv:
            while not self._pending:
                self._cv.wait()
            deadline = time.perf_counter() + self._max_wait
            while True:
                shape = self._pending[0].blob.shape[1:]
                rows = sum(len(j.blob) for j in self._pending if j.blob.shape[1:] == shape)
                remaining = deadline - time.perf_counter()
                if rows >= self._max_batch or remaining <= 0 or len(self._pending) >= self._active():
                    break
                self._cv.wait(remaining)
            batch: list[_Job] = []
            rest: list[_Job] = []
            rows = 0
            for job in self._pending:
                fits = job.blob.shape[1:] == shape and (not batch or rows + len(job.blob) <= self._max_batch)
                (batch if fits else rest).append(job)
                rows += len(job.blob) if fits else 0
            self._pending = rest
            return batch

    def _loop(self) -> None:
        while True:
            jobs = self._take()
            start = time.perf_counter()
            try:
                blob = jobs[0].blob if len(jobs) == 1 else np.concatenate([j.blob for j in jobs])
                outputs = self._run(blob)
                self._observe(len(blob))
                offset = 0
                for job in jobs:
                    n = len(job.blob)
                    job.outputs = [out[offset : offset + n] for out in outputs]
                    offset += n
            except Exception as exc:  # handed to every caller of the batch; the thread lives on
                for job in jobs:
                    job.error = exc
            for job in jobs:
                job.waited = start - job.submitted
                job.done.set()
