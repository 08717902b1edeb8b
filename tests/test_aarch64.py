"""facefleet on aarch64 under emulation: an arm64 Debian bookworm tree (mmdebstrap --arch=arm64
--variant=extract: Python's packages and their dependencies unpacked, their maintainer scripts not run, which
spares minutes of emulated byte-compiling) run by qemu-user-static through binfmt_misc. The JetPack 6
constraint set's CPU equivalent (PyPI's aarch64 onnxruntime in place of the Jetson AI Lab's onnxruntime-gpu,
same version) and the facefleet wheel are installed offline into a venv inside the tree; in the chroot,
facefleet's package, onnxruntime, numpy and cv2 must import, numpy must be < 2, the machine must say aarch64,
and one real detection must find the two faces of a shared photo with a shared model.

The pins are checked for cp310 by tests/test_constraints.py; here they are installed on Python 3.11,
because Debian's arm64 Python is 3.11 (JetPack 6's Ubuntu 22.04 has 3.10): the wheels are downloaded on
this machine with `pip download --python-version 3.11` and the same constraint file. Slow: the venv, the
install and the detection run emulated (roughly 9x slower than native); the tree's tarball is cached under
.cache/aarch64/."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .constraintsets import JETPACK6, ROOT, download_jetpack6, pins_for

pytestmark = pytest.mark.slow

SUITE = "bookworm"
MIRROR = os.environ.get("FACEFLEET_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# python3-venv for the environment, libstdc++6 for the C++ wheels (cv2, onnxruntime; every Ubuntu and JetPack
# has it); their dependencies come with them. opencv-python-headless needs no libGL or GLib: it imports
# without them here.
PACKAGES = ["python3", "python3-venv", "libstdc++6"]
TOOLS = {"mmdebstrap": "mmdebstrap", "arch-test": "arch-test", "qemu-aarch64-static": "qemu-user-static"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
CACHE = ROOT / ".cache" / "aarch64"
ARTIFACTS = ROOT / "test-artifacts"
MODELS = ("scrfd_2.5g.onnx", "mobilefacenet.onnx")
PHOTO = "two_people.jpg"
VENV = "/opt/facefleet-venv"
CHROOT_ENV = {
    "PATH": f"{VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LC_ALL": "C.UTF-8",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_INPUT": "1",
}
CHECK = """
import json, platform, cv2, numpy, onnxruntime, facefleet
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(), "numpy": numpy.__version__,
                  "onnxruntime": onnxruntime.__version__, "providers": onnxruntime.get_available_providers(),
                  "cv2": cv2.__version__, "facefleet": facefleet.__file__}))
