"""/extract, /draw_detections, /multipart/draw_detections and /verify: images in, faces out.

Each handler reads top to bottom: parse -> read images -> (queue) -> engine -> respond.
"""

from __future__ import annotations

import base64
import functools
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from flask import Blueprint, Response, current_app, g, request

from .. import metrics
from ..decode import decode_image
from ..draw import draw_faces
from ..errors import ImageError
from ..pipeline import Face, FaceEngine, ImageResult
from ..timing import Timings
from . import sources
from .admission import Admission
from .codec import read_body, respond, wants_msgpack
from .errors import APIError
from .params import ExtractParams, bad, extract_params, flag, image_refs, number

bp = Blueprint("extract", __name__)

GA_UNAVAILABLE = "not available: no gender/age model is configured on this appliance"


def engine() -> FaceEngine:
    return current_app.extensions["facefleet.engine"]


def admission() -> Admission:
    return current_app.extensions["facefleet.admission"]


def face_json(face: Face, index: int, params: ExtractParams) -> dict[str, Any]:
    """One face in InsightFace-REST's shape, optional fields as the request asked."""
    out: dict[str, Any] = {
        "bbox": [round(float(v), 2) for v in face.bbox],
        "prob": round(face.score, 5),
        "size": round(face.size, 1),
        "num_det": index,
    }
    if params.return_landmarks:
        out["landmarks"] = [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks]
    if face.embedding is not None:
        out["norm"] = round(float(face.norm or 0.0), 5)
        out["vec"] = [round(float(v), 7) for v in face.embedding]
    if params.return_face_data and face.crop is not None:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(face.crop, cv2.COLOR_RGB2BGR))
        out["facedata"] = base64.b64encode(jpeg.tobytes()).decode() if ok else None
    if params.extract_ga:
        out.update({"gender": None, "age": None, "ga_error": GA_UNAVAILABLE})
    return out


def _image_json(result: ImageResult, params: ExtractParams, shared_ms: float) -> dict[str, Any]:
    took = round(result.decode_ms + shared_ms, 3)
    if not result.ok:
        assert result.error is not None
        return {
            "status": "failed",
            "took_ms": took,
            "faces": [],
            "error": {"code": result.error.code, "message": result.error.message},
        }
    return {"status": "ok", "took_ms": took, "faces": [face_json(f, i, params) for i, f in enumerate(result.faces)]}


def _run(params: ExtractParams, inputs: list[bytes | np.ndarray | ImageError], timings: Timings) -> list[ImageResult]:
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


def queued(endpoint: str) -> Callable[[Callable[[], Response]], Callable[[], Response]]:
    """Run the whole handler inside an engine slot: past the bounded queue a request is refused
    before its body is even parsed, so an overload storm costs almost nothing to answer."""

    def wrap(handler: Callable[[], Response]) -> Callable[[], Response]:
        @functools.wraps(handler)
        def inner() -> Response:
            try:
                with admission().slot(endpoint) as queue_s:
                    g.queue_s = queue_s
                    return handler()
            except APIError as exc:
                if exc.status == 503:
                    # Drain the unread body: answering mid-upload makes the client see a reset
                    # connection instead of the 503 and its Retry-After.
                    request.get_data(cache=False)
                raise

        return inner

    return wrap


def extract_results(
    params: ExtractParams, inputs: list[bytes | np.ndarray | ImageError] | None = None
) -> tuple[list[ImageResult], dict[str, Any]]:
    """Read every image (unless given) and run the engine; returns the results and
    InsightFace-REST's `took` block."""
    settings = engine().settings
    start = time.perf_counter()
    if inputs is None:
        inputs = sources.read_all(params.images, settings)
    read_ms = (time.perf_counter() - start) * 1000
    timings = Timings()
    results = _run(params, inputs, timings)
    queue_s = g.get("queue_s", 0.0)
    _observe(results, timings, queue_s)
    ms = timings.ms()
    took = {
        "total_ms": round((time.perf_counter() - start) * 1000, 3),
        "read_imgs_ms": round(read_ms + ms["decode"], 3),
        "embed_all_ms": round(sum(v for k, v in ms.items() if k != "decode"), 3),
    }
    if params.verbose_timings:
        took["queue_ms"] = round(queue_s * 1000, 3)
        took["stages_ms"] = ms
    return results, took


@bp.post("/extract")
@queued("extract")
def extract() -> Response:
    body = read_body(request)
    params = extract_params(body, engine().settings.det_threshold, engine().settings.max_images)
    results, took = extract_results(params)
    n_ok = sum(r.ok for r in results) or 1
    shared_ms = took["embed_all_ms"] / n_ok
    payload = {"took": took, "data": [_image_json(r, params, shared_ms if r.ok else 0.0) for r in results]}
    return respond(payload, wants_msgpack(request, body))


