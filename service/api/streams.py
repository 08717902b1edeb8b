"""/streams: the cameras this appliance watches, added, listed, shown and removed (docs/streams.md).

An adapter: parse the contract model -> the use case (facefleet.app.cameras) -> the contract's answer. Any
worker answers from the registry the runner writes; the runner itself is in whichever worker holds the
streams lock (facefleet.app.streamsetup), started here with the engine, the galleries and the admission
queue that HTTP requests use (a camera's frame takes an engine slot only when no request waits for one).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request

from facefleet.api.admission import Admission
from facefleet.api.codec import read_body, respond
from facefleet.api.errors import APIError, error_response
from facefleet.app import cameras
from facefleet.app.streamsetup import Streams, open_streams
from facefleet.contract import models as m
from facefleet.contract.models import StreamCreate, parse
from facefleet.engine.pipeline import FaceEngine
from facefleet.galleries.store import GalleryStore
from facefleet.ops.metrics import StreamMetrics
from facefleet.settings import Settings
from facefleet.streams.registry import (
    Camera,
    CameraExistsError,
    CameraNotFoundError,
    InventoryCameraError,
    Registry,
)

bp = Blueprint("streams", __name__)


def registry() -> Registry:
    streams: Streams = current_app.extensions["facefleet.streams"]
    return streams.registry


def _stream(view: cameras.CameraView) -> m.Stream:
    running = view.status_age_s is not None and view.status_age_s < cameras.STALE_S
    return m.Stream(
        name=view.name,
        url=view.url,
        fps=view.fps,
        gallery=view.gallery,
        origin=view.origin,  # type: ignore[arg-type]  # the registry's two origins
        running=running,
        status=None if view.status is None else m.StreamStatus.model_validate(view.status),
        status_age_s=None if view.status_age_s is None else round(view.status_age_s, 1),
    )


def _answer(model: m.Answer, status: int = 200) -> Response:
    return respond(model.dump(), as_msgpack=False, status=status)


@bp.get("/streams")
def list_streams() -> Response:
    return _answer(m.StreamList(streams=[_stream(v) for v in cameras.list_cameras(registry())]))


@bp.post("/streams")
def add_stream() -> Response:
    params = parse(StreamCreate, read_body(request))
    try:
        camera = Camera(params.name, params.url, params.fps, params.gallery, "api")
    except ValueError as exc:  # the camera's own rules (streams/registry.py), in their words
        raise APIError(400, "invalid_request", str(exc)) from None
    return _answer(_stream(cameras.add_camera(registry(), camera)), 201)


@bp.get("/streams/<name>")
def describe_stream(name: str) -> Response:
    return _answer(_stream(cameras.describe_camera(registry(), name)))


@bp.delete("/streams/<name>")
def remove_stream(name: str) -> Response:
    return _answer(m.Deleted(deleted=cameras.remove_camera(registry(), name).name))


def register(app: Flask, settings: Settings, engine: FaceEngine, store: GalleryStore, admission: Admission) -> None:
    """The registry, the bid to run the cameras, the routes and their errors."""
    metrics = StreamMetrics()
    app.extensions["facefleet.streams"] = open_streams(settings, engine, store, admission, metrics, metrics)
    app.register_blueprint(bp)

    @app.errorhandler(CameraExistsError)
    def exists(exc: CameraExistsError) -> Response:
        return error_response(409, "exists", str(exc))

    @app.errorhandler(CameraNotFoundError)
    def not_found(exc: CameraNotFoundError) -> Response:
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(InventoryCameraError)
    def inventory(exc: InventoryCameraError) -> Response:
        return error_response(409, "inventory_camera", str(exc))