"""


def run(*argv: str, timeout: int = 900, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    return result.stdout


def install_tools() -> None:
    """mmdebstrap, arch-test and qemu-user-static from Debian where missing (as scripts/test.sh does)."""
    missing = [package for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"needs {' '.join(missing)} (apt-get install {' '.join(missing)}, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-qq", env=env)
    run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, "binfmt-support", env=env)


def enable_binfmt() -> str:
    """The qemu-aarch64 binfmt_misc entry, enabled: mounts binfmt_misc and asks update-binfmts if needed."""
    entry = BINFMT / "qemu-aarch64"
    if not (BINFMT / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True, check=False)
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True, check=False)
    if not entry.exists() or not entry.read_text().startswith("enabled"):
        pytest.skip(f"this kernel runs no aarch64 binaries: {entry} absent or disabled after update-binfmts --enable")
    return entry.read_text()


def binfmt_flags(entry: str) -> str:
    """The flags of a binfmt_misc entry (F: the interpreter was opened at registration, works in a chroot)."""
    return next((line.split(":", 1)[1].strip() for line in entry.splitlines() if line.startswith("flags:")), "")


def rootfs_tarball() -> Path:
    """The arm64 bookworm tree as a tarball, cached by suite, variant and package list."""
    key = hashlib.sha256(f"{SUITE} extract {' '.join(PACKAGES)}".encode()).hexdigest()[:12]
    tarball = CACHE / f"{SUITE}-arm64-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".partial.tar")
    command = ["mmdebstrap", "--arch=arm64", "--variant=extract", "--mode=root", f"--include={','.join(PACKAGES)}"]
    run(*command, SUITE, str(partial), MIRROR, timeout=1800)
    partial.rename(tarball)
    return tarball


def facefleet_wheel(out: Path) -> Path:
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT))
    return next(out.glob("facefleet-*.whl"))


def chroot(root: Path, *argv: str, timeout: int = 900) -> str:
    return run("chroot", str(root), *argv, timeout=timeout, env=CHROOT_ENV)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory, shared_models: Path, images_dir: Path):
    """The rootfs unpacked, the constraint set and facefleet installed offline into a venv inside it."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    timings: dict[str, float] = {}
    start = time.monotonic()
    install_tools()
    entry = enable_binfmt()
    tarball = rootfs_tarball()
    timings["rootfs_s"] = time.monotonic() - start

    mark = time.monotonic()
    wheels = download_jetpack6("3.11")
    root = tmp_path_factory.mktemp("arm64") / "root"
    root.mkdir()
    run("tar", "--numeric-owner", "-xf", str(tarball), "-C", str(root))
    if "F" not in binfmt_flags(entry):  # without fix-binary the interpreter must be inside the chroot
        shutil.copy2("/usr/bin/qemu-aarch64-static", root / "usr/bin")
    house = root / "tmp" / "wheels"
    shutil.copytree(wheels, house, ignore=shutil.ignore_patterns(".complete"))
    facefleet_wheel(house)
    shutil.copy2(JETPACK6, root / "tmp" / "constraints.txt")
    work = root / "tmp" / "check"
    (work / "models").mkdir(parents=True)
    for name in MODELS:
        shutil.copy2(shared_models / name, work / "models" / name)
    shutil.copy2(images_dir / PHOTO, work / PHOTO)
    timings["prepare_s"] = time.monotonic() - mark

    mounted: list[Path] = []
    try:
        # /proc and /sys as on a real host: onnxruntime's cpuinfo reads /sys/devices/system/cpu and aborts
        # without it
        for fstype, point, options in (("proc", "proc", "nosuid,nodev,noexec"), ("sysfs", "sys", "ro")):
            (root / point).mkdir(exist_ok=True)  # the extracted tree has no base-files to make them
            run("mount", "-t", fstype, "-o", options, fstype, str(root / point))
            mounted.append(root / point)
        mark = time.monotonic()
        chroot(root, "/usr/bin/python3", "-m", "venv", VENV)
        pip = [f"{VENV}/bin/python", "-m", "pip", "install", "-q", "--no-compile", "--no-index"]
        chroot(root, *pip, "--find-links", "/tmp/wheels", "-c", "/tmp/constraints.txt", "facefleet[cpu]", timeout=1800)
        timings["install_s"] = time.monotonic() - mark
        yield {"root": root, "timings": timings}
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
        if not any(os.path.ismount(point) for point in mounted):
            shutil.rmtree(root, ignore_errors=True)
    timings["total_s"] = time.monotonic() - start
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "aarch64.json").write_text(json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2))


def test_imports_on_aarch64_with_numpy_below_2(emulated):
    mark = time.monotonic()
    report = json.loads(chroot(emulated["root"], f"{VENV}/bin/python", "-c", CHECK).strip().splitlines()[-1])
    emulated["timings"]["imports_s"] = time.monotonic() - mark
    assert report["machine"] == "aarch64", report
    assert int(report["numpy"].split(".")[0]) < 2, report
    pins = pins_for(JETPACK6)
    assert report["numpy"] == pins["numpy"] and report["onnxruntime"] == pins["onnxruntime"], report
    assert report["cv2"].startswith(pins["opencv-python-headless"].rsplit(".", 1)[0]), report
    assert "CPUExecutionProvider" in report["providers"], report
    assert report["facefleet"].startswith(f"{VENV}/lib/python3"), report


def test_one_detection_finds_the_two_faces(emulated):
    mark = time.monotonic()
    command = [
        f"{VENV}/bin/facefleet",
        "detect",
        "--models-dir",
        "/tmp/check/models",
        "--cache-dir",
        "/tmp/check/cache",
    ]
    command += ["--det", "scrfd_2.5g", "--rec", "mobilefacenet", "--providers", "cpu", "--json", f"/tmp/check/{PHOTO}"]
    [result] = json.loads(chroot(emulated["root"], *command, timeout=600))
    emulated["timings"]["detect_s"] = time.monotonic() - mark
    assert result["status"] == "ok", result
    faces = result["faces"]
    assert len(faces) == 2, [f["bbox"] for f in faces]
    assert all(f["prob"] > 0.5 and len(f["vec"]) == 128 for f in faces)
