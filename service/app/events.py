"""The events history, the API's use cases: a page of the newest events and one event's crop (docs/streams.md,
"History"), read from the outbox's file by whichever worker answers (streams/history.py)."""

from __future__ import annotations

from dataclasses import dataclass

from facefleet.errors import FacefleetError
from facefleet.streams.history import Entry, History


class CropNotFoundError(FacefleetError):
    """No crop for that event: the event is unknown, its crop was never stored, or retention deleted it."""

    code = "not_found"


@dataclass(frozen=True)
class EventsQuery:
    """Which events: one camera's or all (None), how many, and older than which seq (None: the newest)."""

    camera: str | None = None
    limit: int = 50
    before: int | None = None


@dataclass(frozen=True)
class EventsPage:
    """A page of events, newest first, and the seq that asks for the next older page (None: none left)."""

    entries: tuple[Entry, ...]
    next_before: int | None


def list_events(history: History, query: EventsQuery) -> EventsPage:
    """The page `query` names. A full page hands on its oldest seq, so a client pages back with `before` until
    a page comes back short; events written meanwhile do not shift the pages (seqs only grow)."""
    entries = tuple(history.page(query.camera, query.limit, query.before))
    full = query.limit > 0 and len(entries) == query.limit
    return EventsPage(entries, entries[-1].seq if full else None)


def event_crop(history: History, event_id: str) -> bytes:
    """The event's JPEG crop, or CropNotFoundError saying why there may be none."""
    crop = history.crop(event_id)
    if crop is None:
        raise CropNotFoundError(
            f"no crop for event {event_id}: unknown, never stored (over the size limit) or deleted by the crop "
            "retention (FACEFLEET_CROPS_RETENTION_H)"
        )
    return crop
