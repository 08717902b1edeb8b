"""The HTTP service: Flask app factory and blueprints, as in Flask's tutorial.

Models load once per process, when the app is created: under gunicorn that is once per
worker, after the fork. Models that cannot be made ready (a file of the wrong kind, a failed
first inference, a corrupt file) leave the worker up but unready (facefleet.api.unready).
"""

from __future__ import annotations

import logging
import os

from flask import Flask, Response

from facefleet.api import auth, body, docs, errors, events, galleries, logs, streams, unready
from facefleet.api.admission import Admission
from facefleet.api.extract import bp as extract_bp
from facefleet.api.status import bp as status_bp
from facefleet.engine.pipeline import FaceEngine
from facefleet.errors import FacefleetError, RequestTooLargeError
from facefleet.ops import malloc, metrics
from facefleet.ops.board import HttpBoard
from facefleet.settings import Settings, ifr

log = logging.getLogger("facefleet.api")


def create_app(
    settings: Settings | None = None, engine: FaceEngine | None = None, http_board: HttpBoard | None = None
) -> Flask:
    """The service's app. `http_board` is the workers' shared count of HTTP requests (ops/board.py), made by
    gunicorn's master when it runs several workers: the worker that runs the cameras then sees them all."""
    settings = settings or Settings.from_env()
    logs.configure(settings.server.log_format, settings.server.log_level)
    for line in ifr.without_effect(os.environ):  # InsightFace-REST's `docker run -e` lines, told what is moot
        log.warning(line)
    keys = auth.load_keys(settings)  # a missing key file stops start-up before the models load
    # A given engine was composed by its caller (observer and batching included: service/engine/runner.py).
    if engine is None:
        try:
            engine = FaceEngine.from_settings(
                settings, observer=metrics.PrometheusObserver(), batching=settings.engine.batching
            )
        except FacefleetError as exc:
            # One line, no traceback: the reason is the operator's to read, on /health and here.
            log.error("the service is not ready: %s", exc.message)
            return unready_app(settings, keys, exc.message)
        malloc.trim_after_load()

    app = _base_app(settings, keys)
    app.extensions["facefleet.engine"] = engine
    server = settings.server
    admission = Admission(
        server.engine_slots,
        server.queue_size,
        server.queue_timeout_s,
        stream_share=settings.streams.stream_share,
        board=http_board,
    )
    app.extensions["facefleet.admission"] = admission
    app.register_blueprint(extract_bp)
    app.register_blueprint(status_bp)
    store = galleries.register(app, settings, engine)
    streams.register(app, settings, engine, store, admission)
    events.register(app)  # the streams' history, read by every worker
    docs.register(app, settings)
    return app


def unready_app(settings: Settings, keys: tuple[bytes, ...], reason: str) -> Flask:
    """A worker whose models are not ready: /livez, /health (503, the reason), /metrics and the docs
    answer; every other route is 503 not_ready with the reason."""
    app = _base_app(settings, keys)
    unready.register(app, reason)
    docs.register(app, settings)
    return app


def _base_app(settings: Settings, keys: tuple[bytes, ...]) -> Flask:
    """What every worker's app has: body limit, JSON errors, request logs and keys."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(settings.server.max_body_mb * 1e6)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider, the one Flask installs
    errors.register(app)
    body.register(app)  # chunked bodies: framing errors a 400, over the limit a 413 (api/body.py)
    app.register_error_handler(RequestTooLargeError, _too_many_pixels)
    logs.register(app)
    auth.register(app, settings, keys)
    return app


def _too_many_pixels(exc: RequestTooLargeError) -> Response:
    """The images of a request declare more pixels than FACEFLEET_MAX_REQUEST_PIXELS: a 413 for the
    whole request, like more images than FACEFLEET_MAX_IMAGES."""
    return errors.error_response(exc.status, exc.code, exc.message)
