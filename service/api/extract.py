"""/extract, /draw_detections, /multipart/draw_detections and /verify: images in, faces out.

Each handler reads top to bottom: parse the contract model -> read images -> (queue) -> the use case
in facefleet.app (extract, draw, compare) -> map its result into the contract's answer -> respond.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from flask import Blueprint, Response, current_app, g, request

from facefleet.api import sources
from facefleet.api.admission import Admission
from facefleet.api.body import drain_body
from facefleet.api.codec import read_body, respond, wants_msgpack
from facefleet.api.errors import APIError
from facefleet.api.logs import endpoint_label
from facefleet.app import compare as app_compare
from facefleet.app import draw as app_draw
from facefleet.app import extract as app_extract
from facefleet.app import galleries as app_galleries
from facefleet.app.faces import Side, detection_threshold, verification_threshold
from facefleet.contract import models as m
from facefleet.contract.faces import FaceOptions, face_fields
from facefleet.contract.fields import MISSING_IMAGES, bad
from facefleet.contract.models import (
    DrawForm,
    DrawRequest,
    ExtractRequest,
    ImageRef,
    ImageRequest,
    VerifyRequest,
    parse,
)
from facefleet.engine.decode import check_pixel_budget, decode_image
from facefleet.engine.pipeline import FaceEngine, ImageResult
from facefleet.errors import ImageError
from facefleet.timing import Timings

bp = Blueprint("extract", __name__)
Q = TypeVar("Q", bound=ImageRequest)


def engine() -> FaceEngine:
    return current_app.extensions["facefleet.engine"]


def admission() -> Admission:
    return current_app.extensions["facefleet.admission"]


def error_of(result: ImageResult) -> m.ErrorDetail:
    assert result.error is not None
    return m.ErrorDetail(code=result.error.code, message=result.error.message)


def _image(
    result: ImageResult,
    params: ImageRequest,
    shared_ms: float,
    matches: Sequence[Sequence[app_galleries.Match]] | None,
) -> m.ImageResult:
    took = round(result.decode_ms + shared_ms, 3)
    if not result.ok:
        return m.ImageResult(status="failed", took_ms=took, faces=[], error=error_of(result))
    options = FaceOptions.of(params)
    faces = [face_fields(f, options) for f in result.faces]
    if matches is not None:  # with a gallery: each face's best match, or null
        for face, best in zip(faces, matches, strict=True):
            face["match"] = {"subject": best[0].subject, "score": best[0].score} if best else None
    return m.ImageResult.model_validate({"status": "ok", "took_ms": took, "faces": faces})


def finding(params: ImageRequest) -> app_extract.ExtractRequest:
    """The use case's request from the contract's: which faces to find and what to keep."""
    return app_extract.ExtractRequest(
        threshold=params.threshold,
        embed=params.extract_embedding,
        keep_crops=params.return_face_data,
        min_face_size=params.min_face_size,
        limit_faces=params.limit_faces,
        embed_only=params.embed_only,
        attributes=("genderage",) * params.extract_ga + ("mask",) * params.detect_masks,
    )


def _observe(results: Sequence[ImageResult], timings: Timings, queue_s: float) -> None:
    """A request's stages and images, told to the engine's observer (the service's is Prometheus)."""
    observer = engine().observer
    seconds = timings.seconds
    stages = {
        "decode": seconds["decode"],
        "detect": seconds["det_prep"] + seconds["det_run"] + seconds["det_post"],
        "align": seconds["align"],
        "embed": seconds["rec_prep"] + seconds["rec_run"],
        "queue_wait": queue_s,
    }
    for stage, value in stages.items():
        observer.stage(stage, value)
    for result in results:
        observer.image_done(result.ok, len(result.faces))


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
                drain_body()
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
        [*sources.read_all(image_refs(params.images), settings, params.img_req_headers)] if inputs is None else inputs
    )
    read_ms = (time.perf_counter() - start) * 1000
    found = app_extract.extract(engine(), images, finding(params))
    results, timings = list(found.images), found.timings
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


