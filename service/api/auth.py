"""API keys: who may use the service.

Keys come from a file (`FACEFLEET_API_KEYS_FILE`, which the Ansible roles write from vault
variables) and/or `FACEFLEET_API_KEYS`. A presented key is compared with every configured key
in constant time, so neither the answer nor its timing tells how much of a key was right. The
service refuses to start without keys unless `FACEFLEET_AUTH=off` says so explicitly, and then
it says so in its log and in /info.

Trusted networks (`FACEFLEET_TRUSTED_NETWORKS`) serve a request that presents no key when its
client's address is inside one: for clients that cannot send a header. The client's address is
the TCP peer's, except when the peer is loopback: that is the front (nginx on this host, the only
thing besides local processes that reaches gunicorn's loopback port), which overwrites
`X-Forwarded-For` with its own peer's address, so that header is the client's. A remote client
therefore cannot claim an address; a local process can (docs/configuration.md, "Clients that
cannot send a key").
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

from flask import Flask, Request, Response, g, request

from facefleet.api.errors import error_response
from facefleet.settings import Settings
from facefleet.settings.env import Network
from facefleet.settings.keys import load_keys

# load_keys lives with the settings (the CLI checks keys without importing the HTTP layer); kept here for create_app.
__all__ = [
    "ALWAYS_OPEN",
    "client_address",
    "is_open",
    "key_matches",
    "load_keys",
    "presented_key",
    "register",
    "trusted_network",
    "trusted_warning",
]

log = logging.getLogger("facefleet.api")
ALWAYS_OPEN = ("/livez",)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def presented_key(req: Request) -> bytes | None:
    """`X-API-Key: KEY` (InsightFace-REST clients add headers easily) or `Authorization: Bearer KEY`."""
    key = req.headers.get("X-API-Key", "")
    if not key:
        scheme, _, token = req.headers.get("Authorization", "").partition(" ")
        key = token.strip() if scheme.lower() == "bearer" else ""
    return key.encode() if key else None


def key_matches(presented: bytes, keys: tuple[bytes, ...]) -> bool:
    """Compare with every key, without stopping at the first match."""
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented, key)
    return matched


def is_open(path: str, open_paths: tuple[str, ...]) -> bool:
    """Exact paths, plus everything under /docs/ when /docs is open (the Swagger UI's assets)."""
    return path in open_paths or any(p == "/docs" and path.startswith("/docs/") for p in open_paths)


def client_address(peer: str | None, forwarded: str | None) -> Address | None:
    """Whose request this is: the TCP peer, or, when the peer is loopback (the front on this host), the
    last address of `X-Forwarded-For` (the front sets it to its own peer, replacing whatever the client
    sent; a proxy that appends puts its peer last). None when unknown (a unix socket, a header that is
    not an address): such a request is never trusted by network."""
    address = _address(peer)
    if address is None or not address.is_loopback or not forwarded:
        return address
    return _address(forwarded.rsplit(",", 1)[-1])


def _address(text: str | None) -> Address | None:
    """An IP address; an IPv4-mapped IPv6 one (a dual-stack socket's peer) as the IPv4 address it maps."""
    try:
        address = ipaddress.ip_address((text or "").strip())
    except ValueError:
        return None
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return mapped or address


def trusted_network(address: Address | None, networks: tuple[Network, ...]) -> Network | None:
    """The first of `networks` holding `address` (an IPv4 address is never inside an IPv6 network)."""
    if address is None:
        return None
    return next((net for net in networks if address in net), None)


def trusted_warning(networks: tuple[Network, ...]) -> str:
    """The start-up warning: which networks are let in without a key, and loudly when one is every address."""
    listed = ", ".join(map(str, networks))
    text = f"requests without an API key are served from the trusted networks {listed} (FACEFLEET_TRUSTED_NETWORKS)"
    everything = [str(net) for net in networks if net.prefixlen == 0]
    if everything:
        text += f"; {' and '.join(everything)} is every address: every such client needs no key"
    return text


def register(app: Flask, settings: Settings, keys: tuple[bytes, ...]) -> None:
    if settings.auth.mode == "off":
        log.warning("authentication is OFF (FACEFLEET_AUTH=off): anyone who reaches this port can use the service")
        return
    open_paths = (*ALWAYS_OPEN, *settings.auth.open_paths)
    networks = settings.auth.trusted_networks
    if networks:
        log.warning(trusted_warning(networks))

    @app.before_request
    def require_key() -> Response | None:
        if is_open(request.path, open_paths):
            return None
        presented = presented_key(request)
        if presented is not None and key_matches(presented, keys):
            return None
        # Only a request without a key is let in by its network: a wrong key is refused wherever it comes from,
        # so a client with a stale key hears about it.
        if presented is None and networks:
            network = trusted_network(
                client_address(request.remote_addr, request.headers.get("X-Forwarded-For")), networks
            )
            if network is not None:
                g.trusted_network = str(network)
                return None
        why = "missing API key" if presented is None else "invalid API key"
        return error_response(
            401,
            "unauthorized",
            f"{why}: send it as 'X-API-Key: KEY' or 'Authorization: Bearer KEY'",
            {"WWW-Authenticate": 'Bearer realm="facefleet"'},
        )
