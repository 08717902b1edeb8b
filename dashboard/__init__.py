"""facefleet fleet dashboard: one page that shows which appliances are healthy, which fell back
from TensorRT or CUDA to the CPU, which are slow and which are gone. Flask app factory and
blueprints, as in Flask's tutorial."""

from __future__ import annotations

import datetime
import secrets
import time

from flask import Flask, Response

from facefleet.dashboard.backends import Backend, PollerBackend, PrometheusBackend
from facefleet.dashboard.cameras import CameraReader
from facefleet.dashboard.svg import chart, sparkline
from facefleet.settings import DashboardSettings

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'; connect-src 'self'"
)


def create_app(
    settings: DashboardSettings | None = None, backend: Backend | None = None, start_poller: bool = True
) -> Flask:
    settings = settings or DashboardSettings.from_env()
    app = Flask(__name__)
    app.config["SECRET_KEY"] = settings.secret_key or secrets.token_hex(32)
    app.config["FACEFLEET_PASSWORD"] = settings.password
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    app.config["SESSION_COOKIE_SECURE"] = settings.secure_cookie  # behind the TLS front: never sent in clear
    if backend is None:
        backend = PrometheusBackend(settings) if settings.prometheus_url else PollerBackend(settings)
        if start_poller and isinstance(backend, PollerBackend):
            backend.poller.start()
    app.extensions["facefleet.backend"] = backend
    app.extensions["facefleet.settings"] = settings
    app.extensions["facefleet.cameras"] = CameraReader(settings)  # an appliance page's cameras, events, crops
    app.jinja_env.globals.update(sparkline=sparkline, chart=chart, ago=ago, fmt=fmt, refresh_s=settings.poll_interval_s)

    from facefleet.dashboard.views import api, auth, pages

    app.register_blueprint(pages)
    app.register_blueprint(api)
    app.register_blueprint(auth)

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    return app


def ago(stamp: float | None, now: float | None = None) -> str:
    if not stamp:
        return "never"
    seconds = max(0, int((now or time.time()) - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def fmt(value: float | None, kind: str) -> str:
    """Numbers as an operator reads them; a dash where the appliance has no such figure."""
    if value is None:
        return "–"  # noqa: RUF001 - a dash, on purpose
    if kind == "ms":
        return f"{value * 1000:.0f} ms"
    if kind == "ratio":
        return f"{value:.0%}" if value >= 0.01 or value == 0 else f"{value:.1%}"
    if kind == "rps":
        return f"{value:.1f}/s"
    if kind == "celsius":
        return f"{value:.0f} °C"
    if kind == "watts":
        return f"{value:.1f} W"
    if kind == "time":
        return datetime.datetime.fromtimestamp(value).strftime("%H:%M:%S")
    return str(value)
