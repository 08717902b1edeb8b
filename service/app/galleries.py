"""Galleries as use cases: create, list, describe and delete galleries, list and remove subjects,
enrol subjects, search faces 1:N, and move a gallery as a bundle.

Each use case takes a typed request and returns a typed result, and knows nothing of HTTP: the
API, the CLI, the benchmarks and the tests call the same functions. Errors are `GalleryError`s
(with the HTTP status and code an adapter maps them to), so a refusal reads the same everywhere.

Enrolment and search need the faces of the request's images. Who finds them is a `FindFaces`:
`engine_faces` runs the engine over decoded inputs; the HTTP layer passes its own, which also
reads the request's images (base64, URLs) and times and counts them as /extract does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from facefleet.app.faces import ONE_FACE, detection_threshold, verification_threshold
from facefleet.engine.pipeline import FaceEngine, ImageResult, embeddings_of, first_face
from facefleet.errors import FacefleetError, ImageError
from facefleet.galleries import bundle
from facefleet.galleries.store import GalleryError, GalleryStore, Recognizer
from facefleet.models.manifest import load_manifest
from facefleet.models.modelfiles import require_model_file
from facefleet.settings import Settings
from facefleet.timing import Timings

Input = bytes | np.ndarray | ImageError  # an image's bytes, a decoded BGR array, or why it could not be read


class NothingEnrolledError(GalleryError):
    """Not one photo of an enrolment gave a face: nothing was added (HTTP 422 no_face)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 422, "no_face")


