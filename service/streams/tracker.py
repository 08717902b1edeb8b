"""Faces followed across a stream's sampled frames: each detection gets a stable track id.

ByteTrack's association (Zhang et al., ECCV 2022), written here in numpy with `lap` for the assignment:

1. every track's box is predicted to the frame's time by a constant-velocity Kalman filter on the box's
   centre and size (state cx, cy, w, h and their velocities; noise relative to the face's height, per
   second, so a variable or low sampling rate only changes `dt`);
2. detections scoring `high_score` or more are matched to the tracks seen in the previous frame (confirmed
   or tentative), then those scoring between `low_score` and `high_score` (a turned or blurred face) to
   the confirmed ones of these still unmatched, then the high-score detections left to the tracks missing
   for a while. ByteTrack matches its lost tracks in the first stage and its tentative ones last: at 5 fps
   a lost track coasting on its velocity then takes a new face walking in next to where it went, from the
   tentative track that face had already started; continuity first, revival second. A tentative track
   (seen fewer than `min_hits` times) missing once is noise and ends;
3. a high-score detection left over starts a tentative track when it scores `new_track_score` or more.

The cost is 1 - IoU of *buffered* boxes (C-BIoU, Yang et al., WACV 2023): both boxes grow by `buffer` of
their width and height on every side before the IoU, so a face that moved most of its width between two
frames 200 ms apart (5 fps) still overlaps its prediction, which plain IoU (ByteTrack's) would miss until
the Kalman filter has learnt a velocity. A track's similarity to a detection is the better of its predicted
box's and its last seen box's: a face that stops or turns back between two sampled frames is far from
where its velocity says, but near where it was. The optimal assignment comes from `lap.lapjv` (the
Jonker-Volgenant solver ByteTrack itself uses).

Why not a packaged tracker (checked in December 2026): `supervision` (ByteTrack) requires matplotlib and
scipy at every version, `opencv-python` (not headless) from 0.24 to 0.29 and PyAV from 0.30; `trackers`
requires numpy >= 2 and `opencv-python`; `norfair` (2.3.0) and `motpy` (0.0.10, 2021, unmaintained) bring
scipy and filterpy, which requires matplotlib (1.4.5, the one norfair allows, and 2.0.0 alike). The
appliance runs on a Jetson with numpy < 2 and opencv-python-headless, without matplotlib. `lap` 0.5.13
(February 2026) needs numpy only, ships cp310 aarch64 wheels (1.7 MB) and works on numpy 1.26; scipy's
`linear_sum_assignment` would do the same job from a 35 MB wheel, and scipy is no runtime dependency.

A track ends once it has been missing for `lost_s` seconds *and* `lost_frames` frames: time, because
streams are sampled at their own rate; frames too, so that a stall of the pipeline (one frame after a
long gap) does not end every track before its faces had a frame in which to be found again.
"""

from __future__ import annotations

from dataclasses import dataclass

import lap
import numpy as np

# Indices of the Kalman state: centre x, centre y, width, height, then their velocities (px / s).
_DIM = 4
_MIN_SIZE = 1.0  # px: a predicted width or height never falls below it


@dataclass(frozen=True)
class TrackerConfig:
    """The tracker's knobs; the defaults suit faces in streams sampled at about 5 fps."""

    high_score: float = 0.6  # first-stage detections; below it a detection only continues a seen track
    low_score: float = 0.3  # detections below it are ignored
    new_track_score: float = 0.7  # a track starts only from a detection this sure (ByteTrack: high + 0.1)
    match_iou: float = 0.2  # least buffered IoU for a match, first and tentative stages
    low_match_iou: float = 0.35  # least buffered IoU for the low-score stage (stricter, as ByteTrack's)
    buffer: float = 0.5  # each box grows by this fraction of its width and height on every side
    min_hits: int = 2  # detections before a track is confirmed (and reported started)
    lost_s: float = 2.0  # a track missing this long (and lost_frames frames) ends
    lost_frames: int = 3
    coast_s: float = 1.0  # a missing track's predicted box follows its velocity this long, then stays put
    measure_std: float = 0.05  # detector's box noise, in face heights
    accel_std: float = 2.0  # change of velocity, face heights per s^2 (a head turns and stops quickly)
    init_velocity_std: float = 1.0  # a new track's unknown velocity, face heights per s


@dataclass(frozen=True)
class TrackUpdate:
    """One track in one frame: a detection given its track id, or a track that ended.

    `index` is the detection's row in the arrays passed to `update` (None for an ended track); `box` and
    `score` are that detection's (an ended track's last ones). `started` is True on the update that
    confirms a track: the first one a consumer should open the track with. Updates of a tentative track
    (`confirmed` False) carry detections that may be noise; one that ends unconfirmed was noise."""

    track_id: int
    index: int | None
    box: np.ndarray  # x1, y1, x2, y2
    score: float
    time: float  # the frame's time (an ended track: the time it was last seen)
    first_seen: float
    started: bool = False
    confirmed: bool = True
    ended: bool = False


