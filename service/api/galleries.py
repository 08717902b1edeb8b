"""/galleries: enrol subjects, search 1:N, and move whole galleries as bundles.

Each handler is an adapter: parse the contract model -> build the app request -> call the use
case (facefleet.app.galleries) -> map its result to the contract's answer. Enrolment and search
read their images as /extract does (parse -> read images -> (queue) -> engine), through the
`FindFaces` this module hands the use case, so their timings and metrics are /extract's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from facefleet.api.codec import read_body, respond, wants_msgpack
from facefleet.api.errors import APIError, error_response
from facefleet.api.extract import error_of, extract_results, image_refs, queued, with_defaults
from facefleet.app import galleries as app
from facefleet.contract import models as m
from facefleet.contract.faces import FaceOptions, face_fields
from facefleet.contract.fields import MISSING_IMAGES, bad
from facefleet.contract.models import EnrolRequest, GalleryCreate, ImageRequest, SearchRequest, parse
from facefleet.engine.pipeline import FaceEngine, ImageResult
from facefleet.galleries.store import GalleryError, GalleryStore
from facefleet.settings import Settings

bp = Blueprint("galleries", __name__)


def store() -> GalleryStore:
    return current_app.extensions["facefleet.galleries"]


def engine() -> FaceEngine:
    return current_app.extensions["facefleet.engine"]


def _answer(model: m.Answer, status: int = 200) -> Response:
    response = jsonify(model.dump())
    response.status_code = status
    return response


def _fields(value: Any) -> dict[str, Any]:
    """A use case's frozen dataclass as a contract model's input (its mappings as plain dicts)."""
    return {k: dict(v) if isinstance(v, Mapping) else v for k, v in vars(value).items()}


def _gallery(gallery: app.Gallery) -> m.Gallery:
    return m.Gallery.model_validate(_fields(gallery))


class RequestFaces:
    """The request's images read, run, timed and counted as /extract does them: the use cases'
    `FindFaces` on the HTTP side. Keeps InsightFace-REST's `took` block of the run."""

    def __init__(self, params: ImageRequest) -> None:
        self.params = params
        self.took: m.Took | None = None

    def __call__(self, query: app.FaceQuery) -> list[ImageResult]:
        run = self.params.model_copy(
            update={
                "threshold": query.threshold,
                "limit_faces": query.limit_faces,
                "min_face_size": query.min_face_size,
                "extract_embedding": query.embed,
                "return_face_data": query.keep_crops,
                "embed_only": query.aligned,
            }
        )
        results, self.took = extract_results(run)
        return results


@bp.get("/galleries")
def list_galleries() -> Response:
    return _answer(m.GalleryList(galleries=[_gallery(g) for g in app.list_galleries(store())]))


@bp.post("/galleries")
def create_gallery() -> Response:
    params = parse(GalleryCreate, read_body(request))
    return _answer(_gallery(app.create_gallery(store(), app.CreateGallery(params.name, params.metadata))), 201)


@bp.get("/galleries/<name>")
def describe_gallery(name: str) -> Response:
    return _answer(_gallery(app.describe_gallery(store(), name)))


@bp.delete("/galleries/<name>")
def delete_gallery(name: str) -> Response:
    return _answer(m.Deleted(deleted=app.delete_gallery(store(), name)))


@bp.get("/galleries/<name>/subjects")
def list_subjects(name: str) -> Response:
    subjects = [m.SubjectInfo.model_validate(_fields(s)) for s in app.list_subjects(store(), name)]
    return _answer(m.Subjects(gallery=name, subjects=subjects))


@bp.delete("/galleries/<name>/subjects/<subject>")
def remove_subject(name: str, subject: str) -> Response:
    removed = app.remove_subject(store(), app.RemoveSubject(name, subject))
    return _answer(m.Removed(gallery=removed.gallery, removed=removed.subject))


def _enrol_image(status: app.ImageStatus) -> m.EnrolImage:
    if status.error is None:
        return m.EnrolImage(status="ok")
    return m.EnrolImage(status="failed", error=m.ErrorDetail(code=status.error.code, message=status.error.message))


@bp.post("/galleries/<name>/subjects")
@queued
def enrol(name: str) -> Response:
    body = read_body(request)
    app.describe_gallery(store(), name)  # an unknown gallery fails before the body is even checked
    params = parse(EnrolRequest, body)
    faces = None
    if params.embeddings is None:
        if params.images is None:
            raise bad(MISSING_IMAGES)
        image_refs(params.images)
        faces = RequestFaces(ImageRequest.model_validate({"images": params.images.model_dump()}))
    wanted = app.Enrol(name, params.subject, embeddings=params.embeddings, metadata=params.metadata)
    done = app.enrol(store(), engine(), wanted, faces)
    images = [_enrol_image(s) for s in done.images]
    answer = m.EnrolResponse(subject=done.subject, added=done.added, faces=done.faces, gallery=name, images=images)
    return _answer(answer, 201)


def _search_image(image: app.SearchedImage, params: SearchRequest) -> m.SearchImage:
    result = image.result
    if not result.ok:
        return m.SearchImage(status="failed", faces=[], error=error_of(result))
    faces = [
        {
            **face_fields(face, FaceOptions.of(params, vector=False)),
            "matches": [{"subject": match.subject, "score": match.score} for match in matches],
        }
        for face, matches in zip(result.faces, image.matches, strict=True)
    ]
    return m.SearchImage.model_validate({"status": "ok", "faces": faces})


@bp.post("/galleries/<name>/search")
@queued
def search(name: str) -> Response:
    body = read_body(request)
    store().index(name)  # unknown gallery or another recognizer's: refused before the body is even checked
    params = with_defaults(parse(SearchRequest, body))
    image_refs(params.images)
    query = app.FaceQuery(
        threshold=params.threshold,
        limit_faces=params.limit_faces,
        min_face_size=params.min_face_size,
        keep_crops=params.return_face_data,
        aligned=params.embed_only,
    )
    wanted = app.Search(name, top_k=params.top_k, threshold=params.gallery_threshold, faces=query)
    faces = RequestFaces(params)
    found = app.search(store(), engine(), wanted, faces)
    assert faces.took is not None  # the use case ran the request's images
    data = [_search_image(image, params) for image in found.images]
    answer = m.SearchResponse(
        gallery=found.gallery, version=found.version, threshold=found.threshold, took=faces.took, data=data
    )
    return respond(answer.dump(), wants_msgpack(request, body))


@bp.get("/galleries/<name>/bundle")
def export_bundle(name: str) -> Response:
    exported = app.export_bundle(store(), name)
    response = Response(exported.data, mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{exported.name}.gallery.zip"'
    return response


@bp.put("/galleries/<name>/bundle")
def import_bundle(name: str) -> Response:
    data = request.get_data(cache=False)
    if not data:
        raise APIError(400, "bad_bundle", "send the bundle (application/zip) as the request body")
    done = app.import_bundle(store(), app.ImportBundle(data, expected_name=name))
    return _answer(m.BundleImport(installed=done.changed, gallery=_gallery(done.gallery)))


def register(flask_app: Flask, settings: Settings, eng: FaceEngine) -> GalleryStore:
    """The store (the streams search it too), the routes and their errors."""
    opened = app.open_store(settings, eng)
    flask_app.extensions["facefleet.galleries"] = opened
    flask_app.register_blueprint(bp)

    @flask_app.errorhandler(GalleryError)
    def gallery_error(exc: GalleryError) -> Response:
        return error_response(exc.status, exc.code, exc.message)

    return opened
