"""The installed appliance's own settings, read by the command line.

The inference_service role writes the service's FACEFLEET_* variables into
/etc/facefleet/service.env (systemd's EnvironmentFile format). An operator's `facefleet models
list` or `facefleet providers` on that host must see what the service sees (its models folder,
provider chain, galleries), not the defaults of a source checkout. The variables of the
operator's own environment and the command line's flags still win over the file.

FACEFLEET_APPLIANCE_ENV names another file, or `none` (or empty) for no file at all: the test
suite uses it so that it never reads an installed appliance's settings. FACEFLEET_CONFIG (a
settings file of the operator's own) also turns the appliance's file off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from facefleet.errors import ConfigError
from facefleet.settings import flat_knobs

DEFAULT_ENV_FILE = "/etc/facefleet/service.env"
OVERRIDE = "FACEFLEET_APPLIANCE_ENV"


@dataclass(frozen=True)
class ApplianceEnv:
    """The variables of the appliance's file (empty when there is none) and a note for the
    operator when a file exists but cannot be read."""

    path: str | None
    values: dict[str, str]
    note: str = ""


def env_file_path(environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """The file to read and whether it was asked for by name (then it must exist)."""
    named = environ.get(OVERRIDE)
    if named is None:
        return DEFAULT_ENV_FILE, False
    if named.strip().lower() in ("", "none", "off"):
        return None, False
    return named, True


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them: `#` comments and blank lines
    skipped, an optional `export `, one pair of surrounding quotes removed."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def read_appliance_env(environ: Mapping[str, str] | None = None) -> ApplianceEnv:
    """The appliance's variables: none when it is not installed here; a named file that is
    missing is a configuration error, an installed one that is unreadable (not root) a note."""
    environ = os.environ if environ is None else environ
    path, named = env_file_path(environ)
    if path is None or (environ.get("FACEFLEET_CONFIG") and not named):  # the operator's own settings file
        return ApplianceEnv(None, {})
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        if named:
            raise ConfigError(f"{OVERRIDE}={path}: no such file") from None
        return ApplianceEnv(None, {})
    except OSError as exc:
        if named:
            raise ConfigError(f"cannot read {OVERRIDE}={path}: {exc.strerror}") from None
        note = f"cannot read the appliance's settings {path} ({exc.strerror}): defaults and environment only"
        return ApplianceEnv(None, {}, note)
    return ApplianceEnv(path, parse_env_file(text))


def merged_environ(appliance: ApplianceEnv, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The appliance's variables under the caller's: a setting the caller's environment gives
    (by its FACEFLEET_ name or an InsightFace-REST alias) drops the file's value for it."""
    environ = os.environ if environ is None else environ
    given = {k: v for k, v in environ.items() if v != ""}
    merged = dict(appliance.values)
    for spec in flat_knobs().values():
        names = spec.variables
        if any(name in given for name in names):
            for name in names:
                merged.pop(name, None)
    merged.update(given)  # an empty variable is an unset one (Settings reads it so): the file's value stays
    return merged


def source_of(name: str, flag_value: object, flag: str, appliance: ApplianceEnv) -> str:
    """Where a setting's value came from, in the words an operator can act on."""
    if flag_value is not None:
        return flag
    spec = flat_knobs()[name]
    for var in spec.variables:
        if os.environ.get(var):
            return var
    if appliance.path and any(var in appliance.values for var in spec.variables):
        return appliance.path
    if os.environ.get("FACEFLEET_CONFIG"):
        return os.environ["FACEFLEET_CONFIG"]
    return "default"
