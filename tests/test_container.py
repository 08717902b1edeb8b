"""The container install mode for real, on this machine.

The service's metrics folder on a bind mount (what /metrics is in the container): the real
`facefleet serve` starts in its own mount namespace (`unshare -m`) and empties the folder
instead of removing the mount point.

The inference_container role (cpu variant) run by ansible-playbook against a Docker daemon this
test starts (tests/dockerd.py: own data root, exec root, pidfile and socket), building from a
Debian base image made with mmdebstrap and `docker import`ed, and from a wheelhouse of pinned
wheels (nothing is pulled). Every path, port, key, image and container name is the test's own.
Then: the container runs with the mounts, environment and health check of a Jetson's, /health is
200, /extract finds the two faces of a real photo with the key and answers 401 without it, a
real Prometheus scrapes its /metrics, `docker restart` keeps it serving, and a second run of the
role changes nothing. A role pointed at a daemon that does not answer stops with one line."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from .dockerd import Dockerd, base_image, facefleet_wheel, image_python, wheelhouse
from .fakejetson import AGX_ORIN
from .server import Process, free_port, until
from .test_ansible_container import render

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts"
KEY = "container-test-key-4b1d9e0c7a52f3"
INSTALLED_PARAMS = Path("/etc/facefleet/container.json")  # the role's default path: never written by this test
PLAY = """---
- name: The inference container on the test's own Docker daemon
  hosts: all
  gather_facts: true
  roles:
    - role: inference_container
