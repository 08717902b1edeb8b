"""A WSGI entry point for running the service under another server or a gunicorn command line of
your own (`gunicorn facefleet.api.wsgi:app`): the settings are read from the environment once, here.
`facefleet serve` does not use it: it hands its settings object to gunicorn (service/cli/gunicorn_conf.py)."""

from facefleet.api import create_app

app = create_app()
