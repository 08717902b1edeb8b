"""The two appliances a test run may meet on this machine, kept apart.

The installed one: what `bash scripts/run.sh` made with the roles' defaults (/opt/facefleet,
/etc/facefleet, /var/lib/facefleet, /run/facefleet, ports 18080/18090/18100). No test may touch it;
`snapshot()` records what would show a touch (process ids, listening sockets, galleries through the API
with its key, hashes of its key files and of its folders) so the suite can compare before and after.

The test one: `isolated_vars()` are the extra vars every Ansible test passes, giving the roles a prefix,
ports, state, pid folder, keys and process names of their own. `default_values()` lists the roles'
defaults that name an installed appliance's path, port or process, so a test can prove each one is
overridden."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLES = ROOT / "roles"
# Folders the defaults install into; any default starting with one of these belongs to the installed appliance.
DEFAULT_PREFIXES = (
    "/opt/facefleet",
    "/etc/facefleet",
    "/var/lib/facefleet",
    "/run/facefleet",
    "/var/log/facefleet",
    "/etc/systemd/system",
    "/etc/prometheus",
    "/var/lib/prometheus",
    "/etc/grafana",
    "/var/lib/grafana",
)
DEFAULT_PORTS = (18078, 18079, 18080, 18081, 18082, 18083, 18090, 18098, 18100, 9090)
KEYS_FILES = (Path("/etc/facefleet/api-keys"), Path("/etc/facefleet/dashboard-password"))
RUN_DIR = Path("/run/facefleet")
STREAMS_DB = Path("/var/lib/facefleet/streams/cameras.sqlite3")
INSTALLED_CA = Path("/etc/facefleet/tls/ca.crt")
# Hashed file by file. Left out: what the running appliance itself rewrites while it runs (its multiprocess
# metrics, the dashboard's poll history, the streams' status, outbox and lock, bytecode Python writes on a first
# import); logs are not listed. Its cameras are compared as the service lists them (`cameras`).
HASHED = (Path("/etc/facefleet"), Path("/opt/facefleet"), Path("/var/lib/facefleet"))
VOLATILE = re.compile(
    r"(/__pycache__/|\.pyc$|^/var/lib/facefleet/metrics/|^/var/lib/facefleet/dashboard\.sqlite3|^/var/lib/facefleet/streams/)"
)
TEST_PORTS = {
    "service": 28080,  # the front: HTTPS
    "loopback": 28079,  # the front: plain HTTP, 127.0.0.1 only
    "backend": 28078,  # gunicorn, 127.0.0.1 only
    "exporter": 28090,
    "dashboard": 28100,  # its front: HTTPS
    "dashboard_backend": 28098,  # its gunicorn, 127.0.0.1 only
    "prometheus": 29090,
}


def isolated_vars(prefix: Path, models_source: Path) -> dict[str, Any]:
    """Extra vars that move every path, port and process name of site.yml's roles under `prefix`."""
    opt, etc, var, run = prefix / "opt", prefix / "etc", prefix / "var", prefix / "run"
    venv = str(opt / "venv")
    keys = str(etc / "api-keys")
    service, exporter, dashboard = TEST_PORTS["service"], TEST_PORTS["exporter"], TEST_PORTS["dashboard"]
    tls, ca = etc / "tls", str(etc / "tls" / "ca.crt")
    prometheus = f"127.0.0.1:{TEST_PORTS['prometheus']}"
    return {
        # play level: the dashboard, Prometheus and verify.yml find the appliance's ports here
        "facefleet_service_port": service,
        "facefleet_exporter_port": exporter,
        "onnxruntime_venv": venv,
        "facefleet_package_venv": venv,
        "facefleet_package_dist_dir": str(opt / "dist"),
        "models_venv": venv,
        "models_dir": str(var / "models"),
        "models_cache_dir": str(var / "cache"),
        "models_gallery_dir": str(var / "galleries"),
        "models_source_dir": str(models_source),
        "inference_service_venv": venv,
        "inference_service_port": service,
        "inference_service_config_dir": str(etc),
        "inference_service_models_dir": str(var / "models"),
        "inference_service_cache_dir": str(var / "cache"),
        "inference_service_metrics_dir": str(var / "metrics"),
        "inference_service_gallery_db": str(var / "galleries" / "galleries.sqlite3"),
        "inference_service_api_keys_file": keys,
        "inference_service_process_name": "facefleet-test-service",
        "inference_service_loopback_port": TEST_PORTS["loopback"],
        "inference_service_backend_port": TEST_PORTS["backend"],
        "inference_service_tls_dir": str(tls),
        "inference_service_front_name": "facefleet-test-front",
        "inference_service_state_dir": str(var),
        # the front role's defaults that its includers do not pass (those: PASSED_TO_THE_FRONT)
        "facefleet_front_log_dir": str(prefix / "log"),
        "facefleet_front_pki_dir": str(prefix / "pki"),  # the control node's fleet CA: not the repository's pki/
        # nginx's workers must reach the temporary body folder under pytest's 0700 tmp; the role's www-data
        # reaches /var/lib/facefleet (0755) on an appliance
        "facefleet_front_user": "root",
        "exporter_venv": venv,
        "exporter_port": exporter,
        "exporter_config_dir": str(etc),
        "exporter_metrics_dir": str(var / "metrics"),
        "exporter_service_url": f"https://127.0.0.1:{service}",
        "exporter_ca_file": ca,
        "exporter_api_key_file": keys,
        "exporter_process_name": "facefleet-test-exporter",
        "dashboard_venv": venv,
        "dashboard_port": dashboard,
        "dashboard_config_dir": str(etc),
        "dashboard_targets_file": str(etc / "appliances.json"),
        "dashboard_service_port": service,
        "dashboard_exporter_port": exporter,
        "dashboard_password_file": str(etc / "dashboard-password"),
        "dashboard_appliance_api_key_file": keys,
        "dashboard_database": str(var / "dashboard.sqlite3"),
        "dashboard_ca_file": str(tls / "dashboard-ca.crt"),
        "dashboard_ca_source": str(prefix / "pki" / "ca.crt"),
        "dashboard_process_name": "facefleet-test-dashboard",
        "dashboard_backend_port": TEST_PORTS["dashboard_backend"],
        "dashboard_tls_dir": str(tls),
        "dashboard_front_name": "facefleet-test-dashboard-front",
        "dashboard_state_dir": str(var),
        "facefleet_process_run_dir": str(run),
        "facefleet_process_log_dir": str(prefix / "log"),
        "facefleet_process_bin_dir": str(opt / "bin"),
        "facefleet_process_unit_dir": str(etc / "systemd"),
        "monitoring_service_port": service,
        "monitoring_exporter_port": exporter,
        "monitoring_prometheus_url": f"http://{prometheus}",
        "monitoring_prometheus_listen": prometheus,
        # Prometheus' and Grafana's folders are their packages' (/etc/prometheus, /etc/grafana), not facefleet's
        "monitoring_prometheus_config_dir": str(prefix / "packages" / "prometheus"),
        "monitoring_prometheus_data_dir": str(var / "prometheus"),
        "monitoring_grafana_provisioning_dir": str(prefix / "packages" / "grafana" / "provisioning"),
        "monitoring_grafana_dashboards_dir": str(var / "grafana" / "dashboards"),
        "monitoring_process_name": "facefleet-test-prometheus",
        "monitoring_ca_file": str(tls / "prometheus-ca.crt"),
        "monitoring_ca_source": str(prefix / "pki" / "ca.crt"),
        # the container role is not run in cpu mode; its paths move too, so nothing can reach the defaults
        "inference_container_name": "facefleet-test",
        "inference_container_build_dir": str(opt / "build"),
        "inference_container_wheel_dir": str(opt / "dist"),
        "inference_container_params_file": str(etc / "container.json"),
        "inference_container_host_port": TEST_PORTS["service"] + 1,
        "inference_container_loopback_port": TEST_PORTS["service"] + 2,
        "inference_container_backend_port": TEST_PORTS["service"] + 3,
        "inference_container_tls_dir": str(tls),
        "inference_container_front_name": "facefleet-test-front",
        "inference_container_state_dir": str(var),
        "inference_container_models_dir": str(var / "models"),
        "inference_container_cache_dir": str(var / "cache"),
        "inference_container_metrics_dir": str(var / "metrics"),
        "inference_container_gallery_dir": str(var / "galleries"),
        "inference_container_api_keys_file": keys,
    }


