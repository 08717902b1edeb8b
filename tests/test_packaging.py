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
        "service/api/__init__.py",
        "service/api/extract.py",
        "service/cli/gunicorn_conf.py",
        "service/manifest_data/manifest.yml",
        "dashboard/templates/overview.html",
        "dashboard/static/dashboard.js",
        "dashboard/static/dashboard.css",
        "dashboard/gunicorn_conf.py",
    ):
        assert required in names, required
    assert not [n for n in names if n.endswith((".onnx", ".sqlite3"))]