"""
pytestmark = pytest.mark.slow


def recap(output: str) -> dict[str, int]:
    row = re.search(r"^localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)
    assert row, output[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, row.groups()), strict=True))


def wait_healthy(url: str, timeout: float = 180) -> requests.Response:
    return until(
        f"{url}/health", lambda: (r := requests.get(f"{url}/health", timeout=5)).status_code == 200 and r, timeout
    )


# ---------------------------------------------------------------- PROMETHEUS_MULTIPROC_DIR on a bind mount
def mounted_in(pid: int, point: Path) -> bool:
    return any(line.split()[4] == str(point) for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines())


def test_service_starts_with_its_metrics_folder_on_a_bind_mount(default_pack, tmp_path):
    source, target = tmp_path / "metrics-on-host", tmp_path / "metrics"
    (source / "left-over").mkdir(parents=True)
    (source / "counter_4242.db").write_bytes(b"samples of a previous run")
    target.mkdir()
    keys = tmp_path / "api-keys"
    keys.write_text(f"{KEY}\n")
    keys.chmod(0o600)
    port = free_port()
    env = {
        "FACEFLEET_MODELS_DIR": str(default_pack),
        "FACEFLEET_CACHE_DIR": str(tmp_path / "cache"),
        "FACEFLEET_METRICS_DIR": str(target),
        "FACEFLEET_PROVIDERS": "cpu",
        "FACEFLEET_AUTH": "on",
        "FACEFLEET_API_KEYS_FILE": str(keys),
        "FACEFLEET_HOST": "127.0.0.1",
        "FACEFLEET_PORT": str(port),
    }
    script = f"mount --bind {source} {target} && exec {sys.executable} -m facefleet serve"
    service = Process(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], tmp_path / "service.log", env
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert service.proc.poll() is None, service.log.read_text()[-3000:]
            return requests.get(f"{url}/health", timeout=5).ok

        until("the service", healthy, 120)
        assert requests.get(f"{url}/info", headers={"X-API-Key": KEY}, timeout=30).status_code == 200
        assert requests.get(f"{url}/info", timeout=30).status_code == 401
        assert mounted_in(service.proc.pid, target)  # still the mount point: emptied, not removed
        left = sorted(p.name for p in source.iterdir())
        assert "counter_4242.db" not in left and "left-over" not in left, left
        assert any(name.endswith(".db") for name in left), left  # this run's samples land on the host's side
    finally:
        service.stop()
    assert "EBUSY" not in service.log.read_text() and "Device or resource busy" not in service.log.read_text()


# ---------------------------------------------------------------- the role against the test's own dockerd
def playbook(folder: Path, variables: dict, timeout: int = 1200) -> tuple[subprocess.CompletedProcess, float]:
    """ansible-playbook with the role on localhost; `variables` as extra vars (highest precedence)."""
    (folder / "play.yml").write_text(PLAY)
    (folder / "inventory.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    (folder / "vars.json").write_text(json.dumps(variables, indent=2))
    env = {
        **os.environ,
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    start = time.monotonic()
    result = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(folder / "inventory.ini"),
            "-e",
            f"@{folder / 'vars.json'}",
            str(folder / "play.yml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result, time.monotonic() - start


def role_variables(prefix: Path, daemon: Dockerd, models: Path, wheels: Path, house: Path, base: str) -> dict:
    """Everything the role writes, under `prefix`; the test's own port, keys, daemon and names."""
    return {
        "inference_container_variant": "cpu",
        "inference_container_cpu_base_image": base,
        "inference_container_constraints": str(ROOT / "constraints" / "cpu.txt"),
        "inference_container_wheelhouse": str(house),
        "inference_container_image": "facefleet-containertest",
        "inference_container_name": "facefleet-containertest",
        "inference_container_build_dir": str(prefix / "opt" / "build"),
        "inference_container_wheel_dir": str(wheels),
        "inference_container_params_file": str(prefix / "etc" / "container.json"),
        "inference_container_host_port": free_port(),  # the front's TLS port
        "inference_container_loopback_port": free_port(),  # the front's plain HTTP port, loopback only
        "inference_container_backend_port": free_port(),  # the service in the container, loopback only
        "inference_container_tls_dir": str(prefix / "etc" / "tls"),
        "inference_container_front_name": "facefleet-containertest-front",
        "inference_container_state_dir": str(prefix / "var"),
        "facefleet_front_log_dir": str(prefix / "log"),
        "facefleet_front_pki_dir": str(prefix / "pki"),
        "facefleet_front_user": "root",  # its workers reach the body folder under pytest's 0700 tmp
        "facefleet_process_run_dir": str(prefix / "run"),
        "facefleet_process_log_dir": str(prefix / "log"),
        "facefleet_process_bin_dir": str(prefix / "opt" / "bin"),
        "facefleet_process_unit_dir": str(prefix / "etc" / "systemd"),
        "inference_container_models_dir": str(models),
        "inference_container_cache_dir": str(prefix / "var" / "cache"),
        "inference_container_metrics_dir": str(prefix / "var" / "metrics"),
        "inference_container_gallery_dir": str(prefix / "var" / "galleries"),
        "inference_container_tegra_release_path": str(prefix / "etc" / "nv_tegra_release"),
        "inference_container_api_keys_file": str(prefix / "etc" / "api-keys"),
        "inference_container_providers": "cpu",
        "inference_container_docker_host": daemon.host,
        "inference_container_docker_install": False,  # never apt-get on the test machine
        "inference_container_health_retries": 90,
        "inference_service_api_keys": [KEY],
    }


# The FAKE AGX Orin's L4T release file (tests/fakejetson.py, the real format): the role mounts the host's
# /etc/nv_tegra_release into the container wherever the host has one, so /info there can report L4T.
FAKE_TEGRA_RELEASE = AGX_ORIN.release + "\n"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    owned = Dockerd(tmp_path_factory.mktemp("dockerd"))
    owned.start()
    try:
        yield owned
    finally:
        owned.stop()
        shutil.rmtree(owned.folder / "data", ignore_errors=True)  # the images: hundreds of MB


