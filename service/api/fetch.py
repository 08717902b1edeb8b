"""Image URLs fetched without becoming a way into the appliance's network (SSRF), within one deadline.

Every hop (the URL and each redirect) is resolved first, every resolved address is checked,
and the connection goes to the checked address itself, so a DNS answer that changes between
check and connect (rebinding) cannot slip through. Every address that is not globally routable
unicast (loopback, link-local with cloud metadata at 169.254.169.254, private, shared 100.64/10,
multicast, reserved, unspecified) is refused unless the host or a CIDR holding it is allow-listed.
A refusal names the rule that refused, never the addresses the name resolved to: those are the
appliance's own network, not the client's business.

One deadline (FACEFLEET_URL_TIMEOUT_S) covers the whole fetch: DNS, connect, TLS handshake, every
redirect, headers and body. A socket timeout alone does not keep it: it restarts on every byte,
so a server trickling one byte a second held a fetch for minutes. A watchdog shuts the socket
down at the deadline instead, which ends any read, handshake or connect blocked on it.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from types import TracebackType

from facefleet.errors import ImageError

MAX_REDIRECTS = 3
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: neither private nor global
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# getaddrinfo has no timeout of its own: it runs here, and the fetch stops waiting at its deadline.
_RESOLVER = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="facefleet-dns")


class URLRefused(ImageError):  # noqa: N818 - reads as what happened to the URL
    code = "url_refused"


@dataclass(frozen=True)
class FetchPolicy:
    allow: tuple[str, ...] = ()
    max_bytes: int = 20_000_000
    timeout_s: float = 10.0
    # the request's img_req_headers (or FACEFLEET_IMG_REQ_HEADERS), sent with each GET; checked by the contract
    headers: tuple[tuple[str, str], ...] = ()

    def allowed(self, host: str, address: Address) -> bool:
        for entry in self.allow:
            if entry.lower() == host.lower():
                return True
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        return False


def refusing_rule(address: Address) -> str | None:
    """The rule that makes `address` internal, or None for globally routable unicast. An IPv4
    address inside an IPv6 one (mapped ::ffff:a.b.c.d, 6to4 2002::/16) counts as that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return refusing_rule(embedded)
    rules = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (100.64.0.0/10)", isinstance(address, ipaddress.IPv4Address) and address in SHARED),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    return next((name for name, hit in rules if hit), None)


class Deadline:
    """The fetch's one deadline, kept by a watchdog timer that shuts the current connection's
    socket down when it passes: a blocked connect, handshake or read then ends at once."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self.at = time.monotonic() + seconds
        self.passed = False
        self._lock = threading.Lock()
        self._fd = -1  # the socket being watched, -1 between connections
        self._timer = threading.Timer(seconds, self._expire)  # cancelled on exit: never outlives the fetch

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        with self._lock:
            self._fd = -1
        self._timer.cancel()

    def remaining(self) -> float:
        """Seconds left; the fetch's timeout error once none are."""
        left = self.at - time.monotonic()
        if left <= 0 or self.passed:
            raise self.error()
        return left

    def error(self) -> ImageError:
        return ImageError(f"fetching {self.url[:100]} took longer than {self.seconds:g} s (FACEFLEET_URL_TIMEOUT_S)")

    def watch(self, sock: socket.socket | None) -> None:
        """Watch `sock` (None: stop watching, before the connection is closed and its number reused)."""
        with self._lock:
            self._fd = sock.fileno() if sock is not None else -1
            if self.passed and sock is not None:
                self._shut()

    def _expire(self) -> None:
        with self._lock:
            self.passed = True
            self._shut()

    def _shut(self) -> None:
        if self._fd < 0:
            return
        try:  # a duplicate of the descriptor: shutting it down ends the connection for every holder
            with socket.socket(fileno=os.dup(self._fd)) as duplicate:
                duplicate.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def vetted_address(host: str, port: int, policy: FetchPolicy, deadline: Deadline) -> str:
    """The address to connect to, after checking every address the name resolves to."""
    lookup = _RESOLVER.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = lookup.result(timeout=deadline.remaining())
    except concurrent.futures.TimeoutError:
        raise deadline.error() from None
    except socket.gaierror as exc:
        raise URLRefused(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        rule = refusing_rule(address)
        if rule is not None and not policy.allowed(host, address):
            raise URLRefused(f"{host} is an internal address ({rule}); refused (FACEFLEET_URL_ALLOW)")
    return str(addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, address: str, port: int, deadline: Deadline) -> None:
        super().__init__(host, port, timeout=deadline.remaining())
        self._address, self._deadline = address, deadline

    def connect(self) -> None:
        self.sock = self._connected()

    def _connected(self) -> socket.socket:
        sock = socket.create_connection((self._address, self.port), self._deadline.remaining())
        self._deadline.watch(sock)
        return sock


class _PinnedHTTPS(_PinnedHTTP):
    default_port = http.client.HTTPS_PORT  # the Host header leaves out :443, as HTTPSConnection does

    def __init__(self, host: str, address: str, port: int, deadline: Deadline) -> None:
        super().__init__(host, address, port, deadline)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        # the handshake runs on the watched socket: the same descriptor after wrapping
        self.sock = self._tls.wrap_socket(self._connected(), server_hostname=self.host)


# Credentials a caller gave for one site: not sent on to the site a redirect names (as curl and requests do).
CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})


