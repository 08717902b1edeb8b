"""Regenerates facefleet's constraint sets (constraints/jetpack6.txt, constraints/cpu.txt) from PyPI.

Why a script: an appliance must never resolve open ranges at install time, so every install path passes
`-c` with one of these files; the sets are resolved here, once, for the target's platform and Python,
with pip's own resolver (`pip install --dry-run --report`), and committed. pip reads only PyPI here: the
machine's pip configuration (extra indexes, find-links, global constraints) is left out so the sets do not
depend on what one machine happens to have on disk.

    python constraints/regenerate.py --ceiling freeze.txt

`--ceiling` takes a `pip freeze` of an environment whose test suite passed (bash scripts/test.sh): no pin
goes above what was tested there; on a Python that a tested version no longer supports, the newest older
one that does is taken, behind an environment marker. Without it, the newest releases are taken.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# JetPack 6: L4T r36, Ubuntu 22.04 (glibc 2.35), Python 3.10, aarch64. The onnxruntime-gpu wheel of the
# Jetson AI Lab index (jp6/cu126) is built against numpy 1.x: numpy 2 breaks `import onnxruntime`, and
# opencv-python-headless >= 4.12 requires numpy >= 2. PyPI's CPU onnxruntime of the same version stands in
# for the GPU wheel while resolving (the Jetson AI Lab index is not reachable from everywhere).
JETPACK6_GPU_VERSION = "1.23.0"
JETPACK6_RULES = ["numpy<2", "opencv-python-headless<4.12", f"onnxruntime=={JETPACK6_GPU_VERSION}"]
JETPACK6_PLATFORMS = ["manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"]
CPU_PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
CPU_PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"]
CPU_EXTRAS = "cpu,gpu,openvino,provision,bench,test"
# Resolved on x86_64 only (PyPI has no other wheels of it): its lines carry a platform_machine marker.
X86_64_ONLY = {"onnxruntime-openvino"}
# onnxruntime on x86 CPU appliances, chosen by measurement (bench/ort_versions.py; figures and reasons in
# docs/benchmarks.md, "onnxruntime version per target"). Per Python: 3.10 takes the newest release that still
# ships cp310 wheels. PyPI's onnxruntime-gpu (the gpu extra off Jetsons: CI's GPU-wheel tier) follows the CPU pin
# so both run the same kernels; onnxruntime-openvino (the openvino extra, x86 only) is pinned where it exists.
CPU_ONNXRUNTIME = {"3.10": "1.23.2", "3.11": "1.24.4", "3.12": "1.24.4", "3.13": "1.24.4"}
CPU_OPENVINO = {"3.10": "1.23.0", "3.11": "1.24.1", "3.12": "1.24.1", "3.13": "1.24.1"}


def cpu_rules(python: str) -> list[str]:
    """The measured onnxruntime pins for that Python (constraints: a distribution not asked for is ignored)."""
    ort, openvino = CPU_ONNXRUNTIME[python], CPU_OPENVINO[python]
    return [f"onnxruntime=={ort}", f"onnxruntime-gpu=={ort}", f"onnxruntime-openvino=={openvino}"]


def canonical(name: str) -> str:
    """PEP 503 name, so `PyYAML` and `pyyaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_env() -> dict[str, str]:
    """This process's environment without the machine's pip configuration (files and PIP_* index settings)."""
    dropped = {"PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX", "PIP_REQUIRE_VIRTUALENV"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def build_wheel(out: Path) -> Path:
    """facefleet's own wheel: pip resolves its extras from the wheel's metadata, as an install would."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)], check=True)
    return next(out.glob("facefleet-*.whl"))


def with_pip(version: str) -> str | None:
    """A Python of that version that has pip (python3.X on PATH, else pyenv's), or None. pip evaluates
    environment markers (`tomli; python_version < "3.11"`) against the interpreter it runs on, whatever
    --python-version says, so each Python's set is resolved by that Python itself."""
    found = shutil.which(f"python{version}")
    candidates = [found] if found else []
    candidates += [str(p) for p in sorted(Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))]
    for candidate in candidates:
        if subprocess.run([candidate, "-m", "pip", "--version"], check=False, capture_output=True).returncode == 0:
            return candidate
    return None


def interpreter(version: str) -> str:
    """with_pip(version), or the reason to stop: that Python's markers are needed."""
    found = with_pip(version)
    if found is None:
        raise SystemExit(f"no Python {version} with pip (python{version} on PATH or pyenv's): its markers need it")
    return found


def resolve(requirement: str, python: str, platforms: list[str], rules: list[str], work: Path) -> dict[str, str]:
    """Every distribution pip would install for `requirement` on that Python and platform (binary wheels only)."""
    rules_file = work / f"rules-{python}.txt"
    rules_file.write_text("\n".join(rules) + "\n")
    report = work / f"report-{python}.json"
    command = [interpreter(python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--report", str(report), "--target", str(work / "target"), "--only-binary=:all:"]
    command += ["--python-version", python, "-c", str(rules_file), requirement]
    for platform in platforms:
        command += ["--platform", platform]
    subprocess.run(command, check=True, env=pip_env())
    installed = json.loads(report.read_text())["install"]
    found = {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in installed}
    found.pop("facefleet", None)
    return found


def ceiling_rules(path: Path | None) -> list[str]:
    """`name<=version` for every pinned line of a pip freeze."""
    if path is None:
        return []
    rules = []
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line.strip())
        if match:
            rules.append(f"{canonical(match[1])}<={match[2]}")
    return rules


def merge(per_python: dict[str, dict[str, str]]) -> list[str]:
    """One `==` line per package, or one per group of Pythons with an environment marker where they differ."""
    pythons = list(per_python)
    lines = []
    for name in sorted({n for found in per_python.values() for n in found}):
        versions = {py: found[name] for py, found in per_python.items() if name in found}
        machine = 'platform_machine == "x86_64"' if name in X86_64_ONLY else ""
        if len(set(versions.values())) == 1:
            lines.append(f"{name}=={next(iter(versions.values()))}" + (f" ; {machine}" if machine else ""))
            continue
        for version in dict.fromkeys(versions.values()):  # in order of the first Python using it
            users = [py for py in pythons if versions.get(py) == version]
            lines.append(f"{name}=={version} ; {marker(users, pythons)}" + (f" and {machine}" if machine else ""))
    return lines


def marker(users: list[str], pythons: list[str]) -> str:
    """A python_version marker naming `users` among `pythons`: open-ended at either end, so newer Pythons
    than the last resolved one take the newest pins."""
    first, last = pythons.index(users[0]), pythons.index(users[-1])
    if users != pythons[first : last + 1]:
        return " or ".join(f'python_version == "{py}"' for py in users)
    if first == 0:
        return f'python_version < "{pythons[last + 1]}"'
    if last == len(pythons) - 1:
        return f'python_version >= "{users[0]}"'
    return f'python_version >= "{users[0]}" and python_version < "{pythons[last + 1]}"'


HEADERS = {
    "jetpack6": """\
# facefleet constraint set: JetPack 6 (L4T r36, Ubuntu 22.04, Python 3.10, aarch64) - Jetsons, natively
# and in the gpu container. Every runtime dependency of facefleet, transitively, pinned to a version with a
# cp310 (or abi3 / py3) manylinux aarch64 wheel on PyPI. numpy stays < 2: the onnxruntime-gpu wheel of the
# Jetson AI Lab index (jp6/cu126) is built against numpy 1.x, and opencv-python-headless 4.11.0.86 is the
# last release that accepts numpy < 2. onnxruntime-gpu comes from the Jetson AI Lab index; onnxruntime (CPU)
# of the same version is its stand-in where that index is not reachable (tests/test_aarch64.py).
# Made by: python constraints/regenerate.py --ceiling <pip freeze of the tested development venv>
# (pip's resolver run by Python 3.10 with --platform manylinux2014 / manylinux_2_17 / manylinux_2_28 aarch64
# --python-version 3.10, binary wheels only, from PyPI alone). Regenerate the same way;
# tests/test_constraints.py checks the result and tests/test_aarch64.py installs it on emulated aarch64.
# Use: pip install -c constraints/jetpack6.txt ...
""",
    "cpu": """\
# facefleet constraint set: CPU appliances and development (x86_64 mainly; Python 3.10 through 3.13), every
# extra of pyproject.toml (cpu, gpu = PyPI's onnxruntime-gpu, openvino = onnxruntime-openvino, x86_64 only,
# provision, bench, test), transitively. Pins at
# or below what the development venv was tested with; where a tested version no longer supports an older
# Python, an environment marker gives that Python the newest release that does.
# Made by: python constraints/regenerate.py --ceiling <pip freeze of the tested development venv>
# (pip's resolver run by each of Python 3.10-3.13, --platform manylinux2014 / manylinux_2_17 / manylinux_2_28
# x86_64, binary wheels only, from PyPI alone). Regenerate the same way; tests/test_constraints.py checks it.
# onnxruntime, onnxruntime-gpu and onnxruntime-openvino are pinned by measurement, not by newest: 1.24.4 runs
# the INT8 packs faster than 1.32 here; 3.10 keeps 1.23.2, its last cp310 one (bench/ort_versions.py; figures
# and reasons in docs/benchmarks.md; inputs CPU_ONNXRUNTIME / CPU_OPENVINO of constraints/regenerate.py).
# Use: pip install -c constraints/cpu.txt -e '.[test,cpu]' (scripts/bootstrap.sh does).
""",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ceiling", type=Path, help="pip freeze of a tested environment: no pin goes above it")
    args = parser.parse_args()
    ceiling = ceiling_rules(args.ceiling)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        wheel = build_wheel(work / "dist")
        requirement = f"facefleet[cpu] @ {wheel.as_uri()}"
        jetpack = resolve(requirement, "3.10", JETPACK6_PLATFORMS, ceiling + JETPACK6_RULES, work)
        jetpack["onnxruntime-gpu"] = JETPACK6_GPU_VERSION
        (HERE / "jetpack6.txt").write_text(HEADERS["jetpack6"] + "\n".join(merge({"3.10": jetpack})) + "\n")
        cpu = {
            py: resolve(f"facefleet[{CPU_EXTRAS}] @ {wheel.as_uri()}", py, CPU_PLATFORMS, ceiling + cpu_rules(py), work)
            for py in CPU_PYTHONS
        }
        (HERE / "cpu.txt").write_text(HEADERS["cpu"] + "\n".join(merge(cpu)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