@pytest.fixture(scope="module")
def deployment(daemon, default_pack, tmp_path_factory):
    timings: dict[str, float] = {}
    installed_params = stat_or_none(INSTALLED_PARAMS)
    started = time.monotonic()
    folder = tmp_path_factory.mktemp("container")
    prefix = folder / "root"
    (prefix / "etc").mkdir(parents=True)
    (prefix / "etc" / "nv_tegra_release").write_text(FAKE_TEGRA_RELEASE)
    base = base_image(daemon, "facefleet-containertest-base:bookworm")
    timings["base_image_s"] = time.monotonic() - started
    wheel = facefleet_wheel(folder / "dist")
    house = wheelhouse(wheel, image_python(daemon, base), ROOT / "constraints" / "cpu.txt")
    timings["wheels_s"] = time.monotonic() - started - timings["base_image_s"]
    variables = role_variables(prefix, daemon, default_pack, wheel.parent, house, base)
    first, timings["first_run_s"] = playbook(folder, variables)
    state = {"folder": folder, "prefix": prefix, "variables": variables, "first": first, "timings": timings}
    state["installed_params"] = installed_params
    # through the front: its plain loopback port (test_the_front_speaks_tls_with_the_fleet_ca checks the TLS one)
    state["url"] = f"http://127.0.0.1:{variables['inference_container_loopback_port']}"
    try:
        yield state
    finally:
        daemon.docker("rm", "--force", variables["inference_container_name"], check=False)
        for pidfile in (prefix / "run").glob("*.pid"):  # the front
            subprocess.run(
                ["start-stop-daemon", "--stop", "--quiet", "--retry", "TERM/10/KILL/5", "--pidfile", str(pidfile)],
                check=False,
            )
        timings["total_s"] = time.monotonic() - started
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "container-run.json").write_text(
            json.dumps({k: round(v, 1) for k, v in timings.items()}, indent=2) + "\n"
        )
        (ARTIFACTS / "container-first-run.log").write_text(first.stdout + first.stderr)


def stat_or_none(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_mtime_ns, path.stat().st_ino) if path.exists() else None


def inspect(daemon: Dockerd, name: str) -> dict:
    return json.loads(daemon.docker("inspect", name).stdout)[0]


@pytest.mark.ansible
def test_the_role_builds_and_starts_the_container(deployment):
    first = deployment["first"]
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    row = recap(first.stdout)
    assert row["failed"] == 0 and row["changed"] > 0
    for task in ("Build the image", "Run the container", r"Wait until /health answers 200 \(through the front\)"):
        assert re.search(
            rf"TASK \[inference_container : {task}\][^\n]*\n(FAILED - RETRYING[^\n]*\n)*(changed|ok): ", first.stdout
        ), task
    assert (deployment["prefix"] / "etc" / "container.json").is_file()
    assert deployment["installed_params"] == stat_or_none(INSTALLED_PARAMS)  # an installed appliance's: untouched


@pytest.mark.ansible
def test_container_runs_with_a_jetsons_mounts_environment_and_health_check(deployment, daemon):
    variables = deployment["variables"]
    container = inspect(daemon, variables["inference_container_name"])
    jetson = json.loads(render("container.json.j2", **{**variables, "inference_container_variant": "gpu"}))
    host = container["HostConfig"]
    assert host["NetworkMode"] == "host" and not host.get("PortBindings")
    assert host["RestartPolicy"]["Name"] == "unless-stopped" and host["Memory"] == 4 * 1024**3
    assert host["Runtime"] == "runc" and jetson["runtime"] == "nvidia"  # the one difference, besides providers
    binds = {f"{m['Source']}:{m['Destination']}{'' if m['RW'] else ':ro'}" for m in container["Mounts"]}
    assert binds == set(jetson["volumes"]), binds ^ set(jetson["volumes"])
    for inside, writable in (("/models", False), ("/cache", True), ("/galleries", True), ("/metrics", True)):
        assert any(m["Destination"] == inside and m["RW"] is writable for m in container["Mounts"]), inside
    assert any(m["Destination"] == "/run/secrets/facefleet-api-keys" and not m["RW"] for m in container["Mounts"])
    assert any(m["Destination"] == "/etc/nv_tegra_release" and not m["RW"] for m in container["Mounts"])
    env = dict(item.split("=", 1) for item in container["Config"]["Env"])
    assert {k: env[k] for k in jetson["env"] if k != "FACEFLEET_PROVIDERS"} == {
        k: v for k, v in jetson["env"].items() if k != "FACEFLEET_PROVIDERS"
    }
    assert env["FACEFLEET_METRICS_DIR"] == "/metrics" and env["FACEFLEET_MODELS_DIR"] == "/models"
    jetson_dockerfile = render("Dockerfile.j2", **{**variables, "inference_container_variant": "gpu"})
    check = container["Config"]["Healthcheck"]
    assert check["Test"][0] == "CMD" and json.dumps(check["Test"][1:]) in jetson_dockerfile
    release = daemon.docker("exec", variables["inference_container_name"], "cat", "/etc/nv_tegra_release")
    assert release.stdout == FAKE_TEGRA_RELEASE


