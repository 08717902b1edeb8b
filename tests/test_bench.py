"""`facefleet bench providers` on this CPU machine: the operators' table, JSON and a PNG plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import pytest


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facefleet", "bench", "providers", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=os.environ,
    )


@pytest.mark.slow  # times every model, about 6 s
def test_table_json_and_plot(shared_models, tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    result = bench(
        "scrfd_500m",
        "mobilefacenet",
        "--models-dir",
        str(shared_models),
        "--cache-dir",
        str(tmp_path),
        "--providers",
        "cuda,cpu",
        "--runs",
        "4",
        "--warmup",
        "1",
        "--json",
        str(out),
        "--plot",
        str(png),
    )
    assert result.returncode == 0, result.stderr
    assert "Execution Provider | Average | Individual times | Speedup" in result.stdout
    report = json.loads(out.read_text())
    for model in ("scrfd_500m", "mobilefacenet"):
        [row] = report["models"][model]  # cuda cannot run on this machine: only the CPU row
        assert row["provider"] == "cpu" and len(row["times_ms"]) == 4 and row["speedup"] == 1.0
        assert row["mean_ms"] > 0 and row["first_open_s"] > 0
    assert report["models"]["scrfd_500m"][0]["input_shape"] == [1, 3, 640, 640]
    # the CPU build does not offer CUDA; onnxruntime-gpu offers it without its libraries: both say why
    assert list(report["skipped"]) == ["cuda"] and report["skipped"]["cuda"]
    assert f"cuda: not timed, {report['skipped']['cuda']}" in result.stdout
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 100


def test_a_chain_with_nothing_offered_is_one_line(shared_models, tmp_path):
    result = bench("scrfd_500m", "--models-dir", str(shared_models), "--providers", "tensorrt,cuda")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("facefleet: none of tensorrt, cuda can run here (tensorrt: ")
    assert "; cuda: " in line


KEY = "key-of-the-loaded-appliance-0001"


@pytest.fixture(scope="module")
def keyed_service(default_pack, cache_dir, tmp_path_factory):
    """A real service with API keys on, as every appliance is by default; and its key file."""
    from .server import cpu_service

    folder = tmp_path_factory.mktemp("load")
    keys = folder / "api-keys"
    keys.write_text(f"# the inference_service role's file\n{KEY}\n")
    svc = cpu_service(default_pack, cache_dir, folder, FACEFLEET_AUTH="on", FACEFLEET_API_KEYS_FILE=str(keys))
    try:
        yield svc, keys
    finally:
        svc.stop()


def load(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACEFLEET_")}
    return subprocess.run(
        [sys.executable, "-m", "facefleet", "bench", "load", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean, **(env or {})},
    )


@pytest.mark.slow
def test_load_against_a_real_service(keyed_service, tmp_path, images_dir):
    svc, keys = keyed_service
    out, png = tmp_path / "load.json", tmp_path / "load.png"
    result = load(
        svc.url,
        "--api-key-file",
        str(keys),
        "--image",
        str(images_dir / "two_people.jpg"),
        "--image",
        str(images_dir / "biden.jpg"),
        "--clients",
        "3",
        "--seconds",
        "4",
        "--requests",
        "12",
        "--json",
        str(out),
        "--plot",
        str(png),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert 0 < report["requests"] <= 12 and report["ok"] == report["requests"] and report["errors"] == {}
    assert report["images_per_s"] > 0
    assert report["faces_per_s"] >= report["images_per_s"]  # 3 faces per request of 2 images
    assert report["p50_ms"] <= report["p95_ms"] <= report["max_ms"]
    assert len(report["timeline"]) == report["requests"]
    # the worker's memory, read from /info with the key during the run, against its budget
    assert report["worker_resident_mib_peak"] > 50 and report["memory_budget_mib"] > 250
    assert report["within_memory_budget"] == (report["worker_resident_mib_peak"] <= report["memory_budget_mib"])
    assert cv2.imread(str(png)) is not None


def said(result: subprocess.CompletedProcess) -> str:
    """The last line on stderr, past the progress bar's carriage returns."""
    return result.stderr.replace("\r", "\n").strip().splitlines()[-1]


@pytest.mark.slow
def test_a_load_run_of_errors_says_so_in_one_line_and_fails(keyed_service, images_dir):
    """Without the key every request is a 401: that is no throughput figure. The key works from
    --api-key, FACEFLEET_API_KEY and FACEFLEET_API_KEY_FILE alike; a wrong one is named as such."""
    svc, keys = keyed_service
    photo = ["--image", str(images_dir / "biden.jpg"), "--clients", "2", "--requests", "4", "--seconds", "20"]
    keyless = load(svc.url, *photo)
    assert keyless.returncode == 1
    assert said(keyless) == (
        "facefleet: 4 of 4 requests failed (http_401 x4): these figures measure errors, not the service; "
        "the service asks for an API key: give the appliance's key with --api-key-file /etc/facefleet/api-keys "
        "(or FACEFLEET_API_KEY_FILE)"
    )
    wrong = load(svc.url, *photo, env={"FACEFLEET_API_KEY": "a-key-of-another-fleet-0001"})
    assert wrong.returncode == 1 and said(wrong).endswith("; the service refused the key")
    for way in (["--api-key", KEY], []):
        env = {} if way else {"FACEFLEET_API_KEY_FILE": str(keys)}
        keyed = load(svc.url, *photo, *way, env=env)
        assert keyed.returncode == 0 and "facefleet:" not in keyed.stderr, keyed.stderr
        assert json.loads(keyed.stdout)["ok"] == 4
    missing = load(svc.url, *photo, "--api-key-file", str(keys) + ".none")
    assert missing.returncode == 2
    assert said(missing) == f"facefleet: cannot read --api-key-file={keys}.none: No such file or directory"


def test_load_refuses_a_target_that_is_not_this_machine(images_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "facefleet",
            "bench",
            "load",
            "http://192.0.2.1:18080",
            "--image",
            str(images_dir / "biden.jpg"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "192.0.2.1 is not this machine" in result.stderr and "--allow-remote" in result.stderr
