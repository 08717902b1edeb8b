"""/openapi.json, the Swagger UI at /docs (served from the flask-swagger-ui wheel, no CDN), / -> /docs."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect
from flask_swagger_ui import get_swaggerui_blueprint
from werkzeug.wrappers.response import Response as Redirect

from facefleet.api.auth import ALWAYS_OPEN
from facefleet.contract.openapi import document
from facefleet.settings import Settings

bp = Blueprint("docs", __name__)


def served_document(settings: Settings) -> dict[str, Any]:
    """The document of this service: keys and the open paths are declared only when authentication is on."""
    return document(settings.auth.mode != "off", (*ALWAYS_OPEN, *settings.auth.open_paths))


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(current_app.extensions["facefleet.openapi"])


@bp.get("/")
def index() -> Redirect:
    return redirect("/docs/", code=302)


def register(app: Flask, settings: Settings) -> None:
    app.extensions["facefleet.openapi"] = served_document(settings)  # built once per worker
    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "facefleet API"}))
