"""The HTTP service: Flask app factory and blueprints, as in Flask's tutorial.

Models load once per process, when the app is created: under gunicorn that is once per
worker, after the fork.
"""

from __future__ import annotations

from flask import Flask

from facefleet.api import auth, docs, errors, galleries, logs
from facefleet.api.admission import Admission
from facefleet.api.extract import bp as extract_bp
from facefleet.api.status import bp as status_bp
from facefleet.engine.pipeline import FaceEngine
from facefleet.ops import metrics
from facefleet.settings import Settings


def create_app(settings: Settings | None = None, engine: FaceEngine | None = None) -> Flask:
    settings = settings or Settings.from_env()
    logs.configure(settings.server.log_format, settings.server.log_level)
    keys = auth.load_keys(settings)  # a missing key file stops start-up before the models load
    # A given engine was composed by its caller (observer and batching included: service/engine/runner.py).
    engine = engine or FaceEngine.from_settings(
        settings, observer=metrics.PrometheusObserver(), batching=settings.engine.batching
    )

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(settings.server.max_body_mb * 1e6)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider, the one Flask installs
    app.extensions["facefleet.engine"] = engine
    app.extensions["facefleet.admission"] = Admission(
        settings.server.engine_slots, settings.server.queue_size, settings.server.queue_timeout_s
    )
    errors.register(app)
    logs.register(app)
    auth.register(app, settings, keys)
    app.register_blueprint(extract_bp)
    app.register_blueprint(status_bp)
    galleries.register(app, settings, engine)
    docs.register(app, settings)
    return app
