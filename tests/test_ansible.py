"""Ansible: syntax, ansible-lint's production profile, every variable documented and prefixed,
and the default inventory really run against this machine, twice (the second run changes
nothing), then stopped, restarted and uninstalled (facefleet_state). Every run passes
tests/appliance.py's extra vars: a prefix, ports, keys, pid folder and process names of the test's
own, so an appliance `run.sh` installed here is never touched (conftest.py checks it is not)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from .appliance import PASSED_TO_THE_FRONT, TEST_PORTS, default_values, isolated_vars, names_the_installed_appliance
from .media import make_video

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.ansible
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir())


def run(*argv: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.mark.parametrize("playbook", ["site.yml", "verify.yml", "status.yml"])
def test_syntax_check(playbook):
    result = run(str(BIN / "ansible-playbook"), "--syntax-check", playbook)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile():
    result = run(str(BIN / "ansible-lint"), "--profile", "production", "site.yml", "verify.yml", "status.yml", "roles")
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


def test_the_tests_vars_move_every_path_port_and_process_off_the_installed_appliance(tmp_path):
    """Each role default naming the installed appliance's paths, ports or processes is overridden by
    the tests' extra vars, with a value that is none of the installed appliance's."""
    chosen = isolated_vars(tmp_path / "appliance", tmp_path / "models")
    defaults = default_values()
    assert {"inference_service_port", "facefleet_process_run_dir", "inference_service_api_keys_file"} <= set(defaults)
    assert set(defaults) - set(chosen) == set()
    assert {name: value for name, value in chosen.items() if names_the_installed_appliance(value)} == {}


def test_every_dynamic_include_carries_its_tags_into_what_it_includes():
    """`ansible-playbook site.yml --tags monitoring` runs the whole monitoring role: an include's own tags do
    not reach the tasks it loads (Ansible runs them only if they carry a chosen tag themselves), so every
    include_role and include_tasks applies tags to them: the helper roles (facefleet_process,
    facefleet_front) `always`, following whichever role included them."""
    missing = []
    for task_file in sorted((ROOT / "roles").glob("*/tasks/*.yml")):
        for task in yaml.safe_load(task_file.read_text()) or []:
            for module in ("ansible.builtin.include_role", "ansible.builtin.include_tasks"):
                loads = task.get(module)
                if loads is not None and not (isinstance(loads, dict) and loads.get("apply", {}).get("tags")):
                    missing.append(f"{task_file.relative_to(ROOT)}: {task['name']}")
    assert missing == []


@pytest.mark.parametrize("includer", ["inference_service", "inference_container", "dashboard"])
def test_every_role_that_runs_a_front_passes_it_its_names_ports_and_folders(includer):
    """The tests move these through each includer's own variables (extra vars would give every front on a
    host the same name), so each includer must pass them all, from its own variables."""
    tasks = yaml.safe_load((ROOT / "roles" / includer / "tasks" / "service.yml").read_text())
    [front] = [t for t in tasks if t.get("ansible.builtin.include_role", {}).get("name") == "facefleet_front"]
    passed = front["vars"]
    assert set(PASSED_TO_THE_FRONT) <= set(passed), set(PASSED_TO_THE_FRONT) - set(passed)
    own = "{{ " + includer + "_"
    assert all(
        str(passed[name]).startswith(own)
        for name in PASSED_TO_THE_FRONT
        if name != "facefleet_front_loopback_port" or includer != "dashboard"
    ), passed


def playbook(*argv: str, vars_file: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """ansible-playbook with the test appliance's extra vars (highest precedence: they beat every default)."""
    return run(str(BIN / "ansible-playbook"), *argv, "-e", f"@{vars_file}", timeout=timeout)


def changed_tasks(result: subprocess.CompletedProcess) -> str:
    """The tasks that reported a change, each with its result line: what a second run must not have."""
    shown, task = [], ""
    for line in result.stdout.splitlines():
        if line.startswith("TASK ["):
            task = line.rstrip("* ")
        elif line.startswith("changed:"):
            shown.append(f"{task}\n  {line[:300]}")
    return "tasks that changed:\n" + "\n".join(shown)


def changed(result: subprocess.CompletedProcess) -> int:
    recap = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", result.stdout)
    assert recap, result.stdout[-3000:]
    return int(recap.group(1))


def stop_leftovers(run_dir: Path) -> None:
    """After the test: stop whatever of the test appliance still runs (pidfiles in its own run folder)."""
    for pidfile in run_dir.glob("*.pid"):
        subprocess.run(
            [
                "start-stop-daemon",
                "--stop",
                "--quiet",
                "--retry",
                "TERM/20/KILL/5",
                "--remove-pidfile",
                "--pidfile",
                str(pidfile),
            ],
            check=False,
        )


