"""site.yml over real SSH across a fleet of three test hosts on this machine (tests/fleet.py):
A fakes a Jetson AGX Orin on L4T R36.4.3 (container mode, rendered only: it has no Docker daemon and
no route to an apt mirror, so inference_container_render_only and jetson_host_docker_install=false;
the container really built and run is tests/test_container.py), B a Jetson on
L4T R35.6 (must fail its JetPack 6 check while the others carry on), C a plain CPU appliance that
also hosts the dashboard. A second run must change nothing."""

from __future__ import annotations

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

from .fakejetson import AGX_ORIN
from .fleet import Fleet, Host

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = pytest.mark.ansible

NVPMODEL = (
    '#!/bin/sh\n# FAKE nvpmodel: the real tool\'s -q output\n[ "$1" = "-q" ] && printf \'NV Power Mode: MAXN\\n0\\n\'\n'
)
DAEMON_JSON = {"log-driver": "json-file", "log-opts": {"max-size": "10m"}, "data-root": "/var/lib/docker"}


def wheelhouses() -> dict[str, Path]:
    """Every wheel the hosts need, for their own Python (the test hosts have no route out), resolved inside
    the constraint sets the roles install with: the CPU set for the plain host, the JetPack 6 set for the
    FAKE Jetsons (so their offline install finds the pinned versions), one folder per set so each host is
    sent only its own. Rebuilt when a set changes."""
    house = ROOT / ".cache" / "fleet-wheelhouse"
    sets = {"cpu": ROOT / "constraints" / "cpu.txt", "jetpack6": ROOT / "constraints" / "jetpack6.txt"}
    stamp = "one folder per set\n" + "".join(s.read_text() for s in sets.values())  # the layout, then the sets
    if (house / ".complete").exists() and (house / ".complete").read_text() == stamp:
        return {name: house / name for name in sets}
    shutil.rmtree(house, ignore_errors=True)
    python = ROOT / ".cache" / "fleet-python"
    if not (python / "bin" / "pip").exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(python)], check=True)
    build = ROOT / ".cache" / "fleet-build"
    shutil.rmtree(build, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(build), str(ROOT)], check=True)
    wheel = next(build.glob("facefleet-*.whl"))
    for name, constraints in sets.items():
        requirement = f"facefleet[cpu] @ {wheel.as_uri()}"
        folder = house / name
        subprocess.run(
            [str(python / "bin" / "pip"), "download", "-q", "-d", str(folder), "-c", str(constraints), requirement],
            check=True,
            timeout=900,
        )
    (house / ".complete").write_text(stamp)
    return {name: house / name for name in sets}


def playbook(inventory: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_SSH_RETRIES": "2"}
    start = time.monotonic()
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), "site.yml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    return result, time.monotonic() - start


def recap(output: str) -> dict[str, dict[str, int]]:
    rows = re.findall(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", output, re.M)
    return {h: {"ok": int(o), "changed": int(c), "unreachable": int(u), "failed": int(f)} for h, o, c, u, f in rows}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, default_pack):
    folder = tmp_path_factory.mktemp("fleet")
    release_b = "# R35 (release), REVISION: 6.0, GCID: 37253093, BOARD: generic, EABI: aarch64, DATE: Mon Jul  8 2024\n"
    jetson_files = {
        "docker/daemon.json": json.dumps(DAEMON_JSON),
        "facefleet-fake/device-tree-model": AGX_ORIN.model + "\x00",
    }
    hosts = [
        Host(
            "a", 0, folder / "a", {"nv_tegra_release": AGX_ORIN.release + "\n", **jetson_files}, {"nvpmodel": NVPMODEL}
        ),
        Host("b", 1, folder / "b", {"nv_tegra_release": release_b, **jetson_files}, {"nvpmodel": NVPMODEL}),
        Host("c", 2, folder / "c"),
    ]
    houses = wheelhouses()
    with Fleet(folder, hosts) as made:
        a, b, c = hosts
        inventory = folder / "inventory.ini"
        inventory.write_text(
            f"[appliances]\norin-a ansible_host={a.address}\njp5-b ansible_host={b.address}\n"
            f"plain-c ansible_host={c.address}\n\n"
            "[jetson]\norin-a\njp5-b\n\n[dashboard]\nplain-c\n\n"
            "[jetson:vars]\njetson_host_model_path=/etc/facefleet-fake/device-tree-model\njetson_host_nvpmodel_mode=0\n"
            "jetson_host_docker_install=false\ninference_container_render_only=true\n"
            f"facefleet_package_wheelhouse={houses['jetpack6']}\n\n"
            f"[all:vars]\nansible_user=root\nansible_ssh_private_key_file={made.key}\n"
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
            "ansible_python_interpreter=/usr/bin/python3\nonnxruntime_python=/usr/bin/python3\n"
            f"facefleet_package_python=/usr/bin/python3\nfacefleet_package_wheelhouse={houses['cpu']}\n"
            f"onnxruntime_wheelhouse={houses['cpu']}\nmodels_source_dir={default_pack}\n"
            # the fleet CA of this test's control node, not the repository's pki/ (an installed appliance's)
            f"facefleet_front_pki_dir={folder / 'pki'}\ndashboard_ca_source={folder / 'pki' / 'ca.crt'}\n"
        )
        first, first_s = playbook(inventory)
        second, second_s = playbook(inventory)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "fleet-runs.json").write_text(
            json.dumps(
                {
                    "first_run_s": round(first_s, 1),
                    "second_run_s": round(second_s, 1),
                    "first": recap(first.stdout),
                    "second": recap(second.stdout),
                },
                indent=2,
            )
        )
        (ARTIFACTS / "fleet-first-run.log").write_text(first.stdout + first.stderr)
        (ARTIFACTS / "fleet-second-run.log").write_text(second.stdout + second.stderr)
        yield {"hosts": {h.name: h for h in hosts}, "first": first, "second": second, "folder": folder}


