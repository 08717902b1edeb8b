"""The wheel carries everything a non-editable install needs (Ansible installs the wheel)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # builds the wheel, about 4 s
def test_wheel_contents(tmp_path):
    """Built verbosely, as an install that shows its build does: setuptools has nothing to warn about
    (it printed about 40 lines for each of dashboard/static and dashboard/templates when they were
    data folders of a package rather than packages of their own)."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = build.stdout + build.stderr
    assert "is absent from the `packages` configuration" not in output
    assert "_Warning" not in output and "SetuptoolsDeprecationWarning" not in output
    [wheel] = tmp_path.glob("facefleet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "facefleet/__init__.py",
        "facefleet/__main__.py",
        "facefleet/api/__init__.py",
        "facefleet/api/extract.py",
        "facefleet/engine/pipeline.py",
        "facefleet/settings/__init__.py",
        "facefleet/cli/gunicorn_conf.py",
        "facefleet/manifest_data/manifest.yml",
        "facefleet/dashboard/templates/overview.html",
        "facefleet/dashboard/static/dashboard.js",
        "facefleet/dashboard/static/dashboard.css",
        "facefleet/dashboard/gunicorn_conf.py",
    ):
        assert required in names, required
    # one import package: nothing else a venv could collide with (a top-level `service` or `dashboard`)
    assert {n.split("/")[0] for n in names} == {"facefleet", wheel.name.split("-py3")[0] + ".dist-info"}
    # every folder of the package with Python modules is declared, so none is missing from the wheel
    folders = {str(p.parent.relative_to(ROOT / "service")) for p in (ROOT / "service").rglob("*.py")}
    for folder in folders - {"."}:
        if "__pycache__" not in folder:
            assert f"facefleet/{folder}/__init__.py" in names, folder
    assert not [n for n in names if n.endswith((".onnx", ".sqlite3"))]
