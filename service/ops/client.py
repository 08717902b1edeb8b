"""What a client of the service presents and trusts: `facefleet exporter`'s probe, `facefleet
bench load` and the dashboard's poller. Keys are on by default, so a client without one gets
nothing but 401s; behind the appliance's TLS front, a client trusts the fleet's CA.

Looked for in this order: the command line's --api-key, then --api-key-file, then
FACEFLEET_API_KEY, FACEFLEET_API_KEY_FILE, and last the service's own FACEFLEET_API_KEYS_FILE and
FACEFLEET_API_KEYS (a client started with the appliance's environment presents its first key).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from facefleet.errors import ConfigError
from facefleet.settings import key_lines


@dataclass(frozen=True)
class KeySource:
    """A key given as such, or a file holding it; `origin` names the flag or variable it came from,
    so an error says what to fix."""

    key: str = field(default="", repr=False)
    file: str = ""
    origin: str = ""

    def read(self) -> str:
        """The key now ("" when none is configured). A file is read again on each call: a key the
        role rotates reaches a long-running exporter without a restart."""
        if self.key or not self.file:
            return self.key
        try:
            keys = key_lines(Path(self.file).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {self.origin}={self.file}: {exc.strerror}") from None
        if not keys:
            raise ConfigError(f"{self.origin}={self.file} holds no key")
        return keys[0]

    def headers(self) -> dict[str, str]:
        key = self.read()
        return {"X-API-Key": key} if key else {}


def key_source(
    key: str | None = None, key_file: str | None = None, environ: Mapping[str, str] | None = None
) -> KeySource:
    """Where this client's key comes from (see the module's docstring for the order)."""
    environ = os.environ if environ is None else environ
    if key:
        return KeySource(key=key, origin="--api-key")
    if key_file:
        return KeySource(file=key_file, origin="--api-key-file")
    if environ.get("FACEFLEET_API_KEY"):
        return KeySource(key=environ["FACEFLEET_API_KEY"], origin="FACEFLEET_API_KEY")
    for variable in ("FACEFLEET_API_KEY_FILE", "FACEFLEET_API_KEYS_FILE"):
        if environ.get(variable):
            return KeySource(file=environ[variable], origin=variable)
    first = next((k.strip() for k in environ.get("FACEFLEET_API_KEYS", "").split(",") if k.strip()), "")
    return KeySource(key=first, origin="FACEFLEET_API_KEYS") if first else KeySource()


NO_KEY_HINT = "give the appliance's key with --api-key-file /etc/facefleet/api-keys (or FACEFLEET_API_KEY_FILE)"


class TrustSource:
    """The CA a long-running client (the exporter's probe, the dashboard's poller) verifies appliances
    with, loaded again when its file changes: a fleet CA the roles replace reaches the client without a
    restart, as a rotated key does. A file unreadable at start stops the client with one line; one that
    turns unreadable later keeps the last good CA."""

    def __init__(self, ca_file: str, origin: str) -> None:
        self.ca_file, self.origin = ca_file, origin
        self._stamp = self._file_stamp()
        self._context = tls_context(ca_file, origin)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            found = os.stat(self.ca_file) if self.ca_file else None
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_size, found.st_ino) if found else None

    def context(self) -> ssl.SSLContext:
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._stamp:
            try:
                self._context = tls_context(self.ca_file, self.origin)
                self._stamp = stamp
            except ConfigError:
                pass  # half-written or broken: the last good CA until the file is whole again
        return self._context


def tls_failure(exc: ssl.SSLError) -> str:
    """One line on a failed handshake: an appliance whose certificate the CA did not sign, or not made
    for the name asked, without OpenSSL's bracketed codes."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"its certificate was not verified ({exc.verify_message})"
    return f"the TLS handshake failed ({exc.reason or exc})"


def tls_context(ca_file: str, origin: str) -> ssl.SSLContext:
    """Verification of https:// appliances against `ca_file` (the fleet CA the roles make), or
    against the system's trust store when none is named. Never an unverified context: a client that
    skipped verification would send its key to whoever answers. An unreadable CA file stops the
    client at start with one line naming `origin` (its flag or variable)."""
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot use {origin}={ca_file} as a CA certificate: {why}") from None