@dataclass
class _Track:
    track_id: int
    mean: np.ndarray  # 8: cx, cy, w, h, vx, vy, vw, vh
    cov: np.ndarray  # 8 x 8
    box: np.ndarray  # the last detection's box
    score: float
    first_seen: float
    last_seen: float
    hits: int = 1
    missed: int = 0  # frames since last seen
    confirmed: bool = False

    def update(self, index: int, started: bool) -> TrackUpdate:
        """This track seen in this frame as detection `index`."""
        return TrackUpdate(
            self.track_id, index, self.box, self.score, self.last_seen, self.first_seen, started, self.confirmed
        )

    def ended(self) -> TrackUpdate:
        return TrackUpdate(
            self.track_id, None, self.box, self.score, self.last_seen, self.first_seen, False, self.confirmed, True
        )


def _to_state(boxes: np.ndarray) -> np.ndarray:
    """xyxy (N x 4) -> cx, cy, w, h (N x 4)."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    return np.hstack([boxes[:, 0:2] + wh / 2, wh])


def _to_boxes(state: np.ndarray) -> np.ndarray:
    """cx, cy, w, h (N x >= 4) -> xyxy (N x 4)."""
    half = state[:, 2:4] / 2
    return np.hstack([state[:, 0:2] - half, state[:, 0:2] + half])


def buffered_iou(a: np.ndarray, b: np.ndarray, buffer: float) -> np.ndarray:
    """IoU (len(a) x len(b)) of xyxy boxes each grown by `buffer` of its own width and height on every side."""

    def grow(boxes: np.ndarray) -> np.ndarray:
        pad = (boxes[:, 2:4] - boxes[:, 0:2]) * buffer
        return np.hstack([boxes[:, 0:2] - pad, boxes[:, 2:4] + pad])

    ga, gb = grow(a), grow(b)
    lt = np.maximum(ga[:, None, 0:2], gb[None, :, 0:2])
    rb = np.minimum(ga[:, None, 2:4], gb[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (ga[:, 2:4] - ga[:, 0:2]).prod(axis=1)
    area_b = (gb[:, 2:4] - gb[:, 0:2]).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    iou: np.ndarray = inter / np.maximum(union, 1e-9)
    return iou


def _assign(iou: np.ndarray, least: float) -> list[tuple[int, int]]:
    """Optimal (row, column) pairs minimising 1 - IoU, each pair's IoU at least `least`."""
    if iou.size == 0:
        return []
    cost = np.ascontiguousarray(1.0 - iou, dtype=np.float64)
    _, rows, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.0 - least + 1e-9)
    return [(int(r), int(c)) for r, c in enumerate(rows) if c >= 0 and iou[r, c] >= least]


