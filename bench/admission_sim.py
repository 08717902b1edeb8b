"""Admission plus batcher with runs that sleep instead of computing: does a client wait its turn?

Usage: .venv/bin/python bench/admission_sim.py [--per-face-ms 10] [--requests 24]

The service's real `Batcher` (service/engine/batcher.py) and, in turn, a `threading.Semaphore` and the
admission's `FifoSlots` (service/api/admission.py) for 2 engine slots; the model run is a sleep of
5 ms + `--per-face-ms` per face (no CPU, so the figures do not depend on the machine's load). Clients send
their next request at once (no network in between: barging's worst case). Loads: 4 crowd clients (29
faces), and 1 crowd client with 3 portrait clients. Prints p50/p95/max per kind, in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line  # noqa: E402
from facefleet.api.admission import FifoSlots  # noqa: E402
from facefleet.engine.batcher import Batcher  # noqa: E402


class Slots(Protocol):
    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool: ...
    def release(self) -> None: ...


def simulate(slots: Slots, kinds: list[str], requests: int, per_face_s: float) -> dict[str, tuple[float, ...]]:
    active = [0]
    lock = threading.Lock()

    def run(blob: np.ndarray) -> list[np.ndarray]:
        time.sleep(0.005 + per_face_s * len(blob))
        return [blob[:, :1, 0, 0].copy()]

    batcher = Batcher("sim", run, 16, 0.002, lambda: active[0])
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    left = [requests]

    def client(kind: str) -> None:
        faces = 29 if kind == "crowd" else 1
        while True:
            with lock:
                if not left[0]:
                    return
                left[0] -= 1
            start = time.perf_counter()
            slots.acquire()
            with lock:
                active[0] += 1
            time.sleep(0.03)  # decode and detection
            for first in range(0, faces, 16):  # the recognizer's jobs of at most 16 faces
                batcher(np.zeros((min(16, faces - first), 3, 2, 2), np.float32))
            with lock:
                active[0] -= 1
            slots.release()
            latencies[kind].append(time.perf_counter() - start)

    with ThreadPoolExecutor(len(kinds)) as pool:
        list(pool.map(client, kinds))
    return {
        k: (round(statistics.median(v), 3), round(float(np.percentile(v, 95)), 3), round(max(v), 3))
        for k, v in latencies.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-face-ms", type=float, default=10.0)
    parser.add_argument("--requests", type=int, default=24)
    args = parser.parse_args()
    loads = {"crowd, 4 clients": ["crowd"] * 4, "mixed": ["crowd", "portrait", "portrait", "portrait"]}
    for name, make in (("threading.Semaphore", lambda: threading.Semaphore(2)), ("FifoSlots", lambda: FifoSlots(2))):
        for load, kinds in loads.items():
            count = args.requests * (1 if load.startswith("crowd") else 3)
            got = simulate(make(), kinds, count, args.per_face_ms / 1000)
            print(f"{name:20} {load:17} " + "  ".join(f"{k}: p50/p95/max {v}" for k, v in got.items()))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("admission_sim", main))
