"""/galleries: enrol subjects, search 1:N, and move whole galleries as bundles.

Enrolment and search read top to bottom like /extract: parse -> read images -> (queue) ->
engine (largest face of each enrolment photo; every face of a search photo) -> gallery -> respond.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from facefleet.api.codec import read_body, respond, wants_msgpack
from facefleet.api.contract import models as m
from facefleet.api.contract.fields import MISSING_IMAGES, bad
from facefleet.api.contract.models import EnrolRequest, GalleryCreate, ImageRequest, SearchRequest, parse
from facefleet.api.errors import APIError, error_response
from facefleet.api.extract import detection_threshold, error_of, extract_results, face_fields, image_refs, queued
from facefleet.engine.pipeline import FaceEngine, ImageResult, embeddings_of, first_face
from facefleet.galleries import bundle
from facefleet.galleries.store import GalleryError, GalleryStore, Recognizer

bp = Blueprint("galleries", __name__)


def store() -> GalleryStore:
    return current_app.extensions["facefleet.galleries"]


def engine() -> FaceEngine:
    return current_app.extensions["facefleet.engine"]


def default_threshold() -> float:
    recognizer = engine().recognizer
    assert recognizer is not None
    return recognizer.threshold


def _answer(model: m.Answer, status: int = 200) -> Response:
    response = jsonify(model.dump())
    response.status_code = status
    return response


@bp.get("/galleries")
def list_galleries() -> Response:
    return _answer(m.GalleryList.model_validate({"galleries": store().list()}))


@bp.post("/galleries")
def create_gallery() -> Response:
    params = parse(GalleryCreate, read_body(request))
    return _answer(m.Gallery.model_validate(store().create(params.name, params.metadata)), 201)


@bp.get("/galleries/<name>")
def describe_gallery(name: str) -> Response:
    return _answer(m.Gallery.model_validate(store().describe(name)))


@bp.delete("/galleries/<name>")
def delete_gallery(name: str) -> Response:
    store().delete(name)
    return _answer(m.Deleted(deleted=name))


@bp.get("/galleries/<name>/subjects")
def list_subjects(name: str) -> Response:
    return _answer(m.Subjects.model_validate({"gallery": name, "subjects": store().subjects(name)}))


@bp.delete("/galleries/<name>/subjects/<subject>")
def remove_subject(name: str, subject: str) -> Response:
    store().remove_subject(name, subject)
    return _answer(m.Removed(gallery=name, removed=subject))


def _enrolment_vectors(params: EnrolRequest) -> tuple[np.ndarray, list[m.EnrolImage]]:
    """(embeddings to enrol, one status per image): the largest face of each photo, or the
    embeddings given; a photo without a face fails alone."""
    if params.embeddings is not None:
        try:
            return np.asarray(params.embeddings, dtype=np.float32), []
        except (TypeError, ValueError, OverflowError):
            raise APIError(400, "bad_embedding", "embeddings must be lists of numbers of one length") from None
    if params.images is None:
        raise bad(MISSING_IMAGES)
    image_refs(params.images)
    largest = ImageRequest.model_validate(
        {"images": params.images.model_dump(), "threshold": engine().detector.threshold, "limit_faces": 1}
    )
    results, _ = extract_results(largest)
    vectors: list[np.ndarray] = []
    statuses: list[m.EnrolImage] = []
    for result in results:
        vector, why = first_face(result)
        if vector is None:
            assert why is not None
            statuses.append(m.EnrolImage(status="failed", error=m.ErrorDetail(code=why.code, message=why.message)))
        else:
            vectors.append(vector)
            statuses.append(m.EnrolImage(status="ok"))
    if not vectors:
        reasons = "; ".join(s.error.message for s in statuses)
        raise APIError(422, "no_face", f"no face could be enrolled: {reasons}")
    return np.stack(vectors), statuses


@bp.post("/galleries/<name>/subjects")
@queued
def enrol(name: str) -> Response:
    body = read_body(request)
    store().describe(name)  # an unknown gallery fails before any model runs
    params = parse(EnrolRequest, body)
    vectors, statuses = _enrolment_vectors(params)
    added = store().add_faces(name, params.subject, vectors, params.metadata)
    return _answer(m.EnrolResponse.model_validate({**added, "gallery": name, "images": statuses}), 201)


def _search_image(result: ImageResult, found: list[list[tuple[str, float]]], params: SearchRequest) -> m.SearchImage:
    if not result.ok:
        return m.SearchImage(status="failed", faces=[], error=error_of(result))
    faces = [
        {
            **face_fields(face, i, params.return_landmarks, params.return_face_data, params.extract_ga, False),
            "matches": [{"subject": s, "score": score} for s, score in matches],
        }
        for i, (face, matches) in enumerate(zip(result.faces, found, strict=True))
    ]
    return m.SearchImage.model_validate({"status": "ok", "faces": faces})


@bp.post("/galleries/<name>/search")
@queued
def search(name: str) -> Response:
    body = read_body(request)
    store().index(name)  # unknown gallery or another recognizer's: refused before any model runs
    params = detection_threshold(parse(SearchRequest, body))
    image_refs(params.images)
    threshold = default_threshold() if params.gallery_threshold is None else params.gallery_threshold
    results, took = extract_results(params.model_copy(update={"extract_embedding": True}))
    version, matches = store().search_groups(name, embeddings_of(results), params.top_k, threshold)
    data = [_search_image(r, found, params) for r, found in zip(results, matches, strict=True)]
    answer = m.SearchResponse(gallery=name, version=version, threshold=threshold, took=took, data=data)
    return respond(answer.dump(), wants_msgpack(request, body))


@bp.get("/galleries/<name>/bundle")
def export_bundle(name: str) -> Response:
    data = bundle.export(store(), name)
    response = Response(data, mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.gallery.zip"'
    return response


@bp.put("/galleries/<name>/bundle")
def import_bundle(name: str) -> Response:
    data = request.get_data(cache=False)
    if not data:
        raise APIError(400, "bad_bundle", "send the bundle (application/zip) as the request body")
    info, changed = bundle.install(store(), data, name)
    return _answer(m.BundleImport.model_validate({"installed": changed, "gallery": info}))


def open_store(settings: Any, eng: FaceEngine) -> GalleryStore:
    """The appliance's galleries, tied to the recognizer this engine runs."""
    recognizer = eng.recognizer
    assert recognizer is not None
    identity = Recognizer(recognizer.spec.name, recognizer.opened.sha256, recognizer.size)
    return GalleryStore(settings.gallery_path, identity)


def register(app: Flask, settings: Any, eng: FaceEngine) -> None:
    app.extensions["facefleet.galleries"] = open_store(settings, eng)
    app.register_blueprint(bp)

    @app.errorhandler(GalleryError)
    def gallery_error(exc: GalleryError) -> Response:
        return error_response(exc.status, exc.code, exc.message)
