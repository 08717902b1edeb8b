"""The request path as a whole: bad images fail alone, timings cover every stage, each model runs
through its visible chain and the engine reports to its observer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from facefleet.engine.observer import ModelReport
from facefleet.engine.pipeline import FaceEngine, timed_process
from facefleet.engine.runner import RecordingRunner
from facefleet.errors import ImageTooLargeError


def test_bad_images_fail_alone_and_the_rest_are_answered(engine_factory, image_bytes):
    engine = engine_factory("scrfd_2.5g", "mobilefacenet")
    jpeg = image_bytes("two_people.jpg")
    inputs = [jpeg, b"", b"GIF89a not really", jpeg[: len(jpeg) // 3], image_bytes("biden.jpg")]
    results = engine.process(inputs)
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert [len(r.faces) for r in results] == [2, 0, 0, 0, 1]
    assert [r.error.code for r in results if r.error] == ["bad_image"] * 3
    assert all(f.embedding is not None for r in results for f in r.faces)


def test_pixel_limit_applies_per_image(make_settings, image_bytes):
    settings = make_settings(det_name="scrfd_500m", rec_name="mobilefacenet", max_pixels=500_000)
    engine = FaceEngine.from_settings(settings)
    big, small = engine.process([image_bytes("two_people.jpg"), image_bytes("person_a_1.jpg")])
    assert isinstance(big.error, ImageTooLargeError) and small.ok


def test_timings_cover_every_stage(engine_factory, image_bytes):
    engine = engine_factory("scrfd_2.5g", "mobilefacenet")
    results, timings, total_ms = timed_process(engine, [image_bytes("two_people.jpg")])
    assert len(results[0].faces) == 2
    ms = timings.ms()
    assert all(ms[stage] > 0 for stage in ("decode", "det_prep", "det_run", "det_post", "align", "rec_prep", "rec_run"))
    assert sum(ms.values()) <= total_ms + 1


class RecordingObserver:
    """A real EngineObserver (service/engine/observer.py) that keeps every report, in order."""

    def __init__(self) -> None:
        self.loaded: list[ModelReport] = []
        self.runs: list[tuple[str, int]] = []
        self.failures: list[tuple[str, str]] = []
        self.failovers: list[tuple[ModelReport, str]] = []
        self.stages: list[tuple[str, float]] = []
        self.images: list[tuple[bool, int]] = []
        self._lock = threading.Lock()  # batcher threads report too

    def models_loaded(self, reports: Sequence[ModelReport]) -> None:
        self.loaded.extend(reports)

    def model_ran(self, model: str, batch: int) -> None:
        with self._lock:
            self.runs.append((model, batch))

    def provider_failed(self, model: str, provider: str) -> None:
        self.failures.append((model, provider))

    def failed_over(self, report: ModelReport, left: str) -> None:
        self.failovers.append((report, left))

    def stage(self, name: str, seconds: float) -> None:
        self.stages.append((name, seconds))

    def image_done(self, ok: bool, faces: int) -> None:
        self.images.append((ok, faces))


def test_each_model_runs_through_a_visible_chain(make_settings):
    """session -> failover -> [extra] -> batcher -> observer: the batcher only with batching on and a
    model that takes a batch (mobilefacenet does, scrfd_2.5g's file does not)."""
    settings = make_settings(det_name="scrfd_2.5g", rec_name="mobilefacenet", rec_batch_size=8)
    recorded: list[np.ndarray] = []
    engine = FaceEngine.from_settings(settings, batching=True, extra={"recognition": [RecordingRunner.into(recorded)]})
    assert engine.chains() == {
        "scrfd_2.5g": ("session(scrfd_2.5g)", "failover(cpu)", "observer"),
        "mobilefacenet": (
            "session(mobilefacenet)",
            "failover(cpu)",
            "recorder",
            "batcher(max 8, wait 2 ms)",
            "observer(merged runs, reported by the batcher)",
        ),
    }
    plain = FaceEngine.from_settings(settings)
    assert plain.chains()["mobilefacenet"] == ("session(mobilefacenet)", "failover(cpu)", "observer")
    assert set(engine.failovers) == {"scrfd_2.5g", "mobilefacenet"}


def test_the_observer_hears_loaded_models_and_every_model_run(make_settings, image_bytes):
    """Models loaded once at construction; one report per model run with its input count (the
    numbers behind facefleet_batch_size), and the recorder link saw exactly those runs."""
    observer = RecordingObserver()
    recorded: list[np.ndarray] = []
    settings = make_settings(det_name="scrfd_2.5g", rec_name="mobilefacenet", rec_batch_size=8)
    engine = FaceEngine.from_settings(
        settings, observer=observer, extra={"recognition": [RecordingRunner.into(recorded)]}
    )
    assert [(r.name, r.task, r.provider, r.fallbacks) for r in observer.loaded] == [
        ("scrfd_2.5g", "detection", "cpu", 0),
        ("mobilefacenet", "recognition", "cpu", 0),
    ]
    assert all(r.warmup_s > 0 for r in observer.loaded)
    two, one = engine.process([image_bytes("two_people.jpg"), image_bytes("biden.jpg")])
    assert len(two.faces) == 2 and len(one.faces) == 1
    assert observer.runs == [("scrfd_2.5g", 1), ("scrfd_2.5g", 1), ("mobilefacenet", 3)]
    assert [len(blob) for blob in recorded] == [3]
    assert not observer.failures and not observer.failovers


def test_concurrent_calls_share_recognizer_runs_and_report_merged_sizes(make_settings, image_bytes):
    """With batching on, the observer sees the batcher's merged runs: every face counted once."""
    observer = RecordingObserver()
    settings = make_settings(det_name="scrfd_2.5g", rec_name="mobilefacenet", rec_batch_size=16, batch_wait_ms=50)
    engine = FaceEngine.from_settings(settings, observer=observer, batching=True)
    (result,) = engine.process([image_bytes("two_people.jpg")], keep_crops=True)
    crops = [face.crop for face in result.faces]
    observer.runs.clear()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: engine.embed_crops(crops), range(4)))
    assert all(len(a) == 2 and a[0].ok for a in answers)
    sizes = [size for model, size in observer.runs if model == "mobilefacenet"]
    assert sum(sizes) == 8 and 1 <= len(sizes) <= 4
