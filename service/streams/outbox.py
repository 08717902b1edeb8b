"""The events' durable outbox: every event is written here first, then each publisher delivers it from here.

Why a table and not a queue in memory: a broker or a webhook endpoint that is down for a while, or an appliance
that restarts, must not lose events (issue 21). So the stream path only ever writes to this SQLite file (one file
in the appliance's state folder, WAL, fsync on commit), and one delivery loop per publisher (MQTT, webhook) reads
it in order and moves its own cursor forward once the event is acknowledged. Each publisher has its own cursor,
so each gets every event whatever the other is doing.

Bounded, by design and documented in docs/streams.md:
- at most `max_events` events are kept in all. Delivery is in order, so the oldest rows are the delivered ones
  (kept only as the local history); when the table is full the oldest go first, delivered or not, and every event
  deleted before a publisher delivered it is counted as dropped for that publisher. Undelivered events therefore
  never exceed `max_events`, and nothing is lost while that many fit.
- after `event_retention_s` an event is deleted, delivered or not (an undelivered one is counted as dropped);
  after `crop_retention_s` its crop is deleted and the event is kept (and delivered) without it.
- a crop larger than `max_crop_bytes` is not stored (the event is).
Deleted content is overwritten (`secure_delete`), not merely unlinked from the file's pages.

The same table is the bounded local history (`history`, `crop`: the queries of streams/history.py, which the
workers without the outbox read the file with, read-only) that `/events` and the dashboard browse.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from facefleet.errors import FacefleetError
from facefleet.streams import history
from facefleet.streams.counters import DeliveryObserver, DropReason, NullDeliveryObserver
from facefleet.streams.events import StreamEvent, check_name

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS = 10_000
DEFAULT_EVENT_RETENTION_S = 24 * 3600.0
DEFAULT_CROP_RETENTION_S = 3600.0
DEFAULT_MAX_CROP_BYTES = 64 * 1024
LOG_EVERY_S = 60.0  # at most one log line a minute per publisher about dropped events

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- delivery order; AUTOINCREMENT: never reused, so cursors stay valid
    event_id TEXT NOT NULL UNIQUE,
    written REAL NOT NULL,                  -- unix time the outbox took it: the retention clock
    camera TEXT NOT NULL,
    kind TEXT NOT NULL,
    event TEXT NOT NULL,                    -- the event's JSON (EVENT_SCHEMA) with "crop": null
    crop BLOB                               -- the JPEG crop; NULL: none, too large, or past crop retention
);
CREATE INDEX IF NOT EXISTS events_by_camera ON events (camera, seq);
CREATE INDEX IF NOT EXISTS events_by_written ON events (written);
CREATE TABLE IF NOT EXISTS cursors (
    publisher TEXT PRIMARY KEY,
    delivered INTEGER NOT NULL,             -- every event with seq <= delivered is done for this publisher
    dropped INTEGER NOT NULL DEFAULT 0      -- events deleted before this publisher delivered them (all time)
);
"""


class OutboxError(FacefleetError):
    """The outbox file cannot be opened or written (permissions, a full disk, not a SQLite file)."""

    code = "outbox_error"


@dataclass(frozen=True)
class Stored:
    """An event as the outbox holds it: its place in the delivery order and the event (with its crop if kept)."""

    seq: int
    event: StreamEvent


@dataclass(frozen=True)
class Expired:
    """What one retention pass deleted."""

    events: int
    crops: int