@dataclass
class Appliance:
    """The appliance the tests install: its folder, extra vars file, keys and URLs."""

    prefix: Path
    vars_file: Path
    first: subprocess.CompletedProcess

    @property
    def values(self) -> dict:
        return json.loads(self.vars_file.read_text())

    @property
    def key(self) -> dict[str, str]:
        return {"X-API-Key": Path(self.values["inference_service_api_keys_file"]).read_text().split()[0]}

    @property
    def ca(self) -> str:
        """The fleet CA the front's certificate is verified with (made by the role on the control node)."""
        return str(Path(self.values["facefleet_front_pki_dir"], "ca.crt"))


SERVICE = f"https://127.0.0.1:{TEST_PORTS['service']}"  # the front, TLS; plain HTTP only on loopback ports
LOOPBACK = f"http://127.0.0.1:{TEST_PORTS['loopback']}"
EXPORTER = f"http://127.0.0.1:{TEST_PORTS['exporter']}"
DASHBOARD = f"https://127.0.0.1:{TEST_PORTS['dashboard']}"  # behind its own front


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, default_pack, images_dir):
    """The README's provisioning: site.yml on the default inventory (this machine, cpu mode), with the
    test's own prefix, ports, keys and pid folder, and one camera declared for it (a video file); uninstalled
    (purged) afterwards."""
    prefix = tmp_path_factory.mktemp("appliance")
    vars_file = prefix / "vars.json"
    video = make_video([images_dir / "two_people.jpg"], seconds=2.0, gap_s=0.5)
    values = isolated_vars(prefix / "root", default_pack)
    values["inference_service_cameras"] = [{"name": "door", "url": str(video.path), "fps": 2}]
    vars_file.write_text(json.dumps(values))
    first = playbook("site.yml", vars_file=vars_file)
    try:
        yield Appliance(prefix / "root", vars_file, first)
    finally:
        playbook("site.yml", "-e", "facefleet_state=absent", "-e", "facefleet_purge=true", vars_file=vars_file)
        stop_leftovers(prefix / "root" / "run")


