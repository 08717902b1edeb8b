"""The service of a worker whose models could not be made ready: alive, honest, and not serving.

A model that does not fit its role, fails its first inference, or is a corrupt file (with
verification off) is a configuration fault that no retry cures. Failing the worker's boot would
make gunicorn's master exit (code 3) after a traceback, and restart loops hide the reason. So the
worker serves this app instead: /livez 200 (the process is fine), /health 503 with the reason (a
load balancer takes it out, an operator reads why), /metrics as usual, and every other route of the
contract 503 `not_ready` with the same reason.
"""

from __future__ import annotations

import re

from flask import Flask, Response, jsonify

from facefleet.api.errors import error_response
from facefleet.api.status import livez, prometheus_metrics
from facefleet.contract import models as m
from facefleet.contract.operations import OPERATIONS

SERVED = frozenset({"/livez", "/metrics", "/health", "/openapi.json"})


def _flask_rule(path: str) -> str:
    """The contract's /galleries/{name} as Flask's /galleries/<name>."""
    return re.sub(r"\{(\w+)\}", r"<\1>", path)


def register(app: Flask, reason: str) -> None:
    """Routes of an unready worker: status ones answer, the others say why they cannot."""

    def health() -> Response:
        response = jsonify(m.Health(status="unready", reason=reason, checks={}).dump())
        response.status_code = 503
        return response

    def not_ready(**_: str) -> Response:
        return error_response(503, "not_ready", f"the service is not ready: {reason}")

    app.add_url_rule("/livez", "livez", livez, methods=["GET"])
    app.add_url_rule("/metrics", "metrics", prometheus_metrics, methods=["GET"])
    app.add_url_rule("/health", "health", health, methods=["GET"])
    rules: dict[str, list[str]] = {}
    for operation in OPERATIONS:
        if operation.path not in SERVED:
            rules.setdefault(_flask_rule(operation.path), []).append(operation.method.upper())
    for index, (rule, methods) in enumerate(rules.items()):
        app.add_url_rule(rule, f"not_ready_{index}", not_ready, methods=methods)
