"""The batcher's fairness, on a real recognizer run (mobilefacenet on onnxruntime): a large job is split
into chunks that later small jobs overtake, answers are the unsplit runs' answers, a failed run reaches
every caller in it, and a large job under a stream of small ones still finishes within a bounded number
of runs."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from facefleet.engine.batcher import Batcher
from facefleet.engine.shapes import to_blob


@pytest.fixture(scope="module")
def rec(engine_factory, image_bytes):
    """(the recognizer's real unbatched run, a 40-row blob of real aligned crops, flipped and shifted)."""
    engine = engine_factory("scrfd_2.5g", "mobilefacenet")
    (result,) = engine.process([image_bytes("two_people.jpg")], keep_crops=True)
    crops = [f.crop for f in result.faces]
    variants = [np.roll(c[:, :: 1 - 2 * (i % 2)], i // 2, axis=0) for i in range(20) for c in crops]
    spec = engine.recognizer.spec
    return engine.recognizer.session_run, to_blob(variants, spec.mean, spec.std, spec.color == "BGR")


class Runs:
    """A real run function that records each run's row count, and can be told to fail (FAKE failure)."""

    def __init__(self, run, fail_on: int = -1) -> None:
        self._run, self.sizes, self._fail_on = run, [], fail_on
        self.started = threading.Event()

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        self.sizes.append(len(blob))
        self.started.set()
        if len(self.sizes) - 1 == self._fail_on:
            raise RuntimeError("FAKE provider failure")
        return self._run(blob)


def test_a_large_job_is_split_and_a_small_job_behind_it_finishes_first(rec):
    run, blob = rec
    runs = Runs(run)
    batcher = Batcher("mobilefacenet", runs, max_batch=8, max_wait_s=0, active=lambda: 2)
    finished: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        large = pool.submit(lambda: (batcher(blob), finished.append("large"))[0])
        assert runs.started.wait(30)
        small = pool.submit(lambda: (batcher(blob[:1]), finished.append("small"))[0])
        large_out, small_out = large.result(), small.result()
    assert finished == ["small", "large"]
    assert max(runs.sizes) <= 8 and sum(runs.sizes) == len(blob) + 1
    assert len(runs.sizes) >= len(blob) // 4  # two calls inside: at most 8 / 2 rows of one job per run
    whole = run(blob)
    for got, expected in zip(large_out, whole, strict=True):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(small_out[0], whole[0][:1], rtol=1e-4, atol=1e-5)


def test_a_lone_call_gets_full_batches(rec):
    run, blob = rec
    runs = Runs(run)
    Batcher("mobilefacenet", runs, max_batch=16, max_wait_s=0, active=lambda: 1)(blob)
    assert runs.sizes == [16, 16, 8]


def test_a_failed_run_reaches_every_caller_in_it_and_the_batcher_lives_on(rec):
    run, blob = rec
    runs = Runs(run, fail_on=1)
    batcher = Batcher("mobilefacenet", runs, max_batch=8, max_wait_s=5, active=lambda: 2)  # waits for both
    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(batcher, blob[:12]), pool.submit(batcher, blob[12:24])]
        errors = [call.exception(timeout=60) for call in calls]
    assert [str(e) for e in errors] == ["FAKE provider failure"] * 2
    assert len(runs.sizes) == 2 and runs.sizes[1] == 8  # both jobs were in the failed run; their later rows never ran
    (out,) = batcher(blob[:3])
    np.testing.assert_allclose(out, run(blob[:3])[0], rtol=1e-4, atol=1e-5)


def test_a_large_job_under_a_stream_of_small_ones_finishes_in_bounded_runs(rec):
    run, blob = rec
    runs = Runs(run)
    batcher = Batcher("mobilefacenet", runs, max_batch=8, max_wait_s=0, active=lambda: 5)
    stop = threading.Event()
    done_at: list[int] = []

    def stream() -> int:
        calls = 0
        while not stop.is_set():
            batcher(blob[:1])
            calls += 1
        return calls

    with ThreadPoolExecutor(5) as pool:
        smalls = [pool.submit(stream) for _ in range(4)]
        assert runs.started.wait(30)
        before = len(runs.sizes)
        batcher(blob)
        done_at.append(len(runs.sizes) - before)
        stop.set()
        served = [s.result() for s in smalls]
    # 5 calls inside: the large job gives 2 rows per run it is in, and 4 small jobs are ever ahead of it
    assert done_at[0] <= len(blob) // 2 + 4
    assert all(n > 0 for n in served)
