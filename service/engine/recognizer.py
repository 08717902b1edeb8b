"""Face embeddings: aligned crops in, L2-normalised vectors and their raw norms out."""

from __future__ import annotations

import numpy as np

from facefleet.engine.runner import Chain, ChainedModel
from facefleet.engine.runtime import OpenedSession, SessionSlot
from facefleet.engine.shapes import to_blob
from facefleet.models.manifest import ModelSpec
from facefleet.models.thresholds import verify_threshold
from facefleet.settings import Settings
from facefleet.timing import Timings, maybe


def batch_limit(opened: OpenedSession, settings: Settings) -> int:
    """Faces per recognizer run: FACEFLEET_REC_BATCH_SIZE when the file has a dynamic batch axis, else 1."""
    return settings.engine.rec_batch_size if opened.input_shape[0] is None else 1


class Recognizer(ChainedModel):
    """One recognition model. Its runs go through `chain` (service/engine/runner.py), built before the
    model and never replaced; without one, the bare session."""

    def __init__(
        self, spec: ModelSpec, opened: OpenedSession | SessionSlot, settings: Settings, chain: Chain | None = None
    ) -> None:
        super().__init__(spec, opened, settings, chain)
        opened = self.slot.opened
        self.batchable = opened.input_shape[0] is None
        self.max_batch = batch_limit(opened, settings)
        self.size = spec.embedding_size or int(opened.session.get_outputs()[0].shape[-1])

    @property
    def threshold(self) -> float:
        """Same-person cosine similarity a call without its own uses: FACEFLEET_VERIFY_THRESH, else this model's."""
        return verify_threshold(self.spec, self.settings.engine.verify_threshold)

    def embed(self, crops: list[np.ndarray], timings: Timings | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N x D normalised embeddings, N raw norms); crops are RGB 112 x 112, batched by max_batch."""
        if not crops:
            return np.zeros((0, self.size), np.float32), np.zeros(0, np.float32)
        spec = self.spec
        outputs = []
        for start in range(0, len(crops), self.max_batch):
            with maybe(timings, "rec_prep"):
                blob = to_blob(crops[start : start + self.max_batch], spec.mean, spec.std, spec.color == "BGR")
            with maybe(timings, "rec_run"):
                outputs.append(self.run(blob)[0])
        with maybe(timings, "rec_prep"):
            raw = np.concatenate(outputs).reshape(len(crops), -1).astype(np.float32)
            norms = np.linalg.norm(raw, axis=1)
            return raw / np.maximum(norms, 1e-12)[:, None], norms
