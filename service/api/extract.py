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
from ..compare import Side, best_pair, choose, find_faces, similarities
from ..decode import decode_image
from ..draw import draw_faces
from ..errors import ImageError
from ..pipeline import Face, FaceEngine, ImageResult, embeddings_of
from ..thresholds import DEFAULT_VERIFY_THRESHOLD
from ..timing import Timings
from . import sources
from .admission import Admission
from .codec import read_body, respond, wants_msgpack
from .errors import APIError
from .logs import endpoint_label
from .params import ExtractParams, bad, extract_params, flag, image_refs, number, whole

bp = Blueprint("extract", __name__)

GA_UNAVAILABLE = "not available: no gender/age model is configured on this appliance"


def engine() -> FaceEngine:
    return current_app.extensions["facefleet.engine"]


def admission() -> Admission:
    return current_app.extensions["facefleet.admission"]


def face_json(face: Face, index: int, params: ExtractParams) -> dict[str, Any]:
    """One face in InsightFace-REST's shape, optional fields as the request asked."""
    out: dict[str, Any] = {
        "bbox": [round(float(v), 2) + 0.0 for v in face.bbox],  # + 0.0: -0.0 becomes 0.0
        "prob": round(face.score, 5),
        "size": round(face.size, 1),
        "num_det": index,
    }
    if params.return_landmarks:
        out["landmarks"] = [[round(float(x), 2) + 0.0, round(float(y), 2) + 0.0] for x, y in face.landmarks]
    if face.embedding is not None:
        out["norm"] = round(float(face.norm or 0.0), 5)
        out["vec"] = [round(float(v), 7) + 0.0 for v in face.embedding]
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
@queued
def extract() -> Response:
    body = read_body(request)
    params = extract_params(body, engine().detector.threshold, engine().settings.max_images)
    gallery = _gallery_option(body)
    if gallery:
        current_app.extensions["facefleet.galleries"].index(gallery[0])  # refused before any model runs
    # A gallery match needs each face's embedding: it is computed even with extract_embedding
    # false, and then left out of the answer (InsightFace-REST clients that skip vectors still get matches).
    run = ExtractParams(**{**params.__dict__, "extract_embedding": True}) if gallery else params
    results, took = extract_results(run)
    n_ok = sum(r.ok for r in results) or 1
    shared_ms = took["embed_all_ms"] / n_ok
    payload = {"took": took, "data": [_image_json(r, params, shared_ms if r.ok else 0.0) for r in results]}
    if gallery:
        _add_best_matches(payload, results, *gallery)
        if not params.extract_embedding:
            _drop_vectors(payload)
    return respond(payload, wants_msgpack(request, body))


def _drop_vectors(payload: dict[str, Any]) -> None:
    """What extract_embedding false promises: no vec and no norm, even when a match needed them."""
    for image in payload["data"]:
        for face in image["faces"]:
            face.pop("vec", None)
            face.pop("norm", None)


def _gallery_option(body: dict[str, Any]) -> tuple[str, float] | None:
    """facefleet's addition to /extract: `"gallery": NAME` adds each face's best match."""
    name = body.get("gallery")
    if name is None:
        return None
    if not isinstance(name, str):
        raise bad("gallery must be a gallery's name")
    recognizer = engine().recognizer
    default = recognizer.threshold if recognizer else DEFAULT_VERIFY_THRESHOLD
    return name, number(body, "gallery_threshold", default, -1, 1)


def _add_best_matches(payload: dict[str, Any], results: list[ImageResult], name: str, threshold: float) -> None:
    store = current_app.extensions["facefleet.galleries"]
    version, matches = store.search_groups(name, embeddings_of(results), 1, threshold)
    payload["gallery"] = {"name": name, "version": version, "threshold": threshold}
    for image, found in zip(payload["data"], matches, strict=True):
        for face, best in zip(image["faces"], found, strict=True):
            face["match"] = {"subject": best[0][0], "score": best[0][1]} if best else None


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
@queued
def draw_detections() -> Response:
    body = read_body(request)
    params = extract_params(body, engine().detector.threshold, engine().settings.max_images)
    return _jpeg_of_first(
        params, flag(body, "draw_scores", True), flag(body, "draw_landmarks", True), flag(body, "draw_sizes", False)
    )


def _form_field(name: str) -> str | None:
    """One form field's value; a field sent twice is ambiguous, so it is refused rather than
    silently taking the first."""
    values = request.form.getlist(name)
    if len(values) > 1:
        raise bad(f"form field {name} was sent {len(values)} times; send it once")
    return values[0] if values else None


