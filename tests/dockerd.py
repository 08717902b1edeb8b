"""A Docker daemon owned by a test, and what it needs to build without pulling anything.

`Dockerd` starts Debian's `dockerd` (root) with its own data root, exec root, pidfile and unix
socket in a folder the test owns: never the system's /var/run/docker.sock. No iptables rules
and no bridge: everything it runs uses host networking, as the inference_container role does.
`base_image` makes a Debian rootfs with mmdebstrap (python3 + python3-venv from Debian's
packages; nothing can be pulled from a registry here), caches the tarball under .cache/ and
`docker import`s it. `wheelhouse` downloads facefleet[cpu]'s dependencies for that image's
Python, pinned by constraints/cpu.txt, so the image builds offline."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
DEBIAN_SUITE = "bookworm"


def _mounts_under(folder: Path) -> list[str]:
    """Mount points below `folder` (overlays, shm, netns files a daemon left), deepest first."""
    prefix = str(folder.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return sorted(points, key=len, reverse=True)


class Dockerd:
    """`dockerd` with every path of its own under `folder`; `stop()` kills it by its pidfile and
    unmounts whatever it left mounted there."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.pidfile = folder / "dockerd.pid"
        self.log = folder / "dockerd.log"
        self.env = {**os.environ, "DOCKER_HOST": self.host}
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Dockerd:
        self.folder.mkdir(parents=True, exist_ok=True)
        dockerd = shutil.which("dockerd")
        assert dockerd, "dockerd not found: install Debian's docker.io (scripts/test.sh does)"
        argv = [
            dockerd,
            f"--data-root={self.folder / 'data'}",
            f"--exec-root={self.folder / 'exec'}",
            f"--pidfile={self.pidfile}",
            f"--host={self.host}",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
        ]
        with open(self.log, "wb") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self._proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self.docker("version", check=False).returncode == 0:
                return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"dockerd not answering after {timeout} s:\n{self.log.read_text()[-3000:]}")

    def docker(self, *argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["docker", *argv], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def stop(self) -> None:
        if self.pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(self.pidfile.read_text().strip()), signal.SIGTERM)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        for point in _mounts_under(self.folder):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def base_image(daemon: Dockerd, tag: str) -> str:
    """A Debian rootfs with python3 and python3-venv (and ca-certificates), imported as `tag`.

    The build in the image needs no network (it installs from a wheelhouse); where a build does
    reach an index through an intercepting proxy, that proxy's CA must be copied into this rootfs
    (mmdebstrap --customize-hook='copy-in /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/')."""
    tarball = CACHE / "container-base" / f"{DEBIAN_SUITE}-python3-{platform.machine()}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial.tar")
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                DEBIAN_SUITE,
                str(partial),
            ],
            check=True,
            capture_output=True,
            timeout=900,
        )
        partial.rename(tarball)
    daemon.docker("import", str(tarball), tag, timeout=300)
    return tag


def image_python(daemon: Dockerd, image: str) -> str:
    """The image's Python as "3.11" (what its wheels must be built for)."""
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    return daemon.docker("run", "--rm", "--network=host", image, "python3", "-c", code).stdout.strip()


def facefleet_wheel(folder: Path) -> Path:
    """This checkout's wheel, built reproducibly (an unchanged tree is an unchanged file)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(ROOT)],
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(folder.glob("facefleet-*.whl"))


def wheelhouse(wheel: Path, python: str, constraints: Path) -> Path:
    """facefleet[cpu]'s dependencies as binary wheels for CPython `python` on this machine's
    architecture, pinned by `constraints`; cached under .cache/ per Python and constraint set."""
    key = hashlib.sha256(constraints.read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()[:12]
    house = CACHE / f"container-wheelhouse-py{python}-{platform.machine()}-{key}"
    if (house / ".complete").exists():
        return house
    arch = platform.machine()
    platforms = [f"manylinux2014_{arch}", f"manylinux_2_17_{arch}", f"manylinux_2_28_{arch}"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "-d",
            str(house),
            "--only-binary=:all:",
            "--implementation=cp",
            f"--python-version={python}",
            *(f"--platform={p}" for p in platforms),
            "-c",
            str(constraints),
            f"facefleet[cpu] @ {wheel.as_uri()}",
        ],
        check=True,
        capture_output=True,
        timeout=900,
    )
    for own in house.glob("facefleet-*.whl"):
        own.unlink()  # the role puts the wheel being deployed into the build context itself
    (house / ".complete").write_text("ok")
    return house
