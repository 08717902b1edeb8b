"""Camera streams, the use cases: each camera's sampled frames go decode → detect → track → (a track's best
crop) embed → search → events, and the cameras are added, listed and removed.

A camera is watched by its own thread (`CameraWatch`): the source (streams/source.py) decodes and samples on
its thread and keeps at most a few frames; this thread takes the newest, asks the engine for its faces when
the engine's admission lets it in within a frame interval (`EngineGate`, api/admission.py: HTTP first; by
default only while no HTTP request is in the engine; a frame that waited in vain is shed and counted), tracks
them (streams/tracker.py), and lets the track book (streams/tracks.py) say which crop is worth recognising:
once per track, again only for a clearly better crop. Recognition goes through the same admission (waiting
longer: IDENTIFY_WAIT_S) and engine (its batcher merges it with the HTTP requests' faces) and searches the
gallery the camera names. What
happens becomes events (track_started, identified, track_ended) written to the outbox, whose delivery loops
publish them (streams/delivery.py).

`StreamRunner` keeps one watch per camera of the registry (streams/registry.py) running, and writes their
status back to it so that any worker can answer `/streams`; only the worker holding the streams lock runs it
(streams/leader.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from facefleet.app.faces import verification_threshold
from facefleet.engine.pipeline import Face, FaceEngine
from facefleet.galleries.store import GalleryStore
from facefleet.streams.decoders import HardwareProbe
from facefleet.streams.delivery import Dispatcher
from facefleet.streams.events import StreamEvent
from facefleet.streams.location import mask
from facefleet.streams.registry import Camera, Registry
from facefleet.streams.source import FrameSource, NullSourceObserver, SourceObserver, SourceOptions
from facefleet.streams.tracker import FaceTracker, TrackerConfig
from facefleet.streams.tracks import Crop, Identified, Identify, Intent, TrackBook, TrackEnded, TrackStarted

log = logging.getLogger(__name__)
# A track's recognition is rarer and worth more than a frame: it waits this long behind HTTP before giving up
# (the track book asks again with a later, better crop).
IDENTIFY_WAIT_S = 2.0


class EngineGate(Protocol):
    """The HTTP service's admission, seen from a stream (api/admission.py): HTTP first; a frame waits at most
    `timeout_s` for its turn, else it is shed."""

    def try_enter(self, timeout_s: float = 0.0) -> bool: ...

    def leave(self) -> None: ...


class OpenGate:
    """No HTTP service beside the streams (the CLI, the tests of the use case): always a slot."""

    def try_enter(self, timeout_s: float = 0.0) -> bool:
        return True

    def leave(self) -> None:
        return None


class WatchObserver(SourceObserver, Protocol):
    """What a watch reports beyond its source (ops/metrics.py's StreamMetrics)."""

    def frame_processed(self, camera: str, faces: int, seconds: float) -> None: ...

    def frame_shed(self, camera: str) -> None: ...

    def tracks_active(self, camera: str, count: int) -> None: ...

    def event_emitted(self, camera: str, kind: str, latency_s: float) -> None: ...


class NullWatchObserver(NullSourceObserver):
    def frame_processed(self, camera: str, faces: int, seconds: float) -> None: ...
    def frame_shed(self, camera: str) -> None: ...
    def tracks_active(self, camera: str, count: int) -> None: ...
    def event_emitted(self, camera: str, kind: str, latency_s: float) -> None: ...


@dataclass(frozen=True)
class WatchDefaults:
    """The appliance-wide settings a camera falls back on, and the names events carry."""

    appliance: str
    fps: float = 5.0
    buffer: int = 2
    gallery: str | None = None
    decoder: str = "auto"  # FACEFLEET_STREAM_DECODER: auto (the Jetson's nvv4l2decoder when present) or ffmpeg


@dataclass
class WatchCounts:
    frames: int = 0  # looked at by the engine
    shed: int = 0  # skipped: the engine was busy with HTTP requests
    recognitions_shed: int = 0  # a crop's recognition waited IDENTIFY_WAIT_S for the engine in vain (asked again later)
    faces: int = 0
    tracks: int = 0  # started
    identified: int = 0
    events: int = 0
    errors: int = 0
    last_error: str | None = None
    last_latency_s: float | None = None  # frame decoded -> its event written


class CameraWatch:
    """One camera on its own thread (the module's docstring says what it does)."""

    def __init__(
        self,
        camera: Camera,
        engine: FaceEngine,
        store: GalleryStore | None,
        dispatcher: Dispatcher,
        defaults: WatchDefaults,
        gate: EngineGate,
        observer: WatchObserver | None = None,
        hardware: HardwareProbe | None = None,
    ) -> None:
        self.camera, self.engine, self.store, self.dispatcher = camera, engine, store, dispatcher
        self.defaults, self.gate = defaults, gate
        self.observer: WatchObserver = observer or NullWatchObserver()
        self.gallery = camera.gallery or defaults.gallery
        self.tracker_config = TrackerConfig()
        self.tracker = FaceTracker(self.tracker_config)
        self.book = TrackBook()
        self.counts = WatchCounts()
        self.threshold = verification_threshold(engine)
        options = SourceOptions(fps=camera.fps or defaults.fps, buffer=defaults.buffer, decoder=defaults.decoder)
        # a frame waits for the engine at most until the next one is due
        self.frame_interval_s = 1.0 / options.fps if options.fps > 0 else 0.0
        self.source = FrameSource(camera.url, options, name=camera.name, observer=self.observer, hardware=hardware)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera.name}", daemon=True)
        self._frame_wall = 0.0

    def start(self) -> CameraWatch:
        self.source.start()
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self.source.stop(timeout)
        self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """A snapshot safe to show anyone with a key: the address masked, counts, the source's state."""
        source = asdict(self.source.status())
        source["state"] = str(self.source.state.value)
        return {
            "camera": {"name": self.camera.name, "url": mask(self.camera.url), "gallery": self.gallery},
            "source": source,
            "pipeline": asdict(self.counts) | {"open_tracks": self.book.open_tracks},
        }

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.get(timeout=0.5)
                if frame is None:
                    self._handle(self.book.frame(np.zeros((1, 1, 3), np.uint8), _NO_POINTS, self._age()))
                    continue
                self._frame_wall = frame.wall
                self._look(frame.image, frame.wall)
        except Exception as exc:  # a bug must not kill the thread silently: say it, count it, end the watch
            self.counts.errors += 1
            self.counts.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("camera %s: the watch stopped", self.camera.name)
        finally:
            self._handle(self.book.end_all())

    def _age(self) -> list[Any]:
        """No frame: the tracker still learns that time passes, so tracks of a silent camera end."""
        return self.tracker.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), time.time())

    def _look(self, image: np.ndarray, wall: float) -> None:
        """One frame: its faces (when the engine has a slot for it), tracked, the book's intents acted on."""
        if not self.gate.try_enter(self.frame_interval_s):
            self.counts.shed += 1
            self.observer.frame_shed(self.camera.name)
            return
        start = time.perf_counter()
        try:
            result = self.engine.process(
                [image], embed=False, keep_crops=True, threshold=self.tracker_config.low_score
            )[0]
        finally:
            self.gate.leave()
        faces: list[Face] = result.faces if result.ok else []
        if not result.ok:
            self.counts.errors += 1
            self.counts.last_error = str(result.error)
        self.counts.frames += 1
        self.counts.faces += len(faces)
        self.observer.frame_processed(self.camera.name, len(faces), time.perf_counter() - start)
        boxes = np.array([f.bbox[:4] for f in faces], np.float32).reshape(-1, 4)
        scores = np.array([f.score for f in faces], np.float32)
        points = np.array([f.landmarks for f in faces], np.float32).reshape(-1, 5, 2)
        crops = [f.crop for f in faces if f.crop is not None]
        updates = self.tracker.update(boxes, scores, wall)
        intents = self.book.frame(image, points, updates, crops if len(crops) == len(faces) else None)
        self._handle(intents)
        self.observer.tracks_active(self.camera.name, self.book.open_tracks)

    def _handle(self, intents: Sequence[Intent]) -> None:
        """Act on the book's intents in order; a recognition's answer may bring more."""
        todo = list(intents)
        while todo:
            intent = todo.pop(0)
            if isinstance(intent, Identify):
                todo.extend(self._identify(intent))
            elif isinstance(intent, TrackStarted):
                self.counts.tracks += 1
                self._emit("track_started", intent.track_id, None, None, intent.crop)
            elif isinstance(intent, Identified):
                self.counts.identified += 1
                found = intent.identity
                self._emit("identified", intent.track_id, found.subject, found.score, found.crop)
            elif isinstance(intent, TrackEnded):
                final = intent.identity
                subject, score = (final.subject, final.score) if final else (None, None)
                self._emit("track_ended", intent.track_id, subject, score, intent.best)

    def _identify(self, intent: Identify) -> list[Intent]:
        """The crop's embedding searched in the camera's gallery: its best subject at or above the threshold,
        else nobody (`unknown`) with the best score found; a failure is the book's to count."""
        if not self.gate.try_enter(IDENTIFY_WAIT_S):
            self.counts.recognitions_shed += 1
            return self.book.failed(intent.request)
        try:
            embedding = self._embed(intent.crop.image)
            if embedding is None:
                return self.book.failed(intent.request)
            subject, score = self._search(embedding)
        except Exception as exc:  # the gallery vanished, another recognizer's gallery...: this request fails
            self.counts.errors += 1
            self.counts.last_error = f"recognition: {str(exc).splitlines()[0]}"
            return self.book.failed(intent.request)
        return self.book.recognised(intent.request, subject, score)

    def _embed(self, crop: np.ndarray) -> np.ndarray | None:
        """The crop's embedding, in the engine slot `_identify` took (left here, before the search)."""
        try:
            result = self.engine.embed_crops([crop])[0]
        finally:
            self.gate.leave()
        if not result.ok or not result.faces:
            return None
        return result.faces[0].embedding

    def _search(self, embedding: np.ndarray) -> tuple[str | None, float]:
        if self.store is None or self.gallery is None:
            return None, 0.0
        _, found = self.store.search(self.gallery, embedding[None, :], 1, -1.0)
        if not found or not found[0]:
            return None, 0.0
        subject, score = found[0][0]
        return (subject if score >= self.threshold else None), float(score)

    def _emit(self, kind: str, track_id: int, subject: str | None, score: float | None, crop: Crop | None) -> None:
        event = StreamEvent(
            kind,  # type: ignore[arg-type]  # one of KINDS, checked by StreamEvent
            self.defaults.appliance,
            self.camera.name,
            track_id,
            subject=subject or "unknown",
            score=score,
            gallery=self.gallery,
            bbox=None if crop is None else tuple(float(v) for v in crop.box[:4]),  # type: ignore[arg-type]
            crop=None if crop is None else _jpeg(crop.image),
        )
        self.dispatcher.emit(event)
        self.counts.events += 1
        latency = max(0.0, time.time() - self._frame_wall) if self._frame_wall else 0.0
        self.counts.last_latency_s = round(latency, 3)
        self.observer.event_emitted(self.camera.name, kind, latency)


