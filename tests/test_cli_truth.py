"""What the command line says is true (issue 17, items 6, 7, 9 and 10): it sees the installed
appliance's models, every failure exits non-zero, one bad image never hides the others, its hints
and numbers are exact, and it starts before the heavy libraries load.

No test here reads /etc/facefleet: the appliance's settings file is always a file of the test's
own, named by FACEFLEET_APPLIANCE_ENV (conftest turns the lookup off for everything else)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml

from facefleet import cli
from facefleet.cli.appliance import (
    DEFAULT_ENV_FILE,
    OVERRIDE,
    ApplianceEnv,
    merged_environ,
    parse_env_file,
    read_appliance_env,
)
from facefleet.cli.humanize import fixed, human_size
from facefleet.engine.pipeline import Face, ImageResult
from facefleet.errors import ConfigError
from facefleet.models.manifest import load_manifest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("onnx", "onnxruntime", "cv2", "numpy", "matplotlib", "requests", "flask")


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m facefleet ARGS` with the suite's environment, no FACEFLEET_ setting of the caller's
    leaking in, and `env` on top."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("FACEFLEET_", "MODELS_DIR", "DET_", "REC_"))}
    return subprocess.run(
        [sys.executable, "-m", "facefleet", *args],
        capture_output=True,
        text=True,
        env={**clean, OVERRIDE: "none", **(env or {})},
        cwd=cwd or ROOT,
        check=False,
        timeout=300,
    )


def appliance_file(tmp_path: Path, models: Path, cache: Path) -> Path:
    """A service.env as roles/inference_service/templates/service.env.j2 writes it."""
    path = tmp_path / "service.env"
    path.write_text(
        "# Ansible managed\n"
        "FACEFLEET_HOST=0.0.0.0\nFACEFLEET_PORT=18080\nFACEFLEET_PROVIDERS=cpu\n"
        f"FACEFLEET_MODELS_DIR={models}\nFACEFLEET_CACHE_DIR={cache}\n"
        f"FACEFLEET_GALLERY_DB={tmp_path / 'galleries.sqlite3'}\nFACEFLEET_AUTH=on\n"
    )
    return path


# ---------------------------------------------------------------- item 6: the appliance's settings
def test_the_file_looked_up_is_the_one_the_role_writes():
    tasks = yaml.safe_load((ROOT / "roles/inference_service/tasks/configure.yml").read_text())
    defaults = yaml.safe_load((ROOT / "roles/inference_service/defaults/main.yml").read_text())
    written = [
        t["ansible.builtin.template"]["dest"].replace(
            "{{ inference_service_config_dir }}", defaults.get("inference_service_config_dir", "")
        )
        for t in tasks
        if "ansible.builtin.template" in t
    ]
    assert DEFAULT_ENV_FILE in written, written
    template = (ROOT / "roles/inference_service/templates/service.env.j2").read_text()
    assert "FACEFLEET_MODELS_DIR=" in template


def test_env_file_is_read_as_systemd_reads_it():
    text = "# comment\n\nFACEFLEET_PORT=18080\nexport FACEFLEET_HOST='0.0.0.0'\nFACEFLEET_MODELS_DIR=\"/a b\"\n"
    assert parse_env_file(text) == {
        "FACEFLEET_PORT": "18080",
        "FACEFLEET_HOST": "0.0.0.0",
        "FACEFLEET_MODELS_DIR": "/a b",
    }


def test_the_callers_environment_wins_over_the_file_aliases_included():
    appliance = ApplianceEnv("/x/service.env", {"FACEFLEET_MODELS_DIR": "/var/lib/x", "FACEFLEET_PROVIDERS": "cpu"})
    merged = merged_environ(appliance, {"MODELS_DIR": "/mine", "FACEFLEET_PROVIDERS": ""})
    assert "FACEFLEET_MODELS_DIR" not in merged and merged["MODELS_DIR"] == "/mine"
    assert merged["FACEFLEET_PROVIDERS"] == "cpu"  # an empty variable is an unset one, as Settings reads it
    assert merged_environ(appliance, {})["FACEFLEET_MODELS_DIR"] == "/var/lib/x"


def test_lookup_off_missing_and_named(tmp_path):
    assert read_appliance_env({OVERRIDE: "none"}).values == {}
    with pytest.raises(ConfigError, match="no such file"):
        read_appliance_env({OVERRIDE: str(tmp_path / "absent.env")})
    named = tmp_path / "service.env"
    named.write_text("FACEFLEET_MODELS_DIR=/srv/models\n")
    assert read_appliance_env({OVERRIDE: str(named)}).values == {"FACEFLEET_MODELS_DIR": "/srv/models"}
    # an operator's own FACEFLEET_CONFIG turns the installed appliance's file off
    assert read_appliance_env({"FACEFLEET_CONFIG": "/my.yml"}).path is None


def test_an_installed_file_that_cannot_be_read_is_a_note_not_a_failure(tmp_path, monkeypatch):
    """Run as a user the root-only file is closed to (simulated with a folder in its place: root
    reads any file), a command goes on with the defaults and says so."""
    monkeypatch.setattr("facefleet.cli.appliance.DEFAULT_ENV_FILE", str(tmp_path))
    appliance = read_appliance_env({})
    assert appliance.path is None and appliance.values == {}
    assert appliance.note.startswith(f"cannot read the appliance's settings {tmp_path} (Is a directory)")


def test_models_list_sees_the_appliances_models_folder(default_pack, tmp_path):
    models = tmp_path / "appliance-models"
    shutil.copytree(default_pack, models)
    env_file = appliance_file(tmp_path, models, tmp_path / "cache")
    proc = run("models", "list", env={OVERRIDE: str(env_file)})
    assert proc.returncode == 0, proc.stderr
    manifest = load_manifest()
    rows = {line.split()[0].rstrip("*"): line for line in proc.stdout.splitlines()[1:] if line.strip()}
    for name in (manifest.default_detection, manifest.default_recognition):
        assert rows[name].split()[4] == "yes", rows[name]
    assert f"models folder: {models} (from {env_file})" in proc.stdout
    # the caller's variable and flag still win, and the listing says which one was used
    mine = tmp_path / "mine"
    by_env = run("models", "list", env={OVERRIDE: str(env_file), "FACEFLEET_MODELS_DIR": str(mine)})
    assert f"models folder: {mine} (from FACEFLEET_MODELS_DIR)" in by_env.stdout
    by_flag = run("models", "list", "--models-dir", str(mine), env={OVERRIDE: str(env_file)})
    assert f"models folder: {mine} (from --models-dir)" in by_flag.stdout
    no_file = run("models", "list")
    assert "models folder: ./models (the default)" in no_file.stdout


def test_a_named_settings_file_that_is_missing_is_one_line(tmp_path):
    proc = run("models", "list", env={OVERRIDE: str(tmp_path / "nope.env")})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"facefleet: {OVERRIDE}={tmp_path / 'nope.env'}: no such file"


def test_providers_uses_the_appliances_models_and_fails_non_zero(default_pack, tmp_path):
    env_file = appliance_file(tmp_path, default_pack, tmp_path / "cache")
    proc = run("providers", "--json", env={OVERRIDE: str(env_file)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["models_dir"] == f"{default_pack} (from {env_file})"
    assert report["chain"] == ["cpu"] and all(m["active_provider"] == "cpu" for m in report["models"].values())
    empty = tmp_path / "empty"
    empty.mkdir()
    failed = run("providers", "--models-dir", str(empty), "--providers", "cpu")
    assert failed.returncode == 2, failed.stdout
    assert "FAILED" in failed.stdout and f"models folder: {empty} (from --models-dir)" in failed.stdout
    assert failed.stderr.strip().endswith("failed to load (see above)") and "Traceback" not in failed.stderr


def test_the_daemons_never_read_the_appliances_file(tmp_path):
    """`serve` and `exporter` take their settings from their units' environment files only."""
    env_file = tmp_path / "service.env"
    env_file.write_text("FACEFLEET_MODELS_DIR=/nowhere\n")
    os.environ[OVERRIDE] = str(env_file)
    try:
        args = cli.build_parser().parse_args(["serve"])
        assert cli._settings(args).models.models_dir == "./models"
        args = cli.build_parser().parse_args(["models", "list"])
        assert cli._settings(args).models.models_dir == "/nowhere"
    finally:
        os.environ[OVERRIDE] = "none"


