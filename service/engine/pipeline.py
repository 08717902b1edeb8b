"""The request path, top to bottom: decode -> detect -> align -> embed -> results.

A bad image fails alone: its error is kept in its own result and every other image of the
call is still detected and embedded, with all faces of all images sharing recognizer runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from facefleet.engine.align import CROP_SIZE, align_all
from facefleet.engine.attributes import AttributeModel, gender_age
from facefleet.engine.decode import check_pixel_budget, decode_image
from facefleet.engine.detector import Detections, Detector
from facefleet.engine.detector import batch_limit as det_batch_limit
from facefleet.engine.failover import Failover, Reopen, reopener
from facefleet.engine.loader import load_model
from facefleet.engine.observer import EngineObserver, ModelReport, NullObserver
from facefleet.engine.recognizer import Recognizer
from facefleet.engine.recognizer import batch_limit as rec_batch_limit
from facefleet.engine.runner import Batching, Chain, Link, build_runner
from facefleet.engine.runtime import OpenedSession, SessionSlot, warmup_input
from facefleet.errors import ConfigError, FacefleetError, ImageError, NoFaceError
from facefleet.models.manifest import Manifest, ModelSpec, load_manifest
from facefleet.settings import Settings
from facefleet.timing import Timings, maybe


@dataclass
class Face:
    bbox: np.ndarray  # x1, y1, x2, y2
    score: float
    landmarks: np.ndarray  # 5 x 2
    embedding: np.ndarray | None = None
    norm: float | None = None
    crop: np.ndarray | None = None  # aligned 112 x 112 RGB
    num_det: int = 0  # its number in /extract (InsightFace-REST's: after limit_faces, before min_face_size)
    scale: float = 1.0  # its image's resize factor into the detector's input
    mask_score: float | None = None  # from a detector that scores masks itself (RetinaFace mnet_cov2)
    gender: int | None = None  # from the gender/age model: 1 male, 0 female
    age: int | None = None
    mask_probs: tuple[float, float] | None = None  # from the mask classifier: (mask, no mask)

    @property
    def size(self) -> float:
        """The box's width: InsightFace-REST's `size`, and what `min_face_size` compares."""
        return float(self.bbox[2] - self.bbox[0])

    @property
    def area(self) -> float:
        """The box's area: what "the largest face" and `limit_faces` go by."""
        return float((self.bbox[2] - self.bbox[0]) * (self.bbox[3] - self.bbox[1]))


