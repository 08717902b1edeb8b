"""A WSGI entry point for a gunicorn command line of your own (`facefleet.dashboard.wsgi:app`, one worker: it
owns the poller); settings from the environment, read once here. `facefleet dashboard` does not use it."""

from facefleet.dashboard import create_app

app = create_app()
