"""Shared by tests/test_constraints.py and tests/test_aarch64.py: the committed constraint sets read as
requirements, a Python of a given version to run pip with, and pip's environment with or without this
machine's pip configuration."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints"
JETPACK6 = CONSTRAINTS / "jetpack6.txt"
CPU = CONSTRAINTS / "cpu.txt"
AARCH64_PLATFORMS = ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"]


def read_set(path: Path) -> list[Requirement]:
    """Every requirement line of a constraint file (comments and blank lines skipped)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def pins_for(path: Path, environment: dict[str, str] | None = None) -> dict[str, str]:
    """name -> pinned version of the lines whose marker holds in `environment` (default: this interpreter)."""
    pins = {}
    for req in read_set(path):
        if req.marker is None or req.marker.evaluate(environment):
            pins[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    return pins


def python_with_pip(version: str) -> str:
    """An interpreter of that version with pip: pip evaluates environment markers against the Python it runs
    on, whatever --python-version says. This one if it matches, else the one constraints/regenerate.py
    would use; else this one (its markers then stand in for the target's)."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    return _regenerate().with_pip(version) or sys.executable


def _regenerate() -> ModuleType:
    """constraints/regenerate.py, a script rather than a package, loaded by path."""
    spec = importlib.util.spec_from_file_location("constraints_regenerate", CONSTRAINTS / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pip_env(machine_config: bool = True) -> dict[str, str]:
    """The environment for pip: as this machine has it, or with its pip configuration (config files,
    find-links, extra indexes, global constraints) left out, as on a host that has only PyPI."""
    env = dict(os.environ)
    if not machine_config:
        for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX"):
            env.pop(key, None)
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def pyproject() -> dict:
    """pyproject.toml (tomllib from 3.11; tomli, which pytest brings, on 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def dependencies(*extras: str) -> list[Requirement]:
    """pyproject.toml's dependencies and those of the extras named."""
    project = pyproject()["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return found


def download_jetpack6(python: str) -> Path:
    """The JetPack 6 set's wheels of facefleet's runtime dependencies and the CPU stand-in of the GPU wheel
    (extra `cpu`) for aarch64 and that Python: a real resolve by pip from PyPI alone (this machine's pip
    configuration left out, as on a Jetson), cached under .cache/ by the set's and pyproject's content."""
    digest = hashlib.sha256(JETPACK6.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    folder = ROOT / ".cache" / "constraints" / f"jetpack6-cp{python.replace('.', '')}-aarch64-{digest}"
    if (folder / ".complete").exists():
        return folder
    command = [python_with_pip(python), "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(folder)]
    for platform in AARCH64_PLATFORMS:
        command += ["--platform", platform]
    command += ["--python-version", python, "-c", str(JETPACK6), *(str(r) for r in dependencies("cpu"))]
    env = pip_env(machine_config=False)
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=900, env=env)
    if result.returncode != 0:
        raise AssertionError(f"the JetPack 6 set does not resolve for aarch64 / Python {python}:\n{result.stderr}")
    (folder / ".complete").write_text("ok")
    return folder
