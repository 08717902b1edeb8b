"""What a call to a model goes through, built in one place.

Every model (detector, recognizer) runs through a chain of links, each callable like a model run
(`Runner`: an input blob in, the model's outputs out) and wrapping the one below it:

    session -> failover -> [extra links] -> batcher -> observer

- session: one onnxruntime run on the model's current session (its `SessionSlot`);
- failover: a provider failing at run time reopens the model further down the provider chain
  and retries (service/engine/failover.py); only when a provider chain and a reopen are given;
- extra links: what a caller adds through the factory (calibration and the benchmarks record
  the blobs the model really sees, tests inject a FAKE failing run);
- batcher: concurrent callers' inputs share model runs (service/engine/batcher.py); only with
  cross-request batching on and a model that takes a batch;
- observer: each model run's input count reported to the engine's observer
  (`facefleet_batch_size` means inputs per model run, so with a batcher in the chain the
  batcher reports the merged runs itself, and no outer link counts them again).

`build_runner` is the only place that composes links; the models receive the finished `Chain`
and never replace it, and the chain's `links` (logged at start-up) say what a call goes through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facefleet.engine.batcher import Batcher
from facefleet.engine.failover import Failover, Reopen
from facefleet.engine.observer import EngineObserver, NullObserver
from facefleet.engine.runtime import OpenedSession, SessionSlot
from facefleet.models.manifest import ModelSpec
from facefleet.settings import Settings

log = logging.getLogger(__name__)


class Runner(Protocol):
    """Something that runs a model: an N x ... input blob in, the model's outputs (N rows each) out."""

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]: ...


# An extra link: given the runner below it, the runner that wraps it.
Link = Callable[[Runner], Runner]


class SessionRunner:
    """The innermost link: one run on whatever session the slot holds now."""

    name = "session"

    def __init__(self, slot: SessionSlot) -> None:
        self._slot = slot

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        opened = self._slot.opened
        outputs: list[np.ndarray] = opened.session.run(None, {opened.input_name: blob})
        return outputs


class ObservedRunner:
    """Reports each run's input count to the observer (the outer link of an unbatched model)."""

    name = "observer"

    def __init__(self, inner: Runner, model: str, observer: EngineObserver) -> None:
        self._inner = inner
        self._model = model
        self._observer = observer

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        outputs = self._inner(blob)
        self._observer.model_ran(self._model, len(blob))
        return outputs


class RecordingRunner:
    """Keeps every blob that goes through (calibration, benchmarks): the recorder sees exactly
    what the service feeds the model, preprocessing included."""

    name = "recorder"

    def __init__(self, inner: Runner, sink: list[np.ndarray]) -> None:
        self._inner = inner
        self._sink = sink

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        self._sink.append(blob)
        return self._inner(blob)

    @staticmethod
    def into(sink: list[np.ndarray]) -> Link:
        """An extra link for `build_runner` that records into `sink`."""
        return lambda inner: RecordingRunner(inner, sink)


@dataclass(frozen=True)
class Batching:
    """Cross-request batching of one model: up to `max_batch` inputs per run, gathered for at
    most `max_wait_s` while `active()` other calls are in flight."""

    max_batch: int
    max_wait_s: float
    active: Callable[[], int]


@dataclass(frozen=True)
class Chain:
    """A model's composed runners."""

    run: Runner  # the whole chain: what the model calls on the request path
    direct: Runner  # session, failover and extra links only: one unbatched, unobserved run (/health)
    links: tuple[str, ...]  # what a call goes through, innermost first
    failover: Failover | None = None

    def describe(self) -> str:
        return " -> ".join(self.links)


def build_runner(
    spec: ModelSpec,
    slot: SessionSlot,
    *,
    providers: Sequence[str] = (),
    reopen: Reopen | None = None,
    batching: Batching | None = None,
    observer: EngineObserver | None = None,
    extra: Sequence[Link] = (),
) -> Chain:
    """The chain of one model: session -> failover -> extra links -> batcher -> observer.

    Failover only with a `reopen` (and `providers`, the chain it walks); a batcher only with
    `batching` and a batch of more than one. Without arguments: the session alone, observed by
    nobody (what a bare Detector or Recognizer gets)."""
    observer = observer or NullObserver()
    run: Runner = SessionRunner(slot)
    links = [f"session({spec.name})"]
    failover = None
    if reopen is not None:
        run = failover = Failover(run, slot, spec, providers, reopen, observer)
        links.append(f"failover({'>'.join(failover.chain)})")
    for link in extra:
        run = link(run)
        links.append(str(getattr(run, "name", None) or getattr(run, "__name__", type(run).__name__)))
    direct = run
    if batching is not None and batching.max_batch > 1:
        run = Batcher(
            spec.name,
            run,
            batching.max_batch,
            batching.max_wait_s,
            batching.active,
            lambda size: observer.model_ran(spec.name, size),
        )
        links.append(f"batcher(max {batching.max_batch}, wait {batching.max_wait_s * 1000:g} ms)")
        links.append("observer(merged runs, reported by the batcher)")
    else:
        run = ObservedRunner(run, spec.name, observer)
        links.append("observer")
    chain = Chain(run, direct, tuple(links), failover)
    log.info("%s runs through %s", spec.name, chain.describe())
    return chain


class ChainedModel:
    """What a detector and a recognizer share: a model's spec, the slot holding its session (a
    failover may swap the session), the settings and the chain its runs go through, built before
    the model and never replaced (without one, the bare session)."""

    def __init__(
        self, spec: ModelSpec, opened: OpenedSession | SessionSlot, settings: Settings, chain: Chain | None = None
    ) -> None:
        self.spec = spec
        self.slot = opened if isinstance(opened, SessionSlot) else SessionSlot(opened)
        self.settings = settings
        self.chain = chain or build_runner(spec, self.slot)

    @property
    def opened(self) -> OpenedSession:
        """The session the model runs on now (a failover may have replaced the first one)."""
        return self.slot.opened

    def run(self, blob: np.ndarray) -> list[np.ndarray]:
        """One call through the whole chain (failover, batching, observer)."""
        return self.chain.run(blob)

    def session_run(self, blob: np.ndarray) -> list[np.ndarray]:
        """One unbatched, unobserved run (session, failover and extra links): what /health uses."""
        return self.chain.direct(blob)
