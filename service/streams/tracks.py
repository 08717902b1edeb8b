"""The book of a stream's tracks: each track's best crops, when to recognise it, and who it is.

Recognising every face of every frame would cost a recognizer run per face per frame (at 5 fps, 5 runs a
second per person) and would announce the same person again and again. The book instead keeps each
track's `best_k` crops by quality (service/streams/quality.py) and asks for recognition:

- once, the first time a crop of a confirmed track reaches `min_quality`;
- again only when a crop arrives whose quality beats the last one asked about by `better_by`, and no
  request of the track is in flight;
- at most `max_requests` times per track.

A track's identity is the best answer so far: a gallery subject beats "unknown" (no subject), and between
two of the same kind the higher score wins. `Identified` is emitted when the identity is first set or its
subject changes; a better score for the same subject updates it quietly. A track that ends while a request
is in flight ends once that request is answered (or failed), so `TrackEnded` carries its final identity.

The book calls nothing: it turns the tracker's updates and the recognition answers into intents
(`TrackStarted`, `Identify`, `Identified`, `TrackEnded`) that the stream's worker carries out (embeds the
crop, searches the gallery, publishes events) and answers with `recognised` or `failed`. One book per
stream; not thread-safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facefleet.streams.quality import Quality, assess, face_crop, frontal_score, size_score
from facefleet.streams.tracker import TrackUpdate


@dataclass(frozen=True)
class BookConfig:
    best_k: int = 3  # crops kept per track
    min_quality: float = 0.5  # a crop worse than this is never sent to recognition
    better_by: float = 0.1  # a new request needs a crop this much better (quality) than the last one sent
    max_requests: int = 3  # recognition requests per track


@dataclass(frozen=True)
class Crop:
    """One face of one frame: its aligned 112 x 112 crop (the frame's channel order) and its quality."""

    track_id: int
    time: float
    image: np.ndarray
    box: np.ndarray  # x1, y1, x2, y2 in the frame
    landmarks: np.ndarray  # 5 x 2 in the frame
    quality: Quality


@dataclass(frozen=True)
class Identity:
    """A recognition answer: the gallery subject (None: nobody matched, "unknown"), its score, and the crop."""

    subject: str | None
    score: float
    crop: Crop

    def beats(self, other: Identity | None) -> bool:
        """A subject beats no subject; between two of the same kind, the higher score."""
        if other is None:
            return True
        if (self.subject is None) != (other.subject is None):
            return self.subject is not None
        return self.score > other.score


@dataclass(frozen=True)
class TrackStarted:
    track_id: int
    time: float
    crop: Crop  # the best crop so far


@dataclass(frozen=True)
class Identify:
    """Recognise `crop`; answer with `TrackBook.recognised(request, ...)` or `TrackBook.failed(request)`."""

    track_id: int
    request: int
    crop: Crop


@dataclass(frozen=True)
class Identified:
    track_id: int
    time: float  # the time of the newest frame the book had seen when the answer came
    identity: Identity
    previous: Identity | None  # the identity it replaces (None: the first)


@dataclass(frozen=True)
class TrackEnded:
    track_id: int
    first_seen: float
    last_seen: float
    identity: Identity | None  # None: never recognised (no crop reached min_quality)
    best: Crop | None  # the best crop seen


Intent = TrackStarted | Identify | Identified | TrackEnded


@dataclass
class _Entry:
    track_id: int
    first_seen: float
    last_seen: float
    started: bool = False
    crops: list[Crop] = field(default_factory=list)  # best first, at most best_k
    requests: int = 0
    pending: int | None = None  # the request in flight
    asked: float | None = None  # quality of the last crop sent
    identity: Identity | None = None
    ending: bool = False  # the tracker ended it; waiting for the request in flight


class TrackBook:
    """The per-track book of one stream (the module's docstring says what it decides and why)."""

    def __init__(self, config: BookConfig | None = None) -> None:
        self.config = config or BookConfig()
        self._entries: dict[int, _Entry] = {}
        self._requests: dict[int, int] = {}  # request -> track id
        self._sent: dict[int, Crop] = {}  # request -> the crop it asked about
        self._next_request = 1
        self._now = 0.0

    def identity(self, track_id: int) -> Identity | None:
        entry = self._entries.get(track_id)
        return None if entry is None else entry.identity

    def best_crops(self, track_id: int) -> list[Crop]:
        entry = self._entries.get(track_id)
        return [] if entry is None else list(entry.crops)

    @property
    def open_tracks(self) -> int:
        """Tracks started and not yet reported ended."""
        return sum(e.started for e in self._entries.values())

    def frame(
        self,
        image: np.ndarray,
        landmarks: np.ndarray,
        updates: Sequence[TrackUpdate],
        crops: Sequence[np.ndarray] | None = None,
    ) -> list[Intent]:
        """One frame: `image` as the detector saw it, `landmarks` (N x 5 x 2) of its detections, the tracker's
        `updates` for it, and optionally the detections' aligned crops if the caller made them already."""
        intents: list[Intent] = []
        for update in updates:
            self._now = max(self._now, update.time)
            if update.ended:
                intents.extend(self._end(update))
                continue
            assert update.index is not None  # a seen track's update names its detection
            entry = self._entries.setdefault(update.track_id, _Entry(update.track_id, update.first_seen, update.time))
            entry.last_seen = update.time
            points = np.asarray(landmarks[update.index], dtype=np.float32)
            if self._may_enter(entry, update.box, points, update.score):
                crop_image = crops[update.index] if crops is not None else face_crop(image, points)
                quality = assess(crop_image, update.box, points, update.score)
                self._keep(entry, Crop(update.track_id, update.time, crop_image, update.box, points, quality))
            if update.started and not entry.started:
                entry.started = True
                intents.append(TrackStarted(update.track_id, update.time, entry.crops[0]))
            intents.extend(self._maybe_identify(entry))
        return intents

    def recognised(self, request: int, subject: str | None, score: float) -> list[Intent]:
        """The answer to an `Identify`: `subject` the gallery's match (None: nobody above the threshold) and
        its score. Answers to requests the book no longer knows (a stream restarted) are ignored."""
        entry = self._answered(request)
        if entry is None:
            self._sent.pop(request, None)
            return []
        found = Identity(subject, float(score), self._sent.pop(request))
        previous = entry.identity
        intents: list[Intent] = []
        if found.beats(previous):
            entry.identity = found
            if previous is None or previous.subject != subject:
                intents.append(Identified(entry.track_id, self._now, found, previous))
        return intents + self._after_answer(entry)

    def failed(self, request: int) -> list[Intent]:
        """A request that could not be answered (the engine refused the crop, the gallery is gone): it still
        counts against `max_requests`; a clearly better crop may ask again."""
        entry = self._answered(request)
        self._sent.pop(request, None)
        return [] if entry is None else self._after_answer(entry)

    def end_all(self) -> list[Intent]:
        """Every started track ended now (the stream stopped), requests in flight abandoned."""
        intents: list[Intent] = [self._ended(e) for e in self._entries.values() if e.started]
        self._entries.clear()
        self._requests.clear()
        self._sent.clear()
        return intents

    # --- internals

    def _may_enter(self, entry: _Entry, box: np.ndarray, landmarks: np.ndarray, score: float) -> bool:
        """Whether this face could be one of the track's best crops: its quality with a perfect sharpness (read
        from the box and landmarks alone, in microseconds) beats the worst kept. Aligning and the Laplacian
        (about 0.25 ms a face) are spent only on faces that pass."""
        if len(entry.crops) < self.config.best_k:
            return True
        bound = Quality(size_score(float(box[2] - box[0])), 1.0, frontal_score(landmarks), float(np.clip(score, 0, 1)))
        return bound.score > entry.crops[-1].quality.score

    def _keep(self, entry: _Entry, crop: Crop) -> None:
        entry.crops.append(crop)
        entry.crops.sort(key=lambda c: -c.quality.score)
        del entry.crops[self.config.best_k :]

    def _maybe_identify(self, entry: _Entry) -> list[Intent]:
        cfg = self.config
        if not entry.started or entry.pending is not None or entry.requests >= cfg.max_requests or not entry.crops:
            return []
        best = entry.crops[0]
        if best.quality.score < cfg.min_quality:
            return []
        if entry.asked is not None and best.quality.score < entry.asked + cfg.better_by:
            return []
        request = self._next_request
        self._next_request += 1
        entry.pending, entry.asked = request, best.quality.score
        entry.requests += 1
        self._requests[request] = entry.track_id
        self._sent[request] = best
        return [Identify(entry.track_id, request, best)]

    def _answered(self, request: int) -> _Entry | None:
        track_id = self._requests.pop(request, None)
        entry = None if track_id is None else self._entries.get(track_id)
        if entry is None or entry.pending != request:
            return None
        entry.pending = None
        return entry

    def _after_answer(self, entry: _Entry) -> list[Intent]:
        """A request of `entry` was answered: ask again if a clearly better crop came meanwhile, else end it
        if the tracker already did."""
        again = self._maybe_identify(entry)
        if again or not entry.ending:
            return again
        del self._entries[entry.track_id]
        return [self._ended(entry)]

    def _end(self, update: TrackUpdate) -> list[Intent]:
        entry = self._entries.get(update.track_id)
        if entry is None:
            return []
        if not entry.started:  # a tentative track that never got confirmed: noise
            del self._entries[update.track_id]
            return []
        if entry.pending is not None:
            entry.ending = True
            return []
        del self._entries[update.track_id]
        return [self._ended(entry)]

    def _ended(self, entry: _Entry) -> TrackEnded:
        best = entry.crops[0] if entry.crops else None
        return TrackEnded(entry.track_id, entry.first_seen, entry.last_seen, entry.identity, best)