# ---------------------------------------------------------------- item 7: one bad image, the others answered
def test_detect_answers_the_other_images_when_one_cannot_be_read(default_pack, images_dir, tmp_path):
    # the CPU alone: on onnxruntime-gpu without a GPU, the chain's fallback warnings would join stderr
    env = {
        "FACEFLEET_MODELS_DIR": str(default_pack),
        "FACEFLEET_CACHE_DIR": str(tmp_path / "cache"),
        "FACEFLEET_PROVIDERS": "cpu",
    }
    missing, other = tmp_path / "nosuch.jpg", images_dir / "biden.jpg"
    proc = run("detect", str(missing), str(other), "--no-embed", env=env)
    assert proc.returncode == 1
    assert f"{other}: 1 face(s)" in proc.stdout and str(missing) not in proc.stdout
    assert proc.stderr.strip() == f"facefleet: {missing}: cannot read it (No such file or directory)"
    as_json = run("detect", str(missing), str(other), "--no-embed", "--json", env=env)
    assert as_json.returncode == 1
    first, second = json.loads(as_json.stdout)
    assert first["status"] == "failed" and "cannot read it" in first["error"]["message"]
    assert second["status"] == "ok" and len(second["faces"]) == 1
    drawn = tmp_path / "drawn"
    with_draw = run("detect", str(missing), str(other), "--no-embed", "--draw", str(drawn), env=env)
    assert with_draw.returncode == 1 and (drawn / "biden.faces.jpg").is_file()
    assert "Traceback" not in as_json.stderr + with_draw.stderr


