"""A camera's address: what FFmpeg is asked to open, how, and how it may be shown.

One place turns what an operator writes (`rtsp://...`, `http://.../mjpg`, `/dev/video0`, a file path) into
FFmpeg's input, its demuxer and options, and whether the source is live (a live source that ends is a loss
to reconnect; a file that ends is played out or looped). Addresses carry credentials
(`rtsp://user:pass@cam/...`, `?password=`): `mask` is what every log line, status and error shows instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

V4L2_DEVICE = re.compile(r"^/dev/video\d+$")
# Query keys that carry secrets in camera URLs (Hikvision, Axis, Reolink and friends put them there).
SECRET_KEYS = re.compile(r"(user|pass|pwd|token|key|auth|secret|sig)", re.IGNORECASE)
# Any URL-looking `scheme://user[:pass]@` inside free text (FFmpeg's messages name the URL they opened).
USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
MASK = "***"
TRANSPORTS = ("tcp", "udp")


class SourceKind(str, Enum):
    """How a source is opened and what its end means."""

    RTSP = "rtsp"
    HTTP = "http"  # MJPEG (multipart/x-mixed-replace) or any stream FFmpeg reads over HTTP
    FILE = "file"
    V4L2 = "v4l2"
    OTHER = "stream"  # another URL FFmpeg opens (udp://, srt://, rtmp://): treated as live

    @property
    def live(self) -> bool:
        return self is not SourceKind.FILE

    @property
    def timed_by_arrival(self) -> bool:
        """MJPEG over HTTP carries no timestamps (FFmpeg's mpjpeg demuxer numbers frames at an assumed 25 fps):
        its frames are timed by when they arrive."""
        return self is SourceKind.HTTP


@dataclass(frozen=True)
class Location:
    """What `av.open` gets: the target, its demuxer (None: FFmpeg probes) and its options."""

    kind: SourceKind
    target: str
    format: str | None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def shown(self) -> str:
        return mask(self.target)


def locate(
    url: str,
    *,
    transport: str = "tcp",
    read_timeout_s: float = 5.0,
    format: str | None = None,
    options: dict[str, str] | None = None,
) -> Location:
    """The FFmpeg input of a camera address. `transport` is RTSP's (tcp by default: no lost packets, works
    through NAT; udp for cameras that only speak it); `format` forces a demuxer (e.g. `mpjpeg`); `options` are
    extra FFmpeg options (a V4L2 device's `video_size`, `framerate`, `input_format`), which win."""
    url = url.strip()
    if not url:
        raise ValueError("empty camera address")
    extra = dict(options or {})
    socket_timeout = str(int(read_timeout_s * 1_000_000))  # FFmpeg's socket timeouts are in microseconds
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if V4L2_DEVICE.match(url):
        return Location(SourceKind.V4L2, url, format or "v4l2", extra)
    if scheme in ("rtsp", "rtsps"):
        if transport not in TRANSPORTS:
            raise ValueError(f"RTSP transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
        # `timeout` is the RTSP demuxer's socket I/O timeout since FFmpeg 5 (`stimeout` is gone); PyAV's own
        # read timeout bounds the rest.
        base = {"rtsp_transport": transport, "timeout": socket_timeout}
        return Location(SourceKind.RTSP, url, format, {**base, **extra})
    if scheme in ("http", "https"):
        return Location(SourceKind.HTTP, url, format, {"rw_timeout": socket_timeout, **extra})
    if scheme == "file":
        return Location(SourceKind.FILE, urlsplit(url).path, format, extra)
    if scheme:
        return Location(SourceKind.OTHER, url, format, extra)
    return Location(SourceKind.FILE, str(Path(url).expanduser()), format, extra)


def mask(text: str) -> str:
    """`text` (an address or a message naming one) with user names, passwords and secret query values
    replaced by ***."""
    if "://" in text and not any(ch.isspace() for ch in text.strip()):
        return _mask_url(text.strip())
    return USERINFO.sub(lambda m: f"{m.group(1)}{MASK}:{MASK}@", text)


def _mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return USERINFO.sub(lambda m: f"{m.group(1)}{MASK}:{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}:{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_KEYS.search(key) for key, _ in pairs):
            query = urlencode([(key, MASK if SECRET_KEYS.search(key) else value) for key, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