ANSWER_DEFAULTS = ("return_face_data", "return_landmarks", "extract_embedding", "extract_ga", "detect_masks")


def with_defaults(params: Q) -> Q:
    """The request with what it left unsaid filled from the appliance's settings: the face score threshold
    by the one rule (facefleet.app.faces), and InsightFace-REST's request defaults (FACEFLEET_RETURN_FACE_DATA
    / DEF_RETURN_FACE_DATA ..., FACEFLEET_IMG_REQ_HEADERS)."""
    answers = engine().settings.answers
    update: dict[str, Any] = {
        name: getattr(answers, name) for name in ANSWER_DEFAULTS if name not in params.model_fields_set
    }
    if params.img_req_headers is None:
        update["img_req_headers"] = dict(answers.img_req_headers)
    if params.threshold is None:
        update["threshold"] = detection_threshold(engine())
    return params.model_copy(update=update)


@bp.post("/extract")
@queued
def extract() -> Response:
    body = read_body(request)
    params = with_defaults(parse(ExtractRequest, body))
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
        if params.embed_only:  # InsightFace-REST's embed_only answer has these at the top (and no `took`)
            answer = m.ExtractResponse(took=took, data=data, took_ms=took.total_ms, status="ok")
    else:
        # the same 1:N search as /galleries/{name}/search, on the faces this request already found
        asked = app_galleries.Search(gallery=gallery[0], top_k=1, threshold=gallery[1])
        found = app_galleries.search(
            current_app.extensions["facefleet.galleries"], engine(), asked, faces=lambda _query: results
        )
        data = [_image(i.result, params, shared_ms if i.result.ok else 0.0, i.matches) for i in found.images]
        searched = m.GallerySearched(name=found.gallery, version=found.version, threshold=found.threshold)
        answer = m.ExtractResponse(took=took, data=data, gallery=searched)
    return respond(answer.dump(), wants_msgpack(request, body))


def _gallery_option(params: ExtractRequest) -> tuple[str, float] | None:
    """facefleet's addition to /extract: `"gallery": NAME` adds each face's best match."""
    if params.gallery is None:
        return None
    return params.gallery, verification_threshold(engine(), params.gallery_threshold)


def _jpeg_of_first(params: ImageRequest, scores: bool, landmarks: bool, sizes: bool) -> Response:
    """Faces of the request's first image, drawn: one read, one decode, shared with the engine."""
    first = image_refs(params.images)[0]
    params = params.model_copy(update={"extract_embedding": False})
    settings = engine().settings
    try:
        data = sources.read(first, settings, params.img_req_headers)
        check_pixel_budget([data], settings.engine.max_request_pixels, settings.engine.max_pixels)  # before decoding
        image = decode_image(data, settings.engine.max_pixels)
    except ImageError as exc:
        raise APIError(exc.status, exc.code, exc.message) from None
    try:
        drawing = app_draw.draw(engine(), image, app_draw.DrawRequest(finding(params), scores, landmarks, sizes))
    except app_draw.EncodeError as exc:
        raise APIError(500, exc.code, exc.message) from None
    _observe(drawing.found.images, drawing.found.timings, g.get("queue_s", 0.0))
    return Response(drawing.jpeg, mimetype="image/jpeg")


@bp.post("/draw_detections")
@queued
def draw_detections() -> Response:
    params = with_defaults(parse(DrawRequest, read_body(request)))
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
    threshold = detection_threshold(engine(), form.threshold)
    params = ImageRequest.model_validate(
        {"images": {"data": [form.file]}, "threshold": threshold, "limit_faces": form.limit_faces or 0}
    )
    image_refs(params.images)
    return _jpeg_of_first(params, form.draw_scores, form.draw_landmarks, form.draw_sizes)


