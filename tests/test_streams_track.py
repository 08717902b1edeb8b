"""Tracking faces across a stream's sampled frames and choosing which crops to recognise (facefleet.streams:
tracker, quality, tracks), on the real detector's boxes and landmarks over the shared photos moved across a
camera-sized frame at 5 fps (cv2.warpAffine), and on the real recognizer's answers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefleet.engine.decode import decode_image
from facefleet.engine.detector import Detections
from facefleet.engine.pipeline import FaceEngine
from facefleet.streams.quality import assess, face_crop, yaw_degrees
from facefleet.streams.tracker import FaceTracker, TrackerConfig, TrackUpdate
from facefleet.streams.tracks import (
    BookConfig,
    Identified,
    Identify,
    Intent,
    TrackBook,
    TrackEnded,
    TrackStarted,
)

DET, REC = "scrfd_2.5g", "mobilefacenet"
STEP = 0.2  # s between sampled frames: 5 fps
FRAME = (960, 720)  # a camera's frame, width x height
GREY = (90, 90, 90)


@pytest.fixture(scope="module")
def engine(engine_factory) -> FaceEngine:
    return engine_factory(DET, REC)


@pytest.fixture(scope="module")
def photo(images_dir: Path):
    cache: dict[str, np.ndarray] = {}

    def read(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = decode_image((images_dir / name).read_bytes())
        return cache[name]

    return read


def place(image: np.ndarray, scale: float, x: float, y: float, size: tuple[int, int] = FRAME) -> np.ndarray:
    """A frame showing `image` scaled by `scale` with its top-left corner at (x, y), on grey."""
    matrix = np.float32([[scale, 0, x], [0, scale, y]])
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_AREA, borderValue=GREY)


def detect(engine: FaceEngine, frame: np.ndarray) -> Detections:
    """The real detector, down to the tracker's low score (ByteTrack's second stage needs those)."""
    return engine.detector.detect([frame], threshold=TrackerConfig().low_score)[0]


def seen_ids(updates: Sequence[TrackUpdate]) -> list[int]:
    return [u.track_id for u in updates if not u.ended]


def test_a_face_moving_a_width_per_frame_and_turning_back_keeps_one_track(engine, photo):
    """A face about 95 px wide moves 90 px per sampled frame (450 px/s), then turns straight back: plain IoU
    (no buffer) loses it at every frame; the buffered IoU and the last-seen box keep one track."""
    xs = [0, 90, 180, 270, 360, 450, 360, 270, 180, 90]
    found = [detect(engine, place(photo("obama.jpg"), 0.4, x, 100)) for x in xs]
    assert all(len(d) == 1 for d in found)

    tracker = FaceTracker()
    frames = [tracker.update(d.boxes, d.scores, k * STEP) for k, d in enumerate(found)]
    assert all(len(f) == 1 and not f[0].ended for f in frames)
    assert {u.track_id for f in frames for u in f} == {1}
    assert [u.started for f in frames for u in f] == [False, True] + [False] * 8  # confirmed on its 2nd hit
    assert [u.confirmed for f in frames for u in f] == [False] + [True] * 9
    assert all(f[0].first_seen == 0.0 and f[0].index == 0 for f in frames)
    assert tracker.active == 1
    (ended,) = tracker.end_all()
    assert ended.ended and ended.confirmed and ended.track_id == 1 and ended.time == pytest.approx(9 * STEP)

    plain = FaceTracker(TrackerConfig(buffer=0.0))
    ids = [seen_ids(plain.update(d.boxes, d.scores, k * STEP)) for k, d in enumerate(found)]
    assert len({i for f in ids for i in f}) == len(xs)  # why the buffer: every frame a new track


def test_the_faces_of_a_group_photo_keep_their_ids_while_the_camera_pans_and_zooms(engine, photo):
    """The 29 faces of the Solvay photo (about 45 px wide) while the view pans 40 px and zooms 3 % a frame:
    each face, found again by where it is in the photo, keeps the id it got in the first frame."""
    solvay = photo("solvay_conference_1927.png")
    tracker = FaceTracker()
    owner: dict[int, np.ndarray] = {}  # track id -> the face's centre in the photo's own pixels
    kept = 0
    for k in range(8):
        scale, x, y = 0.55 * (1 + 0.03 * k), -40.0 * k, -15.0 * k
        found = detect(engine, place(solvay, scale, x, y, (1600, 1100)))
        assert len(found) >= 25
        updates = tracker.update(found.boxes, found.scores, k * STEP)
        assert not [u for u in updates if u.ended]
        for u in updates:
            centre = ((u.box[0:2] + u.box[2:4]) / 2 - (x, y)) / scale
            if k == 0:
                owner[u.track_id] = centre
                continue
            width = float(u.box[2] - u.box[0]) / scale
            nearest = min(owner, key=lambda t: float(np.linalg.norm(owner[t] - centre)))
            assert np.linalg.norm(owner[nearest] - centre) < width / 3  # a face of the first frame...
            assert u.track_id == nearest  # ...under the id it had there
            kept += 1
    assert len(owner) == 29 and kept >= 7 * 25
    assert tracker.active == 29


def test_a_face_gone_shorter_than_lost_s_keeps_its_track_and_longer_gets_a_new_one(engine, photo):
    config = TrackerConfig()
    assert config.lost_s == 2.0  # the numbers below are built on it
    face = [detect(engine, place(photo("person_b_1.jpg"), 0.35, 300 + 20 * k, 150)) for k in range(3)]
    empty = detect(engine, np.full((FRAME[1], FRAME[0], 3), GREY, np.uint8))
    assert all(len(d) == 1 for d in face) and len(empty) == 0

    tracker = FaceTracker(config)
    t = 0.0
    timeline: list[tuple[float, list[TrackUpdate]]] = []

    def show(found: Detections) -> None:
        nonlocal t
        timeline.append((t, tracker.update(found.boxes, found.scores, t)))
        t += STEP

    for d in face:
        show(d)
    for _ in range(6):  # 1.2 s away
        show(empty)
    show(face[2])  # back where it left
    assert [u.track_id for _, us in timeline for u in us] == [1, 1, 1, 1]
    assert not [u for _, us in timeline for u in us if u.ended]

    left_at = t - STEP
    for _ in range(12):  # 2.4 s away: ended once 2 s have passed
        show(empty)
    ended = [(when, u) for when, us in timeline for u in us if u.ended]
    assert len(ended) == 1
    when, gone = ended[0]
    assert gone.track_id == 1 and gone.confirmed and gone.time == pytest.approx(left_at)
    assert left_at + config.lost_s <= when < left_at + config.lost_s + STEP + 1e-9
    show(face[2])
    show(face[2])
    assert [(u.track_id, u.started) for u in timeline[-2][1] + timeline[-1][1]] == [(2, False), (2, True)]


def test_low_score_detections_continue_a_track_but_never_start_one(engine, photo):
    found = [detect(engine, place(photo("obama.jpg"), 0.4, 100 + 40 * k, 100)) for k in range(4)]
    tracker = FaceTracker()
    for k in range(2):
        tracker.update(found[k].boxes, found[k].scores, k * STEP)
    weak = np.array([0.45], np.float32)  # a turned or blurred face: between low_score and high_score
    assert seen_ids(tracker.update(found[2].boxes, weak, 2 * STEP)) == [1]
    fresh = FaceTracker()
    assert fresh.update(found[3].boxes, weak, 0.0) == []  # nothing to continue: ignored
    assert fresh.update(found[3].boxes, np.array([0.2], np.float32), 0.2) == []  # below low_score: ignored


def test_quality_parts_order_crops_as_recognition_needs_them(engine, photo):
    def quality(image: np.ndarray):
        (found,) = engine.detector.detect([image])
        assert len(found) == 1
        crop = face_crop(image, found.landmarks[0])
        assert crop.shape == (112, 112, 3)
        return assess(crop, found.boxes[0], found.landmarks[0], float(found.scores[0]))

    sharp = quality(photo("obama.jpg"))
    blurred = quality(cv2.GaussianBlur(photo("obama.jpg"), (0, 0), 6))
    small = quality(place(photo("obama.jpg"), 0.17, 300, 200))
    turned = quality(photo("obama2.jpg"))
    mirrored = quality(np.ascontiguousarray(photo("obama2.jpg")[:, ::-1]))
    for q in (sharp, blurred, small, turned, mirrored):
        parts = (q.size, q.sharpness, q.frontal, q.detection, q.score)
        assert all(0.0 <= p <= 1.0 for p in parts), q
    assert sharp.size == 1.0 and sharp.sharpness > 0.9 and sharp.frontal > 0.9 and sharp.score > 0.9
    assert blurred.sharpness < sharp.sharpness - 0.3 and blurred.size == 1.0 and blurred.score < sharp.score
    assert small.size < 0.5 and small.score < sharp.score
    assert turned.frontal < sharp.frontal - 0.3 and turned.score < sharp.score
    assert mirrored.frontal == pytest.approx(turned.frontal, abs=0.1)  # yaw's size, not its side


def test_yaw_reads_the_side_a_face_turns_to(engine, photo):
    (found,) = engine.detector.detect([photo("obama2.jpg")])
    (flipped,) = engine.detector.detect([np.ascontiguousarray(photo("obama2.jpg")[:, ::-1])])
    yaw, other = yaw_degrees(found.landmarks[0]), yaw_degrees(flipped.landmarks[0])
    assert abs(yaw) > 15 and np.sign(yaw) == -np.sign(other)
    assert yaw_degrees(np.zeros((5, 2))) == pytest.approx(-42.3, abs=0.1)  # degenerate: read as turned


class Recognition:
    """The worker's side of the book, for real: embeds the asked crop with the recognizer and searches a
    gallery of one photo per subject by cosine similarity against the recognizer's threshold."""

    def __init__(self, engine: FaceEngine, gallery: dict[str, np.ndarray]) -> None:
        self.engine = engine
        assert engine.recognizer is not None
        self.threshold = engine.recognizer.threshold
        self.names = list(gallery)
        self.vectors = np.stack([self.embed(gallery[n], photo=True) for n in self.names])
        self.asked: list[Identify] = []

    def embed(self, image: np.ndarray, photo: bool = False) -> np.ndarray:
        """A photo's largest face, or an aligned crop (what the book asks about), as a unit vector."""
        (result,) = self.engine.process([image], limit_faces=1) if photo else self.engine.embed_crops([image])
        assert result.faces and result.faces[0].embedding is not None
        vector: np.ndarray = result.faces[0].embedding
        return vector / np.linalg.norm(vector)

    def answer(self, book: TrackBook, intents: list[Intent]) -> list[Intent]:
        """Carry out the Identify intents (and those their answers bring), returning every intent seen."""
        done: list[Intent] = []
        todo = list(intents)
        while todo:
            intent = todo.pop(0)
            done.append(intent)
            if isinstance(intent, Identify):
                self.asked.append(intent)
                scores = self.vectors @ self.embed(intent.crop.image)
                best = int(np.argmax(scores))
                subject = self.names[best] if scores[best] >= self.threshold else None
                todo.extend(book.recognised(intent.request, subject, float(scores[best])))
        return done


