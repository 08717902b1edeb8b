"""What the events' outbox and publishers report, through one small interface.

The outbox (events dropped by its bound or its retention) and each publisher's delivery loop (events published,
failed attempts, queue depth) report here instead of naming Prometheus, as the engine reports through
`engine/observer.py`: `ops` implements `DeliveryObserver` for the metrics, `Counts` keeps plain totals (the
/streams status and the tests read them), and `NullDeliveryObserver` is for callers that want nothing.
Publisher names and reasons are short fixed words, so they can be metric labels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal, Protocol

# Why a delivery attempt failed: the broker/endpoint could not be reached or did not acknowledge in time,
# answered with an error to retry (HTTP 5xx, 408, 429), or refused this one event for good (HTTP 400/413/422).
FailReason = Literal["unreachable", "timeout", "error", "rejected"]
# Why events left the outbox undelivered: its bound (max_events) or the retention time.
DropReason = Literal["bound", "retention"]


class DeliveryObserver(Protocol):
    """Calls come from the delivery threads and from whoever adds events: thread-safe, never raising."""

    def published(self, publisher: str, count: int) -> None:
        """`count` events were acknowledged (MQTT PUBACK, HTTP 2xx) and their cursor moved past them."""

    def failed(self, publisher: str, reason: FailReason) -> None:
        """One delivery attempt failed; the loop backs off and retries (except `rejected`: that event is skipped)."""

    def dropped(self, publisher: str, count: int, reason: DropReason) -> None:
        """`count` events were deleted from the outbox before `publisher` delivered them."""

    def queue_depth(self, publisher: str, depth: int) -> None:
        """Events in the outbox `publisher` has not delivered yet (after each attempt or wait)."""


class NullDeliveryObserver:
    def published(self, publisher: str, count: int) -> None:
        pass

    def failed(self, publisher: str, reason: FailReason) -> None:
        pass

    def dropped(self, publisher: str, count: int, reason: DropReason) -> None:
        pass

    def queue_depth(self, publisher: str, depth: int) -> None:
        pass


@dataclass
class PublisherCounts:
    published: int = 0
    failed: int = 0
    rejected: int = 0
    dropped: int = 0
    depth: int = 0


class Counts:
    """Totals per publisher since this process started: a `DeliveryObserver` that keeps plain numbers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, PublisherCounts] = {}

    def _of(self, publisher: str) -> PublisherCounts:
        return self._counts.setdefault(publisher, PublisherCounts())

    def published(self, publisher: str, count: int) -> None:
        with self._lock:
            self._of(publisher).published += count

    def failed(self, publisher: str, reason: FailReason) -> None:
        with self._lock:
            counts = self._of(publisher)
            counts.failed += 1
            counts.rejected += reason == "rejected"

    def dropped(self, publisher: str, count: int, reason: DropReason) -> None:
        with self._lock:
            self._of(publisher).dropped += count

    def queue_depth(self, publisher: str, depth: int) -> None:
        with self._lock:
            self._of(publisher).depth = depth

    def of(self, publisher: str) -> PublisherCounts:
        """A copy of `publisher`'s totals (zeros for one never heard of)."""
        with self._lock:
            counts = self._counts.get(publisher, PublisherCounts())
            return PublisherCounts(counts.published, counts.failed, counts.rejected, counts.dropped, counts.depth)
