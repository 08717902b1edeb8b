"""gunicorn run from Python: one options dict and one app factory, called in each worker.

The service and the dashboard both run under gunicorn with options computed from their typed
settings. Built this way, no `-c` file and no environment variable carries the settings: the
master gets the options, and each worker calls the factory (which imports the app only then,
after the fork, so the master stays small).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication

if TYPE_CHECKING:
    from flask import Flask


class FactoryApplication(BaseApplication):
    """gunicorn with the given options, running the app `factory()` builds in each worker."""

    def __init__(self, options: dict[str, Any], factory: Callable[[], Flask]) -> None:
        self.options = options
        self.factory = factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.factory()
