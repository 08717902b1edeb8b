"""The events history read without the outbox (streams/history.py, app/events.py): what the workers that do not
run the cameras answer `/events` with. The file is written by a real Outbox; the reader never writes to it."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from facefleet.app.events import CropNotFoundError, EventsQuery, event_crop, list_events
from facefleet.streams.events import StreamEvent
from facefleet.streams.history import History, HistoryError
from facefleet.streams.outbox import Outbox

CROP = b"\xff\xd8\xff\xe0 a face crop \xff\xd9"


def event(n: int, camera: str, crop: bytes | None = None) -> StreamEvent:
    return StreamEvent(kind="track_started", appliance="edge-1", camera=camera, track_id=n, crop=crop)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def written(tmp_path: Path) -> tuple[Outbox, Clock, list[StreamEvent]]:
    clock = Clock()
    outbox = Outbox(tmp_path / "events.sqlite3", ["mqtt"], crop_retention_s=60, clock=clock)
    made = [event(n, "door" if n % 2 else "yard", CROP if n < 4 else None) for n in range(7)]
    for item in made:
        outbox.add(item)
    return outbox, clock, made


def test_the_reader_pages_as_the_outbox_does_and_never_writes(written, tmp_path: Path):
    outbox, _, made = written
    path = tmp_path / "events.sqlite3"
    history = History(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    everything = history.page(limit=500)
    assert [e.event.event_id for e in everything] == [e.event_id for e in reversed(made)]
    assert [e.seq for e in everything] == [s.seq for s in outbox.history(limit=500)], "the same query, shared"
    assert [e.has_crop for e in everything] == [False, False, False, True, True, True, True]
    assert all(e.event.crop is None for e in everything), "a page carries no crop bytes"
    doors = history.page(camera="door")
    assert {e.event.camera for e in doors} == {"door"} and len(doors) == 3
    assert history.crop(made[1].event_id) == CROP and outbox.crop(made[1].event_id) == CROP
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    with pytest.raises(HistoryError, match="readonly"):  # the reader's connection cannot write
        history._read(lambda db: db.execute("DELETE FROM events"), None)


def test_pages_chain_through_before_until_a_short_page(written, tmp_path: Path):
    _, _, made = written
    history = History(tmp_path / "events.sqlite3")
    seen, before = [], None
    while True:
        page = list_events(history, EventsQuery(limit=3, before=before))
        seen += [e.event.event_id for e in page.entries]
        if page.next_before is None:
            break
        before = page.next_before
    assert seen == [e.event_id for e in reversed(made)]
    assert list_events(history, EventsQuery(limit=7)).next_before is not None, "a full page cannot know it is last"
    assert list_events(history, EventsQuery(limit=8)).next_before is None


def test_a_crop_past_its_retention_is_not_found(written, tmp_path: Path):
    outbox, clock, made = written
    history = History(tmp_path / "events.sqlite3")
    assert event_crop(history, made[0].event_id) == CROP
    clock.now += 61
    assert outbox.expire().crops == 4
    with pytest.raises(CropNotFoundError, match="retention"):
        event_crop(history, made[0].event_id)
    assert not any(e.has_crop for e in history.page(limit=500)), "the events stay, their crops are gone"


def test_no_file_yet_is_an_empty_history_and_a_broken_one_one_error(tmp_path: Path):
    missing = History(tmp_path / "streams" / "events.sqlite3")
    assert missing.page() == [] and missing.crop("f13c7640-7177-488e-881d-7aea18af7828") is None
    assert not (tmp_path / "streams").exists(), "reading never creates the folder or the file"
    empty = tmp_path / "empty.sqlite3"
    sqlite3.connect(empty).close()  # a file the lead created, its schema not written yet
    assert History(empty).page() == []
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(HistoryError, match="cannot be read"):
        History(garbage).page()
