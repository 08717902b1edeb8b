"""/events: the bounded history of the events the cameras produced, paged newest first, and each event's face
crop (docs/streams.md, "History").

An adapter: the query string as the contract's model -> the use case (facefleet.app.events) -> the contract's
answer. Any worker answers: the history is read from the outbox's file read-only (streams/history.py), so the
worker running the cameras is not involved. Crops are JPEG bytes and never cached by a client: retention deletes
them (privacy), a copy kept elsewhere would outlive it.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from facefleet.api.errors import error_response
from facefleet.app import events
from facefleet.app.streamsetup import Streams
from facefleet.contract import models as m
from facefleet.contract.fields import bad
from facefleet.contract.models import EventQuery, parse
from facefleet.streams.history import Entry, History, HistoryError

bp = Blueprint("events", __name__)


def history() -> History:
    streams: Streams = current_app.extensions["facefleet.streams"]
    return streams.history


def _event(entry: Entry) -> m.StreamEventAnswer:
    shown = entry.event.to_dict(include_crop=False)
    del shown["schema_version"], shown["crop"]  # the history's answer has its own contract: seq and has_crop
    return m.StreamEventAnswer(seq=entry.seq, has_crop=entry.has_crop, **shown)


@bp.get("/events")
def list_events() -> Response:
    query = parse(EventQuery, request.args.to_dict())  # the first value of a repeated parameter
    page = events.list_events(history(), events.EventsQuery(query.camera, query.limit, query.before))
    return jsonify(m.EventList(events=[_event(e) for e in page.entries], next_before=page.next_before).dump())


@bp.get("/events/<event_id>/crop")
def event_crop(event_id: str) -> Response:
    try:
        uuid.UUID(event_id)
    except ValueError:
        raise bad(f"event_id must be an event's id (a UUID), not {event_id!r}") from None
    crop = events.event_crop(history(), event_id)
    return Response(crop, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


def register(app: Flask) -> None:
    """The routes and their errors; the history itself comes with the streams (api/streams.py registers them)."""
    app.register_blueprint(bp)

    @app.errorhandler(events.CropNotFoundError)
    def no_crop(exc: events.CropNotFoundError) -> Response:
        return error_response(404, exc.code, exc.message)

    @app.errorhandler(HistoryError)
    def unreadable(exc: HistoryError) -> Response:
        return error_response(503, exc.code, exc.message)
