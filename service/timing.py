"""Per-stage wall time of one request, so the service and the benchmark can say where time goes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

STAGES = ("decode", "det_prep", "det_run", "det_post", "align", "rec_prep", "rec_run", "attr_run")


class Timings:
    """Seconds spent per stage; a stage may be entered several times (one per batch)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def ms(self) -> dict[str, float]:
        return {k: round(v * 1000, 3) for k, v in self.seconds.items()}


@contextmanager
def maybe(timings: Timings | None, name: str) -> Iterator[None]:
    if timings is None:
        yield
    else:
        with timings.stage(name):
            yield