def test_detect_with_no_readable_image_says_so_for_each(tmp_path):
    """Nothing to run the models on: each image is one line, exit 1, and no model is even looked for."""
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    proc = run("detect", str(a), str(b), "--models-dir", str(tmp_path / "no-models"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"facefleet: {a}: cannot read it (No such file or directory)",
        f"facefleet: {b}: cannot read it (No such file or directory)",
    ]


def test_draw_into_a_folder_that_cannot_be_made_is_one_line(default_pack, images_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"FACEFLEET_MODELS_DIR": str(default_pack), "FACEFLEET_CACHE_DIR": str(tmp_path / "cache")}
    proc = run("detect", str(images_dir / "biden.jpg"), "--no-embed", "--draw", str(blocker / "out"), env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith(f"cannot create the --draw folder {blocker / 'out'}: Not a directory")


# ---------------------------------------------------------------- item 9: small truths
def test_the_missing_model_hint_repeats_the_models_dir(tmp_path):
    folder = tmp_path / "my models"
    folder.mkdir()
    proc = run("detect", str(ROOT / "README.md"), "--models-dir", str(folder))
    assert proc.returncode == 2
    quoted = f"'{folder}'"
    assert f"run `facefleet models pull yunet_2023mar_int8bq --models-dir {quoted}`" in proc.stderr


def test_no_negative_zero_is_printed():
    assert fixed(-0.0004, 3) == "0.000" and fixed(-0.0004, 3, sign=True) == "+0.000"
    assert fixed(-0.04, 1) == "0.0" and fixed(-0.06, 1) == "-0.1"
    face = Face(
        bbox=np.array([-0.04, -0.01, 10.0, 12.0], np.float32),
        score=0.9,
        landmarks=np.zeros((5, 2), np.float32),
        embedding=np.array([-0.0001, -0.0004, 0.2, -0.3], np.float32),
        norm=1.0,
    )
    out = io.StringIO()
    with redirect_stdout(out):
        cli._print_result("p.jpg", ImageResult(faces=[face], shape=(12, 10)))
    assert "-0.0" not in out.getvalue(), out.getvalue()
    assert "box (0.0, 0.0, 10.0, 12.0)" in out.getvalue() and "[+0.000, +0.000, +0.200, -0.300, ...]" in out.getvalue()
    from facefleet.contract.faces import FaceOptions, face_json

    face.landmarks[0] = (-0.001, -0.004)
    face.embedding = np.array([-1e-9, 0.5], np.float32)
    face.bbox[:2] = (-0.001, -0.004)
    for float_coords in (False, True):
        answer = json.dumps(face_json(face, FaceOptions(landmarks=True, float_coords=float_coords)))
        assert not re.search(r"-0\.0(?![0-9])", answer), answer


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.00 kB"),
        (8_421, "8.42 kB"),
        (35_210, "35.2 kB"),
        (999_400, "999 kB"),
        (999_999, "1.00 MB"),
        (52_300_000, "52.3 MB"),
        (1_270_000_000, "1.27 GB"),
    ],
)
def test_sizes_are_in_the_unit_that_fits(size, text):
    assert human_size(size) == text


