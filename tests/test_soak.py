"""The soak (bench/soak.py) for 60 s in CI: 16 clients on a real `facefleet serve`, a mix of
good photos, bad inputs and status reads; no 5xx but 503, no wrong answer, no worker restart,
no leak of memory, descriptors or threads. Resource assertions, not timing ones. Also, fast:
the script's bad inputs are one line, and the worker's heap trimmer (facefleet.ops.malloc)
trims after engine work and only then."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import soak
from bench.inputs import one_line
from facefleet.api.admission import Admission
from facefleet.ops import malloc

from .server import until

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


def _soak_one_line(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = one_line("soak", lambda: soak.main(list(argv)))
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


def test_a_models_folder_without_the_default_pack_is_one_line(tmp_path, images_dir, capsys):
    work = tmp_path / "work"
    argv = ["--models-dir", str(tmp_path), "--images", str(images_dir), "--workdir", str(work)]
    code, err = _soak_one_line(capsys, *argv)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("soak: model ") and "is missing; run `facefleet models pull" in err, err
    assert not work.exists()  # refused before any service was started


def test_a_missing_models_or_images_folder_is_one_line(tmp_path, images_dir, capsys):
    code, err = _soak_one_line(capsys, "--models-dir", str(tmp_path / "nope"), "--images", str(images_dir))
    assert (code, err) == (2, f"soak: --models-dir {tmp_path / 'nope'}: no such folder\n")
    code, err = _soak_one_line(capsys, "--images", str(tmp_path / "nope"))
    assert (code, err) == (2, f"soak: --images {tmp_path / 'nope'}: no such folder\n")
    code, err = _soak_one_line(capsys, "--images", str(tmp_path))
    assert code == 2 and err.startswith(f"soak: --images {tmp_path}: biden.jpg") and err.count("\n") == 1, err


def test_the_script_itself_ends_in_one_line_and_exit_2(tmp_path, images_dir):
    argv = [sys.executable, str(ROOT / "bench" / "soak.py"), "--models-dir", str(tmp_path), "--images", str(images_dir)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.startswith("soak: model ") and result.stderr.count("\n") == 1, result.stderr


# ---------------------------------------------------------------- the worker's heap (facefleet.ops.malloc)
def test_the_arena_cap_yields_to_the_operators_malloc_arena_max():
    assert malloc.cap_arenas({"MALLOC_ARENA_MAX": "8"}) is False
    assert malloc.cap_arenas({}) is True  # glibc here: mallopt accepted


def test_the_heap_is_trimmed_once_the_engine_goes_idle_and_not_before_any_work():
    trimmer = malloc.Trimmer(quiet_s=0.1, interval_s=60)
    admission = Admission(2, 0, 1.0, trimmer=trimmer)
    time.sleep(0.3)
    assert trimmer.trims == 0  # no engine work yet: nothing to give back
    with admission.slot("extract"), admission.slot("extract"):
        time.sleep(0.3)
        assert trimmer.trims == 0  # busy, and the interval is a minute
    until("a trim after the engine went idle", lambda: trimmer.trims == 1, timeout=5)
    time.sleep(0.3)
    assert trimmer.trims == 1  # once per idle spell


def test_a_busy_engine_is_trimmed_every_interval():
    trimmer = malloc.Trimmer(quiet_s=60, interval_s=0.2)
    with Admission(1, 0, 1.0, trimmer=trimmer).slot("extract"):
        until("trims while busy", lambda: trimmer.trims >= 2, timeout=5)