def _form_flag(name: str, default: bool) -> bool:
    value = _form_field(name)
    if value is None:
        return default
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise bad(f"{name} must be true or false")


def _form_value(name: str) -> Any:
    """A form field as JSON would carry it: absent or empty is null, else the number it spells."""
    raw = _form_field(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        return float(raw)
    except ValueError:
        raise bad(f"{name} must be a number") from None


@bp.post("/multipart/draw_detections")
@queued
def multipart_draw_detections() -> Response:
    uploads = request.files.getlist("file")
    if len(uploads) != 1:
        raise bad(f'multipart form needs one "file" field with the image, not {len(uploads)}')
    upload = uploads[0]
    settings = engine().settings
    body = {"images": {"data": [upload.read()]}}
    form = {name: _form_value(name) for name in ("threshold", "limit_faces")}
    params = ExtractParams(
        images=image_refs(body, settings.max_images),
        threshold=number(form, "threshold", engine().detector.threshold, 0, 1),
        limit_faces=whole(form, "limit_faces", 0),
        min_face_size=0,
    )
    return _jpeg_of_first(
        params, _form_flag("draw_scores", True), _form_flag("draw_landmarks", True), _form_flag("draw_sizes", False)
    )


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


def _face_indices(body: dict[str, Any]) -> list[int | None]:
    """`face_indices`: [i, j], each a face's num_det (0-based, detection order) or null for the default."""
    value = body.get("face_indices")
    if value is None:
        return [None, None]
    if not isinstance(value, list) or len(value) != 2:
        raise bad("face_indices must be a list of two face numbers (num_det, from 0) or nulls")
    indices: list[int | None] = []
    for i, raw in enumerate(value):
        # 1.0 is an integer to JSON Schema, as in whole()
        item = int(raw) if isinstance(raw, float) and raw.is_integer() else raw
        if item is not None and (isinstance(item, bool) or not isinstance(item, int) or item < 0):
            raise bad(f"face_indices[{i}] must be a face's num_det (a whole number from 0) or null")
        indices.append(item)
    return indices


def _chosen_sides(body: dict[str, Any], all_pairs: bool) -> tuple[list[Side], list[ImageResult], Timings]:
    """Both images' faces and the ones compared, refused per image when unusable."""
    settings = engine().settings
    refs = image_refs(body, settings.max_images)
    if len(refs) != 2:
        raise bad("verify takes exactly two images (or two embeddings)")
    indices = _face_indices(body)
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
        sides.append(choose(result.faces, index, all_pairs))
    return sides, results, timings


def _side_json(side: Side) -> dict[str, Any]:
    compared = [{"num_det": k, "bbox": [round(float(v), 2) for v in side.faces[k].bbox]} for k in side.used]
    return {"faces_found": len(side.faces), "chosen": side.chosen, "compared": compared}


def _compare_images(body: dict[str, Any], threshold: float) -> dict[str, Any]:
    """Similarity of the chosen faces (or every pair), which faces they were, and a warning per
    image whose largest face was taken from several."""
    all_pairs = flag(body, "all_pairs", False)
    (first, second), results, timings = _chosen_sides(body, all_pairs)
    scores = similarities(engine(), first, second, timings)
    _observe(results, timings, g.get("queue_s", 0.0))
    row, column = best_pair(scores)
    out: dict[str, Any] = {"similarity": float(scores[row, column]), "faces": [_side_json(first), _side_json(second)]}
    if all_pairs:
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
    return out


@bp.post("/verify")
@queued
def verify() -> Response:
    body = read_body(request)
    recognizer = engine().recognizer
    assert recognizer is not None
    threshold = number(body, "threshold", recognizer.threshold, -1, 1)
    flag(body, "msgpack", False)  # validated like /extract's flags; wants_msgpack reads it
    start = time.perf_counter()
    compared: dict[str, Any] = {}
    if "embeddings" in body:
        items = body["embeddings"]
        if not isinstance(items, list) or len(items) != 2:
            raise bad("embeddings must be a list of exactly two vectors")
        first, second = (_embedding_of(item, i, recognizer.size) for i, item in enumerate(items))
        similarity = float(np.dot(first, second))
    else:
        compared = _compare_images(body, threshold)
        similarity = compared.pop("similarity")
    payload = {
        "similarity": round(similarity, 6),
        "threshold": threshold,
        "same_person": similarity >= threshold,
        "recognizer": recognizer.spec.name,
        "took_ms": round((time.perf_counter() - start) * 1000, 3),
        **compared,
    }
    return respond(payload, wants_msgpack(request, body))
