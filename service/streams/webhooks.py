"""Events to an HTTP endpoint: one POST of the event's JSON per event, signed, retried with back-off.

Why the stdlib (urllib) and not requests: one POST with a timeout needs no new runtime dependency on an appliance.
Each event is its own request, in order. A 2xx delivers it. A 400, 413, 415 or 422 means the endpoint refuses
this event's body for good: it is skipped (counted as failed, `rejected`) so one bad event cannot block the
queue. Anything else (no connection, a timeout, 5xx, 408, 429, a redirect, 401/403/404 which are set-up
mistakes) is retried `retries` times with exponential back-off here, then the delivery loop backs off further
and tries again from the same event; nothing leaves the outbox undelivered but by its bound or retention.

With a `secret`, each request carries `X-Facefleet-Signature: sha256=<hex HMAC-SHA256 of the body>`, as GitHub
signs its webhooks; the body holds the event id and time, so a receiver can refuse replays. A user part in the
URL (`https://user:password@host/`) is sent as HTTP Basic authentication. The secret, a URL's
password and its query (where tokens hide) never appear in a log line (`redact_url`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import Message

from facefleet import __version__
from facefleet.streams.counters import FailReason
from facefleet.streams.delivery import Attempt
from facefleet.streams.outbox import Stored

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Facefleet-Signature"
REFUSED = frozenset({400, 413, 415, 422})  # the endpoint refuses this event's body: skip it, do not retry


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: `sha256=<hex>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is `body`'s signature under `secret` (constant time): what a receiver checks."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def redact_url(url: str) -> str:
    """`url` fit for a log line: the password of its user part and every query value replaced by `***`."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}" if ":" in user else f"{user}@{host}"
    query = "&".join(f"{pair.split('=', 1)[0]}=***" for pair in parts.query.split("&") if pair) if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class WebhookOptions:
    """Where to POST. `secret` never appears in a repr or a log line; `ca_file` trusts a private CA (the
    fleet's) for an https URL."""

    url: str = field(repr=False)
    secret: str | None = field(default=None, repr=False)
    timeout_s: float = 5.0
    retries: int = 3
    retry_first_s: float = 0.5
    ca_file: str | None = None
    include_crops: bool = False
    window: int = 20

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook URL {redact_url(self.url)!r} is not an http:// or https:// URL")

    def __repr__(self) -> str:
        return f"WebhookOptions(url={redact_url(self.url)!r}, secret={'***' if self.secret else None})"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """urllib would turn a redirected POST into a GET without its body: a redirect is an error here instead."""

    def redirect_request(
        self, req: urllib.request.Request, fp: object, code: int, msg: str, headers: Message, newurl: str
    ) -> None:
        return None


class WebhookPublisher:
    """A `Publisher` (delivery.py) to one URL."""

    name = "webhook"

    def __init__(self, options: WebhookOptions) -> None:
        self.options = options
        self.window = options.window
        self.where = redact_url(options.url)
        parts = urllib.parse.urlsplit(options.url)
        self._auth = None  # urllib does not send a URL's user part: Basic authentication from it, by hand
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        context = ssl.create_default_context(cafile=options.ca_file) if options.url.startswith("https:") else None
        self._opener = urllib.request.build_opener(_NoRedirects(), urllib.request.HTTPSHandler(context=context))
        self._closed = threading.Event()

    def start(self) -> None:
        log.info("events: webhook posting to %s%s", self.where, " (signed)" if self.options.secret else "")

    def close(self) -> None:
        self._closed.set()

    def _post(self, body: bytes, item: Stored) -> tuple[int | None, str]:
        """One POST: (HTTP status or None when none came back, a one-line description without secrets)."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"facefleet/{__version__}",
            "X-Facefleet-Event": item.event.kind,
            "X-Facefleet-Event-Id": item.event.event_id,
        }
        if self._auth is not None:
            headers["Authorization"] = self._auth
        if self.options.secret:
            headers[SIGNATURE_HEADER] = sign(self.options.secret, body)
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.options.timeout_s) as answer:
                answer.read(64 * 1024)
                return int(answer.status), f"HTTP {answer.status}"
        except urllib.error.HTTPError as error:
            error.close()
            return int(error.code), f"{self.where} answered HTTP {error.code}"
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            return None, f"{self.where}: {type(reason).__name__}: {_no_secrets(str(reason), self.options.url)}"

    def send(self, batch: Sequence[Stored]) -> Attempt:
        rejected: list[int] = []
        for done, item in enumerate(batch):
            body = item.event.to_json(include_crop=self.options.include_crops).encode()
            wait = self.options.retry_first_s
            for attempt in range(self.options.retries + 1):
                status, what = self._post(body, item)
                if status is not None and 200 <= status < 300:
                    break
                if status in REFUSED:
                    rejected.append(item.seq)
                    log.warning("events: webhook %s refused event %s: %s", self.where, item.event.event_id, what)
                    break
                if attempt == self.options.retries or self._closed.wait(wait):
                    reason: FailReason = "unreachable" if status is None else "timeout" if status == 408 else "error"
                    return Attempt(done, tuple(rejected), reason, what)
                log.debug("events: webhook attempt %d failed (%s); again in %g s", attempt + 1, what, wait)
                wait *= 2
        return Attempt(len(batch), tuple(rejected))


def _no_secrets(text: str, url: str) -> str:
    """`text` with the URL's password and query values (if it quotes them) masked."""
    parts = urllib.parse.urlsplit(url)
    for secret in [parts.password or "", *(v for _, v in urllib.parse.parse_qsl(parts.query))]:
        if secret:
            text = text.replace(secret, "***")
    return text