def _embedding_of(item: Any, index: int, size: int) -> np.ndarray:
    """A client's vector, normalised (facefleet.app.compare.unit_vector); its length is the deployed
    recognizer's (/info), which no request schema can state, so a wrong one is `bad_embedding`."""
    if not isinstance(item, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in item):
        raise bad(f"embeddings[{index}] must be a list of numbers")
    try:
        return app_compare.unit_vector(item, index, size)
    except app_compare.EmbeddingError as exc:
        raise APIError(400, exc.code, exc.message) from None


def _refused(exc: app_compare.SideError) -> APIError:
    """An image of the pair the comparison cannot use, in /verify's words."""
    n = exc.image + 1
    if isinstance(exc, app_compare.NoSuchFaceError):
        return APIError(
            422,
            exc.code,
            f"image {n} has {exc.found} face(s): face_indices[{exc.image}] must be from 0 to {exc.found - 1}",
        )
    return APIError(422 if exc.code == "no_face" else 400, exc.code, f"image {n}: {exc.reason}")


def _compared_images(params: VerifyRequest) -> app_compare.Comparison:
    """Both images read, their faces found and the chosen ones compared; an unusable image is refused."""
    if params.images is None:
        raise bad(MISSING_IMAGES)
    refs = image_refs(params.images)
    if len(refs) != 2:
        raise bad("verify takes exactly two images (or two embeddings)")
    first, second = params.face_indices or [None, None]
    asked = app_compare.CompareRequest((first, second), params.all_pairs, params.threshold)
    try:
        comparison = app_compare.compare_images(engine(), sources.read_all(refs, engine().settings), asked)
    except app_compare.SideError as exc:
        raise _refused(exc) from None
    _observe(comparison.images, comparison.timings, g.get("queue_s", 0.0))
    return comparison


def _side_json(side: Side) -> dict[str, Any]:
    compared = [{"num_det": k, "bbox": [round(float(v), 2) for v in side.faces[k].bbox]} for k in side.used]
    return {"faces_found": len(side.faces), "chosen": side.chosen, "compared": compared}


def _images_json(comparison: app_compare.Comparison, all_pairs: bool) -> dict[str, Any]:
    """Which faces were compared (and every pair's verdict when asked), and a warning per image
    whose largest face was taken from several."""
    assert comparison.sides is not None
    first, second = comparison.sides
    out: dict[str, Any] = {"faces": [_side_json(first), _side_json(second)]}
    if all_pairs:
        out["pairs"] = [
            {"a": p.a, "b": p.b, "similarity": round(p.similarity, 6), "same_person": p.same_person}
            for p in comparison.pairs()
        ]
    warnings = [
        f"image {n} has {len(side.faces)} faces; compared the largest (num_det {side.used[0]}): "
        "choose one with face_indices, or compare every pair with all_pairs"
        for n, side in ((1, first), (2, second))
        if side.ambiguous
    ]
    if warnings:
        out["warnings"] = warnings
    return out


@bp.post("/verify")
@queued
def verify() -> Response:
    body = read_body(request)
    recognizer = engine().recognizer
    assert recognizer is not None
    params = parse(VerifyRequest, body)
    start = time.perf_counter()
    compared: dict[str, Any] = {}
    if params.embeddings is not None:
        first, second = (_embedding_of(item, i, recognizer.size) for i, item in enumerate(params.embeddings))
        comparison = app_compare.compare_vectors(engine(), first, second, params.threshold)
    else:
        comparison = _compared_images(params)
        compared = _images_json(comparison, params.all_pairs)
    answer = m.VerifyResponse.model_validate(
        {
            "similarity": round(comparison.similarity, 6),
            "threshold": comparison.threshold,
            "same_person": comparison.same_person,
            "recognizer": comparison.recognizer,
            "took_ms": round((time.perf_counter() - start) * 1000, 3),
            **compared,
        }
    )
    return respond(answer.dump(), wants_msgpack(request, body))