def test_default_inventory_brings_up_the_appliance_and_a_second_run_changes_nothing(default_run):
    assert default_run.first.returncode == 0, default_run.first.stdout[-4000:]
    health = requests.get(f"{SERVICE}/health", verify=default_run.ca, timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert requests.get(f"{LOOPBACK}/livez", timeout=10).status_code == 200
    plain = requests.get(f"http://127.0.0.1:{TEST_PORTS['service']}/livez", timeout=10)
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "tls_required"
    with pytest.raises(requests.exceptions.SSLError):  # a client that trusts nothing of ours refuses it
        requests.get(f"{SERVICE}/livez", timeout=10)
    address = host_address()
    if address:  # off loopback only the TLS port answers: gunicorn and the plain port are not reachable
        for port in (TEST_PORTS["backend"], TEST_PORTS["loopback"]):
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(f"http://{address}:{port}/livez", timeout=5)
        assert requests.get(f"https://{address}:{TEST_PORTS['service']}/livez", verify=default_run.ca, timeout=10).ok
    metrics = requests.get(f"{EXPORTER}/metrics", timeout=10).text
    assert "facefleet_build_info" in metrics and "facefleet_exporter_collector_success" in metrics
    assert requests.get(f"{DASHBOARD}/healthz", verify=default_run.ca, timeout=10).json() == {"status": "ok"}
    keys = Path(default_run.values["inference_service_api_keys_file"])
    assert keys.is_relative_to(default_run.prefix) and keys.stat().st_mode & 0o777 == 0o600
    assert requests.get(f"{SERVICE}/info", verify=default_run.ca, timeout=30).status_code == 401
    assert requests.get(f"{SERVICE}/info", headers=default_run.key, verify=default_run.ca, timeout=30).ok
    assert "facefleet_probe_success 1.0" in metrics  # the exporter's probe went through the front, verified
    pidfiles = sorted(p.name for p in (default_run.prefix / "run").glob("*.pid"))
    names = ("dashboard", "dashboard-front", "exporter", "front", "service")
    assert pidfiles == sorted(f"facefleet-test-{name}.pid" for name in names)
    second = playbook("site.yml", vars_file=default_run.vars_file)
    assert second.returncode == 0, second.stdout[-4000:]
    assert changed(second) == 0, changed_tasks(second)


def test_monitoring_role_runs_prometheus_on_the_fleet(default_run, tmp_path):
    assert default_run.first.returncode == 0
    extra = tmp_path / "monitoring.ini"
    extra.write_text(f"[monitoring]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    monitored = ["-i", "inventory.ini", "-i", str(extra), "site.yml"]
    alone = [*monitored, "--tags", "monitoring"]  # the second run and the removal: the monitoring role alone
    try:
        first = playbook(*monitored, vars_file=default_run.vars_file)
        assert first.returncode == 0, first.stdout[-4000:]
        api = f"http://127.0.0.1:{TEST_PORTS['prometheus']}/api/v1"
        groups = requests.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        assert [g["name"] for g in groups] == ["facefleet"] and len(groups[0]["rules"]) == 10
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
        assert Path(default_run.values["monitoring_grafana_dashboards_dir"], "facefleet.json").is_file()
        second = playbook(*alone, vars_file=default_run.vars_file)
        assert second.returncode == 0 and changed(second) == 0, changed_tasks(second)
        assert "TASK [facefleet_process : Is it running (pidfile)]" in second.stdout  # included tasks ran too
    finally:
        removed = playbook(*alone, "-e", "monitoring_state=absent", vars_file=default_run.vars_file)
        assert removed.returncode == 0, removed.stdout[-3000:]
    assert not (default_run.prefix / "run" / "facefleet-test-prometheus.pid").exists()
    assert not Path(default_run.values["monitoring_prometheus_config_dir"], "facefleet").exists()


def test_verify_checks_health_and_providers_and_writes_the_fleet_report(default_run, tmp_path):
    assert default_run.first.returncode == 0
    result = playbook("verify.yml", "-e", f"verify_report_dir={tmp_path}", vars_file=default_run.vars_file)
    assert result.returncode == 0, result.stdout[-3000:]
    report = (tmp_path / "fleet-report.md").read_text()
    # the default chain on a CPU host, x86 included: the CPU provider (OpenVINO is opt-in, for memory)
    assert "| localhost | True |" in report and re.search(r"yunet_2023mar_int8bq: cpu\b", report)
    assert "Provider benchmarks: run" in report
    # the inventory's camera, as the service reports it (its video is short: it may have ended already)
    assert re.search(r"\| localhost \| door \| inventory \| (connecting|running|ended) \|", report), report
    benched = playbook(
        "verify.yml",
        "-e",
        f"verify_report_dir={tmp_path}",
        "-e",
        '{"verify_bench": true, "verify_bench_runs": 3}',
        vars_file=default_run.vars_file,
    )
    assert benched.returncode == 0, benched.stdout[-3000:]
    lines = (tmp_path / "fleet-report.md").read_text().splitlines()
    rows = [line for line in lines if " | cpu | " in line]
    assert {row.split(" | ")[2] for row in rows} == {"yunet_2023mar_int8bq", "sface_2021dec_int8bq"}, rows
    assert all(row.startswith("| localhost |") and row.endswith("| 1.00x |") for row in rows), rows
    wrong = playbook(
        "verify.yml",
        "-e",
        f"verify_report_dir={tmp_path}",
        "-e",
        '{"verify_expected_providers": ["tensorrt", "cuda"]}',
        vars_file=default_run.vars_file,
    )
    assert wrong.returncode != 0
    assert re.search(r"yunet_2023mar_int8bq runs on cpu, expected tensorrt or cuda", wrong.stdout)


def test_models_role_ships_a_gallery_bundle_and_the_service_searches_it(default_run, tmp_path):
    assert default_run.first.returncode == 0
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
        default_run.values["models_dir"],
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert built.returncode == 0, built.stderr
    ship = ["site.yml", "--tags", "models", "-e", json.dumps({"models_galleries": [str(bundle)]})]
    first = playbook(*ship, vars_file=default_run.vars_file)
    assert first.returncode == 0, first.stdout[-3000:]
    assert changed(first) >= 1, first.stdout[-3000:]
    second = playbook(*ship, vars_file=default_run.vars_file)
    assert changed(second) == 0, changed_tasks(second)
    key = default_run.key
    galleries = requests.get(f"{SERVICE}/galleries", headers=key, verify=default_run.ca, timeout=30).json()["galleries"]
    assert [g["name"] for g in galleries] == ["staff"] and galleries[0]["checksum"]
    probe = base64.b64encode((photos / "obama2.jpg").read_bytes()).decode()
    found = requests.post(
        f"{SERVICE}/galleries/staff/search",
        json={"images": {"data": [probe]}},
        headers=key,
        verify=default_run.ca,
        timeout=60,
    ).json()
    assert found["data"][0]["faces"][0]["matches"][0]["subject"] == "obama"


def host_address() -> str:
    """This machine's address on its default route ("" without one): not loopback, as another host sees it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, the kernel only picks the route
        except OSError:
            return ""
        address = probe.getsockname()[0]
    return "" if address.startswith("127.") else address


def listening(port: int) -> bool:
    return bool(
        subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout.strip()
    )


def test_stop_status_start_and_uninstall_keep_data_and_keys_unless_purged(default_run):
    """The operator's way back (facefleet_state): stopped stops every process and keeps every file; a
    plain run starts them again; absent removes processes, scripts, environment and configuration but
    keeps models, galleries and keys; absent twice changes nothing (present twice: the default run's test; a
    second stopped run was cut for CI time: its tasks are the process tasks absent runs too); purge removes the rest.
    Runs last in this module: it takes the test appliance down."""
    assert default_run.first.returncode == 0
    values, prefix = default_run.values, default_run.prefix
    ports = [
        TEST_PORTS[name] for name in ("service", "loopback", "backend", "exporter", "dashboard", "dashboard_backend")
    ]
    status = playbook("status.yml", vars_file=default_run.vars_file)
    assert status.returncode == 0 and "facefleet-test-service: running (pid " in status.stdout, status.stdout[-3000:]

    stopped = playbook("site.yml", "-e", "facefleet_state=stopped", vars_file=default_run.vars_file)
    assert stopped.returncode == 0 and changed(stopped) == 5, stopped.stdout[-3000:]
    assert not list((prefix / "run").glob("*.pid")) and not any(listening(port) for port in ports)
    assert Path(values["inference_service_venv"], "bin", "facefleet").is_file()
    status = playbook("status.yml", vars_file=default_run.vars_file)
    assert status.returncode != 0
    assert (
        "not running on localhost: facefleet-test-service, facefleet-test-front, facefleet-test-exporter, "
        "facefleet-test-dashboard, facefleet-test-dashboard-front" in status.stdout
    )
    # started again, opting into OpenVINO (x86_64): the CPU build is swapped for onnxruntime-openvino, the chain is
    # openvino,cpu and each model is on the faster of the two, with both candidates' time and memory in /info
    started = playbook("site.yml", "-e", "onnxruntime_mode=openvino", vars_file=default_run.vars_file)
    assert started.returncode == 0, started.stdout[-3000:]
    info = requests.get(f"{SERVICE}/info", headers=default_run.key, verify=default_run.ca, timeout=30).json()
    assert info["defaults"]["providers"] == ["openvino", "cpu"], info["defaults"]
    choice = info["models"]["detection"]["choice"]
    assert choice["mode"] == "fastest" and {c["provider"] for c in choice["candidates"]} == {"openvino", "cpu"}
    assert all(c["resident_mib"] > 0 for c in choice["candidates"]), choice

    keys = Path(values["inference_service_api_keys_file"])
    key_before = keys.read_bytes()
    absent = playbook("site.yml", "-e", "facefleet_state=absent", vars_file=default_run.vars_file)
    assert absent.returncode == 0, absent.stdout[-3000:]
    assert not list((prefix / "run").glob("*.pid")) and not any(listening(port) for port in ports)
    left = sorted(str(p.relative_to(prefix)) for p in (prefix / "opt").rglob("*")) if (prefix / "opt").exists() else []
    assert not (prefix / "opt").exists(), left  # environment, wheels, supervisor scripts
    config = prefix / "etc"
    assert sorted(p.name for p in config.rglob("*") if p.is_file()) == ["api-keys", "dashboard-password"]
    assert keys.read_bytes() == key_before
    assert sorted(p.name for p in Path(values["models_dir"]).iterdir()) == sorted(
        p.name for p in Path(values["models_source_dir"]).glob("*.onnx")
    )
    assert Path(values["inference_service_gallery_db"]).is_file()
    again = playbook("site.yml", "-e", "facefleet_state=absent", vars_file=default_run.vars_file)
    assert again.returncode == 0 and changed(again) == 0, again.stdout[-3000:]

    purged = playbook(
        "site.yml", "-e", "facefleet_state=absent", "-e", "facefleet_purge=true", vars_file=default_run.vars_file
    )
    assert purged.returncode == 0, purged.stdout[-3000:]
    assert not config.exists() and not Path(values["models_dir"]).exists()
    assert not Path(values["models_gallery_dir"]).exists() and not Path(values["dashboard_database"]).exists()