def stream(engine, book, tracker, recognition, frames: Sequence[np.ndarray], start: float = 0.0) -> list[Intent]:
    intents: list[Intent] = []
    for k, frame in enumerate(frames):
        found = detect(engine, frame)
        updates = tracker.update(found.boxes, found.scores, start + k * STEP)
        intents += recognition.answer(book, book.frame(frame, found.landmarks, updates))
    return intents


@pytest.mark.slow  # two streams of frames through the detector and the recognizer
def test_each_person_is_recognised_once_per_track_and_the_track_ends_with_its_identity(engine, photo):
    recognition = Recognition(engine, {"macron": photo("person_a_1.jpg"), "obama": photo("impostor_1.jpg")})
    tracker, book = FaceTracker(), TrackBook()
    walk = [place(photo("person_a_2.jpg"), 0.3, 100 + 60 * k, 120) for k in range(6)]
    intents = stream(engine, book, tracker, recognition, walk)
    kinds = [type(i).__name__ for i in intents]
    assert kinds == ["TrackStarted", "Identify", "Identified"]  # 6 frames of one steady face: one request
    identified = intents[2]
    assert isinstance(identified, Identified) and identified.identity.subject == "macron"
    assert identified.previous is None and identified.identity.score >= recognition.threshold
    assert book.identity(1) == identified.identity and len(book.best_crops(1)) == 3
    qualities = [c.quality.score for c in book.best_crops(1)]
    assert qualities == sorted(qualities, reverse=True)

    stranger = [place(photo("biden.jpg"), 0.3, 500 + 30 * k, 20) for k in range(4)]
    more = stream(engine, book, tracker, recognition, stranger, start=6 * STEP)
    new = [i for i in more if not isinstance(i, TrackEnded)]
    assert [type(i).__name__ for i in new] == ["TrackStarted", "Identify", "Identified"]
    unknown = new[2]
    assert isinstance(unknown, Identified) and unknown.track_id == 2 and unknown.identity.subject is None

    gone = stream(engine, book, tracker, recognition, [np.full((FRAME[1], FRAME[0], 3), GREY, np.uint8)] * 12, 2.0)
    ended = sorted((i for i in more + gone if isinstance(i, TrackEnded)), key=lambda e: e.track_id)
    assert [(e.track_id, e.identity.subject if e.identity else "-") for e in ended] == [(1, "macron"), (2, None)]
    assert ended[0].first_seen == 0.0 and ended[0].best is not None and book.open_tracks == 0
    assert len(recognition.asked) == 2


