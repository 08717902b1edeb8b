"""Galleries built on the control node: a folder of `subject/photo.jpg` in, a bundle out.

The same engine as the service (the configured detector and recognizer) embeds the largest
face of each photo, so the bundle carries that recognizer's name and sha256 and an appliance
running another model refuses it. Photos without a face are reported and skipped.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facefleet.app.galleries import recognizer_identity
from facefleet.engine.decode import IMAGE_SUFFIXES, budget_groups
from facefleet.engine.pipeline import FaceEngine, first_face
from facefleet.errors import FacefleetError, RequestTooLargeError
from facefleet.galleries import bundle
from facefleet.galleries.store import check_name, check_subject
from facefleet.settings import Settings

log = logging.getLogger("facefleet.gallery")
PHOTO_SUFFIXES = IMAGE_SUFFIXES


@dataclass(frozen=True)
class BuildGallery:
    """A folder of SUBJECT/PHOTO.jpg to make into a bundle; the name defaults to the folder's."""

    folder: Path
    name: str | None = None
    version: int | None = None  # default: the time of the build


@dataclass(frozen=True)
class BuiltBundle:
    name: str
    data: bytes
    subjects: int
    faces: int
    skipped: tuple[str, ...]  # one line per photo that gave no face


def photos_by_subject(folder: Path) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise FacefleetError(f"{folder} is not a folder of subject/photo files")
    found = {
        check_subject(d.name): sorted(p for p in d.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        for d in sorted(folder.iterdir())
        if d.is_dir()
    }
    found = {s: photos for s, photos in found.items() if photos}
    if not found:
        raise FacefleetError(f"no photos in {folder}: expected {folder}/SUBJECT/PHOTO.jpg")
    return found


def build_gallery(settings: Settings, request: BuildGallery, engine: FaceEngine | None = None) -> BuiltBundle:
    """The bundle of a folder, embedded by the configured models (or the engine given, which must be them)."""
    name = check_name(request.name or request.folder.resolve().name)
    subjects = photos_by_subject(request.folder)
    engine = engine or FaceEngine.from_settings(settings)
    identity = recognizer_identity(settings)
    rows: list[np.ndarray] = []
    kept: list[tuple[str, dict[str, Any], int]] = []
    skipped: list[str] = []
    total = sum(len(p) for p in subjects.values())
    with tqdm(total=total, desc=f"enrolling {name}", unit="photo") as progress:
        for subject, photos in subjects.items():
            vectors = _embed(engine, photos, skipped)
            progress.update(len(photos))
            if vectors:
                rows.extend(vectors)
                kept.append((subject, {"photos": len(vectors)}, len(vectors)))
    if not rows:
        raise FacefleetError(f"no face found in any photo of {request.folder}")
    header = {
        "name": name,
        "version": request.version or int(time.time()),
        "recognizer": identity.name,
        "recognizer_sha256": identity.sha256,
        "dim": identity.dim,
        "metadata": {"source": request.folder.name, "built": int(time.time())},
    }
    data = bundle.pack(header, kept, np.stack(rows))
    return BuiltBundle(name, data, len(kept), len(rows), tuple(skipped))


def _embed(engine: FaceEngine, photos: list[Path], skipped: list[str]) -> list[np.ndarray]:
    """The largest face of each photo; a photo without one is noted, not fatal. A subject's photos
    run in groups within FACEFLEET_MAX_REQUEST_PIXELS, the engine's budget per call."""
    data = [p.read_bytes() for p in photos]
    vectors: list[np.ndarray] = []
    limits = engine.settings.engine
    for group in budget_groups(data, limits.max_request_pixels, limits.max_pixels):
        try:
            results = engine.process([data[i] for i in group], limit_faces=1)
        except RequestTooLargeError as exc:  # one photo larger than the whole budget
            skipped.extend(f"{photos[i]}: {exc}" for i in group)
            continue
        for i, result in zip(group, results, strict=True):
            vector, why = first_face(result)
            if vector is None:
                skipped.append(f"{photos[i]}: {why}")
            else:
                vectors.append(vector)
    return vectors
