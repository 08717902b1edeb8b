"""Face embeddings: aligned crops in, L2-normalised vectors and their raw norms out."""

from __future__ import annotations

import numpy as np

from .batcher import RunFn
from .config import Settings
from .manifest import ModelSpec
from .runtime import OpenedSession
from .shapes import to_blob
from .thresholds import verify_threshold
from .timing import Timings, maybe


class Recognizer:
    def __init__(self, spec: ModelSpec, opened: OpenedSession, settings: Settings) -> None:
        self.spec = spec
        self.opened = opened
        self.settings = settings
        self.batchable = opened.input_shape[0] is None
        self.max_batch = settings.rec_batch_size if self.batchable else 1
        self.size = spec.embedding_size or int(opened.session.get_outputs()[0].shape[-1])
        self.run: RunFn = self.session_run

    @property
    def threshold(self) -> float:
        """Same-person cosine similarity a call without its own uses: FACEFLEET_VERIFY_THRESH, else this model's."""
        return verify_threshold(self.spec, self.settings.verify_threshold)

    def session_run(self, blob: np.ndarray) -> list[np.ndarray]:
        """One model run; the engine may swap `run` for a cross-request batcher."""
        return self.opened.session.run(None, {self.opened.input_name: blob})

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
