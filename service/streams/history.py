"""The events history, read: a page of the newest events and one event's crop, from the outbox's SQLite file.

Why a reader apart from `outbox.Outbox`: only the worker holding the streams lock opens the outbox (opening it
writes the publishers' cursors), but every gunicorn worker answers `/events`. So the other workers open the same
file read-only (`mode=ro`: they can never write a cursor or take a write lock), one connection per read, which
also sees a file the lead creates later. The queries and the row -> event code live here once; the outbox's own
`history` and `crop` run them on its connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from facefleet.errors import FacefleetError
from facefleet.streams.events import StreamEvent

HISTORY_MAX = 500  # the most events one history query returns
NEWEST = 2**63 - 1  # above every seq: "before" the newest event
T = TypeVar("T")


class HistoryError(FacefleetError):
    """The events file exists but cannot be read (not a SQLite file, unreadable)."""

    code = "history_unavailable"


@dataclass(frozen=True)
class Entry:
    """An event of the history: its seq (its place in the order, what `before` pages with), the event (with its
    crop only when asked for one) and whether a crop is still kept for it (crops expire before events)."""

    seq: int
    event: StreamEvent
    has_crop: bool


def event_of(text: str, crop: bytes | None = None) -> StreamEvent:
    """The event of a stored row: its JSON (stored without the crop) and the crop column."""
    event = StreamEvent.from_dict(json.loads(text))
    return event if crop is None else replace(event, crop=bytes(crop))


def page(
    db: sqlite3.Connection, camera: str | None = None, limit: int = 50, before: int | None = None, crops: bool = False
) -> list[Entry]:
    """The newest events (at most `limit`, capped at HISTORY_MAX), newest first, of one camera or all; `before`
    (a seq) pages back. Crops are read only with `crops=True` (a page of thumbnails fetches each by `crop_of`)."""
    limit = max(0, min(limit, HISTORY_MAX))
    where, args = "seq < ?", [NEWEST if before is None else before]
    if camera is not None:
        where += " AND camera = ?"
        args.append(camera)  # type: ignore[arg-type]  # a str beside the seq: sqlite3 takes both
    crop = "crop" if crops else "NULL"
    rows = db.execute(
        f"SELECT seq, event, {crop}, crop IS NOT NULL FROM events WHERE {where} ORDER BY seq DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [Entry(int(seq), event_of(text, data), bool(kept)) for seq, text, data, kept in rows]


def crop_of(db: sqlite3.Connection, event_id: str) -> bytes | None:
    """The JPEG crop of an event; None when the event or its crop is gone (retention) or never was."""
    row = db.execute("SELECT crop FROM events WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


class History:
    """The outbox file at `path`, read-only. No file yet (no camera has produced an event, or the lead worker has
    not opened it) is an empty history, not an error."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection | None:
        if not self.path.is_file():
            return None
        try:
            # a URI so the file opens read-only; as_uri() escapes a path's `?` and `#`
            return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        except sqlite3.Error as error:
            raise HistoryError(f"events history {self.path} cannot be opened: {error}") from None

    def _read(self, query: Callable[[sqlite3.Connection], T], empty: T) -> T:
        """`query` on a fresh read-only connection; `empty` while there is no file or no table yet."""
        db = self._connect()
        if db is None:
            return empty
        try:
            return query(db)
        except sqlite3.Error as error:
            if isinstance(error, sqlite3.OperationalError) and "no such table" in str(error):
                return empty  # the file is created, its schema not written yet
            raise HistoryError(f"events history {self.path} cannot be read: {error}") from None
        finally:
            db.close()

    def page(self, camera: str | None = None, limit: int = 50, before: int | None = None) -> list[Entry]:
        """`page` (above) on the file, without crops."""
        return self._read(lambda db: page(db, camera, limit, before), [])

    def crop(self, event_id: str) -> bytes | None:
        """`crop_of` (above) on the file."""
        return self._read(lambda db: crop_of(db, event_id), None)
