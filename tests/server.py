"""Real processes started by tests: a `facefleet serve` (gunicorn) on a free loopback port, and
any other background process (exporter, Prometheus), each in its own session so stop() ends
it with all its children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Process:
    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, env={**os.environ, **(env or {})}, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


class Service(Process):
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [sys.executable, "-m", "facefleet", "serve"],
            log,
            # open unless the test configures keys: FACEFLEET_AUTH=off is the explicit opt-out; its own streams
            # folder beside its log (cameras added through /streams must not reach another test's service)
            {
                "FACEFLEET_AUTH": "off",
                "FACEFLEET_STREAMS_DIR": str(log.parent / f"streams-{self.port}"),
                **env,
                "FACEFLEET_PORT": str(self.port),
                "FACEFLEET_HOST": "127.0.0.1",
            },
        )

    def wait_ready(self, timeout: float = 120, key: str = "") -> None:
        """Until /health is 200 (with `key` where the service keeps /health closed)."""
        headers = {"X-API-Key": key} if key else {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"facefleet serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if requests.get(f"{self.url}/health", headers=headers, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"service not healthy after {timeout} s:\n{self.log.read_text()}")


def exporter_process(
    folder: Path, service: Service, root: Path, log_name: str = "exporter.log", **env: str
) -> tuple[Process, str]:
    """A real `facefleet exporter` reading `service`'s metrics folder and the sysfs tree at `root`,
    ready to scrape; returns it and its /metrics URL. The caller stops it. Keys are on by default:
    give the probe the service's key file as FACEFLEET_API_KEY_FILE in `env`."""
    port = free_port()
    process = Process(
        [
            sys.executable,
            "-m",
            "facefleet",
            "exporter",
            "--port",
            str(port),
            "--metrics-dir",
            str(folder / "metrics"),
            "--root",
            str(root),
            "--service-url",
            service.url,
        ],
        folder / log_name,
        env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        until("the exporter", lambda: requests.get(f"{url}/metrics", timeout=5).ok)
    except BaseException:
        process.stop()
        raise
    return process, url


def cpu_service(models_dir: Path, cache_dir: Path, folder: Path, **env: str) -> Service:
    """A ready service on the CPU writing its metrics into folder/metrics; the caller stops it."""
    service = Service(
        {
            "FACEFLEET_MODELS_DIR": str(models_dir),
            "FACEFLEET_CACHE_DIR": str(cache_dir),
            "FACEFLEET_PROVIDERS": "cpu",
            "FACEFLEET_METRICS_DIR": str(folder / "metrics"),
            **env,
        },
        folder / "service.log",
    )
    try:
        service.wait_ready()
    except BaseException:
        service.stop()
        raise
    return service


def until(what: str, check, timeout: float = 60.0):
    """Poll `check` until it returns something truthy (first scrapes and polls take seconds)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, KeyError, IndexError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last answer: {last!r}")


def metric_samples(text: str, name: str) -> dict[str, float]:
    """{label string: value} of one metric family's samples in a text exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key[len(name) :]] = float(value)
    return out


def keyed_cpu_service(models_dir: Path, cache_dir: Path, folder: Path, key: str, **env: str) -> Service:
    """cpu_service with API keys on, our default: `key` is the one key, in folder/api-keys."""
    keys = folder / "api-keys"
    keys.write_text(f"{key}\n")
    return cpu_service(models_dir, cache_dir, folder, FACEFLEET_AUTH="on", FACEFLEET_API_KEYS_FILE=str(keys), **env)


def camera_service(
    models_dir: Path, cache_dir: Path, folder: Path, key: str, video: Path, fps: float = 5, **env: str
) -> Service:
    """keyed_cpu_service on the small shared models with one inventory camera, `lobby`, reading the file `video`
    at `fps`, and its streams folder in `folder`: what the /streams, /events and dashboard tests watch."""
    inventory = folder / "cameras.yml"
    inventory.write_text(f"- name: lobby\n  url: {video}\n  fps: {fps:g}\n")
    return keyed_cpu_service(
        models_dir,
        cache_dir,
        folder,
        key,
        FACEFLEET_DET_NAME="scrfd_500m",
        FACEFLEET_REC_NAME="mobilefacenet",
        FACEFLEET_STREAMS_DIR=str(folder / "streams"),
        FACEFLEET_STREAMS_FILE=str(inventory),
        **env,
    )
