"""A provider failing mid-service: the model moves to the next provider of the chain, once.

A CUDA or TensorRT session that warmed up fine can still fail later on a Jetson (CUDA failure
700, an illegal memory access; cudaErrorLaunchFailure; a TensorRT enqueue failure), and a
broken CUDA context stays broken: every later run fails too. Every run of a model goes through
the Failover link of its chain (service/engine/runner.py): an error of the provider (not of the input)
reopens the model's file on the rest of the chain and swaps it into the model's SessionSlot, the
failed run is retried on the new session so the client sees no error, and the story is kept for
/info and /health and reported to the engine's observer (the metrics). The last provider of the chain (the CPU)
has nowhere to go: its errors go up unchanged.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from facefleet.engine.observer import EngineObserver, ModelReport, NullObserver
from facefleet.engine.runtime import Attempt, OpenedSession, RuntimeFailure, SessionSlot, first_line, open_session
from facefleet.models.manifest import ModelSpec
from facefleet.settings import Settings

log = logging.getLogger(__name__)

RunFn = Callable[[np.ndarray], list[np.ndarray]]

# Text of errors raised by the GPU stack, whatever exception type onnxruntime wraps them in.
GPU_ERROR = re.compile(r"CUDA|cuDNN|cuBLAS|cuFFT|TensorRT|\bTRT\b|\bGPU\b|NVRTC|illegal memory access", re.IGNORECASE)
# onnxruntime's answers to a wrong feed: shape, rank, type or name; the session itself is fine.
BAD_INPUT = re.compile(
    r"INVALID_ARGUMENT|Got invalid dimensions|Invalid rank|Unexpected input data type|Input must be|Required inputs"
)

Reopen = Callable[[OpenedSession, tuple[str, ...]], OpenedSession]


def is_bad_input(exc: BaseException) -> bool:
    """A feed onnxruntime refused: reopening would change nothing, the caller's input is wrong."""
    if type(exc).__name__ == "InvalidArgument" or isinstance(exc, (TypeError, ValueError, KeyError)):
        return True
    return bool(BAD_INPUT.search(str(exc)))


def is_provider_failure(exc: BaseException, provider: str) -> bool:
    """Any error of a GPU provider's run, or one whose text names the GPU stack; never a bad input."""
    if is_bad_input(exc):
        return False
    return provider != "cpu" or bool(GPU_ERROR.search(str(exc)))


def rest_of_chain(chain: Sequence[str], provider: str) -> tuple[str, ...]:
    """The providers after `provider`: where a model that failed on it may go."""
    chain = tuple(chain)
    return chain[chain.index(provider) + 1 :] if provider in chain else ()


def reopener(
    settings: Settings, available: Sequence[str] | None = None, session_factory: Callable[..., Any] | None = None
) -> Reopen:
    """Reopen the same (prepared) file on a shorter chain, with the onnxruntime used at start-up
    (tests inject a fake one), warmed up on the same input size."""

    def reopen(failed: OpenedSession, chain: tuple[str, ...]) -> OpenedSession:
        rest = settings.replace(providers=chain)
        return open_session(
            failed.model_path,
            failed.sha256,
            rest,
            failed.warmup_hw,
            batch=failed.batch,
            available=available,
            session_factory=session_factory,
        )

    return reopen


def degraded_story(failed: OpenedSession, fresh: OpenedSession, failure: RuntimeFailure) -> OpenedSession:
    """The fresh session with the whole story: the failed provider's attempt now says it failed
    at run time, followed by the attempts of the reopen."""
    reason = f"failed at run time: {failure.error}"
    before = [
        Attempt(a.provider, False, reason, a.seconds) if a.ok and a.provider == failed.provider else a
        for a in failed.attempts
    ]
    failures = [*failed.runtime_failures, failure]
    return dataclasses.replace(fresh, attempts=before + fresh.attempts, runtime_failures=failures)


class Failover:
    """The failover link of a model's chain (service/engine/runner.py): callable like a model run.
    Threads run concurrently on the current session; a provider failure takes the lock, and only
    the first thread that saw the failed session reopens: the others find the model already
    moved on and retry on the new session."""

    name = "failover"

    def __init__(
        self,
        inner: RunFn,
        slot: SessionSlot,
        spec: ModelSpec,
        chain: Sequence[str],
        reopen: Reopen,
        observer: EngineObserver | None = None,
    ) -> None:
        self._inner = inner
        self._slot = slot
        self._spec = spec
        self.chain = tuple(chain)
        self._reopen = reopen
        self._observer = observer or NullObserver()
        self._lock = threading.Lock()
        self._stuck: OpenedSession | None = None  # failed, and no provider left could take over
        self.reopens = 0

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        """Run on the current session; after a provider failure, again on its successor. Ends:
        each retry runs further down the finite chain. The session is read before the run: if
        another thread swapped it meanwhile, the failure is retried on the newer one."""
        while True:
            opened = self._slot.opened
            try:
                return self._inner(blob)
            except Exception as exc:
                if not self._moved_on(opened, exc):
                    raise

    def _moved_on(self, failed: OpenedSession, exc: Exception) -> bool:
        """True when the model has a newer session to retry on, opened here or by another thread."""
        if not is_provider_failure(exc, failed.provider) or not rest_of_chain(self.chain, failed.provider):
            return False
        with self._lock:
            if self._slot.opened is not failed:
                return True
            if self._stuck is failed:
                return False
            return self._replace(failed, exc)

    def _replace(self, failed: OpenedSession, exc: Exception) -> bool:
        """Reopen on the rest of the chain (under the lock); False when no provider can take over."""
        name, error = self._spec.name, first_line(exc)
        self._observer.provider_failed(name, failed.provider)
        log.error(
            "%s: provider %s failed at run time, reopening on the rest of the chain: %s", name, failed.provider, error
        )
        try:
            fresh = self._reopen(failed, rest_of_chain(self.chain, failed.provider))
        except Exception as reopen_error:
            self._stuck = failed
            log.error("%s: no provider left after the %s failure: %s", name, failed.provider, first_line(reopen_error))
            return False
        failure = RuntimeFailure(failed.provider, fresh.provider, error, time.time())
        self._slot.swap(failed, degraded_story(failed, fresh, failure))
        self.reopens += 1
        self._observer.failed_over(ModelReport.of(self._spec, self._slot.opened), failed.provider)
        log.warning("%s: now runs on %s after %s failed at run time", name, fresh.provider, failed.provider)
        return True