class FaceTracker:
    """Gives each face detection of a stream a stable track id (the module's docstring says how).

    One tracker per stream; not thread-safe (a stream's frames are handled in order by one worker)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._time: float | None = None

    @property
    def active(self) -> int:
        """Confirmed tracks alive now (seen or missing, not yet ended)."""
        return sum(t.confirmed for t in self._tracks)

    def update(self, boxes: np.ndarray, scores: np.ndarray, frame_time: float) -> list[TrackUpdate]:
        """One frame's detections (N x 4 xyxy boxes in pixels, N scores) at `frame_time` (seconds, any
        origin, never decreasing). Returns an update per detection that belongs to a track (ignored
        low-score detections get none), in detection order, then one per track that ended."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        if self._time is not None and frame_time < self._time:
            raise ValueError(f"frame time {frame_time} is before the previous frame's ({self._time})")
        dt = 0.0 if self._time is None else frame_time - self._time
        self._time = frame_time
        cfg = self.config
        self._predict(dt, frame_time)
        predicted = _to_boxes(np.array([t.mean for t in self._tracks])) if self._tracks else np.zeros((0, 4))
        last = np.array([t.box for t in self._tracks]).reshape(-1, 4)

        high = np.flatnonzero(scores >= cfg.high_score)
        low = np.flatnonzero((scores >= cfg.low_score) & (scores < cfg.high_score))
        recent = [i for i, t in enumerate(self._tracks) if t.missed == 0]  # seen in the previous frame
        lost = [i for i, t in enumerate(self._tracks) if t.missed > 0]  # confirmed: a tentative one never misses
        matches: list[tuple[int, int]] = []  # (track position, detection index)

        def stage(tracks: list[int], dets: np.ndarray, least: float) -> tuple[list[int], np.ndarray]:
            if not tracks or not len(dets):
                return tracks, dets
            iou = np.maximum(
                buffered_iou(predicted[tracks], boxes[dets], cfg.buffer),
                buffered_iou(last[tracks], boxes[dets], cfg.buffer),
            )
            pairs = _assign(iou, least)
            matches.extend((tracks[r], int(dets[c])) for r, c in pairs)
            used_r, used_c = {r for r, _ in pairs}, {c for _, c in pairs}
            rest = np.array([d for c, d in enumerate(dets) if c not in used_c], dtype=np.int64)
            return [t for r, t in enumerate(tracks) if r not in used_r], rest

        left_recent, left_high = stage(recent, high, cfg.match_iou)
        stage([i for i in left_recent if self._tracks[i].confirmed], low, cfg.low_match_iou)
        _, left_high = stage(lost, left_high, cfg.match_iou)

        self._correct([self._tracks[p] for p, _ in matches], boxes[[d for _, d in matches]])
        updates: list[TrackUpdate] = []
        matched = set()
        for position, d in matches:
            matched.add(position)
            updates.append(self._seen(self._tracks[position], boxes[d], float(scores[d]), d, frame_time))
        born: list[_Track] = []
        for d in left_high[scores[left_high] >= cfg.new_track_score]:
            born.append(self._start(boxes[d], float(scores[d]), frame_time))
            updates.append(born[-1].update(int(d), started=born[-1].confirmed))
        updates.sort(key=lambda u: -1 if u.index is None else u.index)

        kept: list[_Track] = []
        for position, track in enumerate(self._tracks):
            if position in matched:
                kept.append(track)
                continue
            track.missed += 1
            gone = frame_time - track.last_seen >= cfg.lost_s and track.missed >= cfg.lost_frames
            if gone or not track.confirmed:  # a tentative track missing once was noise
                updates.append(track.ended())
            else:
                kept.append(track)
        self._tracks = kept + born
        return updates

    def end_all(self) -> list[TrackUpdate]:
        """Every live track as ended (the stream stopped): the updates `update` would have given."""
        ended = [t.ended() for t in self._tracks]
        self._tracks = []
        return ended

    def _start(self, box: np.ndarray, score: float, now: float) -> _Track:
        cfg = self.config
        z = _to_state(box[None, :])[0]
        h = max(z[3], _MIN_SIZE)
        cov = np.diag([(cfg.measure_std * h) ** 2] * _DIM + [(cfg.init_velocity_std * h) ** 2] * _DIM)
        track = _Track(self._next_id, np.concatenate([z, np.zeros(_DIM)]), cov, box.copy(), score, now, now)
        self._next_id += 1
        track.confirmed = cfg.min_hits <= 1
        return track

    def _correct(self, tracks: list[_Track], boxes: np.ndarray) -> None:
        """The Kalman measurement update of these tracks with their detections' boxes, in one batched step."""
        if not tracks:
            return
        means = np.array([t.mean for t in tracks])
        covs = np.array([t.cov for t in tracks])
        z = _to_state(boxes)
        r = (self.config.measure_std * np.maximum(means[:, 3], _MIN_SIZE)) ** 2
        s = covs[:, :_DIM, :_DIM] + r[:, None, None] * np.eye(_DIM)  # H P H^T + R: H takes the first 4 rows
        gain = np.linalg.solve(s, covs[:, :_DIM, :]).transpose(0, 2, 1)  # P H^T S^-1 (S and P symmetric)
        means = means + np.einsum("nij,nj->ni", gain, z - means[:, :_DIM])
        covs = covs - gain @ covs[:, :_DIM, :]  # (I - K H) P
        for track, mean, cov in zip(tracks, means, covs, strict=True):
            track.mean, track.cov = mean, cov

    def _seen(self, track: _Track, box: np.ndarray, score: float, index: int, now: float) -> TrackUpdate:
        """The track's bookkeeping for this frame's detection (its Kalman update is `_correct`'s)."""
        track.box, track.score, track.last_seen = box.copy(), score, now
        track.hits += 1
        track.missed = 0
        started = not track.confirmed and track.hits >= self.config.min_hits
        track.confirmed = track.confirmed or started
        return track.update(index, started)

    def _predict(self, dt: float, now: float) -> None:
        """Every track's state moved on by `dt` seconds, in one batched step (white-noise acceleration)."""
        if not self._tracks or dt <= 0:
            return
        cfg = self.config
        means = np.array([t.mean for t in self._tracks])
        covs = np.array([t.cov for t in self._tracks])
        coasting = np.array([now - t.last_seen > cfg.coast_s for t in self._tracks])
        means[coasting, _DIM:] = 0.0  # long missing: its last velocity says nothing about where it is
        f = np.eye(2 * _DIM)
        f[:_DIM, _DIM:] = np.eye(_DIM) * dt
        block = np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
        unit_q = np.kron(block, np.eye(_DIM))
        q = (cfg.accel_std * np.maximum(means[:, 3], _MIN_SIZE)) ** 2
        means = means @ f.T
        means[:, 2:4] = np.maximum(means[:, 2:4], _MIN_SIZE)
        covs = f @ covs @ f.T + q[:, None, None] * unit_q
        for track, mean, cov in zip(self._tracks, means, covs, strict=True):
            track.mean, track.cov = mean, cov
