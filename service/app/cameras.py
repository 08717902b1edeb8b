"""The cameras, the API's use cases: add, list, describe and remove a camera; each shown with its address
masked and the status the streams' runner last wrote (app/streams.py), whichever worker answers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from facefleet.streams.location import mask
from facefleet.streams.registry import Camera, Registry


@dataclass(frozen=True)
class CameraView:
    """A camera as `/streams` shows it: the address masked, its status as the runner last wrote it."""

    name: str
    url: str
    fps: float | None
    gallery: str | None
    origin: str
    status: dict[str, Any] | None
    status_age_s: float | None  # how old the status is; None: no runner has written one yet


STALE_S = 10.0  # a status older than this: no worker is running the cameras (say so, do not show it as live)


def view(camera: Camera, status: tuple[float, dict[str, Any]] | None) -> CameraView:
    age = None if status is None else max(0.0, time.time() - status[0])
    return CameraView(
        camera.name,
        mask(camera.url),
        camera.fps,
        camera.gallery,
        camera.origin,
        None if status is None else status[1],
        age,
    )


def list_cameras(registry: Registry) -> list[CameraView]:
    statuses = registry.status()
    return [view(c, statuses.get(c.name)) for c in registry.cameras()]


def describe_camera(registry: Registry, name: str) -> CameraView:
    return view(registry.get(name), registry.status().get(name))


def add_camera(registry: Registry, camera: Camera) -> CameraView:
    return view(registry.add(camera), None)


def remove_camera(registry: Registry, name: str) -> CameraView:
    return view(registry.remove(name), None)
