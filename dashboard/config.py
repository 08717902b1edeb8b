"""Dashboard settings, from FACEFLEET_DASHBOARD_* environment variables (docs/dashboard.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.config import key_lines
from service.errors import ConfigError


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facefleet"


@dataclass(frozen=True)
class DashboardSettings:
    targets_file: str = ""  # Prometheus file_sd JSON of the appliances' service targets
    targets: tuple[str, ...] = ()  # or host:port of each service
    exporter_port: int = 18090  # where an appliance's exporter listens unless its labels say otherwise
    poll_interval_s: float = 10.0
    timeout_s: float = 3.0
    pool: int = 16
    database: str = str(_cache_dir() / "dashboard.sqlite3")
    retention_h: float = 24.0
    prometheus_url: str = ""
    password: str = ""
    secret_key: str = ""
    appliance_api_key: str = ""
    appliance_api_key_file: str = ""  # the first key of a facefleet API key file, when no key is given
    host: str = "127.0.0.1"
    port: int = 18100

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> DashboardSettings:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, kind in cls.__annotations__.items():
            raw = environ.get(f"FACEFLEET_DASHBOARD_{name.upper()}")
            if raw in (None, ""):
                continue
            try:
                if kind == "tuple[str, ...]":
                    values[name] = tuple(t.strip() for t in raw.split(",") if t.strip())
                elif kind in ("int", "float"):
                    values[name] = (int if kind == "int" else float)(raw)
                    if values[name] <= 0:  # type: ignore[operator]
                        raise ValueError("expected a number above 0")
                else:
                    values[name] = raw
            except ValueError as exc:
                raise ConfigError(f"invalid FACEFLEET_DASHBOARD_{name.upper()}={raw!r}: {exc}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("appliance_api_key_file") and not values.get("appliance_api_key"):
            values["appliance_api_key"] = _first_key(str(values["appliance_api_key_file"]))
        return cls(**values)  # type: ignore[arg-type]


def _first_key(path: str) -> str:
    """The key the dashboard presents: the first of the file the appliance role writes, so a
    dashboard on an appliance (the default inventory) needs no key of its own."""
    try:
        keys = key_lines(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE={path}: {exc.strerror}") from None
    if not keys:
        raise ConfigError(f"FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE={path} holds no key")
    return keys[0]
