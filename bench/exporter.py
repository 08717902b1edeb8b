"""Scrape time of `facefleet exporter` while the service is under load from 8 clients.

Usage: .venv/bin/python bench/exporter.py [--scrapes 100] [--clients 8]

The exporter reads a FAKE AGX Orin tree (tests/fakejetson.py) so every hardware collector
runs; loopback only, bounded in count and time.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.inputs import one_line, require_file, require_models  # noqa: E402
from bench.service import load  # noqa: E402
from tests.fakejetson import AGX_ORIN, build, nvpmodel_script  # noqa: E402
from tests.server import Service, free_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--models-dir", default=str(ROOT / ".cache" / "default-pack"))
    args = parser.parse_args()
    require_models(args.models_dir)
    photo = require_file(ROOT.parent / "shared" / "images" / "two_people.jpg", "the photo")
    work = Path(tempfile.mkdtemp(prefix="facefleet-bench-exporter-"))
    env = {
        "FACEFLEET_MODELS_DIR": args.models_dir,
        "FACEFLEET_PROVIDERS": "cpu",
        "FACEFLEET_LOG_LEVEL": "WARNING",
        "FACEFLEET_METRICS_DIR": str(work / "metrics"),
    }
    image = photo.read_bytes()
    body = json.dumps({"images": {"data": [base64.b64encode(image).decode()]}}).encode()
    svc = Service(env, work / "service.log")
    exporter = None
    try:
        svc.wait_ready()
        port = free_port()
        fake = build(work / "orin", AGX_ORIN)
        exporter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facefleet",
                "exporter",
                "--port",
                str(port),
                "--metrics-dir",
                str(work / "metrics"),
                "--root",
                str(fake),
                "--service-url",
                svc.url,
            ],
            env={**os.environ, "FACEFLEET_NVPMODEL": str(nvpmodel_script(work, AGX_ORIN.power_mode))},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(url, timeout=2).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.2)
        result: dict = {}
        loader = threading.Thread(target=lambda: result.update(load(svc.url, body, args.clients, 3600 / 100)))
        loader.start()
        time.sleep(2)
        times = []
        with requests.Session() as session:
            for _ in range(args.scrapes):
                start = time.perf_counter()
                text = session.get(url, timeout=10).text
                times.append((time.perf_counter() - start) * 1000)
                time.sleep(0.05)
        loader.join()
        ordered = sorted(times)
        print(
            json.dumps(
                {
                    "scrapes": len(times),
                    "clients": args.clients,
                    "samples_per_scrape": text.count("\n"),
                    "p50_ms": round(statistics.median(times), 2),
                    "p99_ms": round(ordered[int(0.99 * len(ordered)) - 1], 2),
                    "max_ms": round(ordered[-1], 2),
                    "load_during_scrapes": result,
                },
                indent=2,
            )
        )
    finally:
        if exporter:
            exporter.terminate()
            exporter.wait(timeout=10)
        svc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(one_line("exporter", main))
