"""`facefleet bench providers` on this CPU machine: the operators' table, JSON and a PNG plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "service", "bench", "providers", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=os.environ,
    )


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
        [row] = report["models"][model]  # cuda is not offered by this build: only the CPU row
        assert row["provider"] == "cpu" and len(row["times_ms"]) == 4 and row["speedup"] == 1.0
        assert row["mean_ms"] > 0 and row["first_open_s"] > 0
    assert report["models"]["scrfd_500m"][0]["input_shape"] == [1, 3, 640, 640]
    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 100


def test_a_chain_with_nothing_offered_is_one_line(shared_models, tmp_path):
    result = bench("scrfd_500m", "--models-dir", str(shared_models), "--providers", "tensorrt,cuda")
    assert result.returncode == 2
    assert result.stderr.strip() == "facefleet: none of tensorrt, cuda is offered by this onnxruntime"


def test_load_against_a_real_service(default_pack, cache_dir, tmp_path, images_dir):
    from .server import cpu_service

    svc = cpu_service(default_pack, cache_dir, tmp_path)
    try:
        out, png = tmp_path / "load.json", tmp_path / "load.png"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "service",
                "bench",
                "load",
                svc.url,
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
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(out.read_text())
        assert 0 < report["requests"] <= 12 and report["ok"] == report["requests"] and report["errors"] == {}
        assert report["images_per_s"] > 0
        assert report["faces_per_s"] >= report["images_per_s"]  # 3 faces per request of 2 images
        assert report["p50_ms"] <= report["p95_ms"] <= report["max_ms"]
        assert len(report["timeline"]) == report["requests"]
        assert cv2.imread(str(png)) is not None
    finally:
        svc.stop()


def test_load_refuses_a_target_that_is_not_this_machine(images_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
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