@dataclass
class ImageResult:
    faces: list[Face] = field(default_factory=list)
    error: FacefleetError | None = None
    shape: tuple[int, int] | None = None
    decode_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class ActiveCalls:
    """How many calls are inside the engine now: what a batcher waits for (a lone call never waits)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return self._count

    @contextmanager
    def tracked(self) -> Iterator[None]:
        with self._lock:
            self._count += 1
        try:
            yield
        finally:
            with self._lock:
                self._count -= 1


@dataclass(frozen=True)
class Wiring:
    """How the engine composes each model's chain (service/engine/runner.py): who observes, whether
    concurrent calls share runs, how a failed provider is replaced, and extra links by task."""

    observer: EngineObserver = field(default_factory=NullObserver)
    batching: bool = False
    reopen: Reopen | None = None
    extra: Mapping[str, Sequence[Link]] = field(default_factory=dict)


class FaceEngine:
    """One detector and one recognizer, opened once and shared by every call."""

    def __init__(
        self,
        settings: Settings,
        detector: Detector,
        recognizer: Recognizer | None,
        manifest: Manifest,
        calls: ActiveCalls,
        observer: EngineObserver | None = None,
        attributes: Mapping[str, AttributeModel] | None = None,
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.recognizer = recognizer
        # The crop-reading models configured (GA_NAME, MASK_DETECTOR), by task: "genderage", "mask".
        self.attributes: dict[str, AttributeModel] = dict(attributes or {})
        self.manifest = manifest
        self._calls = calls
        # Where the engine and the use cases on it report (models loaded, runs, failovers, stages, images).
        self.observer: EngineObserver = observer or NullObserver()
        # A provider failing mid-service moves its model down the chain (service/engine/failover.py).
        self.failovers: dict[str, Failover] = {
            m.spec.name: m.chain.failover for m in self.models() if m.chain.failover is not None
        }
        self.observer.models_loaded([ModelReport.of(m.spec, m.opened) for m in self.models()])

    def models(self) -> list[Detector | Recognizer | AttributeModel]:
        return [m for m in (self.detector, self.recognizer, *self.attributes.values()) if m is not None]

    @property
    def active(self) -> int:
        """Calls inside process()/embed_crops() now: how many could still join a batch."""
        return self._calls()

    def _tracked(self) -> AbstractContextManager[None]:
        return self._calls.tracked()

    def chains(self) -> dict[str, tuple[str, ...]]:
        """What a call to each model goes through, innermost link first."""
        return {m.spec.name: m.chain.links for m in self.models()}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        with_recognizer: bool = True,
        observer: EngineObserver | None = None,
        batching: bool = False,
        extra: Mapping[str, Sequence[Link]] | None = None,
        available: Sequence[str] | None = None,
        session_factory: Callable[..., Any] | None = None,
    ) -> FaceEngine:
        """Open the models and compose their chains. The service passes its observer and
        `batching=settings.batching` (only a server has concurrent calls to batch); `extra`
        adds links by task ("detection", "recognition"): recorders, a test's FAKE failure."""
        manifest = load_manifest()
        wiring = Wiring(
            observer or NullObserver(), batching, reopener(settings, available, session_factory), extra or {}
        )
        calls = ActiveCalls()
        det_spec = manifest.get(settings.models.det_name or manifest.default_detection)
        opened, _ = load_model(det_spec, settings, available=available, session_factory=session_factory)
        slot = SessionSlot(opened)
        chain = compose(det_spec, slot, det_batch_limit(det_spec, opened, settings), settings, wiring, calls)
        detector = Detector(det_spec, slot, settings, chain)
        recognizer = None
        if with_recognizer:
            rec_spec = manifest.get(settings.models.rec_name or manifest.default_recognition)
            opened, _ = load_model(rec_spec, settings, available=available, session_factory=session_factory)
            slot = SessionSlot(opened)
            chain = compose(rec_spec, slot, rec_batch_limit(opened, settings), settings, wiring, calls)
            recognizer = Recognizer(rec_spec, slot, settings, chain)
        attributes = {}
        for task, name in (("genderage", settings.models.ga_name), ("mask", settings.models.mask_name)):
            if name:
                spec = manifest.get(name)
                if spec.task != task:
                    why = f"model {name} is a {spec.task} model, not a {task} model"
                    raise ConfigError(f"{why} (FACEFLEET_GA_NAME / FACEFLEET_MASK_DETECTOR)")
                opened, _ = load_model(spec, settings, available=available, session_factory=session_factory)
                slot = SessionSlot(opened)
                chain = compose(spec, slot, rec_batch_limit(opened, settings), settings, wiring, calls)
                attributes[task] = AttributeModel(spec, slot, settings, chain)
        return cls(settings, detector, recognizer, manifest, calls, wiring.observer, attributes)

    def process(
        self,
        inputs: Sequence[bytes | np.ndarray | ImageError],
        *,
        threshold: float | None = None,
        embed: bool = True,
        keep_crops: bool = False,
        min_face_size: float = 0,
        limit_faces: int = 0,
        timings: Timings | None = None,
        attributes: Sequence[str] = (),
    ) -> list[ImageResult]:
        """Faces of every input, in input order; an input that cannot be decoded fails alone.
        `limit_faces` keeps the largest (by area), then faces narrower than `min_face_size` px are
        dropped, as InsightFace-REST does, before alignment and embedding, so filtered faces cost
        nothing more. `attributes` names the crop-reading tasks to run ("genderage", "mask") where a
        model for them is configured."""
        with self._tracked():
            results, images = self._decode_all(inputs, timings)
            order = list(images)
            detections = self.detector.detect([images[i] for i in order], threshold, timings)
            detections = [_filter(d, min_face_size, limit_faces) for d in detections]
            # the attribute models read the crops: kept for them, then dropped unless the caller wants them
            done = self._align_embed(order, images, detections, results, embed, keep_crops or bool(attributes), timings)
            if attributes:
                faces = [f for r in done for f in r.faces]
                self._read_attributes(faces, attributes, timings)
                for face in faces if not keep_crops else ():
                    face.crop = None
            return done

    def _read_attributes(self, faces: list[Face], tasks: Sequence[str], timings: Timings | None) -> None:
        """Gender and age, and the mask classifier's (mask, no mask), on each face's crop, in place."""
        crops = [f.crop for f in faces if f.crop is not None]
        if not crops or len(crops) != len(faces):
            return
        if "genderage" in tasks and "genderage" in self.attributes:
            genders, ages = gender_age(self.attributes["genderage"].answer(crops, timings))
            for face, gender, age in zip(faces, genders, ages, strict=True):
                face.gender, face.age = int(gender), int(age)
        if "mask" in tasks and "mask" in self.attributes:
            answer = self.attributes["mask"].answer(crops, timings)
            for face, row in zip(faces, answer, strict=True):
                face.mask_probs = (float(row[0]), float(row[1]))

    def _decode_all(
        self, inputs: Sequence[bytes | np.ndarray | ImageError], timings: Timings | None
    ) -> tuple[list[ImageResult], dict[int, np.ndarray]]:
        # The pixels all inputs declare, summed from their headers before the first is decoded: past
        # FACEFLEET_MAX_REQUEST_PIXELS the whole call is refused (RequestTooLargeError, HTTP 413).
        engine = self.settings.engine
        check_pixel_budget(inputs, engine.max_request_pixels, engine.max_pixels)
        results = [ImageResult() for _ in inputs]
        images: dict[int, np.ndarray] = {}
        with maybe(timings, "decode"):
            for i, item in enumerate(inputs):
                start = time.perf_counter()
                try:
                    if isinstance(item, ImageError):  # a reference that could not be read
                        raise item
                    images[i] = (
                        item if isinstance(item, np.ndarray) else decode_image(item, self.settings.engine.max_pixels)
                    )
                    results[i].shape = images[i].shape[:2]
                except ImageError as exc:
                    results[i].error = exc
                results[i].decode_ms = (time.perf_counter() - start) * 1000
        return results, images

    def _align_embed(
        self,
        order: list[int],
        images: dict[int, np.ndarray],
        detections: list[Detections],
        results: list[ImageResult],
        embed: bool,
        keep_crops: bool,
        timings: Timings | None,
    ) -> list[ImageResult]:
        crops = self._align(order, images, detections, results, timings)
        if embed and self.recognizer is not None:
            vectors, norms = self.recognizer.embed(crops, timings)
            faces = [face for i in order for face in results[i].faces]
            for face, vector, norm in zip(faces, vectors, norms, strict=True):
                face.embedding, face.norm = vector, float(norm)
        if not keep_crops:
            for i in order:
                for face in results[i].faces:
                    face.crop = None
        return results

    def embed_faces(self, faces: Sequence[Face], timings: Timings | None = None) -> None:
        """Embed faces that process(embed=False, keep_crops=True) found, in place: a caller that
        picks which faces count (a 1:1 comparison) pays the recognizer only for those."""
        if self.recognizer is None:
            raise FacefleetError("no recognizer is loaded")
        todo = list({id(f): f for f in faces if f.embedding is None}.values())
        if any(f.crop is None for f in todo):
            raise FacefleetError("embed_faces needs the faces' aligned crops (process(keep_crops=True))")
        with self._tracked():
            vectors, norms = self.recognizer.embed([f.crop for f in todo if f.crop is not None], timings)
        for face, vector, norm in zip(todo, vectors, norms, strict=True):
            face.embedding, face.norm = vector, float(norm)

    def embed_crops(
        self, inputs: Sequence[bytes | np.ndarray | ImageError], timings: Timings | None = None
    ) -> list[ImageResult]:
        """Each input is an already aligned face crop (InsightFace-REST's embed_only): one face
        per image, resized to 112 x 112 when it is not."""
        if self.recognizer is None:
            raise FacefleetError("no recognizer is loaded")
        with self._tracked():
            results, images = self._decode_all(inputs, timings)
            order = list(images)
            with maybe(timings, "align"):
                crops = [_as_crop(images[i]) for i in order]
            vectors, norms = self.recognizer.embed(crops, timings)
            for i, vector, norm in zip(order, vectors, norms, strict=True):
                h, w = images[i].shape[:2]
                box = np.array([0, 0, w, h], np.float32)
                results[i].faces = [Face(box, 1.0, np.zeros((5, 2), np.float32), vector, float(norm))]
            return results

    def health(self) -> dict[str, Any]:
        """Each model run once on a fixed input: outputs of the expected shape and finite."""
        checks: dict[str, Any] = {}
        for model in self.models():
            name = model.spec.name
            try:
                _, zeros = warmup_input(model.opened.session, (self.detector.det_size[1], self.detector.det_size[0]))
                outputs = model.session_run(zeros)
                bad = [i for i, out in enumerate(outputs) if not np.isfinite(out).all()]
                if len(outputs) != len(model.opened.session.get_outputs()) or bad:
                    checks[name] = {"ok": False, "reason": f"outputs {bad} are not finite"}
                else:
                    checks[name] = {"ok": True, "provider": model.opened.provider, **_degradation(model.opened)}
            except Exception as exc:
                checks[name] = {"ok": False, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        return checks

    def _align(
        self,
        order: list[int],
        images: dict[int, np.ndarray],
        detections: list[Detections],
        results: list[ImageResult],
        timings: Timings | None,
    ) -> list[np.ndarray]:
        crops: list[np.ndarray] = []
        with maybe(timings, "align"):
            for i, found in zip(order, detections, strict=True):
                image_crops = align_all(images[i], found.landmarks)
                crops.extend(image_crops)
                numbers = found.num_det()
                results[i].faces = [
                    Face(
                        found.boxes[k],
                        float(found.scores[k]),
                        found.landmarks[k],
                        crop=image_crops[k],
                        num_det=int(numbers[k]),
                        scale=found.scale,
                        mask_score=None if found.mask is None else float(found.mask[k]),
                    )
                    for k in range(len(found))
                ]
        return crops


def compose(
    spec: ModelSpec, slot: SessionSlot, max_batch: int, settings: Settings, wiring: Wiring, calls: ActiveCalls
) -> Chain:
    """One model's chain, from the engine's wiring: the only caller of build_runner in the engine."""
    batching = Batching(max_batch, settings.engine.batch_wait_ms / 1000, calls) if wiring.batching else None
    return build_runner(
        spec,
        slot,
        providers=settings.engine.providers,
        reopen=wiring.reopen,
        batching=batching,
        observer=wiring.observer,
        extra=wiring.extra.get(spec.task, ()),
    )


def _degradation(opened: OpenedSession) -> dict[str, str]:
    """For /health: a model that left its provider at run time works, but an operator must see it."""
    if not opened.runtime_failures:
        return {}
    last = opened.runtime_failures[-1].as_dict()
    return {
        "degraded": f"{last['provider']} failed at run time at {last['at']}: {last['error']}; now on {opened.provider}"
    }


def first_face(result: ImageResult) -> tuple[np.ndarray | None, FacefleetError | None]:
    """(the embedding of a result's first face, or why there is none): with limit_faces=1 the first
    face is the largest (`largest_first`), which is how enrolment keeps one face per photo
    (facefleet.app.faces.ONE_FACE)."""
    if result.error is not None:
        return None, result.error
    if not result.faces or result.faces[0].embedding is None:
        return None, NoFaceError("no face found")
    return result.faces[0].embedding, None


def embeddings_of(results: Sequence[ImageResult]) -> list[list[np.ndarray]]:
    """Each image's face embeddings, in face order (none for a failed image)."""
    return [[f.embedding for f in r.faces if f.embedding is not None] for r in results]


def largest_first(areas: np.ndarray) -> np.ndarray:
    """THE "which face" order (facefleet.app.faces builds every choice on it): the larger box area
    first, detection order among equals. It lives here because the engine applies it before
    alignment (limit_faces), and the engine imports nothing from the application layer."""
    order: np.ndarray = np.argsort(-np.asarray(areas, np.float64), kind="stable")
    return order


def _filter(found: Detections, min_face_size: float, limit_faces: int) -> Detections:
    """InsightFace-REST's filters, in its order: with more faces than `limit_faces`, the largest N
    by area, largest first (otherwise detection order stays); faces are numbered (num_det) here;
    then faces narrower than `min_face_size` px are dropped, keeping their numbers."""
    if not len(found) or (not min_face_size and not limit_faces):
        return found
    boxes = found.boxes
    keep = np.arange(len(found))
    if limit_faces and len(found) > limit_faces:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = largest_first(areas)[:limit_faces]
    numbers = np.arange(len(keep))
    wide = (boxes[keep, 2] - boxes[keep, 0]) >= min_face_size
    return found.take(keep[wide], numbers[wide])


def _as_crop(image: np.ndarray) -> np.ndarray:
    if image.shape[:2] == (CROP_SIZE, CROP_SIZE):
        return image
    return cv2.resize(image, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)


def timed_process(
    engine: FaceEngine, inputs: Sequence[bytes | np.ndarray | ImageError], **kwargs: Any
) -> tuple[list[ImageResult], Timings, float]:
    """process() plus its per-stage timings and total wall time in ms."""
    timings = Timings()
    start = time.perf_counter()
    results = engine.process(inputs, timings=timings, **kwargs)
    return results, timings, (time.perf_counter() - start) * 1000
