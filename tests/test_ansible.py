"""Ansible: syntax, ansible-lint's production profile, every variable documented and prefixed,
and the default inventory really run against this machine, twice (the second run changes
nothing)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.ansible
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())


def run(*argv: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.mark.parametrize("playbook", ["site.yml", "verify.yml"])
def test_syntax_check(playbook):
    result = run(str(BIN / "ansible-playbook"), "--syntax-check", playbook)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile():
    result = run(str(BIN / "ansible-lint"), "--profile", "production", "site.yml", "verify.yml", "roles")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_layout_and_documented_prefixed_variables(role):
    for part in (
        "tasks/main.yml",
        "tasks/preflight.yml",
        "tasks/install.yml",
        "tasks/configure.yml",
        "tasks/service.yml",
        "handlers/main.yml",
        "meta/main.yml",
        "meta/argument_specs.yml",
        "defaults/main.yml",
    ):
        assert (role / part).is_file(), f"{role.name}: {part}"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    documented = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(documented), set(defaults) - set(documented)
    for name in documented:
        assert name.startswith(f"{role.name}_"), name
    for task_file in (role / "tasks").glob("*.yml"):
        for module in re.findall(r"^\s+(?:- )?([a-z_]+\.[a-z_]+\.[a-z_]+):", task_file.read_text(), re.M):
            assert module.count(".") == 2, module  # fully qualified collection names


def stop(name: str) -> None:
    """Stop a process the playbook started with start-stop-daemon (this machine has no systemd)."""
    subprocess.run(
        [
            "start-stop-daemon",
            "--stop",
            "--quiet",
            "--retry",
            "TERM/20/KILL/5",
            "--remove-pidfile",
            "--pidfile",
            f"/run/facefleet/{name}.pid",
        ],
        check=False,
    )


@pytest.fixture(scope="module")
def default_run():
    """The README's provisioning: site.yml on the default inventory (this machine, cpu mode)."""
    first = run(str(BIN / "ansible-playbook"), "site.yml")
    try:
        yield first
    finally:
        for name in ("facefleet-dashboard", "facefleet-exporter", "facefleet-service"):
            stop(name)


