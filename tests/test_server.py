"""The service under a real gunicorn: concurrency, batching across requests, overload,
start-up failures, and the real /metrics checked by promtool."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .server import cpu_service, metric_samples


@pytest.fixture(scope="module")
def service(default_pack, cache_dir, tmp_path_factory):
    svc = cpu_service(default_pack, cache_dir, tmp_path_factory.mktemp("service"))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def photo(image_bytes) -> str:
    return base64.b64encode(image_bytes("two_people.jpg")).decode()


def hammer(url: str, body: dict, clients: int, seconds: float) -> Counter:
    """`clients` threads posting `body` for `seconds`; counts of status codes (and errors)."""
    counts: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                try:
                    response = session.post(f"{url}/extract", json=body, timeout=60)
                    key = response.status_code
                    if key == 503:
                        assert response.headers.get("Retry-After") == "1"
                    elif key == 200:
                        assert all(r["status"] == "ok" for r in response.json()["data"])
                except (requests.RequestException, AssertionError) as exc:
                    key = type(exc).__name__
                with lock:
                    counts[key] += 1

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return counts


@pytest.mark.slow  # ten seconds of load
def test_sixteen_clients_for_ten_seconds_without_errors_and_batches_form(service, photo):
    counts = hammer(service.url, {"images": {"data": [photo]}}, clients=16, seconds=10)
    assert set(counts) == {200}, counts
    text = requests.get(f"{service.url}/metrics", timeout=10).text
    total = sum(metric_samples(text, "facefleet_batch_size_sum").values())
    runs = sum(metric_samples(text, "facefleet_batch_size_count").values())
    assert runs > 0 and total / runs > 1.0, (total, runs)
    served = metric_samples(text, "facefleet_http_requests_total")
    assert served['{code="200",endpoint="extract"}'] >= counts[200]


def test_bad_inputs_leave_the_service_up(service, photo):
    for raw, kind in (
        (b"{oops", "application/json"),
        (b"\x00" * 1000, "application/msgpack"),
        (b'{"images": {"data": ["' + b"A" * 5000 + b'"]}}', "application/json"),
    ):
        response = requests.post(f"{service.url}/extract", data=raw, headers={"Content-Type": kind}, timeout=30)
        assert response.status_code in (200, 400) and "Traceback" not in response.text
    assert requests.get(f"{service.url}/livez", timeout=5).status_code == 200
    ok = requests.post(f"{service.url}/extract", json={"images": {"data": [photo]}}, timeout=30)
    assert ok.status_code == 200 and len(ok.json()["data"][0]["faces"]) == 2


def test_promtool_accepts_the_real_metrics(service, photo, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (scripts/test.sh does)"
    requests.post(f"{service.url}/extract", json={"images": {"data": [photo, "@@"]}}, timeout=30)
    text = requests.get(f"{service.url}/metrics", timeout=10).text
    assert "facefleet_stage_duration_seconds_bucket" in text and "facefleet_build_info" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # its own gunicorn, about 6 s
def test_overload_answers_503_with_retry_after_and_nothing_else_fails(default_pack, cache_dir, photo, tmp_path):
    svc = cpu_service(default_pack, cache_dir, tmp_path, FACEFLEET_MAX_CONCURRENT="1", FACEFLEET_QUEUE_SIZE="1")
    try:
        counts = hammer(svc.url, {"images": {"data": [photo]}}, clients=12, seconds=4)
        assert set(counts) <= {200, 503}, counts
        assert counts[200] > 0 and counts[503] > 0
        text = requests.get(f"{svc.url}/metrics", timeout=10).text
        rejected = metric_samples(text, "facefleet_http_rejected_requests_total")
        assert rejected['{endpoint="extract",reason="queue_full"}'] == counts[503]
    finally:
        svc.stop()


def test_serve_refuses_to_start_without_its_model_files(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "facefleet", "serve", "--models-dir", str(tmp_path)],
        env={**os.environ, "FACEFLEET_AUTH": "off"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "is missing" in result.stderr


def test_serve_refuses_a_model_file_with_the_wrong_digest(default_pack, tmp_path):
    for name in ("face_detection_yunet_2023mar_int8bq.onnx", "face_recognition_sface_2021dec_int8bq.onnx"):
        shutil.copy(default_pack / name, tmp_path / name)
    with open(tmp_path / "face_recognition_sface_2021dec_int8bq.onnx", "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff" * 8)
    result = subprocess.run(
        [sys.executable, "-m", "facefleet", "serve", "--models-dir", str(tmp_path)],
        env={**os.environ, "FACEFLEET_AUTH": "off"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "the manifest pins" in result.stderr and result.stderr.strip().count("\n") == 0
