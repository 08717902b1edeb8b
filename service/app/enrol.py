"""Galleries built on the control node: a folder of `subject/photo.jpg` in, a bundle out.

The same engine as the service (the configured detector and recognizer) embeds the largest
face of each photo, so the bundle carries that recognizer's name and sha256 and an appliance
running another model refuses it. Photos without a face are reported and skipped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facefleet.engine.pipeline import FaceEngine, first_face
from facefleet.errors import FacefleetError
from facefleet.galleries import bundle
from facefleet.galleries.store import Recognizer, check_name, check_subject
from facefleet.models.manifest import load_manifest
from facefleet.models.modelfiles import require_model_file
from facefleet.settings import Settings

log = logging.getLogger("facefleet.gallery")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def recognizer_identity(settings: Settings) -> Recognizer:
    """The configured recognizer's name, file sha256 and width, without opening a session:
    an import only has to match a bundle against the model file."""
    manifest = load_manifest()
    spec = manifest.get(settings.models.rec_name or manifest.default_recognition)
    _, digest = require_model_file(spec, settings.models.models_dir, settings.models.verify_models)
    if not spec.embedding_size:
        raise FacefleetError(f"{spec.name}: the manifest gives no embedding_size")
    return Recognizer(spec.name, digest, spec.embedding_size)


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


def build(settings: Settings, folder: Path, name: str, version: int | None = None) -> tuple[bytes, list[str]]:
    """(the bundle, one line per photo that gave no face)."""
    check_name(name)
    subjects = photos_by_subject(folder)
    engine = FaceEngine.from_settings(settings)
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
        raise FacefleetError(f"no face found in any photo of {folder}")
    header = {
        "name": name,
        "version": version or int(time.time()),
        "recognizer": identity.name,
        "recognizer_sha256": identity.sha256,
        "dim": identity.dim,
        "metadata": {"source": folder.name, "built": int(time.time())},
    }
    return bundle.pack(header, kept, np.stack(rows)), skipped


def _embed(engine: FaceEngine, photos: list[Path], skipped: list[str]) -> list[np.ndarray]:
    """The largest face of each photo; a photo without one is noted, not fatal."""
    results = engine.process([p.read_bytes() for p in photos], limit_faces=1)
    vectors: list[np.ndarray] = []
    for photo, result in zip(photos, results, strict=True):
        vector, why = first_face(result)
        if vector is None:
            skipped.append(f"{photo}: {why}")
        else:
            vectors.append(vector)
    return vectors
