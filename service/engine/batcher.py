"""Cross-request batching: concurrent requests' inputs to one model share model runs, fairly.

Each batched model gets one thread that owns its session. Callers hand in an N x ... input
and block; the thread gathers jobs of the same input shape for up to `max_wait` (only while
other requests are in flight: a lone request never waits), runs them as one batch, and hands
each caller back its own rows.

Fairness: a job is split across runs. While `k` calls are inside the engine, a run takes at
most ceil(max_batch / k) rows from any one job, and a job served only in part goes to the back
of the queue. A crowd's 29 faces therefore run in chunks that portraits queued behind them join
(one portrait waits for one chunk, not for the whole crowd), and a crowd progresses in every
run it is part of, so neither side starves. A lone call still gets full batches (k = 1), and
jobs of several calls still merge into one run.
"""

from __future__ import annotations

import math
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
    parts: list[list[np.ndarray]] = field(default_factory=list)  # each run's outputs for this job's rows
    taken: int = 0  # rows handed to runs so far
    error: BaseException | None = None
    waited: float = -1.0  # seconds from submission to this job's first run

    @property
    def left(self) -> int:
        return len(self.blob) - self.taken

    @property
    def outputs(self) -> list[np.ndarray]:
        """The model's outputs for every row, in row order, once all parts are in."""
        if len(self.parts) == 1:
            return self.parts[0]
        return [np.concatenate(chunks) for chunks in zip(*self.parts, strict=True)]


@dataclass(frozen=True)
class _Slice:
    job: _Job
    start: int
    stop: int


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
        return job.outputs

    def share(self) -> int:
        """Most rows one job gives a run: max_batch split among the calls inside the engine."""
        return max(1, math.ceil(self._max_batch / max(1, self._active())))

    def _take(self) -> list[_Slice]:
        """Rows for one run: the first queued job's shape, at most `share()` rows per job, up to max_batch."""
        with self._cv:
            while not self._pending:
                self._cv.wait()
            deadline = time.perf_counter() + self._max_wait
            while True:
                shape = self._pending[0].blob.shape[1:]
                rows = sum(j.left for j in self._pending if j.blob.shape[1:] == shape)
                remaining = deadline - time.perf_counter()
                if rows >= self._max_batch or remaining <= 0 or len(self._pending) >= self._active():
                    break
                self._cv.wait(remaining)
            share, room = self.share(), self._max_batch
            slices: list[_Slice] = []
            for job in self._pending:
                if room and job.blob.shape[1:] == shape:
                    n = min(job.left, share, room)
                    slices.append(_Slice(job, job.taken, job.taken + n))
                    job.taken += n
                    room -= n
            served = {id(s.job) for s in slices}
            # finished jobs leave; the ones served in part go behind those that were not served
            self._pending = [j for j in self._pending if id(j) not in served] + [s.job for s in slices if s.job.left]
            return slices

    def _loop(self) -> None:
        while True:
            slices = self._take()
            start = time.perf_counter()
            for s in slices:
                if s.job.waited < 0:
                    s.job.waited = start - s.job.submitted
            try:
                blobs = [s.job.blob[s.start : s.stop] for s in slices]
                blob = blobs[0] if len(blobs) == 1 else np.concatenate(blobs)
                outputs = self._run(blob)
                self._observe(len(blob))
                offset = 0
                for s in slices:
                    n = s.stop - s.start
                    s.job.parts.append([out[offset : offset + n] for out in outputs])
                    offset += n
                    if not s.job.left:
                        s.job.done.set()
            except Exception as exc:  # handed to every caller in the run; the thread lives on
                self._fail([s.job for s in slices], exc)

    def _fail(self, jobs: list[_Job], exc: BaseException) -> None:
        """Each job of a failed run fails as a whole: its later rows are dropped from the queue."""
        with self._cv:
            failed = {id(j) for j in jobs}
            self._pending = [j for j in self._pending if id(j) not in failed]
        for job in jobs:
            job.error = exc
            job.done.set()
