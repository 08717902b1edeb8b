"""The committed constraint sets (constraints/jetpack6.txt, constraints/cpu.txt): exact pins only, every
dependency of pyproject.toml covered, the JetPack 6 set resolvable for aarch64 / cp310 from PyPI with
numpy < 2 everywhere (no wheel of it asks for numpy >= 2), and the CPU set resolvable for this Python."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from .constraintsets import CPU, JETPACK6, ROOT, dependencies, download_jetpack6, pins_for, pip_env, read_set

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
# What a Jetson on JetPack 6 evaluates markers to.
JETSON_ENV = {
    "python_version": "3.10",
    "python_full_version": "3.10.12",
    "platform_machine": "aarch64",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


def python_env(version: str) -> dict[str, str]:
    """Marker environment of an x86_64 Linux CPython of that version."""
    full = f"{version}.0"
    return {**JETSON_ENV, "python_version": version, "python_full_version": full, "platform_machine": "x86_64"}


@pytest.mark.parametrize("path", [JETPACK6, CPU], ids=["jetpack6", "cpu"])
def test_every_pin_is_exact_and_the_header_says_how_it_was_made(path: Path):
    text = path.read_text()
    assert "regenerate" in text.lower() and text.startswith("# facefleet constraint set:"), "header missing"
    requirements = read_set(path)
    assert len(requirements) > 20
    for req in requirements:
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, str(req)
        assert not req.extras and req.url is None, str(req)


def test_jetpack6_keeps_numpy_below_2_and_the_gpu_wheel_pinned():
    pins = pins_for(JETPACK6, JETSON_ENV)
    assert Version(pins["numpy"]) < Version("2"), pins["numpy"]
    assert Version(pins["opencv-python-headless"]) < Version("4.12"), "opencv-python-headless >= 4.12 needs numpy 2"
    assert pins["onnxruntime-gpu"] == pins["onnxruntime"], "the CPU stand-in must be the GPU wheel's version"
    assert not [r for r in read_set(JETPACK6) if r.marker is not None], "one Python, one platform: no markers"


@pytest.mark.parametrize("python", PYTHONS)
def test_cpu_set_pins_one_version_per_package_for_each_python(python: str):
    seen: dict[str, list[str]] = {}
    for req in read_set(CPU):
        if req.marker is None or req.marker.evaluate(python_env(python)):
            seen.setdefault(canonicalize_name(req.name), []).append(str(req))
    assert not {name: lines for name, lines in seen.items() if len(lines) > 1}


@pytest.mark.parametrize(
    ("path", "extras", "pythons"),
    [(JETPACK6, ("cpu",), ["3.10"]), (CPU, ("cpu", "gpu", "openvino", "provision", "bench", "test"), PYTHONS)],
    ids=["jetpack6", "cpu"],
)
def test_pyproject_dependencies_are_covered(path: Path, extras: tuple[str, ...], pythons: list[str]):
    """Every dependency (and extra) of pyproject.toml has a pin, and the pin is inside pyproject's range."""
    for python in pythons:
        environment = JETSON_ENV if path == JETPACK6 else python_env(python)
        pins = pins_for(path, environment)
        for req in dependencies(*extras):
            name = canonicalize_name(req.name)
            assert name in pins, f"{name} of pyproject.toml is not pinned in {path.name} for Python {python}"
            assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} outside {req}"
    if path == JETPACK6:
        assert "onnxruntime-gpu" in pins_for(JETPACK6, JETSON_ENV)


def test_the_openvino_build_is_pinned_for_x86_64_only_and_the_extra_falls_back_elsewhere():
    """PyPI has onnxruntime-openvino for x86_64 alone (1.23.0 the last with a cp310 wheel); on another machine
    the `openvino` extra is the plain CPU wheel, so an install never fails for want of a wheel."""
    for python in PYTHONS:
        assert "onnxruntime-openvino" in pins_for(CPU, python_env(python)), python
    arm = {**python_env("3.11"), "platform_machine": "aarch64"}
    assert "onnxruntime-openvino" not in pins_for(CPU, arm)
    wanted = {canonicalize_name(r.name) for r in dependencies("openvino") if r.marker and r.marker.evaluate(arm)}
    assert wanted == {"onnxruntime"}


def test_scripts_and_roles_install_inside_the_sets():
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert "constraints/cpu.txt" in bootstrap and "constraints/jetpack6.txt" in bootstrap and "-c " in bootstrap
    for task_file in ("roles/onnxruntime/tasks/install.yml", "roles/facefleet_package/tasks/install.yml"):
        pip_tasks = re.findall(r"ansible\.builtin\.pip:\n((?:      .*\n|    .*\n)+)", (ROOT / task_file).read_text())
        assert pip_tasks and all("-c {{" in task for task in pip_tasks), task_file


def wheel_requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(metadata).decode())
    return [Requirement(r) for r in message.get_all("Requires-Dist") or []]


@pytest.mark.slow
def test_jetpack6_resolves_for_aarch64_cp310_and_nothing_asks_for_numpy_2():
    folder = download_jetpack6("3.10")
    pins = pins_for(JETPACK6, JETSON_ENV)
    wheels = sorted(folder.glob("*.whl"))
    assert {canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels} >= {"numpy", "onnxruntime", "onnx"}
    for wheel in wheels:
        name, version, _, tags = parse_wheel_filename(wheel.name)
        name = canonicalize_name(name)
        assert pins.get(name) == str(version), f"{wheel.name} was resolved but {JETPACK6.name} pins {pins.get(name)}"
        assert all(t.platform == "any" or "aarch64" in t.platform for t in tags), wheel.name
        assert any(t.interpreter in ("cp310", "py3", "py2") or t.abi == "abi3" for t in tags), wheel.name
        for req in wheel_requires(wheel):
            if canonicalize_name(req.name) != "numpy" or (req.marker and not req.marker.evaluate(JETSON_ENV)):
                continue
            assert req.specifier.contains(pins["numpy"]), f"{wheel.name} requires {req}: numpy {pins['numpy']} refused"
    numpy = next(w for w in wheels if w.name.startswith("numpy-"))
    assert Version(parse_wheel_filename(numpy.name)[1].base_version) < Version("2")


def resolve_cpu(machine_config: bool) -> dict[str, str]:
    """What pip would install for every extra on this Python inside the CPU set (a dry run: a full resolve)."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q", "--report", "-"]
    command += ["-c", str(CPU), f"{ROOT}[cpu,gpu,openvino,provision,bench,test]"]
    env = pip_env(machine_config=machine_config)
    result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    python = sys.version.split()[0]
    assert result.returncode == 0, f"constraints/cpu.txt does not resolve on Python {python}:\n{result.stderr}"
    report = json.loads(result.stdout)
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}


@pytest.mark.slow
@pytest.mark.parametrize("machine_config", [True, False], ids=["this-machine-pip-config", "pypi-alone"])
def test_cpu_set_resolves_for_this_python(machine_config: bool):
    resolved = resolve_cpu(machine_config)
    resolved.pop("facefleet")
    pins = pins_for(CPU)
    unpinned = sorted(set(resolved) - set(pins))
    assert not unpinned, f"resolved but not pinned in constraints/cpu.txt: {unpinned}"
    assert {name: v for name, v in resolved.items() if pins[name] != v} == {}