class MissingInputError(GalleryError):
    """An enrolment or search with nothing to work on (neither images nor embeddings)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400, "invalid_request")


# ------------------------------------------------------------------------------- finding faces
@dataclass(frozen=True)
class FaceQuery:
    """How to find the faces of a request's images: the engine's options, named once."""

    threshold: float | None = None  # face score; None: the one thresholds rule (facefleet.app.faces)
    limit_faces: int = 0  # keep the largest N faces (0: all)
    min_face_size: float = 0.0
    embed: bool = True
    keep_crops: bool = False
    aligned: bool = False  # each image already is an aligned face crop (InsightFace-REST's embed_only)


FindFaces = Callable[[FaceQuery], Sequence[ImageResult]]


def engine_faces(engine: FaceEngine, images: Sequence[Input], timings: Timings | None = None) -> FindFaces:
    """Faces of these images as the engine finds them (the CLI's, the benchmarks' and the tests' way)."""

    def find(query: FaceQuery) -> Sequence[ImageResult]:
        if query.aligned:
            return engine.embed_crops(images, timings)
        return engine.process(
            images,
            threshold=query.threshold,
            embed=query.embed,
            keep_crops=query.keep_crops,
            min_face_size=query.min_face_size,
            limit_faces=query.limit_faces,
            timings=timings,
        )

    return find


def _finder(engine: FaceEngine, images: Sequence[Input], faces: FindFaces | None) -> FindFaces:
    if faces is not None:
        return faces
    if not images:
        raise MissingInputError("send images (or, to enrol, embeddings)")
    return engine_faces(engine, images)


# ------------------------------------------------------------------------------- galleries
@dataclass(frozen=True)
class Gallery:
    """One gallery as described: its version, recognizer and size."""

    name: str
    version: int
    recognizer: str
    recognizer_sha256: str
    dim: int
    metadata: Mapping[str, Any]
    checksum: str
    updated: float
    subjects: int
    faces: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Gallery:
        return cls(
            name=str(row["name"]),
            version=int(row["version"]),
            recognizer=str(row["recognizer"]),
            recognizer_sha256=str(row["recognizer_sha256"]),
            dim=int(row["dim"]),
            metadata=dict(row["metadata"]),
            checksum=str(row["checksum"]),
            updated=float(row["updated"]),
            subjects=int(row["subjects"]),
            faces=int(row["faces"]),
        )


@dataclass(frozen=True)
class Subject:
    subject: str
    metadata: Mapping[str, Any]
    faces: int


@dataclass(frozen=True)
class CreateGallery:
    name: str
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RemoveSubject:
    gallery: str
    subject: str


def create_gallery(store: GalleryStore, request: CreateGallery) -> Gallery:
    metadata = None if request.metadata is None else dict(request.metadata)
    return Gallery.of(store.create(request.name, metadata))


def list_galleries(store: GalleryStore) -> tuple[Gallery, ...]:
    return tuple(Gallery.of(row) for row in store.list())


@dataclass(frozen=True)
class NameCheck:
    """Stored gallery names the rule refuses, and what a repair did with each."""

    bad: tuple[str, ...]
    repaired: tuple[tuple[str, str], ...] = ()  # (old, new)
    failed: tuple[tuple[str, str], ...] = ()  # (name, why)


def check_names(store: GalleryStore, repair: bool = False) -> NameCheck:
    """The bad names (a pre-fix appliance may hold `"abc\n"`), renamed to their stripped form with
    `repair` where that name is valid and free."""
    bad = store.bad_names()
    if not repair:
        return NameCheck(bad)
    repaired: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    for name in bad:
        try:
            repaired.append((name, store.rename_bad(name)))
        except GalleryError as exc:
            failed.append((name, exc.message))
    return NameCheck(bad, tuple(repaired), tuple(failed))


def describe_gallery(store: GalleryStore, name: str) -> Gallery:
    return Gallery.of(store.describe(name))


def delete_gallery(store: GalleryStore, name: str) -> str:
    """The name deleted; an unknown gallery is a 404 GalleryError."""
    store.delete(name)
    return name


def list_subjects(store: GalleryStore, gallery: str) -> tuple[Subject, ...]:
    return tuple(Subject(str(r["subject"]), dict(r["metadata"]), int(r["faces"])) for r in store.subjects(gallery))


def remove_subject(store: GalleryStore, request: RemoveSubject) -> RemoveSubject:
    """What was removed; an unknown gallery or subject is a 404 GalleryError."""
    store.remove_subject(request.gallery, request.subject)
    return request


# ------------------------------------------------------------------------------- enrolment
@dataclass(frozen=True)
class Enrol:
    """Faces of one subject: the largest face of each image, or embeddings of the gallery's recognizer."""

    gallery: str
    subject: str
    images: tuple[Input, ...] = ()
    embeddings: Sequence[Sequence[float]] | np.ndarray | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ImageStatus:
    """One enrolment image: used, or why not (it fails alone)."""

    error: FacefleetError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Enrolled:
    gallery: str
    subject: str
    added: int
    faces: int  # the subject's faces now
    images: tuple[ImageStatus, ...]  # one per image; empty when embeddings were given


def _given_vectors(embeddings: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    try:
        return np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise GalleryError("embeddings must be lists of numbers of one length", 400, "bad_embedding") from None


def _largest_faces(engine: FaceEngine, find: FindFaces) -> tuple[np.ndarray, tuple[ImageStatus, ...]]:
    """The largest face of each photo at the configured detection threshold; a photo without a face fails alone."""
    results = find(FaceQuery(threshold=detection_threshold(engine), limit_faces=ONE_FACE))
    vectors: list[np.ndarray] = []
    statuses: list[ImageStatus] = []
    for result in results:
        vector, why = first_face(result)
        statuses.append(ImageStatus(why))
        if vector is not None:
            vectors.append(vector)
    if not vectors:
        reasons = "; ".join(s.error.message for s in statuses if s.error is not None)
        raise NothingEnrolledError(f"no face could be enrolled: {reasons}")
    return np.stack(vectors), tuple(statuses)


def enrol(store: GalleryStore, engine: FaceEngine, request: Enrol, faces: FindFaces | None = None) -> Enrolled:
    """Add faces to a subject (created on first use); `faces` finds the images' faces when the
    caller reads them itself (default: the engine over `request.images`)."""
    store.describe(request.gallery)  # an unknown gallery fails before any model runs
    statuses: tuple[ImageStatus, ...] = ()
    if request.embeddings is not None:
        vectors = _given_vectors(request.embeddings)
    else:
        vectors, statuses = _largest_faces(engine, _finder(engine, request.images, faces))
    metadata = None if request.metadata is None else dict(request.metadata)
    added = store.add_faces(request.gallery, request.subject, vectors, metadata)
    return Enrolled(request.gallery, str(added["subject"]), int(added["added"]), int(added["faces"]), statuses)


# ------------------------------------------------------------------------------- search
@dataclass(frozen=True)
class Search:
    """Every face of each image, searched in a gallery: up to `top_k` subjects at or above `threshold`."""

    gallery: str
    images: tuple[Input, ...] = ()
    top_k: int = 1
    threshold: float | None = None  # cosine similarity; None: the one thresholds rule (facefleet.app.faces)
    faces: FaceQuery = field(default_factory=FaceQuery)


@dataclass(frozen=True)
class Match:
    subject: str
    score: float


@dataclass(frozen=True)
class SearchedImage:
    """One image: the engine's result (faces, or why it failed) and each face's matches, best first."""

    result: ImageResult
    matches: tuple[tuple[Match, ...], ...]


@dataclass(frozen=True)
class SearchResult:
    gallery: str
    version: int  # the gallery version searched
    threshold: float
    images: tuple[SearchedImage, ...]


def search(store: GalleryStore, engine: FaceEngine, request: Search, faces: FindFaces | None = None) -> SearchResult:
    """1:N search of every face found; `faces` as for `enrol`."""
    store.index(request.gallery)  # unknown gallery or another recognizer's: refused before any model runs
    threshold = verification_threshold(engine, request.threshold)
    results = _finder(engine, request.images, faces)(replace(request.faces, embed=True))
    version, found = store.search_groups(request.gallery, embeddings_of(results), request.top_k, threshold)
    images = tuple(
        SearchedImage(result, tuple(tuple(Match(s, score) for s, score in face) for face in matches))
        for result, matches in zip(results, found, strict=True)
    )
    return SearchResult(request.gallery, version, threshold, images)


# ------------------------------------------------------------------------------- bundles
@dataclass(frozen=True)
class ImportBundle:
    data: bytes
    expected_name: str | None = None  # refuse a bundle of another gallery (an upload to the wrong URL)


@dataclass(frozen=True)
class Imported:
    gallery: Gallery
    changed: bool  # False: this very bundle was installed already


@dataclass(frozen=True)
class ExportedBundle:
    name: str
    data: bytes


def import_bundle(store: GalleryStore, request: ImportBundle) -> Imported:
    """Install a verified bundle of this recognizer in one transaction; the same bundle twice changes nothing."""
    info, changed = bundle.install(store, request.data, request.expected_name)
    return Imported(Gallery.of(info), changed)


def export_bundle(store: GalleryStore, name: str) -> ExportedBundle:
    return ExportedBundle(name, bundle.export(store, name))


# ------------------------------------------------------------------------------- the store
def recognizer_identity(settings: Settings) -> Recognizer:
    """The configured recognizer's name, file sha256 and width, without opening a session:
    an import only has to match a bundle against the model file."""
    manifest = load_manifest()
    spec = manifest.get(settings.models.rec_name or manifest.default_recognition)
    _, digest = require_model_file(spec, settings.models.models_dir, settings.models.verify_models)
    if not spec.embedding_size:
        raise FacefleetError(f"{spec.name}: the manifest gives no embedding_size")
    return Recognizer(spec.name, digest, spec.embedding_size)


def engine_identity(engine: FaceEngine) -> Recognizer:
    """The recognizer this engine runs, as galleries name it."""
    recognizer = engine.recognizer
    if recognizer is None:
        raise FacefleetError("galleries need a recognizer, and none is loaded")
    return Recognizer(recognizer.spec.name, recognizer.opened.sha256, recognizer.size)


def open_store(settings: Settings, engine: FaceEngine | None = None) -> GalleryStore:
    """The appliance's galleries, tied to the engine's recognizer, or (without an engine, as the
    CLI's import/export/list) to the configured model file."""
    identity = engine_identity(engine) if engine is not None else recognizer_identity(settings)
    return GalleryStore(settings.gallery_path, identity)
