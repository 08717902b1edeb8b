"""Delivery from the outbox: one thread per publisher drains it in order, backs off while the far end is down.

Why a loop per publisher over a shared outbox: MQTT and webhooks fail independently (a broker restarts, an HTTP
endpoint answers 503), and neither may hold the other back or lose events meanwhile. Each loop reads the next
few events after its own cursor, hands them to its publisher, moves the cursor past what was acknowledged, and
on a failure waits (exponential back-off, capped) before trying again from the same event. Events are therefore
delivered in order and at least once: after a restart the events not yet acknowledged are sent again.

`Dispatcher` puts the outbox, the loops and the retention pass together: the stream path calls `emit`, which
only writes to the outbox and returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from facefleet.streams.counters import DeliveryObserver, FailReason, NullDeliveryObserver
from facefleet.streams.events import StreamEvent
from facefleet.streams.outbox import Outbox, Stored

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """What a publisher did with a batch: the first `done` events are finished (acknowledged, or refused for
    good: their seqs are in `rejected`); when `done` is short of the batch, `reason` and `error` (one line, no
    secrets) say why the rest was not delivered."""

    done: int
    rejected: tuple[int, ...] = ()
    reason: FailReason | None = None
    error: str | None = None


class Publisher(Protocol):
    """Delivers events somewhere. `send` blocks at most about its own timeout and never raises for a failure
    of the far end (it says so in the `Attempt`)."""

    name: str  # a short fixed word: the outbox's publisher name and the metrics' label
    window: int  # the most events handed to one `send`

    def start(self) -> None:
        """Connect (or get ready); failures are reported by `send`, not raised."""

    def send(self, batch: Sequence[Stored]) -> Attempt:
        """Deliver `batch` in order; stop at the first event that cannot be delivered now."""

    def close(self) -> None:
        """Disconnect and stop waiting (a blocked `send` returns soon)."""


@dataclass
class Backoff:
    """Exponential back-off: `first` seconds, doubled after every failure, at most `most`; reset on success."""

    first: float = 0.5
    most: float = 30.0
    _next: float = field(default=0.0, init=False)

    def failed(self) -> float:
        """The wait before the next attempt."""
        self._next = self.first if self._next == 0 else min(self._next * 2, self.most)
        return self._next

    def reset(self) -> None:
        self._next = 0.0


class DeliveryLoop:
    """The thread that delivers `outbox`'s events through `publisher`."""

    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        observer: DeliveryObserver | None = None,
        backoff: Backoff | None = None,
        idle_wait_s: float = 1.0,
    ) -> None:
        self.outbox = outbox
        self.publisher = publisher
        self.observer: DeliveryObserver = observer or NullDeliveryObserver()
        self.backoff = backoff or Backoff()
        self.idle_wait_s = idle_wait_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"events-{publisher.name}", daemon=True)
        self._failing = 0  # failed attempts in a row

    def start(self) -> None:
        self.publisher.start()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.publisher.close()
        self.outbox.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        name = self.publisher.name
        while not self._stop.is_set():
            try:
                wait = self._once()
            except Exception as error:  # a bug or the outbox failing (disk full): say so, keep the thread alive
                log.error("events: %s delivery loop failed: %s", name, error)
                log.debug("events: %s delivery loop failure", name, exc_info=True)
                wait = self.backoff.failed()
            if wait:
                self._stop.wait(wait)

    def _once(self) -> float:
        """One attempt; returns how long to wait before the next (0: go on at once)."""
        name = self.publisher.name
        seen = self.outbox.version()
        batch = self.outbox.pending(name, self.publisher.window)
        if not batch:
            self.observer.queue_depth(name, 0)
            self.outbox.wait_for_change(seen, self.idle_wait_s)
            return 0.0
        attempt = self.publisher.send(batch)
        done = max(0, min(attempt.done, len(batch)))
        if done:
            self.outbox.mark_delivered(name, batch[done - 1].seq)
            published = done - len(attempt.rejected)
            if published:
                self.observer.published(name, published)
            for seq in attempt.rejected:
                self.observer.failed(name, "rejected")
                log.warning("events: %s refused event %d for good; skipped: %s", name, seq, attempt.error)
        self.observer.queue_depth(name, self.outbox.depth(name))
        if done == len(batch) or attempt.reason is None:
            if self._failing:
                log.info("events: %s delivering again after %d failed attempt(s)", name, self._failing)
            self._failing = 0
            self.backoff.reset()
            return 0.0
        self.observer.failed(name, attempt.reason)
        self._failing += 1
        wait = self.backoff.failed()
        level = logging.WARNING if self._failing == 1 else logging.DEBUG  # one line per outage, not one per try
        log.log(
            level,
            "events: %s cannot deliver (%s); %d event(s) wait in the outbox; retrying with back-off up to %g s",
            name,
            attempt.error,
            self.outbox.depth(name),
            self.backoff.most,
        )
        return wait


class Dispatcher:
    """The outbox and its publishers' delivery loops, plus the periodic retention pass.

    `emit` writes an event to the outbox (durably) and returns; the loops deliver it. `start` once, `stop` at
    shutdown (the outbox stays open: its owner closes it).
    """

    def __init__(
        self,
        outbox: Outbox,
        publishers: Sequence[Publisher],
        observer: DeliveryObserver | None = None,
        expire_every_s: float = 60.0,
        backoff_most_s: float = 30.0,
    ) -> None:
        missing = sorted({p.name for p in publishers} - set(outbox.publishers))
        if missing:
            raise ValueError(f"publishers {', '.join(missing)} are not declared in the outbox")
        self.outbox = outbox
        self.loops = [DeliveryLoop(outbox, p, observer, Backoff(most=backoff_most_s)) for p in publishers]
        self.expire_every_s = expire_every_s
        self._stop = threading.Event()
        self._janitor = threading.Thread(target=self._expire_loop, name="events-retention", daemon=True)

    def start(self) -> None:
        for loop in self.loops:
            loop.start()
        self._janitor.start()

    def emit(self, event: StreamEvent) -> int:
        """Write `event` to the outbox; its seq. Raises OutboxError only when the file cannot be written."""
        return self.outbox.add(event)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for loop in self.loops:
            loop.stop(timeout)
        if self._janitor.is_alive():
            self._janitor.join(timeout)

    def _expire_loop(self) -> None:
        while True:
            try:
                self.outbox.expire()
            except Exception as error:
                log.error("events: retention pass failed: %s", error)
            if self._stop.wait(self.expire_every_s):
                return