class Outbox:
    """The SQLite outbox at `path` for the publishers named in `publishers` (e.g. `("mqtt", "webhook")`).

    A publisher new to the file starts at its newest event (it receives what is written from now on, not the
    history); a publisher of the file no longer named is forgotten, so it never holds events back. Thread-safe;
    one connection under a lock. `clock` is the retention clock (unix seconds).
    """

    def __init__(
        self,
        path: str | Path,
        publishers: Sequence[str] = (),
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        event_retention_s: float = DEFAULT_EVENT_RETENTION_S,
        crop_retention_s: float = DEFAULT_CROP_RETENTION_S,
        max_crop_bytes: int = DEFAULT_MAX_CROP_BYTES,
        observer: DeliveryObserver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_events < 1:
            raise ValueError(f"the outbox's max_events must be at least 1, not {max_events}")
        if event_retention_s <= 0 or crop_retention_s < 0:
            raise ValueError("the outbox's retention times must be positive")
        self.path = Path(path)
        self.publishers = tuple(check_name("publisher", name) for name in publishers)
        self.max_events = max_events
        self.event_retention_s = event_retention_s
        self.crop_retention_s = min(crop_retention_s, event_retention_s)
        self.max_crop_bytes = max_crop_bytes
        self._observer: DeliveryObserver = observer or NullDeliveryObserver()
        self._clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._version = 0
        self._unlogged: dict[tuple[str, DropReason], tuple[float, int]] = {}  # (last line's time, drops since)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        except (OSError, sqlite3.Error) as error:
            raise OutboxError(f"events outbox {self.path} cannot be opened: {error}") from None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # an acknowledged add survives a power cut too
            self._db.execute("PRAGMA secure_delete=ON")  # deleted crops are overwritten, not left in free pages
            self._db.executescript(SCHEMA)
            with self._transaction():
                newest = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
                for name in self.publishers:
                    self._db.execute(
                        "INSERT OR IGNORE INTO cursors (publisher, delivered) VALUES (?, ?)", (name, newest)
                    )
                marks = ",".join("?" * len(self.publishers))
                self._db.execute(f"DELETE FROM cursors WHERE publisher NOT IN ({marks})", self.publishers)
        except sqlite3.Error as error:
            self._db.close()
            raise OutboxError(f"events outbox {self.path} cannot be opened: {error}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE), under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, event: StreamEvent) -> int:
        """Write `event` (durably) and return its seq; then apply the bound. Adding an event id twice is a no-op
        that returns the first seq."""
        crop = event.crop
        if crop is not None and len(crop) > self.max_crop_bytes:
            log.warning(
                "events: crop of %s on camera %s is %d bytes, over the %d-byte limit: stored without it",
                event.kind,
                event.camera,
                len(crop),
                self.max_crop_bytes,
            )
            crop = None
        drops: list[tuple[str, int]] = []
        try:
            with self._transaction() as db:
                row = db.execute("SELECT seq FROM events WHERE event_id = ?", (event.event_id,)).fetchone()
                if row is not None:
                    return int(row[0])
                cursor = db.execute(
                    "INSERT INTO events (event_id, written, camera, kind, event, crop) VALUES (?, ?, ?, ?, ?, ?)",
                    (event.event_id, self._clock(), event.camera, event.kind, event.to_json(include_crop=False), crop),
                )
                seq = int(cursor.lastrowid or 0)
                total = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
                if total > self.max_events:
                    last = db.execute(
                        "SELECT seq FROM events ORDER BY seq LIMIT 1 OFFSET ?", (total - self.max_events - 1,)
                    ).fetchone()[0]
                    drops = self._delete(db, "seq <= ?", (last,))
        except sqlite3.Error as error:
            raise OutboxError(f"events outbox {self.path} cannot take an event: {error}") from None
        self._report(drops, "bound")
        self._notify()
        return seq

    def _delete(self, db: sqlite3.Connection, where: str, args: tuple[float | int, ...]) -> list[tuple[str, int]]:
        """Delete the events matching `where`; count, per publisher, those it had not delivered."""
        drops = []
        for name, delivered in db.execute("SELECT publisher, delivered FROM cursors").fetchall():
            lost = db.execute(f"SELECT COUNT(*) FROM events WHERE seq > ? AND {where}", (delivered, *args)).fetchone()
            if lost[0]:
                db.execute("UPDATE cursors SET dropped = dropped + ? WHERE publisher = ?", (lost[0], name))
                drops.append((name, int(lost[0])))
        db.execute(f"DELETE FROM events WHERE {where}", args)
        return drops

    def _report(self, drops: list[tuple[str, int]], reason: DropReason) -> None:
        """Counts every drop; logs at most one line per publisher and reason a minute (an outage at the bound
        drops one event per event added: one line each would drown the log)."""
        now = time.monotonic()
        for name, count in drops:
            self._observer.dropped(name, count, reason)
            key = (name, reason)
            since, unlogged = self._unlogged.get(key, (-LOG_EVERY_S, 0))
            unlogged += count
            if now - since >= LOG_EVERY_S:
                why = f"over its {self.max_events}-event bound" if reason == "bound" else "past its retention"
                log.warning(
                    "events: outbox %s: %d event(s) dropped before %s delivered them (%s)",
                    self.path,
                    unlogged,
                    name,
                    why,
                )
                since, unlogged = now, 0
            self._unlogged[key] = (since, unlogged)

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def wake(self) -> None:
        """Wake every `wait_for_change` now (a delivery loop that is stopping)."""
        self._notify()

    def version(self) -> int:
        """A number that changes whenever events are added (for `wait_for_change`)."""
        with self._lock:
            return self._version

    def wait_for_change(self, seen: int, timeout: float) -> bool:
        """Block until an event is added after `version()` returned `seen`, or `timeout` seconds; True if one was."""
        with self._changed:
            return self._changed.wait_for(lambda: self._version != seen, timeout)

    def expire(self) -> Expired:
        """Apply the retention times: delete events older than `event_retention_s` and crops older than
        `crop_retention_s`. Cheap (indexed); `add` does not call it, the delivery side does, periodically."""
        now = self._clock()
        try:
            with self._transaction() as db:
                crops = db.execute(
                    "UPDATE events SET crop = NULL WHERE written < ? AND crop IS NOT NULL",
                    (now - self.crop_retention_s,),
                ).rowcount
                cutoff = now - self.event_retention_s
                events = db.execute("SELECT COUNT(*) FROM events WHERE written < ?", (cutoff,)).fetchone()[0]
                drops = self._delete(db, "written < ?", (cutoff,)) if events else []
        except sqlite3.Error as error:
            raise OutboxError(f"events outbox {self.path} cannot apply its retention: {error}") from None
        self._report(drops, "retention")
        if events or crops:
            log.info("events: retention deleted %d event(s) and %d crop(s)", events, crops)
        return Expired(int(events), int(crops))

    def _check(self, publisher: str) -> None:
        if publisher not in self.publishers:
            raise ValueError(f"{publisher!r} is not a publisher of this outbox ({', '.join(self.publishers)})")

    def pending(self, publisher: str, limit: int = 100) -> list[Stored]:
        """The next `limit` events `publisher` has not delivered, oldest first, with their crops (if kept)."""
        self._check(publisher)
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event, crop FROM events WHERE seq > (SELECT delivered FROM cursors WHERE publisher = ?) "
                "ORDER BY seq LIMIT ?",
                (publisher, limit),
            ).fetchall()
        return [self._stored(row) for row in rows]

    @staticmethod
    def _stored(row: tuple[int, str, bytes | None]) -> Stored:
        return Stored(int(row[0]), history.event_of(row[1], row[2]))

    def mark_delivered(self, publisher: str, seq: int) -> None:
        """`publisher` has delivered every event up to `seq` (its cursor never moves back)."""
        self._check(publisher)
        try:
            with self._transaction() as db:
                db.execute(
                    "UPDATE cursors SET delivered = MAX(delivered, ?) WHERE publisher = ?",
                    (seq, publisher),
                )
        except sqlite3.Error as error:
            raise OutboxError(f"events outbox {self.path} cannot record a delivery: {error}") from None

    def depth(self, publisher: str) -> int:
        """How many events `publisher` has yet to deliver."""
        self._check(publisher)
        with self._lock:
            return int(
                self._db.execute(
                    "SELECT COUNT(*) FROM events WHERE seq > (SELECT delivered FROM cursors WHERE publisher = ?)",
                    (publisher,),
                ).fetchone()[0]
            )

    def dropped(self, publisher: str) -> int:
        """Events deleted before `publisher` delivered them, over the file's whole life."""
        self._check(publisher)
        with self._lock:
            return int(self._db.execute("SELECT dropped FROM cursors WHERE publisher = ?", (publisher,)).fetchone()[0])

    def count(self) -> int:
        """Events kept (delivered or not)."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def history(
        self, camera: str | None = None, limit: int = 50, before: int | None = None, crops: bool = False
    ) -> list[Stored]:
        """The newest events (at most `limit`, capped at HISTORY_MAX), newest first, of one camera or all;
        `before` (a seq) pages back. Crops only with `crops=True` (a page of thumbnails reads them by `crop`).
        The query is streams/history.py's, which the workers without the outbox read the file with."""
        with self._lock:
            entries = history.page(self._db, camera, limit, before, crops)
        return [Stored(entry.seq, entry.event) for entry in entries]

    def crop(self, event_id: str) -> bytes | None:
        """The JPEG crop of an event, None when it has none (any more)."""
        with self._lock:
            return history.crop_of(self._db, event_id)
