"""Per-face attributes from the aligned crop: InsightFace's gender/age model and the mask classifiers that
InsightFace-REST serves (`extract_ga`, `detect_masks`).

- gender/age (`genderage`): the 112 x 112 crop as RGB, raw 0-255, [N, 3, 112, 112]; the answer's first two
  values are the gender scores (argmax: 1 male, 0 female), the next 200 are 100 (no, yes) pairs whose
  yes-count is the age, 0 to 100.
- mask (`mask_classifier`): the crop resized to the model's side (224, or 112 for mask_detector112), as BGR
  scaled to -1..1 (the manifest's preprocess), channels-last [N, side, side, 3]; the answer is (mask, no mask).
"""

from __future__ import annotations

import cv2
import numpy as np

from facefleet.engine.runner import ChainedModel
from facefleet.engine.shapes import to_blob
from facefleet.timing import Timings, maybe

AGE_PAIRS = 100


def gender_age(answer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gender, age) per row of an [N, 202] answer: ints, as InsightFace reads them."""
    gender = np.argmax(answer[:, :2], axis=1).astype(int)
    age = np.argmax(answer[:, 2 : 2 + 2 * AGE_PAIRS].reshape(-1, AGE_PAIRS, 2), axis=2).sum(axis=1).astype(int)
    return gender, age


class AttributeModel(ChainedModel):
    """One crop-reading model of the engine (its runs go through its chain, batched up to `max_batch`)."""

    @property
    def batchable(self) -> bool:
        """A dynamic batch axis: several crops per run (and a run shared across requests)."""
        return self.opened.input_shape[0] is None

    @property
    def max_batch(self) -> int:
        return self.settings.engine.rec_batch_size if self.batchable else 1

    def _blob(self, crops: list[np.ndarray]) -> np.ndarray:
        spec = self.spec
        if spec.task != "mask":
            return to_blob(crops, spec.mean, spec.std, spec.color == "BGR")
        side = self.opened.input_shape[1] or 224
        sized = [c if c.shape[0] == side else cv2.resize(c, (side, side)) for c in crops]  # bilinear
        return np.ascontiguousarray(to_blob(sized, spec.mean, spec.std, spec.color == "BGR").transpose(0, 2, 3, 1))

    def answer(self, crops: list[np.ndarray], timings: Timings | None = None) -> np.ndarray:
        """The model's first output for every crop (RGB 112 x 112), one row each."""
        rows = []
        for start in range(0, len(crops), self.max_batch):
            with maybe(timings, "attr_run"):
                rows.append(self.run(self._blob(crops[start : start + self.max_batch]))[0])
        return np.concatenate(rows).reshape(len(crops), -1) if rows else np.zeros((0, 0), np.float32)
