"""The real service, measured: overhead over raw onnxruntime, throughput against concurrency,
overload behaviour, and the worker's resident memory.

Usage: .venv/bin/python bench/service.py [--det NAME --rec NAME --models-dir DIR]
           [--image PATH] [--requests 100] [--seconds 8] [--parts overhead,concurrency,overload]
           [--json OUT]

Parts: overhead (one client against raw runs), concurrency (1/2/4/8 clients), batching (8
clients with cross-request batching on, then off), overload (32 clients on a small queue).

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import requests
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_file, require_models  # noqa: E402
from facefleet.engine.pipeline import FaceEngine  # noqa: E402
from facefleet.engine.runner import RecordingRunner  # noqa: E402
from facefleet.settings import Settings  # noqa: E402
from tests.server import Service  # noqa: E402


def raw_runner(settings: Settings, image: bytes) -> Callable[[], dict[str, float]]:
    """A function timing one detector and one recognizer session.run() on exactly the inputs
    the service builds for `image` (captured from a real pass through the engine)."""
    captured: dict[str, list[np.ndarray]] = {"det": [], "rec": []}
    recorders = {
        "detection": [RecordingRunner.into(captured["det"])],
        "recognition": [RecordingRunner.into(captured["rec"])],
    }
    engine = FaceEngine.from_settings(settings, extra=recorders)
    engine.process([image])

    def run() -> dict[str, float]:
        out = {}
        for key, model in (("det", engine.detector), ("rec", engine.recognizer)):
            assert model is not None  # both tasks were loaded above
            start = time.perf_counter()
            for blob in captured[key]:
                model.opened.session.run(None, {model.opened.input_name: blob})
            out[key] = (time.perf_counter() - start) * 1000
        return out

    return run


JSON = {"Content-Type": "application/json"}


def one_client(url: str, body: bytes, count: int, raw: Callable[[], dict[str, float]]) -> dict[str, list[float]]:
    """Sequential requests interleaved with raw model runs, so drift on a shared machine hits
    both sides alike: client-side and server-side (took.total_ms) latency, raw det and rec."""
    out: dict[str, list[float]] = {"client": [], "server": [], "det": [], "rec": []}
    with requests.Session() as session:
        for _ in range(5):
            session.post(f"{url}/extract", data=body, headers=JSON, timeout=60)
            raw()
        for _ in tqdm(range(count), desc="1 client", leave=False):
            for key, value in raw().items():
                out[key].append(value)
            start = time.perf_counter()
            response = session.post(f"{url}/extract", data=body, headers=JSON, timeout=60)
            out["client"].append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
            out["server"].append(response.json()["took"]["total_ms"])
    return out


def load(url: str, body: bytes, clients: int, seconds: float) -> dict[str, Any]:
    """`clients` closed-loop clients for `seconds`: throughput, latency percentiles, status counts.
    A client told 503 waits its Retry-After, as a well-behaved client does."""
    latencies: list[float] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                retry = 0.0
                try:
                    response = session.post(f"{url}/extract", data=body, headers=JSON, timeout=60)
                    code = str(response.status_code)
                    retry = float(response.headers.get("Retry-After", 0)) if code == "503" else 0.0
                except requests.RequestException as exc:
                    code = type(exc).__name__
                ms = (time.perf_counter() - start) * 1000
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if code == "200":
                        latencies.append(ms)
                time.sleep(min(retry, max(0.0, deadline - time.monotonic())))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    elapsed = time.perf_counter() - start
    ok = sorted(latencies)
    pick = (lambda q: ok[min(len(ok) - 1, int(q * len(ok)))]) if ok else (lambda q: float("nan"))
    return {
        "clients": clients,
        "ok_per_s": round(len(ok) / elapsed, 2),
        "p50_ms": round(pick(0.5), 1),
        "p99_ms": round(pick(0.99), 1),
        "codes": codes,
    }


def worker_rss_mib(master_pid: int) -> list[float]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    out = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out.append(round(int(line.split()[1]) / 1024, 1))
    return out


def batch_mean(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("facefleet_batch_size_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("facefleet_batch_size_count"):
            count += float(line.rsplit(" ", 1)[1])
    return round(total / count, 2) if count else float("nan")


def measure_overhead(env: dict[str, str], body: bytes, image: bytes, args: argparse.Namespace) -> dict:
    """One client, requests interleaved with raw runs: the service's cost over onnxruntime's."""
    raw = raw_runner(Settings.from_env(), image)
    with started(env, "service") as svc:
        series = one_client(svc.url, body, args.requests, raw)
        med = {key: statistics.median(values) for key, values in series.items()}
        report = {
            "raw_model_p50_ms": {"det": round(med["det"], 2), "rec": round(med["rec"], 2)},
            "one_client_p50_ms": round(med["client"], 2),
            "one_client_server_side_p50_ms": round(med["server"], 2),
            "overhead_ratio": round(med["client"] / (med["det"] + med["rec"]), 3),
            "overhead_ratio_server_side": round(med["server"] / (med["det"] + med["rec"]), 3),
            "worker_rss_mib_after_one_client": worker_rss_mib(svc.proc.pid),
        }
    return report


def measure_concurrency(env: dict[str, str], body: bytes, args: argparse.Namespace) -> dict:
    with started(env, "concurrency") as svc:
        return {
            "concurrency": [load(svc.url, body, n, args.seconds) for n in (1, 2, 4, 8)],
            "batch_size_mean": batch_mean(svc.url),
            "worker_rss_mib_after_8_clients": worker_rss_mib(svc.proc.pid),
        }


def measure_batching(env: dict[str, str], body: bytes, args: argparse.Namespace) -> dict:
    """8 clients with cross-request batching on, then off: images/s and the batch sizes formed."""
    out: dict[str, Any] = {}
    for state in ("on", "off"):
        batch_env = {**env, "FACEFLEET_BATCHING": "1" if state == "on" else "0"}
        with started(batch_env, f"batching-{state}") as svc:
            load(svc.url, body, 8, min(3.0, args.seconds))  # warm-up: sessions, allocator, caches
            result = load(svc.url, body, 8, args.seconds)
            result["batch_size_mean"] = batch_mean(svc.url)
            out[state] = result
    out["speedup"] = round(out["on"]["ok_per_s"] / out["off"]["ok_per_s"], 3)
    return out


def measure_overload(env: dict[str, str], body: bytes, args: argparse.Namespace) -> dict:
    overload_env = {**env, "FACEFLEET_MAX_CONCURRENT": "2", "FACEFLEET_QUEUE_SIZE": "4"}
    with started(overload_env, "overload") as svc:
        return {"overload_32_clients_queue_2_plus_4": load(svc.url, body, 32, args.seconds)}


@contextmanager
def started(env: dict[str, str], name: str) -> Iterator[Service]:
    workdir = ROOT / ".cache" / "bench-service"
    workdir.mkdir(parents=True, exist_ok=True)
    svc = Service({**env, "FACEFLEET_METRICS_DIR": str(workdir / f"metrics-{name}")}, workdir / f"{name}.log")
    try:
        svc.wait_ready()
        yield svc
    finally:
        svc.stop()


PARTS = ("overhead", "concurrency", "batching", "overload")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--det", default="yunet_2023mar_int8bq")
    parser.add_argument("--rec", default="sface_2021dec_int8bq")
    parser.add_argument("--models-dir", default=str(ROOT / ".cache" / "default-pack"))
    parser.add_argument("--image", default=str(ROOT.parent / "shared" / "images" / "two_people.jpg"))
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--parts", default="overhead,concurrency,overload", help=f"any of {','.join(PARTS)}")
    parser.add_argument("--json")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; known: {','.join(PARTS)}")
    require_models(args.models_dir, (args.det, args.rec))
    image = require_file(args.image, "--image").read_bytes()
    body = json.dumps({"images": {"data": [base64.b64encode(image).decode()]}}).encode()
    env = {
        "FACEFLEET_MODELS_DIR": args.models_dir,
        "FACEFLEET_DET_NAME": args.det,
        "FACEFLEET_REC_NAME": args.rec,
        "FACEFLEET_PROVIDERS": "cpu",
        "FACEFLEET_LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    report: dict = {"detector": args.det, "recognizer": args.rec, "image": Path(args.image).name}
    if "overhead" in parts:
        report.update(measure_overhead(env, body, image, args))
    if "concurrency" in parts:
        report.update(measure_concurrency(env, body, args))
    if "batching" in parts:
        report["batching_8_clients"] = measure_batching(env, body, args)
    if "overload" in parts:
        report.update(measure_overload(env, body, args))
    files = sum(
        (Path(args.models_dir) / f).stat().st_size
        for f in os.listdir(args.models_dir)
        if f.endswith(".onnx") and any(f.startswith(p) for p in ("face_", args.det, args.rec))
    )
    report["model_files_mib"] = round(files / 2**20, 1)
    report["rss_budget_mib"] = round(1.5 * files / 2**20 + 250, 1)
    print(json.dumps(report, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(one_line("service", main))