def test_a_small_gallery_bundle_is_not_zero_megabytes(default_pack, images_dir, tmp_path):
    folder = tmp_path / "staff"
    (folder / "biden").mkdir(parents=True)
    shutil.copy(images_dir / "biden.jpg", folder / "biden" / "1.jpg")
    out = tmp_path / "staff.gallery.zip"
    env = {"FACEFLEET_MODELS_DIR": str(default_pack), "FACEFLEET_CACHE_DIR": str(tmp_path / "cache")}
    proc = run("gallery", "build", str(folder), "--out", str(out), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{out}: {human_size(out.stat().st_size)}"
    assert "0.00 MB" not in proc.stdout and out.stat().st_size < 1_000_000


def test_readme_recipes_write_nothing_into_the_checkout():
    """drawn.jpg once sat in the repository root: the recipe wrote it into the working folder."""
    readme = (ROOT / "README.md").read_text()
    for line in readme.splitlines():
        words = line.split()
        for flag in ("-o", "--output"):
            if line.lstrip().startswith("curl") and flag in words:
                target = words[words.index(flag) + 1]
                assert target.startswith(("/", "$")), line
    assert not (ROOT / "drawn.jpg").exists()
    if shutil.which("git") and (ROOT / ".git").exists():
        for name in ("drawn.jpg", "photos/biden.faces.jpg"):
            ignored = subprocess.run(["git", "check-ignore", "-q", name], cwd=ROOT, check=False)
            assert ignored.returncode == 0, name


# ---------------------------------------------------------------- item 10: start-up
def _python(*argv: str) -> subprocess.CompletedProcess:
    """This interpreter in a fresh process, without the installed appliance's settings."""
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, OVERRIDE: "none"},
        check=True,
        timeout=120,
    )


def _imported(code: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    return set(_python("-c", probe).stdout.splitlines()[-1].split())


def test_help_imports_no_heavy_module():
    """`facefleet --help` and every command's argument parsing load none of onnx, onnxruntime,
    cv2, numpy, matplotlib, requests or flask (onnx alone took 0.95 s here)."""
    proc = _python("-X", "importtime", "-m", "facefleet", "--help")
    loaded = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "facefleet" in loaded and not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    code = (
        "from facefleet.cli import build_parser\n"
        "for argv in (['detect', 'a.jpg'], ['models', 'list'], ['providers'], ['compare', 'a', 'b'],"
        " ['gallery', 'list'], ['bench', 'load', 'http://127.0.0.1:1', '--image', 'a.jpg']):\n"
        "    build_parser().parse_args(argv)"
    )
    leaked = _imported(code) & set(HEAVY)
    assert not leaked, sorted(leaked)


def test_detect_with_a_prepared_cache_never_imports_onnx(default_pack, images_dir, tmp_path):
    """onnx is needed only to write a prepared copy of a model; once it is in the cache, a detection
    runs on onnxruntime alone."""
    env = {"FACEFLEET_MODELS_DIR": str(default_pack), "FACEFLEET_CACHE_DIR": str(tmp_path / "cache")}
    assert run("detect", str(images_dir / "biden.jpg"), env=env).returncode == 0  # prepares the copies
    code = (
        "import sys\nfrom facefleet.cli import main\n"
        f"assert main(['detect', {str(images_dir / 'biden.jpg')!r}]) == 0\n"
        "print('onnx' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FACEFLEET_")}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**clean, OVERRIDE: "none", **env},
        check=True,
        timeout=300,
    )
    assert proc.stdout.splitlines()[-1] == "False True"
