"""/openapi.json, the Swagger UI at /docs (served from the flask-swagger-ui wheel, no CDN), / -> /docs."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, redirect
from flask_swagger_ui import get_swaggerui_blueprint

from .openapi import spec

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(spec())


@bp.get("/")
def index() -> Response:
    return redirect("/docs/", code=302)


def register(app: Flask) -> None:
    app.register_blueprint(bp)
    app.register_blueprint(get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "facefleet API"}))
