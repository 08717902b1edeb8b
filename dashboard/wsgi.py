"""The WSGI entry point gunicorn loads: `dashboard.wsgi:app` (one worker: it owns the poller)."""

from . import create_app

app = create_app()