def names_the_installed_appliance(value: Any) -> bool:
    """Whether a role default points at the installed appliance: one of its paths, ports or processes."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value in DEFAULT_PORTS
    if not isinstance(value, str):
        return False
    if value.startswith(DEFAULT_PREFIXES) or re.fullmatch(
        r"facefleet-(service|exporter|dashboard|prometheus|front|dashboard-front)", value
    ):
        return True
    return bool(re.search(r"(^|:)(" + "|".join(map(str, DEFAULT_PORTS)) + r")$", value))


# The front role's variables each role that runs a front passes (an appliance and a dashboard on one host have
# two fronts: an extra var for these would give both the same name and ports). Their defaults are covered by the
# includers' own variables, which the tests do move; tests/test_ansible.py checks every includer passes them all.
PASSED_TO_THE_FRONT = (
    "facefleet_front_name",
    "facefleet_front_port",
    "facefleet_front_loopback_port",
    "facefleet_front_backend_port",
    "facefleet_front_config_dir",
    "facefleet_front_state_dir",
    "facefleet_front_tls_dir",
)


def default_values() -> dict[str, Any]:
    """Every role default (and inline process name of a role's tasks) that names the installed appliance, but
    the front's variables its includers pass (PASSED_TO_THE_FRONT)."""
    found: dict[str, Any] = {}
    for defaults in sorted(ROLES.glob("*/defaults/main.yml")):
        if defaults.parts[-3] == "jetson_host":  # host settings (L4T files, Docker), not the appliance's
            continue
        for name, value in (yaml.safe_load(defaults.read_text()) or {}).items():
            if names_the_installed_appliance(value) and name not in PASSED_TO_THE_FRONT:
                found[name] = value
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


HASHED_UP_TO = 1 << 20  # bytes; larger files (wheels' libraries, models, engines) are told by size and mtime


def _fingerprint(path: Path) -> str:
    """A small file's sha256; a large one's size and modification time (nanoseconds): any write moves it, and
    hashing the venv's and models' hundreds of megabytes twice cost CI a minute and a half."""
    stat = path.stat()
    return _sha256(path) if stat.st_size <= HASHED_UP_TO else f"{stat.st_size} bytes, mtime {stat.st_mtime_ns}"


def _tree(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` but the volatile ones: path -> fingerprint, link target or 'dir'."""
    listing: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if VOLATILE.search(str(path)):
                continue
            if path.is_symlink():
                listing[str(path)] = "-> " + os.readlink(path)
            elif path.is_dir():
                listing[str(path)] = "dir"
            elif path.is_file():
                listing[str(path)] = _fingerprint(path)
    return listing


def _processes() -> dict[str, str]:
    """pidfile name -> 'pid started-at' (the start time tells a restarted process from the same pid)."""
    found = {}
    for pidfile in sorted(RUN_DIR.glob("*.pid")) if RUN_DIR.is_dir() else []:
        pid = pidfile.read_text().strip()
        stat = Path(f"/proc/{pid}/stat")
        started = stat.read_text().rsplit(")", 1)[1].split()[19] if stat.exists() else "gone"
        found[pidfile.name] = f"{pid} {started}"
    return found


def _listeners() -> dict[int, str]:
    """Port -> the sorted process ids listening on it (ss), for the installed appliance's ports."""
    found = {}
    for port in DEFAULT_PORTS:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
        found[port] = " ".join(sorted(set(re.findall(r"pid=(\d+)", out))))
    return found


def _galleries() -> str:
    """The service's galleries as its own key sees them, or why they could not be read."""
    if not KEYS_FILES[0].is_file():
        return "no keys file"
    key = KEYS_FILES[0].read_text().split()[0]
    try:
        # through its front (HTTPS, verified with the CA the roles put on the host); before the front, plain HTTP
        tls = INSTALLED_CA.is_file()
        url = f"{'https' if tls else 'http'}://127.0.0.1:18080/galleries"
        answer = requests.get(url, headers={"X-API-Key": key}, verify=str(INSTALLED_CA) if tls else True, timeout=30)
        return f"{answer.status_code} {json.dumps(answer.json(), sort_keys=True)}"
    except (requests.RequestException, ValueError) as error:
        return f"unreachable ({type(error).__name__})"


def _cameras() -> str:
    """The cameras the installed service watches (name, address, rate, gallery, origin), read-only from its file."""
    path = STREAMS_DB
    if not path.is_file():
        return "no cameras file"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            rows = db.execute("SELECT name, url, fps, gallery, origin FROM cameras ORDER BY name").fetchall()
    except sqlite3.Error as error:
        return f"unreadable ({error})"
    return json.dumps(rows)


def installed() -> bool:
    """Files of an appliance with the defaults are here (running or not): the suite must leave them alone."""
    return any(folder.exists() for folder in HASHED)


def running() -> bool:
    """The installed appliance runs: a live service pidfile and its galleries answer with its key."""
    alive = _processes().get("facefleet-service.pid", "gone").split()[-1] != "gone"
    return alive and _galleries().startswith("200 ")


def snapshot() -> dict[str, Any]:
    """What a test would change by touching the installed appliance."""
    return {
        "processes": _processes(),
        "listeners": _listeners(),
        "galleries": _galleries(),
        "cameras": _cameras(),
        "keys": {str(path): _sha256(path) for path in KEYS_FILES if path.is_file()},
        "files": {str(folder): _tree(folder) for folder in HASHED},
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per difference between two snapshots."""
    lines = []
    for part in ("processes", "listeners", "galleries", "cameras", "keys"):
        if before[part] != after[part]:
            lines.append(f"{part}: {before[part]} -> {after[part]}")
    for folder, files in before["files"].items():
        now = after["files"][folder]
        for path in sorted(set(files) | set(now)):
            if files.get(path) != now.get(path):
                lines.append(f"{path}: {files.get(path, 'absent')} -> {now.get(path, 'absent')}")
    return lines
