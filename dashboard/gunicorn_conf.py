"""gunicorn under `facefleet dashboard`: one worker, since the worker runs the poller, with
threads for concurrent page views; the worker builds its app from the settings object it is given."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from facefleet.ops.gunicorn_app import FactoryApplication
from facefleet.settings import DashboardSettings

if TYPE_CHECKING:
    from flask import Flask


def options(settings: DashboardSettings) -> dict[str, Any]:
    """gunicorn's settings for the dashboard."""
    return {
        "bind": f"{settings.host}:{settings.port}",
        "workers": 1,
        "worker_class": "gthread",
        "threads": 8,
        "timeout": 60,
        "accesslog": "-",
        "errorlog": "-",
        "proc_name": "facefleet-dashboard",
        "control_socket_disable": True,  # several gunicorn services on one host must not fight over one socket
    }


def dashboard_application(settings: DashboardSettings) -> FactoryApplication:
    """gunicorn running the dashboard's app, built in its worker from the settings it was given."""

    def build() -> Flask:
        from facefleet.dashboard import create_app

        return create_app(settings)

    return FactoryApplication(options(settings), build)
