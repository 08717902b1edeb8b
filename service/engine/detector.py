"""Face detection: letterbox, batched model runs, family decoding, NMS, back to image pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefleet.engine import families
from facefleet.engine.nms import nms
from facefleet.engine.runner import Chain, ChainedModel
from facefleet.engine.runtime import OpenedSession, SessionSlot
from facefleet.engine.shapes import Placement, letterbox, plan, to_blob
from facefleet.models.manifest import ModelSpec
from facefleet.models.thresholds import det_threshold
from facefleet.settings import Settings
from facefleet.timing import Timings, maybe

# Candidates per face kept for NMS (a face has about 6 above 0.5 with SCRFD): the cap bounds NMS's
# IoU matrix, which at threshold 0 would otherwise hold every anchor (8400 at 640 x 640: 11 s, GBs).
CANDIDATES_PER_FACE = 8


@dataclass
class Detections:
    """Faces of one image, best score first, in the original image's pixels."""

    boxes: np.ndarray  # K x 4: x1, y1, x2, y2
    scores: np.ndarray  # K
    landmarks: np.ndarray  # K x 5 x 2: eyes, nose, mouth corners
    scale: float = 1.0  # the image's resize factor into the detector's input (InsightFace-REST's `scale`)
    numbers: np.ndarray | None = None  # K: each face's num_det once filtered (None: 0..K-1, detection order)
    # K: each face's mask score, from a detector that scores masks itself (RetinaFace mnet_cov2); else None
    mask: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def num_det(self) -> np.ndarray:
        """Each face's number as /extract shows it: its place in detection order unless a filter renumbered it."""
        return np.arange(len(self)) if self.numbers is None else self.numbers

    def take(self, keep: np.ndarray, numbers: np.ndarray | None = None) -> Detections:
        """The faces at these indices, in this order, every per-face array (the mask score too) kept in step;
        `numbers` their num_det (None: as they were)."""
        mask = None if self.mask is None else self.mask[keep]
        kept = self.num_det()[keep] if numbers is None else numbers
        return Detections(self.boxes[keep], self.scores[keep], self.landmarks[keep], self.scale, kept, mask)


def batch_limit(spec: ModelSpec, opened: OpenedSession, settings: Settings) -> int:
    """Images per detector run: FACEFLEET_DET_BATCH_SIZE when the file takes a batch (a dynamic
    batch axis and a batched output layout), else 1."""
    batchable = opened.input_shape[0] is None and spec.layout != "scrfd_flat"
    return settings.engine.det_batch_size if batchable else 1


class Detector(ChainedModel):
    """One detection model. Its runs go through `chain` (service/engine/runner.py), built before the
    model and never replaced; without one, the bare session."""

    def __init__(
        self, spec: ModelSpec, opened: OpenedSession | SessionSlot, settings: Settings, chain: Chain | None = None
    ) -> None:
        super().__init__(spec, opened, settings, chain)
        opened = self.slot.opened
        names = [o.name for o in opened.session.get_outputs()]
        self._decode = families.decoder(spec, names)
        fixed_h, fixed_w = opened.input_shape[2:4]
        self.policy: str
        self.det_size: tuple[int, int]
        if fixed_h and fixed_w:
            # A fixed-input file (or TensorRT copy) dictates geometry whatever the policy says.
            self.policy, self.det_size = "fixed", (fixed_w, fixed_h)
        else:
            self.policy, self.det_size = settings.engine.shape_policy, settings.engine.det_size
        self.batched_output = spec.layout != "scrfd_flat"
        self.batchable = opened.input_shape[0] is None and self.batched_output
        self.max_batch = batch_limit(spec, opened, settings)

    @property
    def threshold(self) -> float:
        """The score threshold a call without its own uses: FACEFLEET_DET_THRESH, else this model's."""
        return det_threshold(self.spec, self.settings.engine.det_threshold)

    def detect(
        self, images: list[np.ndarray], threshold: float | None = None, timings: Timings | None = None
    ) -> list[Detections]:
        """Detect faces in every image; images whose inputs share a shape share model runs."""
        threshold = det_threshold(self.spec, self.settings.engine.det_threshold, threshold)
        with maybe(timings, "det_prep"):
            placements = [plan(img.shape[:2], self.det_size, self.policy) for img in images]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for i, placement in enumerate(placements):
            by_shape.setdefault(placement.input_hw, []).append(i)
        results: list[Detections | None] = [None] * len(images)
        for input_hw, indices in by_shape.items():
            for start in range(0, len(indices), self.max_batch):
                chunk = indices[start : start + self.max_batch]
                self._run_chunk(images, placements, chunk, input_hw, threshold, results, timings)
        return [r for r in results if r is not None]

    def _best(self, boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """NMS on the best-scored candidates only, then at most `max_faces` faces: a threshold of 0
        makes every anchor a candidate, and each face kept costs an alignment and an embedding."""
        limit = self.settings.engine.max_faces
        top = np.argsort(-scores, kind="stable")[: limit * CANDIDATES_PER_FACE]
        kept: np.ndarray = top[nms(boxes[top], scores[top], self.settings.engine.nms_iou)][:limit]
        return kept

    def _run_chunk(
        self,
        images: list[np.ndarray],
        placements: list[Placement],
        chunk: list[int],
        input_hw: tuple[int, int],
        threshold: float,
        results: list[Detections | None],
        timings: Timings | None,
    ) -> None:
        spec = self.spec
        with maybe(timings, "det_prep"):
            canvases = [letterbox(images[i], placements[i]) for i in chunk]
            blob = to_blob(canvases, spec.mean, spec.std, swap_rb=spec.color == "BGR")
        with maybe(timings, "det_run"):
            outputs = self.run(blob)
        with maybe(timings, "det_post"):
            for k, i in enumerate(chunk):
                index = k if self.batched_output else None
                found = self._decode(outputs, input_hw, threshold, index)
                keep = self._best(found.boxes, found.scores)
                scale = placements[i].scale
                results[i] = Detections(
                    (found.boxes[keep] / scale).astype(np.float32),
                    found.scores[keep].astype(np.float32),
                    (found.kps[keep] / scale).astype(np.float32),
                    float(scale),
                    mask=None if found.mask is None else found.mask[keep].astype(np.float32),
                )