def _headers(policy: FetchPolicy, same_site: bool) -> dict[str, str]:
    """facefleet's User-Agent and Accept, replaced by the caller's own where it names them."""
    chosen = {"User-Agent": "facefleet", "Accept": "image/*"}
    for name, value in policy.headers:
        if same_site or name.lower() not in CREDENTIALS:
            chosen = {k: v for k, v in chosen.items() if k.lower() != name.lower()} | {name: value}
    return chosen


def _open(
    url: str, policy: FetchPolicy, deadline: Deadline, same_site: bool = True
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise URLRefused(f"only http and https URLs are fetched, not {url[:80]!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = vetted_address(parts.hostname, port, policy, deadline)
    kind = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    connection = kind(parts.hostname, address, port, deadline)
    path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    try:
        connection.request("GET", path, headers=_headers(policy, same_site))
        return connection, connection.getresponse()
    except BaseException:
        _close(connection, deadline)
        raise


def _close(connection: http.client.HTTPConnection, deadline: Deadline) -> None:
    deadline.watch(None)
    connection.close()


def _hop(url: str, policy: FetchPolicy, deadline: Deadline, same_site: bool) -> bytes | str:
    """One request: the body, or the URL a redirect points to."""
    connection, response = _open(url, policy, deadline, same_site)
    try:
        if response.status in (301, 302, 303, 307, 308):
            return urllib.parse.urljoin(url, response.getheader("Location") or "")
        if response.status != 200:
            raise ImageError(f"fetching {url[:100]} answered HTTP {response.status}")
        body = response.read(policy.max_bytes + 1)
        deadline.remaining()  # a body cut short by the watchdog is not the image
        if len(body) > policy.max_bytes:
            raise ImageError(f"{url[:100]} is larger than {policy.max_bytes / 1e6:g} MB")
        return body
    finally:
        _close(connection, deadline)


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """The body at url, following at most 3 redirects, each checked; bounded in size, and in time
    by one deadline for everything."""
    with Deadline(url, max(policy.timeout_s, 0.1)) as deadline:
        hop = url
        try:
            site = urllib.parse.urlsplit(url).netloc.lower()
            for _ in range(MAX_REDIRECTS + 1):
                answer = _hop(hop, policy, deadline, urllib.parse.urlsplit(hop).netloc.lower() == site)
                if isinstance(answer, bytes):
                    return answer
                hop = answer
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.passed or time.monotonic() >= deadline.at:
                raise deadline.error() from None
            raise ImageError(f"cannot fetch {hop[:100]}: {exc}") from None
    raise URLRefused(f"more than {MAX_REDIRECTS} redirects from {hop[:100]}")
