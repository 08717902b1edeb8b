"""The service's API keys, read from the auth settings: the HTTP layer checks requests against
them and `facefleet serve` reads them before gunicorn starts, so both take them from here
(the CLI never imports the HTTP adapter to learn whether its configuration is usable)."""

from __future__ import annotations

from pathlib import Path

from facefleet.errors import ConfigError
from facefleet.settings.env import key_lines
from facefleet.settings.root import Settings

MIN_KEY_LENGTH = 16


def _keys_from_file(path: str) -> list[str]:
    try:
        return key_lines(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read FACEFLEET_API_KEYS_FILE={path}: {exc.strerror}") from None


def load_keys(settings: Settings) -> tuple[bytes, ...]:
    """The configured keys; a configuration that would leave the service open by accident is an error."""
    keys = list(settings.auth.api_keys)
    if settings.auth.api_keys_file:
        keys += _keys_from_file(settings.auth.api_keys_file)
    short = [k for k in keys if len(k) < MIN_KEY_LENGTH]
    if short:
        raise ConfigError(f"API keys must have at least {MIN_KEY_LENGTH} characters ({len(short)} shorter)")
    if settings.auth.mode == "on" and not keys:
        raise ConfigError(
            "no API keys: set FACEFLEET_API_KEYS_FILE (one key per line) or FACEFLEET_API_KEYS, "
            "or FACEFLEET_AUTH=off to serve without authentication"
        )
    return tuple(k.encode() for k in keys)