def test_default_inventory_brings_up_the_appliance_and_a_second_run_changes_nothing(default_run):
    assert default_run.returncode == 0, default_run.stdout[-4000:]
    health = requests.get("http://127.0.0.1:18080/health", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    metrics = requests.get("http://127.0.0.1:18090/metrics", timeout=10).text
    assert "facefleet_build_info" in metrics and "facefleet_exporter_collector_success" in metrics
    assert requests.get("http://127.0.0.1:18100/healthz", timeout=10).json() == {"status": "ok"}
    keys = Path("/etc/facefleet/api-keys")
    assert keys.stat().st_mode & 0o777 == 0o600
    key = keys.read_text().split()[0]
    assert requests.get("http://127.0.0.1:18080/info", timeout=30).status_code == 401
    assert requests.get("http://127.0.0.1:18080/info", headers={"X-API-Key": key}, timeout=30).status_code == 200
    second = run(str(BIN / "ansible-playbook"), "site.yml")
    assert second.returncode == 0, second.stdout[-4000:]
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", second.stdout)
    assert recap and recap.group(1) == "0", second.stdout[-3000:]


def test_monitoring_role_runs_prometheus_on_the_fleet(default_run, tmp_path):
    assert default_run.returncode == 0
    extra = tmp_path / "monitoring.ini"
    extra.write_text(f"[monitoring]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    try:
        first = run(str(BIN / "ansible-playbook"), "-i", "inventory.ini", "-i", str(extra), "site.yml")
        assert first.returncode == 0, first.stdout[-4000:]
        api = "http://127.0.0.1:9090/api/v1"
        groups = requests.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        assert [g["name"] for g in groups] == ["facefleet"] and len(groups[0]["rules"]) == 7
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            targets = requests.get(f"{api}/targets", timeout=10).json()["data"]["activeTargets"]
            if len(targets) == 2 and all(t["health"] == "up" for t in targets):
                break
            time.sleep(1)
        assert {t["labels"]["job"]: t["health"] for t in targets} == {
            "facefleet_service": "up",
            "facefleet_exporter": "up",
        }
        assert Path("/var/lib/grafana/dashboards/facefleet/facefleet.json").is_file()
        second = run(str(BIN / "ansible-playbook"), "-i", "inventory.ini", "-i", str(extra), "site.yml")
        recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", second.stdout)
        assert recap and recap.group(1) == "0", second.stdout[-3000:]
    finally:
        stop("facefleet-prometheus")


def test_verify_checks_health_and_providers_and_writes_the_fleet_report(default_run, tmp_path):
    assert default_run.returncode == 0
    result = run(str(BIN / "ansible-playbook"), "verify.yml", "-e", f"verify_report_dir={tmp_path}")
    assert result.returncode == 0, result.stdout[-3000:]
    report = (tmp_path / "fleet-report.md").read_text()
    assert "| localhost | True |" in report and "yunet_2023mar_int8bq: cpu" in report
    assert "Provider benchmarks: run" in report
    benched = run(
        str(BIN / "ansible-playbook"),
        "verify.yml",
        "-e",
        f"verify_report_dir={tmp_path}",
        "-e",
        '{"verify_bench": true, "verify_bench_runs": 3}',
    )
    assert benched.returncode == 0, benched.stdout[-3000:]
    rows = [line for line in (tmp_path / "fleet-report.md").read_text().splitlines() if "| 1.00x |" in line]
    assert {row.split(" | ")[2] for row in rows} == {"yunet_2023mar_int8bq", "sface_2021dec_int8bq"}, rows
    assert all(row.startswith("| localhost |") and " | cpu | " in row for row in rows), rows
    wrong = run(
        str(BIN / "ansible-playbook"),
        "verify.yml",
        "-e",
        f"verify_report_dir={tmp_path}",
        "-e",
        '{"verify_expected_providers": ["tensorrt", "cuda"]}',
    )
    assert wrong.returncode != 0
    assert "yunet_2023mar_int8bq runs on cpu, expected tensorrt or cuda" in wrong.stdout


def test_models_role_ships_a_gallery_bundle_and_the_service_searches_it(default_run, tmp_path):
    assert default_run.returncode == 0
    photos = ROOT.parent / "shared" / "images"
    folder = tmp_path / "staff" / "obama"
    folder.mkdir(parents=True)
    (folder / "obama.jpg").write_bytes((photos / "obama.jpg").read_bytes())
    bundle = tmp_path / "staff.gallery.zip"
    built = run(
        str(BIN / "facefleet"),
        "gallery",
        "build",
        str(tmp_path / "staff"),
        "--out",
        str(bundle),
        "--models-dir",
        "/var/lib/facefleet/models",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert built.returncode == 0, built.stderr
    ship = ["site.yml", "--tags", "models", "-e", json.dumps({"models_galleries": [str(bundle)]})]
    first = run(str(BIN / "ansible-playbook"), *ship)
    assert first.returncode == 0, first.stdout[-3000:]
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", first.stdout)
    assert recap and int(recap.group(1)) >= 1, first.stdout[-3000:]
    second = run(str(BIN / "ansible-playbook"), *ship)
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", second.stdout)
    assert recap and recap.group(1) == "0", second.stdout[-3000:]
    key = {"X-API-Key": Path("/etc/facefleet/api-keys").read_text().split()[0]}
    galleries = requests.get("http://127.0.0.1:18080/galleries", headers=key, timeout=30).json()["galleries"]
    assert [g["name"] for g in galleries] == ["staff"] and galleries[0]["checksum"]
    probe = base64.b64encode((photos / "obama2.jpg").read_bytes()).decode()
    found = requests.post(
        "http://127.0.0.1:18080/galleries/staff/search", json={"images": {"data": [probe]}}, headers=key, timeout=60
    ).json()
    assert found["data"][0]["faces"][0]["matches"][0]["subject"] == "obama"