@pytest.mark.slow  # two streams of frames through the detector and the recognizer
def test_a_clearly_better_crop_is_recognised_again_at_most_max_requests_times(engine, photo):
    """A person far away and soft walks up to the camera (the face grows from about 55 to 170 px in 1 s): the
    track is asked about again each time a clearly better crop comes, never twice for the same quality, and
    with max_requests 1 only once."""
    face = photo("person_b_2.jpg")
    h, w = face.shape[:2]

    def at(scale: float) -> np.ndarray:  # the photo's centre stays at the frame's
        return place(face, scale, FRAME[0] / 2 - scale * w / 2, FRAME[1] / 2 - scale * h / 2)

    far = [cv2.GaussianBlur(at(0.2), (0, 0), 1.2)] * 3
    walk = [at(s) for s in (0.26, 0.34, 0.44, 0.55, 0.6, 0.6, 0.6)]
    config = BookConfig(min_quality=0.3)
    far_q = [q.score for q in _qualities(engine, far)]
    near_q = [q.score for q in _qualities(engine, walk[-3:])]
    assert min(far_q) >= config.min_quality and min(near_q) > max(far_q) + config.better_by

    recognition = Recognition(engine, {"ardern": photo("person_b_1.jpg")})
    intents = stream(engine, TrackBook(config), FaceTracker(), recognition, far + walk)
    asked = [i for i in intents if isinstance(i, Identify)]
    assert {i.track_id for i in intents if not isinstance(i, TrackEnded)} == {1}  # one track all along
    assert 2 <= len(asked) <= config.max_requests
    assert asked[0].crop.time <= 1 * STEP  # asked as the track is confirmed (its 2nd frame), its best crop then
    for before, after in itertools.pairwise(asked):
        assert after.crop.quality.score >= before.crop.quality.score + config.better_by
    assert asked[-1].crop.time < 8 * STEP  # the last frames, no better than each other, ask nothing more
    identified = [i for i in intents if isinstance(i, Identified)]
    assert identified and identified[-1].identity.subject == "ardern"

    once = Recognition(engine, {"ardern": photo("person_b_1.jpg")})
    intents = stream(engine, TrackBook(BookConfig(min_quality=0.3, max_requests=1)), FaceTracker(), once, far + walk)
    assert len([i for i in intents if isinstance(i, Identify)]) == 1