_NO_POINTS = np.zeros((0, 5, 2), np.float32)


def _jpeg(rgb: np.ndarray) -> bytes | None:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return bytes(data) if ok else None


@dataclass
class StreamRunner:
    """Keeps one watch per camera of the registry, and their status in it (every `interval_s`)."""

    registry: Registry
    make_watch: Callable[[Camera], CameraWatch]
    interval_s: float = 1.0
    watches: dict[str, CameraWatch] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stale: bool = True  # the registry may hold statuses to clear (a previous runner's)

    def run(self) -> None:
        """Until stop(): start the cameras added, stop the ones removed or changed, write every status."""
        while not self._stop.is_set():
            try:
                self.reconcile()
            except Exception:  # the registry file unreadable for a moment: try again next round
                log.exception("streams: could not read the cameras")
            self._stop.wait(self.interval_s)
        for watch in self.watches.values():
            watch.stop()

    def reconcile(self) -> None:
        wanted = {c.name: c for c in self.registry.cameras()}
        for name in [n for n, w in self.watches.items() if wanted.get(n) != w.camera]:
            log.info("streams: camera %s stopped", name)
            self.watches.pop(name).stop()
        for name, camera in wanted.items():
            if name not in self.watches:
                log.info("streams: camera %s watched (%s)", name, mask(camera.url))
                self.watches[name] = self.make_watch(camera).start()
        statuses = {n: w.status() for n, w in self.watches.items()}
        if statuses or self._stale:  # an appliance without cameras writes nothing (a Jetson's eMMC, once a second)
            self.registry.put_status(statuses)
            self._stale = bool(statuses)

    def stop(self) -> None:
        self._stop.set()
