"""The `facefleet` command as an operator runs it: real processes, real models, real photos."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import cv2
import pytest

from .conftest import SHARED_IMAGES


def run(*args: str, env_extra: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "facefleet", *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def pack_env(default_pack, cache_dir) -> dict:
    return {"FACEFLEET_MODELS_DIR": str(default_pack), "FACEFLEET_CACHE_DIR": str(cache_dir)}


def test_detect_json_with_the_default_pack(pack_env, images_dir):
    proc = run("detect", str(images_dir / "two_people.jpg"), "--json", env_extra=pack_env, check=True)
    [result] = json.loads(proc.stdout)
    assert result["status"] == "ok" and len(result["faces"]) == 2
    face = result["faces"][0]
    assert len(face["bbox"]) == 4 and len(face["landmarks"]) == 5 and len(face["vec"]) == 128
    assert face["prob"] > 0.5 and face["norm"] > 0


def test_detect_keeps_answering_the_good_images_when_one_is_bad(pack_env, images_dir, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    proc = run("detect", str(images_dir / "biden.jpg"), str(text), str(empty), env_extra=pack_env)
    assert proc.returncode == 1
    assert "biden.jpg: 1 face(s)" in proc.stdout
    assert f"facefleet: {text}: not a recognised image" in proc.stderr  # one line each on stderr
    assert f"facefleet: {empty}: empty input" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_detect_draws_annotated_images(pack_env, images_dir, tmp_path):
    out = tmp_path / "drawn.jpg"
    run("detect", str(images_dir / "two_people.jpg"), "--draw", str(out), "--no-embed", env_extra=pack_env, check=True)
    drawn, original = cv2.imread(str(out)), cv2.imread(str(images_dir / "two_people.jpg"))
    assert drawn.shape == original.shape
    assert (cv2.absdiff(drawn, original) > 60).any()  # something was drawn
    folder = tmp_path / "drawn"  # no image suffix: a folder, as scripts/run.sh uses it
    run("detect", str(images_dir / "biden.jpg"), "--draw", str(folder), "--no-embed", env_extra=pack_env, check=True)
    assert (folder / "biden.faces.jpg").is_file()


def test_compare_same_and_different_people(pack_env, images_dir):
    same = run(
        "compare",
        str(images_dir / "obama.jpg"),
        str(images_dir / "impostor_1.jpg"),
        "--json",
        env_extra=pack_env,
        check=True,
    )
    other = run(
        "compare",
        str(images_dir / "obama.jpg"),
        str(images_dir / "biden.jpg"),
        "--json",
        env_extra=pack_env,
        check=True,
    )
    assert json.loads(same.stdout)["same_person"] is True
    assert json.loads(other.stdout)["same_person"] is False


@pytest.mark.parametrize("by", ["flag", "environment"])
def test_a_service_port_in_use_is_one_line_before_serving(pack_env, tmp_path, by):
    """`facefleet serve` on a taken port: one line naming the port and its setting, a non-zero
    exit, and no "serving on" (it used to print that, then gunicorn's retries and errors)."""
    env = {**pack_env, "FACEFLEET_API_KEYS": "k" * 20, "FACEFLEET_METRICS_DIR": str(tmp_path / "metrics")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if by == "flag":
            proc = run("serve", "--host", "127.0.0.1", "--port", str(port), env_extra=env)
        else:
            proc = run("serve", env_extra={**env, "FACEFLEET_HOST": "127.0.0.1", "FACEFLEET_PORT": str(port)})
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr == (
        f"facefleet: port {port} on 127.0.0.1 is already in use: choose another with --port or FACEFLEET_PORT\n"
    )


@pytest.mark.slow  # six runs of the command, about 12 s
def test_compare_says_which_face_it_used_warns_and_lets_the_user_choose(pack_env, images_dir):
    """two_people.jpg: face 1 is Obama, face 2 (the largest) is Biden. The default compares
    Biden with obama.jpg and must say so; --face-a 1 and --all-pairs find Obama."""
    group, obama = str(images_dir / "two_people.jpg"), str(images_dir / "obama.jpg")
    default = run("compare", group, obama, env_extra=pack_env, check=True)
    [warning] = default.stderr.splitlines()
    assert warning == (
        f"facefleet: warning: {group} has 2 faces; compared face 2, the largest "
        "(choose with --face-a N, or --all-pairs)"
    )
    assert f"{group}: face 2 of 2, the largest, box (786.5, 48.4, 936.5, 255.5)" in default.stdout
    assert f"{obama}: face 1 of 1, box (" in default.stdout and "different people" in default.stdout

    chosen = run("compare", group, obama, "--face-a", "1", "--json", env_extra=pack_env, check=True)
    answer = json.loads(chosen.stdout)
    assert chosen.stderr == "" and answer["same_person"] is True
    assert answer["a"] == {
        "image": group,
        "faces_found": 2,
        "chosen": "requested",
        "compared": [{"face": 1, "bbox": [240.9, 31.3, 383.9, 227.7]}],
    }

    pairs = json.loads(run("compare", group, obama, "--all-pairs", "--json", env_extra=pack_env, check=True).stdout)
    assert [(p["face_a"], p["face_b"], p["same_person"]) for p in pairs["pairs"]] == [(1, 1, True), (2, 1, False)]
    assert pairs["same_person"] is True and pairs["similarity"] == answer["similarity"]  # the best pair's verdict
    table = run("compare", group, obama, "--all-pairs", env_extra=pack_env, check=True).stdout
    assert "the most similar pair: face 1 of A, face 1 of B" in table and "*" in table

    wrong = run("compare", group, obama, "--face-a", "3", env_extra=pack_env)
    assert wrong.returncode == 2
    assert wrong.stderr == f"facefleet: {group} has 2 face(s): --face-a must be from 1 to 2\n"
    zero = run("compare", group, obama, "--face-b", "0", env_extra=pack_env)
    assert zero.returncode == 2 and "faces are numbered from 1" in zero.stderr


def test_providers_report_tells_where_each_model_runs_and_why(pack_env):
    proc = run("providers", "--json", env_extra=pack_env, check=True)
    report = json.loads(proc.stdout)
    assert "CPUExecutionProvider" in report["environment"]["available_providers"]
    assert set(report["environment"]["gpu"]["providers"]) == {"tensorrt", "cuda", "openvino"}
    for model in report["models"].values():
        assert model["active_provider"] == "cpu"
        assert [a["provider"] for a in model["attempts"]] == ["tensorrt", "cuda", "cpu"]
        assert model["partial_fallback"] is False and model["node_placement"]["cpu_nodes"] > 0


def test_models_verify_and_list(pack_env, shared_models, tmp_path):
    run("models", "verify", env_extra=pack_env, check=True)
    broken = tmp_path / "models"
    broken.mkdir()
    shutil.copy(shared_models / "scrfd_500m.onnx", broken)
    with open(broken / "scrfd_500m.onnx", "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00" * 16)
    proc = run("models", "verify", "scrfd_500m", "--models-dir", str(broken))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].startswith("scrfd_500m: sha256 ")
    listing = run("models", "list", env_extra=pack_env, check=True).stdout
    assert "yunet_2023mar_int8bq*" in listing and "glintr100" in listing


def test_missing_model_is_one_line_not_a_traceback(tmp_path):
    proc = run("detect", str(SHARED_IMAGES / "biden.jpg"), "--models-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert f"is missing; run `facefleet models pull yunet_2023mar_int8bq --models-dir {tmp_path}`" in proc.stderr


def test_invalid_environment_value_fails_with_one_line(pack_env, images_dir):
    proc = run("detect", str(images_dir / "biden.jpg"), env_extra={**pack_env, "REC_BATCH_SIZE": "zero"})
    assert proc.returncode == 2
    expected = "facefleet: invalid REC_BATCH_SIZE='zero': invalid literal for int() with base 10: 'zero'"
    assert proc.stderr.strip() == expected