def test_jetson_on_jetpack_5_fails_alone_with_one_clear_line(fleet):
    result = recap(fleet["first"].stdout)
    assert result["jp5-b"]["failed"] == 1, fleet["first"].stdout[-3000:]
    lines = fleet["first"].stdout.splitlines()
    failures = [" ".join(lines[i : i + 3]) for i, line in enumerate(lines) if line.startswith(("fatal:", "failed:"))]
    assert result["orin-a"]["failed"] == 0 and result["plain-c"]["failed"] == 0, failures
    assert (
        "jp5-b runs L4T R35.6.0 (JetPack 5.1.4); facefleet needs L4T R36.x (JetPack 6): reflash it with JetPack 6"
    ) in fleet["first"].stdout


def test_fake_orin_gets_its_jetson_configuration(fleet):
    a = fleet["hosts"]["a"]
    daemon = json.loads((a.root / "etc" / "docker" / "daemon.json").read_text())
    assert {k: daemon[k] for k in DAEMON_JSON} == DAEMON_JSON  # every existing key kept
    assert daemon["default-runtime"] == "nvidia"
    assert daemon["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "runtimeArgs": []}
    params = json.loads((a.root / "etc" / "facefleet" / "container.json").read_text())
    assert params["runtime"] == "nvidia" and params["network_mode"] == "host" and "published_ports" not in params
    assert params["env"]["FACEFLEET_PORT"] == "18083" and params["env"]["FACEFLEET_PROVIDERS"] == "tensorrt,cuda,cpu"
    assert params["env"]["FACEFLEET_HOST"] == "127.0.0.1"  # behind the front the role runs on the host (18081)
    assert "/etc/nv_tegra_release:/etc/nv_tegra_release:ro" in params["volumes"]  # so /info there reports L4T
    build = a.root / "opt_facefleet" / "build"
    dockerfile = build / "Dockerfile"
    assert "FROM nvcr.io/nvidia/l4t-jetpack:r36.4.0" in dockerfile.read_text()
    assert "-c /tmp/facefleet/constraints.txt" in dockerfile.read_text()
    assert (build / "constraints.txt").read_text() == (ROOT / "constraints" / "jetpack6.txt").read_text()
    assert list(build.glob("facefleet-*.whl")), "the wheel belongs in the build context"
    hadolint = shutil.which("hadolint") or str(BIN / "hadolint")
    lint = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout
    # render only: every Docker task skipped on the fake Orin (present, not absent), nothing installed with apt
    for task in (
        "jetson_host : Install Docker and the NVIDIA container toolkit where missing",
        "inference_container : Ask Docker for its version",
        "inference_container : Build the image",
        "inference_container : Run the container",
        "inference_container : Wait until /health answers 200 (through the front)",
    ):
        block = rf"TASK \[{re.escape(task)}\][^\n]*\n(?:(?!TASK ).*\n)*?skipping: \[orin-a\]"
        assert re.search(block, fleet["first"].stdout), task


def test_plain_host_serves_the_service_exporter_and_dashboard(fleet):
    c = fleet["hosts"]["c"].address
    # over TLS from "another machine", verified with the fleet CA the control node made (its address is in the
    # host's certificate); plain HTTP to that port is refused
    health = requests.get(f"https://{c}:18080/health", verify=str(fleet["folder"] / "pki" / "ca.crt"), timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    plain = requests.get(f"http://{c}:18080/health", timeout=30)
    assert plain.status_code == 400 and plain.json()["error"]["code"] == "tls_required"
    assert "facefleet_build_info" in requests.get(f"http://{c}:18090/metrics", timeout=10).text
    dashboard = requests.get(f"https://{c}:18100/healthz", verify=str(fleet["folder"] / "pki" / "ca.crt"), timeout=10)
    assert dashboard.json() == {"status": "ok"}  # the dashboard behind its own TLS front too


def test_second_run_changes_nothing(fleet):
    second = recap(fleet["second"].stdout)
    assert {host: row["changed"] for host, row in second.items()} == {"orin-a": 0, "jp5-b": 0, "plain-c": 0}, fleet[
        "second"
    ].stdout[-4000:]
