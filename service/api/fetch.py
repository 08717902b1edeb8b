"""Image URLs fetched without becoming a way into the appliance's network (SSRF).

Every hop (the URL and each redirect) is resolved first, every resolved address is checked,
and the connection goes to the checked address itself, so a DNS answer that changes between
check and connect (rebinding) cannot slip through. Every address that is not globally routable
unicast (loopback, link-local with cloud metadata at 169.254.169.254, private, shared 100.64/10,
multicast, reserved, unspecified) is refused unless the host or a CIDR holding it is allow-listed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass

from facefleet.errors import ImageError

MAX_REDIRECTS = 3


class URLRefused(ImageError):  # noqa: N818 - reads as what happened to the URL
    code = "url_refused"


@dataclass(frozen=True)
class FetchPolicy:
    allow: tuple[str, ...] = ()
    max_bytes: int = 20_000_000
    timeout_s: float = 10.0

    def allowed(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        for entry in self.allow:
            if entry.lower() == host.lower():
                return True
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Anything but a globally routable unicast address: loopback, link-local, private, shared
    (CGNAT 100.64/10), reserved, documentation, multicast; an IPv4 address inside an IPv6 one
    (mapped ::ffff:a.b.c.d, 6to4 2002::/16) counts as that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return _internal(embedded)
    return (
        not address.is_global
        or address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def vetted_address(host: str, port: int, policy: FetchPolicy) -> str:
    """The address to connect to, after checking every address the name resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise URLRefused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if _internal(address) and not policy.allowed(host, address):
            raise URLRefused(f"{host} resolves to {address}, an internal address; refused (FACEFLEET_URL_ALLOW)")
    return str(addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, address: str, port: int, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _open(url: str, policy: FetchPolicy, deadline: float) -> http.client.HTTPResponse:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise URLRefused(f"only http and https URLs are fetched, not {url[:80]!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = vetted_address(parts.hostname, port, policy)
    remaining = max(0.1, deadline - time.monotonic())
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(parts.hostname, address, port, remaining)
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    connection.request("GET", path, headers={"User-Agent": "facefleet", "Accept": "image/*"})
    return connection.getresponse()


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """The body at url, following at most 3 redirects, each checked; bounded in size and time."""
    deadline = time.monotonic() + policy.timeout_s
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response = _open(url, policy, deadline)
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location") or ""
                response.close()
                url = urllib.parse.urljoin(url, location)
                continue
            if response.status != 200:
                raise ImageError(f"fetching {url[:100]} answered HTTP {response.status}")
            body = response.read(policy.max_bytes + 1)
            if len(body) > policy.max_bytes:
                raise ImageError(f"{url[:100]} is larger than {policy.max_bytes / 1e6:g} MB")
            return body
    except (OSError, http.client.HTTPException) as exc:
        raise ImageError(f"cannot fetch {url[:100]}: {exc}") from None
    raise URLRefused(f"more than {MAX_REDIRECTS} redirects from {url[:100]}")
