"""The WSGI entry point gunicorn loads in each worker: `service.api.wsgi:app`."""

from . import create_app

app = create_app()
