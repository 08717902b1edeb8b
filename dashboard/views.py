"""Blueprints: the pages (overview, appliance, login) and the JSON API behind them, both rendered from
the backend's typed views (`snapshot.FleetView`, `snapshot.ApplianceView`)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from facefleet.dashboard.backends import Backend
from facefleet.dashboard.cameras import CameraReader, CamerasSeen
from facefleet.dashboard.snapshot import ApplianceView, FleetView
from facefleet.dashboard.status import ORDER

pages = Blueprint("pages", __name__)
api = Blueprint("api", __name__, url_prefix="/api")
auth = Blueprint("auth", __name__)

SORTS: dict[str, Callable[[ApplianceView], Any]] = {
    "status": lambda v: (ORDER[v.status], v.name),
    "name": lambda v: v.name,
    "group": lambda v: (v.group, v.name),
    "p95": lambda v: -(v.p95_s or 0),
    "rate": lambda v: -(v.rate_rps or 0),
}


P = ParamSpec("P")


def backend() -> Backend:
    return current_app.extensions["facefleet.backend"]


def cameras() -> CameraReader:
    return current_app.extensions["facefleet.cameras"]


def login_required(view: Callable[P, Any]) -> Callable[P, Any]:
    """Every page and API needs the login once a password is configured (the Ansible role sets one)."""

    @wraps(view)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> Any:
        if current_app.config["FACEFLEET_PASSWORD"] and not session.get("user"):
            if request.blueprint == "api" or request.path.startswith("/fragment"):
                response = jsonify({"error": {"code": "unauthorized", "message": "log in first"}})
                response.status_code = 401
                return response
            return redirect(url_for("auth.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def filtered(fleet: FleetView) -> list[ApplianceView]:
    status, group = request.args.get("status", ""), request.args.get("group", "")
    rows = [v for v in fleet.appliances if (not status or v.status == status) and (not group or v.group == group)]
    return sorted(rows, key=SORTS.get(request.args.get("sort", "status"), SORTS["status"]))


@pages.get("/")
@login_required
def overview() -> str:
    fleet = backend().fleet_view()
    groups = sorted({v.group for v in fleet.appliances if v.group})
    return render_template(
        "overview.html", fleet=fleet, rows=filtered(fleet), groups=groups, now=time.time(), args=request.args
    )


@pages.get("/fragment/rows")
@login_required
def rows_fragment() -> str:
    """The table body and counts, for the page's own refresh without a full reload."""
    fleet = backend().fleet_view()
    return render_template("_rows.html", fleet=fleet, rows=filtered(fleet), now=time.time())


@pages.get("/appliances/<name>")
@login_required
def appliance_page(name: str) -> str:
    detail = backend().appliance_view(name)
    if detail is None:
        abort(404)
    # fetched now, for this page only (dashboard/cameras.py says why not by the poller)
    if detail.service:
        seen = cameras().look(detail.service)
    else:
        seen = CamerasSeen(cameras_error="cameras: Prometheus has no active target for this appliance's service")
    return render_template("appliance.html", a=detail, cams=seen, now=time.time())


@pages.get("/appliances/<name>/events/<event_id>/crop")
@login_required
def event_crop(name: str, event_id: str) -> Response:
    """An event's face crop, relayed from the appliance with the dashboard's key: the browser only ever talks to
    the dashboard (its login, its CSP), and neither keeps the crop past the appliance's retention."""
    detail = backend().appliance_view(name)
    crop = cameras().crop(detail.service, event_id) if detail is not None and detail.service else None
    if crop is None:
        response = jsonify({"error": {"code": "not_found", "message": "no such crop (unknown, or past retention)"}})
        response.status_code = 404
        return response
    return Response(crop, mimetype="image/jpeg", headers={"Cache-Control": "no-store"})


@api.get("/fleet")
@login_required
def api_fleet() -> Response:
    return jsonify(backend().fleet_view().as_json())


@api.get("/appliances/<name>")
@login_required
def api_appliance(name: str) -> Response:
    detail = backend().appliance_view(name)
    if detail is None:
        response = jsonify({"error": {"code": "not_found", "message": f"no appliance named {name!r}"}})
        response.status_code = 404
        return response
    return jsonify(detail.as_json())


@pages.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@auth.route("/login", methods=["GET", "POST"])
def login() -> Any:
    error = ""
    if request.method == "POST":
        given = request.form.get("password", "").encode()
        if hmac.compare_digest(given, current_app.config["FACEFLEET_PASSWORD"].encode()):
            session.clear()
            session["user"] = "operator"
            target = request.args.get("next", "/")
            return redirect(target if target.startswith("/") and not target.startswith("//") else "/")
        error = "wrong password"
    return render_template("login.html", error=error), 401 if error else 200


@auth.post("/logout")
def logout() -> BaseResponse:
    session.clear()
    return redirect(url_for("auth.login"))
