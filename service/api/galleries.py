"""/galleries: enrol subjects, search 1:N, and move whole galleries as bundles.

Enrolment and search read top to bottom like /extract: parse -> read images -> (queue) ->
engine (largest face of each enrolment photo; every face of a search photo) -> gallery -> respond.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from .. import bundle
from ..gallery import GalleryError, GalleryStore, Recognizer
from ..pipeline import FaceEngine, embeddings_of, first_face
from .codec import read_body, respond, wants_msgpack
from .errors import APIError, error_response
from .extract import extract_results, face_json, queued
from .params import ExtractParams, bad, extract_params, image_refs, number

bp = Blueprint("galleries", __name__)
MAX_TOP_K = 100


def store() -> GalleryStore:
    return current_app.extensions["facefleet.galleries"]


def engine() -> FaceEngine:
    return current_app.extensions["facefleet.engine"]


def default_threshold() -> float:
    recognizer = engine().recognizer
    assert recognizer is not None
    return recognizer.threshold


def _created(payload: dict[str, Any]) -> Response:
    response = jsonify(payload)
    response.status_code = 201
    return response


@bp.get("/galleries")
def list_galleries() -> Response:
    return jsonify({"galleries": store().list()})


@bp.post("/galleries")
def create_gallery() -> Response:
    body = read_body(request)
    if not isinstance(body.get("name"), str):
        raise bad('missing field "name": the gallery\'s name')
    return _created(store().create(body["name"], body.get("metadata")))


@bp.get("/galleries/<name>")
def describe_gallery(name: str) -> Response:
    return jsonify(store().describe(name))


@bp.delete("/galleries/<name>")
def delete_gallery(name: str) -> Response:
    store().delete(name)
    return jsonify({"deleted": name})


@bp.get("/galleries/<name>/subjects")
def list_subjects(name: str) -> Response:
    return jsonify({"gallery": name, "subjects": store().subjects(name)})


@bp.delete("/galleries/<name>/subjects/<subject>")
def remove_subject(name: str, subject: str) -> Response:
    store().remove_subject(name, subject)
    return jsonify({"gallery": name, "removed": subject})


def _enrolment_vectors(body: dict[str, Any]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(embeddings to enrol, one status per image): the largest face of each photo, or the
    embeddings given; a photo without a face fails alone."""
    if "embeddings" in body:
        items = body["embeddings"]
        if not isinstance(items, list) or not items or not all(isinstance(v, list) for v in items):
            raise bad("embeddings must be a non-empty list of vectors")
        try:
            return np.asarray(items, dtype=np.float32), []
        except (TypeError, ValueError, OverflowError):
            raise APIError(400, "bad_embedding", "embeddings must be lists of numbers of one length") from None
    settings = engine().settings
    params = ExtractParams(
        images=image_refs(body, settings.max_images),
        threshold=engine().detector.threshold,
        limit_faces=1,
        min_face_size=0,
    )
    results, _ = extract_results(params)
    vectors, statuses = [], []
    for result in results:
        vector, why = first_face(result)
        if why is not None:
            statuses.append({"status": "failed", "error": {"code": why.code, "message": why.message}})
        else:
            vectors.append(vector)
            statuses.append({"status": "ok"})
    if not vectors:
        why = "; ".join(s["error"]["message"] for s in statuses)
        raise APIError(422, "no_face", f"no face could be enrolled: {why}")
    return np.stack(vectors), statuses


@bp.post("/galleries/<name>/subjects")
@queued
def enrol(name: str) -> Response:
    body = read_body(request)
    store().describe(name)  # an unknown gallery fails before any model runs
    vectors, statuses = _enrolment_vectors(body)
    added = store().add_faces(name, body.get("subject"), vectors, body.get("metadata"))
    return _created({**added, "gallery": name, "images": statuses})


def _match_json(matches: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"subject": s, "score": score} for s, score in matches]


@bp.post("/galleries/<name>/search")
@queued
def search(name: str) -> Response:
    body = read_body(request)
    store().index(name)  # unknown gallery or another recognizer's: refused before any model runs
    settings = engine().settings
    params = extract_params(body, engine().detector.threshold, settings.max_images)
    top_k = int(number(body, "top_k", 1, 1, MAX_TOP_K))
    threshold = number(body, "gallery_threshold", default_threshold(), -1, 1)
    params = ExtractParams(**{**params.__dict__, "extract_embedding": True})
    results, took = extract_results(params)
    version, matches = store().search_groups(name, embeddings_of(results), top_k, threshold)
    data = []
    for result, image_matches in zip(results, matches, strict=True):
        if not result.ok:
            assert result.error is not None
            error = {"code": result.error.code, "message": result.error.message}
            data.append({"status": "failed", "faces": [], "error": error})
            continue
        faces = []
        for i, (face, found) in enumerate(zip(result.faces, image_matches, strict=True)):
            shown = {k: v for k, v in face_json(face, i, params).items() if k not in ("vec", "norm")}
            faces.append({**shown, "matches": _match_json(found)})
        data.append({"status": "ok", "faces": faces})
    payload = {"gallery": name, "version": version, "threshold": threshold, "took": took, "data": data}
    return respond(payload, wants_msgpack(request, body))


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
    return jsonify({"installed": changed, "gallery": info})


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
