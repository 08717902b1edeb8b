"""/extract, /draw_detections, /multipart/draw_detections and /verify: images in, faces out.

Each handler reads top to bottom: parse -> read images -> (queue) -> engine -> respond.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import cv2
import numpy as np
from flask import Blueprint, Response, current_app, g, request

from facefleet.api import sources
from facefleet.api.admission import Admission
from facefleet.api.codec import read_body, respond, wants_msgpack
from facefleet.api.contract import models as m
from facefleet.api.contract.fields import MISSING_IMAGES, bad
from facefleet.api.contract.models import (
    DrawForm,
    DrawRequest,
    ExtractRequest,
    ImageRef,
    ImageRequest,
    VerifyRequest,
    parse,
)
from facefleet.api.errors import APIError
from facefleet.api.logs import endpoint_label
from facefleet.app.compare import Side, best_pair, choose, find_faces, similarities
from facefleet.engine.decode import decode_image
from facefleet.engine.draw import draw_faces
from facefleet.engine.pipeline import Face, FaceEngine, ImageResult, embeddings_of
from facefleet.errors import ImageError
from facefleet.models.thresholds import DEFAULT_VERIFY_THRESHOLD
from facefleet.ops import metrics
from facefleet.timing import Timings

bp = Blueprint("extract", __name__)
Q = TypeVar("Q", bound=ImageRequest)

GA_UNAVAILABLE = "not available: no gender/age model is configured on this appliance"


def engine() -> FaceEngine:
    return current_app.extensions["facefleet.engine"]


def admission() -> Admission:
    return current_app.extensions["facefleet.admission"]


def face_fields(
    face: Face, index: int, landmarks: bool = False, face_data: bool = False, ga: bool = False, vector: bool = True
) -> dict[str, Any]:
    """One face's fields in InsightFace-REST's shape and order, optional ones as the request asked."""
    out: dict[str, Any] = {
        "bbox": [round(float(v), 2) + 0.0 for v in face.bbox],  # + 0.0: -0.0 becomes 0.0
        "prob": round(face.score, 5),
        "size": round(face.size, 1),
        "num_det": index,
    }
    if landmarks:
        out["landmarks"] = [[round(float(x), 2) + 0.0, round(float(y), 2) + 0.0] for x, y in face.landmarks]
    if face.embedding is not None and vector:
        out["norm"] = round(float(face.norm or 0.0), 5)
        out["vec"] = [round(float(v), 7) + 0.0 for v in face.embedding]
    if face_data and face.crop is not None:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR))
        out["facedata"] = base64.b64encode(jpeg.tobytes()).decode() if ok else None
    if ga:
        out.update({"gender": None, "age": None, "ga_error": GA_UNAVAILABLE})
    return out


def face_json(face: Face, index: int, landmarks: bool = False, face_data: bool = False, ga: bool = False) -> dict:
    """One face as /extract answers it (the CLI's `detect --json` prints the same)."""
    return m.Face.model_validate(face_fields(face, index, landmarks, face_data, ga)).dump()


def _face(face: Face, index: int, params: ImageRequest, vector: bool = True) -> dict[str, Any]:
    return face_fields(
        face,
        index,
        params.return_landmarks,
        params.return_face_data,
        params.extract_ga,
        vector and params.extract_embedding,
    )


def error_of(result: ImageResult) -> m.ErrorDetail:
    assert result.error is not None
    return m.ErrorDetail(code=result.error.code, message=result.error.message)


def _image(result: ImageResult, params: ImageRequest, shared_ms: float, matches: list[Any] | None) -> m.ImageResult:
    took = round(result.decode_ms + shared_ms, 3)
    if not result.ok:
        return m.ImageResult(status="failed", took_ms=took, faces=[], error=error_of(result))
    faces = [_face(f, i, params) for i, f in enumerate(result.faces)]
    if matches is not None:  # with a gallery: each face's best match, or null
        for face, best in zip(faces, matches, strict=True):
            face["match"] = {"subject": best[0][0], "score": best[0][1]} if best else None
    return m.ImageResult.model_validate({"status": "ok", "took_ms": took, "faces": faces})


def _run(params: ImageRequest, inputs: list[bytes | np.ndarray | ImageError], timings: Timings) -> list[ImageResult]:
    eng = engine()
    if params.embed_only:
        return eng.embed_crops(inputs, timings)
    return eng.process(
        inputs,
        threshold=params.threshold,
        embed=params.extract_embedding,
        keep_crops=params.return_face_data,
        min_face_size=params.min_face_size,
        limit_faces=params.limit_faces,
        timings=timings,
    )


def _observe(results: list[ImageResult], timings: Timings, queue_s: float) -> None:
    seconds = timings.seconds
    stages = {
        "decode": seconds["decode"],
        "detect": seconds["det_prep"] + seconds["det_run"] + seconds["det_post"],
        "align": seconds["align"],
        "embed": seconds["rec_prep"] + seconds["rec_run"],
        "queue_wait": queue_s,
    }
    for stage, value in stages.items():
        metrics.STAGE_SECONDS.labels(stage).observe(value)
    for result in results:
        metrics.IMAGES.labels("ok" if result.ok else "failed").inc()
        metrics.FACES.inc(len(result.faces))


def queued(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Run the whole handler inside an engine slot: past the bounded queue a request is refused
    before its body is even parsed, so an overload storm costs almost nothing to answer. Refusals
    are counted under the route's name of the request metrics (`galleries_name_search`), so the
    two can be divided per endpoint."""

    @functools.wraps(handler)
    def inner(*args: Any, **kwargs: Any) -> Response:
        try:
            with admission().slot(endpoint_label()) as queue_s:
                g.queue_s = queue_s
                return handler(*args, **kwargs)
        except APIError as exc:
            if exc.status == 503:
                # Drain the unread body: answering mid-upload makes the client see a reset
                # connection instead of the 503 and its Retry-After.
                request.get_data(cache=False)
            raise

    return inner


def extract_results(
    params: ImageRequest, inputs: list[bytes | np.ndarray | ImageError] | None = None
) -> tuple[list[ImageResult], m.Took]:
    """Read every image (unless given) and run the engine; returns the results and
    InsightFace-REST's `took` block."""
    settings = engine().settings
    start = time.perf_counter()
    images: list[bytes | np.ndarray | ImageError] = (
        [*sources.read_all(image_refs(params.images), settings)] if inputs is None else inputs
    )
    read_ms = (time.perf_counter() - start) * 1000
    timings = Timings()
    results = _run(params, images, timings)
    queue_s = g.get("queue_s", 0.0)
    _observe(results, timings, queue_s)
    ms = timings.ms()
    took = m.Took(
        total_ms=round((time.perf_counter() - start) * 1000, 3),
        read_imgs_ms=round(read_ms + ms["decode"], 3),
        embed_all_ms=round(sum(v for k, v in ms.items() if k != "decode"), 3),
    )
    if params.verbose_timings:
        took = m.Took(**took.dump(), queue_ms=round(queue_s * 1000, 3), stages_ms=ms)
    return results, took


def image_refs(images: m.Images | None) -> list[ImageRef]:
    """The request's images; more than FACEFLEET_MAX_IMAGES is a 413."""
    refs = m.image_refs(images)
    limit = engine().settings.server.max_images
    if len(refs) > limit:
        raise APIError(413, "too_many_images", f"{len(refs)} images in one request; the limit is {limit}")
    return refs


def detection_threshold(params: Q) -> Q:
    """The request with its face score threshold set: its own, or the detector's."""
    if params.threshold is not None:
        return params
    return params.model_copy(update={"threshold": engine().detector.threshold})


@bp.post("/extract")
@queued
def extract() -> Response:
    body = read_body(request)
    params = detection_threshold(parse(ExtractRequest, body))
    image_refs(params.images)
    gallery = _gallery_option(params)
    if gallery:
        current_app.extensions["facefleet.galleries"].index(gallery[0])  # refused before any model runs
    # A gallery match needs each face's embedding: it is computed even with extract_embedding
    # false, and then left out of the answer (InsightFace-REST clients that skip vectors still get matches).
    run = params.model_copy(update={"extract_embedding": True}) if gallery else params
    results, took = extract_results(run)
    n_ok = sum(r.ok for r in results) or 1
    shared_ms = took.embed_all_ms / n_ok
    if not gallery:
        data = [_image(r, params, shared_ms if r.ok else 0.0, None) for r in results]
        answer = m.ExtractResponse(took=took, data=data)
    else:
        store = current_app.extensions["facefleet.galleries"]
        version, matches = store.search_groups(gallery[0], embeddings_of(results), 1, gallery[1])
        data = [_image(r, params, shared_ms if r.ok else 0.0, found) for r, found in zip(results, matches, strict=True)]
        searched = m.GallerySearched(name=gallery[0], version=version, threshold=gallery[1])
        answer = m.ExtractResponse(took=took, data=data, gallery=searched)
    return respond(answer.dump(), wants_msgpack(request, body))


def _gallery_option(params: ExtractRequest) -> tuple[str, float] | None:
    """facefleet's addition to /extract: `"gallery": NAME` adds each face's best match."""
    if params.gallery is None:
        return None
    recognizer = engine().recognizer
    default = recognizer.threshold if recognizer else DEFAULT_VERIFY_THRESHOLD
    threshold = params.gallery_threshold
    return params.gallery, default if threshold is None else threshold


def _jpeg_of_first(params: ImageRequest, scores: bool, landmarks: bool, sizes: bool) -> Response:
    """Faces of the request's first image, drawn: one read, one decode, shared with the engine."""
    first = image_refs(params.images)[0]
    params = params.model_copy(update={"extract_embedding": False})
    settings = engine().settings
    try:
        image = decode_image(sources.read(first, settings), settings.engine.max_pixels)
    except ImageError as exc:
        raise APIError(400, exc.code, exc.message) from None
    results, _ = extract_results(params, [image])
    canvas = draw_faces(image, results[0].faces, scores, landmarks, sizes)
    ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise APIError(500, "encode_failed", "could not encode the annotated image")
    return Response(jpeg.tobytes(), mimetype="image/jpeg")


@bp.post("/draw_detections")
@queued
def draw_detections() -> Response:
    params = detection_threshold(parse(DrawRequest, read_body(request)))
    image_refs(params.images)
    return _jpeg_of_first(params, params.draw_scores, params.draw_landmarks, params.draw_sizes)


def _form_field(name: str) -> str | None:
    """One form field's value; a field sent twice is ambiguous, so it is refused rather than
    silently taking the first."""
    values = request.form.getlist(name)
    if len(values) > 1:
        raise bad(f"form field {name} was sent {len(values)} times; send it once")
    return values[0] if values else None


@bp.post("/multipart/draw_detections")
@queued
def multipart_draw_detections() -> Response:
    uploads = request.files.getlist("file")
    if len(uploads) != 1:
        raise bad(f'multipart form needs one "file" field with the image, not {len(uploads)}')
    fields = {name: _form_field(name) for name in DrawForm.model_fields if name != "file"}
    form = parse(DrawForm, {**fields, "file": uploads[0].read()})
    threshold = engine().detector.threshold if form.threshold is None else form.threshold
    params = ImageRequest.model_validate(
        {"images": {"data": [form.file]}, "threshold": threshold, "limit_faces": form.limit_faces or 0}
    )
    image_refs(params.images)
    return _jpeg_of_first(params, form.draw_scores, form.draw_landmarks, form.draw_sizes)


def _embedding_of(item: Any, index: int, size: int) -> np.ndarray:
    """A client's vector, normalised. Its length is the deployed recognizer's (/info), which no
    request schema can state, so a wrong one is `bad_embedding`, like a zero or infinite one."""
    if not isinstance(item, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in item):
        raise bad(f"embeddings[{index}] must be a list of numbers")
    if len(item) != size:
        raise APIError(400, "bad_embedding", f"embeddings[{index}] must be a list of {size} numbers")
    try:
        vector = np.asarray(item, dtype=np.float64)
    except OverflowError:  # an integer beyond any float
        vector = np.full(size, np.inf)
    peak = float(np.abs(vector).max()) if size else 0.0
    if not np.isfinite(peak) or peak == 0:
        raise APIError(400, "bad_embedding", f"embeddings[{index}] must be finite and non-zero")
    vector /= peak  # scaled first, so a vector of 1e300s still has a norm
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _chosen_sides(params: VerifyRequest) -> tuple[list[Side], list[ImageResult], Timings]:
    """Both images' faces and the ones compared, refused per image when unusable."""
    settings = engine().settings
    if params.images is None:
        raise bad(MISSING_IMAGES)
    refs = image_refs(params.images)
    if len(refs) != 2:
        raise bad("verify takes exactly two images (or two embeddings)")
    indices = params.face_indices or [None, None]
    inputs = sources.read_all(refs, settings)
    timings = Timings()
    results = find_faces(engine(), inputs, timings)
    sides = []
    for i, (result, index) in enumerate(zip(results, indices, strict=True)):
        if not result.ok:
            assert result.error is not None
            raise APIError(400, result.error.code, f"image {i + 1}: {result.error.message}")
        if not result.faces:
            raise APIError(422, "no_face", f"image {i + 1}: no face found")
        if index is not None and index >= len(result.faces):
            found = len(result.faces)
            raise APIError(
                422,
                "no_such_face",
                f"image {i + 1} has {found} face(s): face_indices[{i}] must be from 0 to {found - 1}",
            )
        sides.append(choose(result.faces, index, params.all_pairs))
    return sides, results, timings


def _side_json(side: Side) -> dict[str, Any]:
    compared = [{"num_det": k, "bbox": [round(float(v), 2) for v in side.faces[k].bbox]} for k in side.used]
    return {"faces_found": len(side.faces), "chosen": side.chosen, "compared": compared}


def _compare_images(params: VerifyRequest, threshold: float) -> tuple[float, dict[str, Any]]:
    """Similarity of the chosen faces (or every pair), which faces they were, and a warning per
    image whose largest face was taken from several."""
    (first, second), results, timings = _chosen_sides(params)
    scores = similarities(engine(), first, second, timings)
    _observe(results, timings, g.get("queue_s", 0.0))
    row, column = best_pair(scores)
    out: dict[str, Any] = {"faces": [_side_json(first), _side_json(second)]}
    if params.all_pairs:
        out["pairs"] = [
            {
                "a": i,
                "b": j,
                "similarity": round(float(scores[r, c]), 6),
                "same_person": bool(scores[r, c] >= threshold),
            }
            for r, i in enumerate(first.used)
            for c, j in enumerate(second.used)
        ]
    warnings = [
        f"image {n} has {len(side.faces)} faces; compared the largest (num_det {side.used[0]}): "
        "choose one with face_indices, or compare every pair with all_pairs"
        for n, side in ((1, first), (2, second))
        if side.ambiguous
    ]
    if warnings:
        out["warnings"] = warnings
    return float(scores[row, column]), out


@bp.post("/verify")
@queued
def verify() -> Response:
    body = read_body(request)
    recognizer = engine().recognizer
    assert recognizer is not None
    params = parse(VerifyRequest, body)
    threshold = recognizer.threshold if params.threshold is None else params.threshold
    start = time.perf_counter()
    compared: dict[str, Any] = {}
    if params.embeddings is not None:
        first, second = (_embedding_of(item, i, recognizer.size) for i, item in enumerate(params.embeddings))
        similarity = float(np.dot(first, second))
    else:
        similarity, compared = _compare_images(params, threshold)
    answer = m.VerifyResponse.model_validate(
        {
            "similarity": round(similarity, 6),
            "threshold": threshold,
            "same_person": similarity >= threshold,
            "recognizer": recognizer.spec.name,
            "took_ms": round((time.perf_counter() - start) * 1000, 3),
            **compared,
        }
    )
    return respond(answer.dump(), wants_msgpack(request, body))