@pytest.mark.ansible
def test_the_front_speaks_tls_with_the_fleet_ca_and_the_service_is_on_loopback_only(deployment):
    variables, prefix = deployment["variables"], deployment["prefix"]
    tls = f"https://127.0.0.1:{variables['inference_container_host_port']}"
    assert requests.get(f"{tls}/livez", verify=str(prefix / "pki" / "ca.crt"), timeout=30).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls}/livez", timeout=30)
    listeners = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout
    backend = [
        line.split()[3]
        for line in listeners.splitlines()
        if line.split()[3].endswith(f":{variables['inference_container_backend_port']}")
    ]
    assert backend == [f"127.0.0.1:{variables['inference_container_backend_port']}"], listeners


@pytest.mark.ansible
def test_health_and_extract_with_and_without_the_key(deployment, image_bytes):
    url = deployment["url"]
    health = wait_healthy(url)
    assert health.json()["status"] == "ok"
    body = {"images": {"data": [base64.b64encode(image_bytes("two_people.jpg")).decode()]}}
    answer = requests.post(f"{url}/extract", json=body, headers={"X-API-Key": KEY}, timeout=120)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"][0]["faces"]) == 2
    refused = requests.post(f"{url}/extract", json=body, timeout=30)
    assert refused.status_code == 401
    metrics = deployment["prefix"] / "var" / "metrics"
    assert any(metrics.glob("*.db")), "the container's samples must land in the host's metrics folder"


@pytest.mark.ansible
def test_prometheus_scrapes_the_containers_metrics(deployment, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus not found: install Debian's prometheus package (scripts/test.sh does)"
    target = deployment["url"].removeprefix("http://")
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "facefleet_container", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    server = Process(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v1"

        def value(expr: str) -> float | None:
            result = requests.get(f"{api}/query", params={"query": expr}, timeout=10).json()["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        assert until("up == 1", lambda: value('up{job="facefleet_container"}') == 1, 90)
        assert until("faces counted", lambda: (value("sum(facefleet_faces_total)") or 0) >= 2, 60)
    finally:
        server.stop()


@pytest.mark.ansible
def test_docker_healthcheck_passes_and_a_restart_keeps_it_serving(deployment, daemon):
    name = deployment["variables"]["inference_container_name"]
    until("Docker's health check", lambda: inspect(daemon, name)["State"]["Health"]["Status"] == "healthy", 90)
    stale = deployment["prefix"] / "var" / "metrics" / "counter_99999.db"
    stale.write_bytes(b"left by a previous run")
    daemon.docker("restart", name)
    wait_healthy(deployment["url"])
    assert not stale.exists()  # emptied at start: the bind mount itself stays
    assert inspect(daemon, name)["RestartCount"] == 0 and inspect(daemon, name)["State"]["Running"]


@pytest.mark.ansible
def test_second_run_changes_nothing(deployment):
    second, deployment["timings"]["second_run_s"] = playbook(deployment["folder"], deployment["variables"])
    assert second.returncode == 0, second.stdout[-4000:]
    assert recap(second.stdout)["changed"] == 0, second.stdout[-4000:]
    assert requests.get(f"{deployment['url']}/health", timeout=30).status_code == 200


@pytest.mark.ansible
def test_without_a_docker_daemon_the_role_stops_with_one_line(deployment, tmp_path):
    absent = tmp_path / "no-docker.sock"
    variables = {
        **deployment["variables"],
        "inference_container_docker_host": f"unix://{absent}",
        "inference_container_build_dir": str(tmp_path / "build"),
        "inference_container_params_file": str(tmp_path / "container.json"),
    }
    result, _ = playbook(tmp_path, variables, timeout=300)
    assert result.returncode != 0 and recap(result.stdout)["failed"] == 1
    line = (
        f"localhost: no Docker daemon answers at unix://{absent} (Cannot connect to the Docker daemon at "
        f"unix://{absent}. Is the docker daemon running?): install Docker (apt-get install docker.io) and start it, "
        "or set inference_container_render_only: true to render without building"
    )
    assert f"Task failed: Action failed: {line}\n" in result.stdout + result.stderr, result.stdout[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "build").exists()  # stopped before anything was written
