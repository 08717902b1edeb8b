"""Dashboard settings, from FACEFLEET_DASHBOARD_* environment variables (docs/dashboard.md)."""

from __future__ import annotations

import ipaddress
import os
import socket
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
    password_file: str = ""  # the login password's file (the dashboard role generates it, root-only)
    allow_open: bool = False  # a non-loopback address without a login, on purpose (an authenticating proxy)
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
                elif kind == "bool":
                    values[name] = _flag(raw)
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
        if values.get("password_file") and not values.get("password"):
            values["password"] = _first_line(
                str(values["password_file"]), "FACEFLEET_DASHBOARD_PASSWORD_FILE", "password"
            )
        return cls(**values)  # type: ignore[arg-type]

    def require_login_off_loopback(self) -> None:
        """The dashboard shows the whole fleet: reachable from the network, it needs a login."""
        if self.password or self.allow_open or _loopback(self.host):
            return
        raise ConfigError(
            f"the dashboard would listen on {self.host} without a login: set FACEFLEET_DASHBOARD_PASSWORD_FILE "
            "(or FACEFLEET_DASHBOARD_PASSWORD), listen on 127.0.0.1, or set FACEFLEET_DASHBOARD_ALLOW_OPEN=true "
            "behind a proxy that authenticates"
        )


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError("expected true or false")
    return lowered in ("1", "true", "yes", "on")


def _loopback(host: str) -> bool:
    """Every address `host` resolves to is loopback (0.0.0.0 and :: are every interface)."""
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


def _first_key(path: str) -> str:
    """The key the dashboard presents: the first of the file the appliance role writes, so a
    dashboard on an appliance (the default inventory) needs no key of its own."""
    return _first_line(path, "FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE", "key")


def _first_line(path: str, variable: str, what: str) -> str:
    """The first line of a secret's file that is not blank or a `#` comment."""
    try:
        lines = key_lines(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {variable}={path}: {exc.strerror}") from None
    if not lines:
        raise ConfigError(f"{variable}={path} holds no {what}")
    return lines[0]
