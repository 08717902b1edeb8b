"""The soak (bench/soak.py) for 60 s in CI: 16 clients on a real `facefleet serve`, a mix of
good photos, bad inputs and status reads; no 5xx but 503, no wrong answer, no worker restart,
no leak of memory, descriptors or threads. Resource assertions, not timing ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Half the run is warm-up here (20 % in the 600 s soak), and memory at the end is held against
# the most the worker needed during warm-up, not against its resting size then: in 60 s on 2
# cores (600-900 requests) the resting size has not settled. Measured without any leak: it
# rose 304 -> 606 MiB over the first 80 s of a busy run, then stayed flat; in three 60 s runs
# it moved 0 %, 0 % and +3.3 % over the second half, and in one more it moved past +10 %.
WARMUP = ["--warmup", "0.5", "--rss-baseline", "peak"]


@pytest.mark.slow
def test_sixty_seconds_of_sixteen_clients_leak_nothing(default_pack, images_dir, tmp_path):
    out = tmp_path / "soak.json"
    argv = [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "60", "--clients", "16"]
    argv += ["--sample-s", "1", *WARMUP, "--models-dir", str(default_pack), "--images", str(images_dir)]
    argv += ["--workdir", str(tmp_path / "work"), "--json", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=400, check=False)
    assert out.exists(), result.stdout + result.stderr[-3000:]
    report = json.loads(out.read_text())
    summary = result.stdout + "\n" + json.dumps({k: v for k, v in report.items() if k != "samples"})
    kinds = {"photo", "solvay_29_faces", "truncated_jpeg", "garbage_base64", "health", "info", "metrics"}
    assert set(report["by_kind"]) == kinds, summary  # the whole mix was sent
    assert report["server_errors"] == {} and report["transport_errors"] == {}, summary
    assert report["by_code"].get("200", 0) > 100 and report["wrong_answers"] == {}, summary
    assert len(report["worker_pids"]) == 1, summary
    assert report["rss_growth_after_warm_up"] < 0.10, summary
    assert report["fd_growth"] == {}, summary
    threads = report["threads_idle"]
    assert threads["end"] <= max(threads["after_warm_up"], threads["start"] + report["gunicorn_threads"]), summary
    assert report["failed"] == [] and result.returncode == 0, summary
    assert "soak" in result.stderr  # the progress lines
