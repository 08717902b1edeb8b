"""Gallery bundles: how a gallery travels from the control node to every appliance.

A bundle is a zip of `gallery.json` (name, version, recognizer name and sha256, subjects and
their face counts, metadata) and `embeddings.npy` (float32 unit rows in subject order), with
a sha256 checksum over both. An appliance installs a bundle only when the checksum holds and
the recognizer is its own, and installs it in one transaction (gallery.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import numpy as np

from facefleet.galleries.store import GalleryError, GalleryStore, check_name, check_subject

FORMAT = "facefleet-gallery/1"
MAX_MEMBER_BYTES = 4 << 30  # 2 M identities of 512-d float32; past that, a vector database


def checksum(header: dict[str, Any], embeddings: bytes) -> str:
    """sha256 over the canonical header (without its checksum) and the embeddings' bytes."""
    canonical = json.dumps({k: v for k, v in header.items() if k != "checksum"}, sort_keys=True).encode()
    return hashlib.sha256(canonical + b"\0" + embeddings).hexdigest()


def pack(header: dict[str, Any], subjects: list[tuple[str, dict[str, Any], int]], matrix: np.ndarray) -> bytes:
    """A bundle's bytes; the header's version is the gallery's."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    full = {
        "format": FORMAT,
        "name": header["name"],
        "version": int(header["version"]),
        "recognizer": header["recognizer"],
        "recognizer_sha256": header["recognizer_sha256"],
        "dim": int(matrix.shape[1]) if matrix.ndim == 2 else int(header["dim"]),
        "metadata": header.get("metadata") or {},
        "subjects": [{"id": s, "metadata": m, "faces": n} for s, m, n in subjects],
    }
    full["checksum"] = checksum(full, matrix.tobytes())
    out = io.BytesIO()
    npy = io.BytesIO()
    np.save(npy, matrix, allow_pickle=False)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("gallery.json", json.dumps(full, indent=1))
        archive.writestr("embeddings.npy", npy.getvalue())
    return out.getvalue()


def export(store: GalleryStore, name: str) -> bytes:
    info, subjects, matrix = store.dump(name)
    return pack(info, subjects, matrix)


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        entry = archive.getinfo(name)
    except KeyError:
        raise _bad(f"not a gallery bundle: {name} is missing") from None
    if entry.file_size > MAX_MEMBER_BYTES:
        raise _bad(f"bundle member {name} declares {entry.file_size} bytes; the limit is {MAX_MEMBER_BYTES}")
    return archive.read(entry)


def unpack(data: bytes) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any], int]], np.ndarray]:
    """A verified bundle, or one clear error saying what is wrong with it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            header = json.loads(_member(archive, "gallery.json"))
            matrix = np.load(io.BytesIO(_member(archive, "embeddings.npy")), allow_pickle=False)
    except (zipfile.BadZipFile, json.JSONDecodeError, ValueError, EOFError) as exc:
        raise _bad(f"not a valid gallery bundle: {exc}") from None
    except RecursionError:  # gallery.json nested thousands of levels deep
        raise _bad("not a valid gallery bundle: gallery.json is nested too deeply") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(f"not a gallery bundle of format {FORMAT}")
    if matrix.dtype != np.float32 or matrix.ndim != 2 or matrix.shape[1] != header.get("dim"):
        raise _bad("bundle embeddings are not float32 rows of the declared dimension")
    if checksum(header, np.ascontiguousarray(matrix).tobytes()) != header.get("checksum"):
        raise _bad("bundle checksum does not match its contents: damaged or edited")
    try:
        check_name(header.get("name", ""))
        subjects = [(check_subject(s["id"]), s.get("metadata") or {}, int(s["faces"])) for s in header["subjects"]]
        int(header["version"]), str(header["recognizer"]), str(header["recognizer_sha256"])
    except (GalleryError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _bad(f"not a valid gallery bundle: {exc}") from None
    if sum(n for _, _, n in subjects) != len(matrix) or any(n < 1 for _, _, n in subjects):
        raise _bad("bundle face counts do not add up to its embeddings")
    return header, subjects, matrix


def _bad(message: str) -> GalleryError:
    """What an unusable bundle is: the body's content, not the request's shape (HTTP 400 bad_bundle)."""
    return GalleryError(message, 400, "bad_bundle")


def install(store: GalleryStore, data: bytes, expected_name: str | None = None) -> tuple[dict[str, Any], bool]:
    """(the gallery now installed, whether anything changed): the same bundle twice is a no-op;
    `expected_name` refuses a bundle of another gallery (an upload to the wrong URL)."""
    header, subjects, matrix = unpack(data)
    if expected_name is not None and header["name"] != expected_name:
        raise _bad(f"the bundle holds gallery {header['name']!r}, not {expected_name!r}")
    store.own(header["name"], header["recognizer"], header["recognizer_sha256"])
    if store.installed(header["name"]) == (header["version"], header["checksum"]):
        return store.describe(header["name"]), False
    return store.replace(header, subjects, matrix), True