def _jpeg_of_first(params: ExtractParams, scores: bool, landmarks: bool, sizes: bool) -> Response:
    """Faces of the request's first image, drawn: one read, one decode, shared with the engine."""
    params = ExtractParams(**{**params.__dict__, "images": params.images[:1], "extract_embedding": False})
    settings = engine().settings
    try:
        image = decode_image(sources.read(params.images[0], settings), settings.max_pixels)
    except ImageError as exc:
        raise APIError(400, exc.code, exc.message) from None
    results, _ = extract_results(params, [image])
    canvas = draw_faces(image, results[0].faces, scores, landmarks, sizes)
    ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise APIError(500, "encode_failed", "could not encode the annotated image")
    return Response(jpeg.tobytes(), mimetype="image/jpeg")


@bp.post("/draw_detections")
@queued("draw_detections")
def draw_detections() -> Response:
    body = read_body(request)
    params = extract_params(body, engine().settings.det_threshold, engine().settings.max_images)
    return _jpeg_of_first(
        params, flag(body, "draw_scores", True), flag(body, "draw_landmarks", True), flag(body, "draw_sizes", False)
    )


def _form_flag(name: str, default: bool) -> bool:
    value = request.form.get(name)
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise bad(f"{name} must be true or false")


def _form_number(name: str, default: float, low: float, high: float | None = None) -> float:
    raw = request.form.get(name)
    try:
        value = default if raw in (None, "") else float(raw)
    except ValueError:
        raise bad(f"{name} must be a number") from None
    return number({name: value}, name, default, low, high)


@bp.post("/multipart/draw_detections")
@queued("multipart_draw_detections")
def multipart_draw_detections() -> Response:
    upload = request.files.get("file")
    if upload is None:
        raise bad('multipart form needs a "file" field with the image')
    settings = engine().settings
    body = {"images": {"data": [upload.read()]}}
    limit = _form_number("limit_faces", 0, 0)
    params = ExtractParams(
        images=image_refs(body, settings.max_images),
        threshold=_form_number("threshold", settings.det_threshold, 0, 1),
        limit_faces=int(limit),
        min_face_size=0,
    )
    return _jpeg_of_first(
        params, _form_flag("draw_scores", True), _form_flag("draw_landmarks", True), _form_flag("draw_sizes", False)
    )


def _embedding_of(item: Any, index: int, size: int) -> np.ndarray:
    if not isinstance(item, list) or len(item) != size or not all(isinstance(v, int | float) for v in item):
        raise bad(f"embeddings[{index}] must be a list of {size} numbers")
    vector = np.asarray(item, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0:
        raise bad(f"embeddings[{index}] must be finite and non-zero")
    return vector / norm


def _largest_face_embeddings(body: dict[str, Any]) -> list[np.ndarray]:
    params = ExtractParams(
        images=image_refs(body, 2), threshold=engine().settings.det_threshold, limit_faces=1, min_face_size=0
    )
    if len(params.images) != 2:
        raise bad("verify takes exactly two images (or two embeddings)")
    results, _ = extract_results(params)
    vectors = []
    for i, result in enumerate(results):
        if not result.ok:
            assert result.error is not None
            raise APIError(400, result.error.code, f"image {i + 1}: {result.error.message}")
        if not result.faces:
            raise APIError(422, "no_face", f"image {i + 1}: no face found")
        vectors.append(result.faces[0].embedding)
    return vectors


@bp.post("/verify")
@queued("verify")
def verify() -> Response:
    body = read_body(request)
    recognizer = engine().recognizer
    assert recognizer is not None
    default = recognizer.spec.verify_threshold or 0.4
    threshold = number(body, "threshold", default, -1, 1)
    start = time.perf_counter()
    if "embeddings" in body:
        items = body["embeddings"]
        if not isinstance(items, list) or len(items) != 2:
            raise bad("embeddings must be a list of exactly two vectors")
        first, second = (_embedding_of(item, i, recognizer.size) for i, item in enumerate(items))
    else:
        first, second = _largest_face_embeddings(body)
    similarity = float(np.dot(first, second))
    payload = {
        "similarity": round(similarity, 6),
        "threshold": threshold,
        "same_person": similarity >= threshold,
        "recognizer": recognizer.spec.name,
        "took_ms": round((time.perf_counter() - start) * 1000, 3),
    }
    return respond(payload, wants_msgpack(request, body))