def _qualities(engine, frames):
    """The quality of the one face of each frame."""
    out = []
    for frame in frames:
        found = detect(engine, frame)
        assert len(found) == 1
        out.append(assess(face_crop(frame, found.landmarks[0]), *_face(found)))
    return out


def _face(found: Detections):
    return found.boxes[0], found.landmarks[0], float(found.scores[0])


def test_the_book_waits_for_answers_and_ends_a_track_only_once_it_has_its_final_identity(engine, photo):
    """The book's rules on one real face, driven by hand-made tracker updates: one request in flight per
    track; a better crop meanwhile is asked about when the answer comes; a track ended while a request is in
    flight ends once answered; a failed request counts; a tentative track that ends was noise."""
    image = photo("obama.jpg")
    (found,) = engine.detector.detect([image])
    box, _, score = _face(found)
    soft = cv2.GaussianBlur(image, (0, 0), 5)
    landmarks = found.landmarks[:1]

    def seen(t: float, started: bool = False, track: int = 1, confirmed: bool = True) -> TrackUpdate:
        return TrackUpdate(track, 0, box, score, t, 0.0, started=started, confirmed=confirmed)

    def ended(t: float, track: int = 1, confirmed: bool = True) -> TrackUpdate:
        return TrackUpdate(track, None, box, score, t, 0.0, confirmed=confirmed, ended=True)

    book = TrackBook(BookConfig(min_quality=0.3, better_by=0.05, max_requests=3))
    assert book.frame(soft, landmarks, [seen(0.0, confirmed=False)]) == []  # tentative: nothing yet
    first = book.frame(soft, landmarks, [seen(0.2, started=True)])
    assert [type(i) for i in first] == [TrackStarted, Identify]
    request = first[1]
    assert isinstance(request, Identify)
    assert book.frame(image, landmarks, [seen(0.4)]) == []  # better, but a request is in flight
    assert book.frame(image, landmarks, [ended(0.4)]) == []  # ends once answered
    answered = book.recognised(request.request, None, 0.1)
    assert [type(i) for i in answered] == [Identified, Identify]  # unknown so far; the sharp crop is asked
    again = answered[1]
    assert isinstance(again, Identify) and again.crop.quality.score > request.crop.quality.score
    final = book.recognised(again.request, "obama", 0.8)
    assert [type(i) for i in final] == [Identified, TrackEnded]
    last = final[1]
    assert isinstance(last, TrackEnded) and last.identity is not None and last.identity.subject == "obama"
    assert last.last_seen == 0.4 and book.open_tracks == 0
    assert book.recognised(again.request, "obama", 0.9) == []  # a late or repeated answer is ignored

    book = TrackBook(BookConfig(min_quality=0.3, better_by=0.05, max_requests=2))
    (ask,) = [i for i in book.frame(soft, landmarks, [seen(0.0, started=True)]) if isinstance(i, Identify)]
    assert book.failed(ask.request) == []
    (retry,) = book.frame(image, landmarks, [seen(0.2)])  # clearly better: asked again
    assert isinstance(retry, Identify)
    assert book.recognised(retry.request, "obama", 0.7)[0].identity.subject == "obama"  # type: ignore[union-attr]
    assert book.recognised(retry.request, "biden", 0.9) == []
    assert [type(i) for i in book.end_all()] == [TrackEnded]

    book = TrackBook()
    assert book.frame(image, landmarks, [seen(0.0, track=7, confirmed=False)]) == []
    assert book.frame(image, landmarks, [ended(0.0, track=7, confirmed=False)]) == []  # noise: no events
    assert book.open_tracks == 0 and book.best_crops(7) == []
