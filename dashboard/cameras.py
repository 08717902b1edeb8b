"""An appliance's cameras and last events for its page: `/streams` and `/events` read over HTTP with the
dashboard's key when the page is viewed, and each event's crop relayed to the browser behind the login.

Why at view time and not in the poller: the poller asks every appliance every cycle for what the overview needs;
cameras and events are only shown on one appliance's page, so fetching them there costs the fleet nothing while
nobody looks and is as fresh as the page. Crops pass through the dashboard (its login, its CSP's `img-src 'self'`)
and are never stored by it or cached by the browser: the appliance's crop retention stays the only copy's limit,
and the appliance's key never reaches a browser.

Each answer is read item by item with the service's contract models (`facefleet.contract.models`): an appliance
of another release, or a hostile one, gets a panel with what could be read, never a broken page.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from facefleet.contract.models import Stream, StreamEventAnswer
from facefleet.dashboard.poller import TimedOutError, UnreachableError, fetch
from facefleet.ops.client import TrustSource
from facefleet.settings import DashboardSettings
from facefleet.streams.events import parse_utc

EVENTS_SHOWN = 20  # the page's "last events": enough to see who came by, few enough crops to relay
CROP_MAX_BYTES = 256 * 1024  # the appliance stores crops up to 64 KiB by default; anything far larger is not one
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class CameraSeen:
    """One camera as the panel shows it (None: the appliance has no status for it yet)."""

    name: str
    origin: str
    running: bool
    state: str | None = None
    fps_sampled: float | None = None
    dropped: int | None = None
    shed: int | None = None
    open_tracks: int | None = None
    last_error: str | None = None

    @property
    def shown(self) -> str:
        """The state the panel names: the reader's, or that no worker runs the camera (a stale status)."""
        if not self.running:
            return "not running"
        return self.state or "no status yet"

    @property
    def badge(self) -> str:
        """The badge's colour, the overview's: ok while it reads, down when it gave up, degraded in between."""
        if not self.running:
            return "stale"
        return {"running": "ok", "failed": "down"}.get(self.state or "", "degraded")


@dataclass(frozen=True)
class EventSeen:
    """One event of the appliance's history, newest first on the page."""

    event_id: str
    kind: str
    camera: str
    subject: str
    score: float | None
    at: float  # unix seconds, for the page's clock format
    has_crop: bool


@dataclass(frozen=True)
class CamerasSeen:
    """What the panel shows: the cameras, the last events, and why either is missing (empty: nothing wrong)."""

    cameras: tuple[CameraSeen, ...] = ()
    events: tuple[EventSeen, ...] = ()
    cameras_error: str = ""
    events_error: str = ""
    unreadable: int = 0  # entries of the answers that did not match the contract (skipped)


def _items(body: bytes, key: str) -> list[Any] | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    items = value.get(key) if isinstance(value, dict) else None
    return items if isinstance(items, list) else None


def _valid(model: type[BaseModel], item: Any) -> Any:
    try:
        return model.model_validate(item)
    except ValidationError:
        return None


def camera_seen(stream: Stream) -> CameraSeen:
    if stream.status is None:
        return CameraSeen(stream.name, stream.origin, stream.running)
    source, pipeline = stream.status.source, stream.status.pipeline
    return CameraSeen(
        stream.name,
        stream.origin,
        stream.running,
        state=source.state,
        fps_sampled=source.fps_sampled,
        dropped=source.frames_dropped,
        shed=pipeline.shed,
        open_tracks=pipeline.open_tracks,
        last_error=pipeline.last_error or source.last_error,
    )


def read_cameras(items: list[Any]) -> tuple[tuple[CameraSeen, ...], int]:
    """(the cameras of a /streams answer's list, how many entries were skipped as not of the contract)."""
    streams = [_valid(Stream, item) for item in items]
    return tuple(camera_seen(s) for s in streams if s is not None), sum(s is None for s in streams)


def _moment(text: str) -> float | None:
    try:
        return parse_utc(text).timestamp()
    except ValueError:
        return None


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text  # the crop's URL is built from it: its canonical form only
    except ValueError:
        return False


def read_events(items: list[Any]) -> tuple[tuple[EventSeen, ...], int]:
    """(the events of an /events answer's list, how many entries were skipped)."""
    seen = []
    for item in items:
        event = _valid(StreamEventAnswer, item)
        at = _moment(event.time) if event is not None else None
        if event is None or at is None or not _is_uuid(event.event_id):
            continue
        seen.append(EventSeen(event.event_id, event.kind, event.camera, event.subject, event.score, at, event.has_crop))
    return tuple(seen), len(items) - len(seen)


def _failure(what: str, code: int, with_key: bool) -> str:
    if code in (401, 403):
        return f"{what}: the appliance refuses the dashboard's API key" if with_key else f"{what}: no API key"
    if code == 404:
        return f"{what}: not served by this appliance (a release without camera streams)"
    return f"{what}: the appliance answered HTTP {code}"


class CameraReader:
    """Fetches an appliance's cameras, events and crops with the dashboard's key and timeout."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.timeout, self.key = settings.timeout_s, settings.appliance_api_key
        self.tls = TrustSource(settings.ca_file, "FACEFLEET_DASHBOARD_CA_FILE")

    def _get(self, url: str) -> tuple[int, bytes]:
        return fetch(url, self.timeout, self.key, self.tls.context())

    def _list(self, what: str, answer: tuple[int, bytes], key: str) -> tuple[list[Any], str]:
        """(the answer's list under `key`, empty with the reason when there is none)."""
        code, body = answer
        if code != 200:
            return [], _failure(what, code, bool(self.key))
        items = _items(body, key)
        return (items, "") if items is not None else ([], f"{what}: the answer is not the contract's")

    def look(self, service: str, events: int = EVENTS_SHOWN) -> CamerasSeen:
        """The appliance at `service`'s cameras and its last `events` events; each failure one sentence."""
        try:
            streams_answer = self._get(f"{service}/streams")
            events_answer = self._get(f"{service}/events?limit={events}")
        except (UnreachableError, TimedOutError) as exc:
            return CamerasSeen(cameras_error=f"cameras and events: {exc}")
        camera_items, cameras_error = self._list("cameras", streams_answer, "streams")
        event_items, events_error = self._list("events", events_answer, "events")
        cameras, skipped_cameras = read_cameras(camera_items)
        found, skipped_events = read_events(event_items)
        return CamerasSeen(cameras, found, cameras_error, events_error, skipped_cameras + skipped_events)

    def crop(self, service: str, event_id: str) -> bytes | None:
        """The event's JPEG crop from the appliance; None when it has none (or sends something that is not one)."""
        if not _is_uuid(event_id):
            return None
        try:
            code, body = self._get(f"{service}/events/{event_id}/crop")
        except (UnreachableError, TimedOutError):
            return None
        if code != 200 or not body.startswith(JPEG_MAGIC) or len(body) > CROP_MAX_BYTES:
            return None
        return body
