"""The cameras an appliance watches and what each is doing, in one SQLite file every worker reads.

Why a file: gunicorn runs several workers and any of them may answer `/streams`, but exactly one runs the
cameras (streams/leader.py). The cameras added through the API, the inventory's cameras (synced from
FACEFLEET_STREAMS_FILE at start-up) and the runner's last status of each live here, so every worker answers
the same and a camera added through one worker is picked up by the runner in another. Addresses may carry
credentials: the file is created 0600, and only masked addresses leave it (streams/location.mask).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from facefleet.errors import ConfigError
from facefleet.streams.events import check_name
from facefleet.streams.location import locate

Origin = Literal["inventory", "api"]
FIELDS = {"name", "url", "fps", "gallery"}
# scheme://[user[:password]@]host[:port][/path], file:///path or /path, no spaces or control characters; a host
# by name or IPv4 (an IPv6 literal in brackets is not taken: name the camera's host)
URL_PATTERN = (
    r"^(?:(?:rtsps?|https?)://(?:[^\x00-\x20\x7f/@\[\]]+@)?[^\x00-\x20\x7f/@\[\]:]+(?::[0-9]{1,5})?"
    r"(?:/[^\x00-\x20\x7f]*)?|file:///[^\x00-\x20\x7f]*|/[^\x00-\x20\x7f]*)$"
)
_URL = re.compile(URL_PATTERN)


@dataclass(frozen=True)
class Camera:
    """One camera: its name (in events and topics), its address, and what overrides the appliance's defaults."""

    name: str
    url: str
    fps: float | None = None  # None: FACEFLEET_STREAM_FPS
    gallery: str | None = None  # None: FACEFLEET_STREAM_GALLERY
    origin: Origin = "api"

    def __post_init__(self) -> None:
        check_name("camera", self.name)
        check_url(self.url)
        if self.fps is not None and not 0 < self.fps <= 60:
            raise ValueError(f"camera {self.name}: fps must be above 0 and at most 60, not {self.fps}")
        if self.gallery is not None:
            check_name("gallery", self.gallery)


def check_url(url: str) -> str:
    """An address FFmpeg can open: a scheme we read (RTSP, HTTP MJPEG, a file, a V4L2 device) or an absolute
    path. URL_PATTERN is the whole rule (the HTTP contract's document states it), then the address must map
    onto an FFmpeg input."""
    try:
        if not _URL.match(url):
            raise ValueError(url)
        urlsplit(url)
        locate(url)
    except ValueError:
        raise ValueError(
            "a camera's url is rtsp://, rtsps://, http(s):// (MJPEG) with a host, file:///path, an absolute path "
            "to a video file or /dev/videoN, without spaces"
        ) from None
    return url


def read_inventory(path: str) -> list[Camera]:
    """FACEFLEET_STREAMS_FILE: a YAML list of {name, url, fps?, gallery?} (the roles write it); one clear line
    (ConfigError) for a file that cannot be read or a camera that is wrong."""
    if not path:
        return []
    try:
        data = yaml.safe_load(Path(path).read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"FACEFLEET_STREAMS_FILE {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, list):
        raise ConfigError(f"FACEFLEET_STREAMS_FILE {path}: expected a list of cameras")
    cameras: list[Camera] = []
    for i, item in enumerate(data):
        if (
            not isinstance(item, dict)
            or not {"name", "url"} <= item.keys()
            or item.keys() - {"name", "url", "fps", "gallery"}
        ):
            raise ConfigError(f"FACEFLEET_STREAMS_FILE {path}: camera {i + 1}: expected name, url, fps, gallery")
        try:
            fps = None if item.get("fps") is None else float(item["fps"])
            gallery = None if item.get("gallery") in (None, "") else str(item["gallery"])
            cameras.append(Camera(str(item["name"]), str(item["url"]), fps, gallery, "inventory"))
        except ValueError as exc:
            raise ConfigError(f"FACEFLEET_STREAMS_FILE {path}: camera {i + 1}: {exc}") from None
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ConfigError(f"FACEFLEET_STREAMS_FILE {path}: camera names must be unique")
    return cameras


class CameraExistsError(Exception):
    """A camera of that name is already watched."""


class CameraNotFoundError(Exception):
    """No camera of that name."""


class InventoryCameraError(Exception):
    """A camera declared in the inventory: it is removed there, not through the API."""


class Registry:
    """The cameras (`cameras` table) and the runner's last status of each (`status`, JSON)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._local = threading.local()
        fresh = not self.path.exists()
        with self._db() as db:
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS cameras (
                    name TEXT PRIMARY KEY, url TEXT NOT NULL, fps REAL, gallery TEXT, origin TEXT NOT NULL,
                    added REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS status (name TEXT PRIMARY KEY, updated REAL NOT NULL, status TEXT NOT NULL);
                """
            )
        if fresh:
            os.chmod(self.path, 0o600)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One connection per thread (sqlite3's rule), WAL so readers never wait for the runner's writes."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        with db:
            yield db

    def sync_inventory(self, cameras: Sequence[Camera]) -> None:
        """The inventory's cameras replace the previous inventory's (the API's stay); an API camera of the same
        name gives way to the inventory's."""
        now = time.time()
        with self._db() as db:
            db.execute("DELETE FROM cameras WHERE origin = 'inventory'")
            for camera in cameras:
                db.execute(
                    "INSERT OR REPLACE INTO cameras VALUES (?, ?, ?, ?, 'inventory', ?)",
                    (camera.name, camera.url, camera.fps, camera.gallery, now),
                )

    def add(self, camera: Camera) -> Camera:
        try:
            with self._db() as db:
                db.execute(
                    "INSERT INTO cameras VALUES (?, ?, ?, ?, ?, ?)",
                    (camera.name, camera.url, camera.fps, camera.gallery, camera.origin, time.time()),
                )
        except sqlite3.IntegrityError:
            raise CameraExistsError(f"camera {camera.name} exists") from None
        return camera

    def remove(self, name: str) -> Camera:
        camera = self.get(name)
        if camera.origin == "inventory":
            raise InventoryCameraError(f"camera {name} is declared in the inventory; remove it there")
        with self._db() as db:
            db.execute("DELETE FROM cameras WHERE name = ?", (name,))
            db.execute("DELETE FROM status WHERE name = ?", (name,))
        return camera

    def get(self, name: str) -> Camera:
        with self._db() as db:
            row = db.execute("SELECT name, url, fps, gallery, origin FROM cameras WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise CameraNotFoundError(f"no camera {name}")
        return Camera(*row)

    def cameras(self) -> list[Camera]:
        with self._db() as db:
            rows = db.execute("SELECT name, url, fps, gallery, origin FROM cameras ORDER BY name").fetchall()
        return [Camera(*row) for row in rows]

    def put_status(self, statuses: dict[str, dict[str, Any]]) -> None:
        """The runner's snapshot of every camera it runs (replaces the previous one)."""
        now = time.time()
        with self._db() as db:
            db.execute("DELETE FROM status")
            db.executemany(
                "INSERT INTO status VALUES (?, ?, ?)", [(n, now, json.dumps(s)) for n, s in statuses.items()]
            )

    def status(self) -> dict[str, tuple[float, dict[str, Any]]]:
        """{camera: (when the runner wrote it, its status)}."""
        with self._db() as db:
            rows = db.execute("SELECT name, updated, status FROM status").fetchall()
        return {name: (updated, json.loads(text)) for name, updated, text in rows}
