"""The inference_container role's templates without a Docker daemon: the Dockerfiles it renders
pass hadolint and install from the target's constraint set, and the container's parameters are
what a Jetson needs (host networking, the NVIDIA runtime, the L4T release file mounted); the
jetson_host role's Docker configuration on a host without /etc/docker. The image really built and
run is tests/test_container.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "roles" / "inference_container"
TEGRA_MOUNT = "/etc/nv_tegra_release:/etc/nv_tegra_release:ro"


def _environment() -> jinja2.Environment:
    """Jinja as Ansible's template module sets it up (trim_blocks), with Ansible's own filters."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    env.filters.update(FilterModule().filters())  # bool, combine, to_json, to_nice_json, basename
    return env


def values(**overrides: object) -> dict[str, object]:
    """The role's defaults (their own templates resolved, as Ansible would) with `overrides`."""
    raw = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    raw.update(
        {
            "ansible_managed": "Ansible managed",
            "playbook_dir": str(ROOT),
            "inference_container_wheel": "facefleet-0.1.0-py3-none-any.whl",
            "inference_container_tag": "0123456789ab",
            "inference_container_tegra_release_found": False,  # facts the role's tasks record
            "facefleet_state": "present",  # the play-level lifecycle of ansible/group_vars/all.yml
            "facefleet_purge": False,
            "facefleet_tls_mode": "fleet_ca",
        },
        **overrides,
    )
    env = _environment()
    return {k: env.from_string(v).render(**raw) if isinstance(v, str) and "{{" in v else v for k, v in raw.items()}


def render(template: str, **overrides: object) -> str:
    return _environment().from_string((ROLE / "templates" / template).read_text()).render(**values(**overrides))


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    tool = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    return subprocess.run([tool, str(dockerfile)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("wheelhouse", ["", "/srv/wheelhouse"], ids=["index", "wheelhouse"])
@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_rendered_dockerfiles_pass_hadolint(variant, wheelhouse, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        render("Dockerfile.j2", inference_container_variant=variant, inference_container_wheelhouse=wheelhouse)
    )
    result = hadolint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    assert text.startswith("# Ansible managed")
    assert "HEALTHCHECK" in text and "/health" in text and "FACEFLEET_PORT" in text
    assert "\\\n\n" not in text  # no empty continuation line (Docker warns, and will refuse them)
    assert "COPY constraints.txt facefleet-0.1.0-py3-none-any.whl /tmp/facefleet/" in text
    assert "-c /tmp/facefleet/constraints.txt" in text  # every version from the target's constraint set
    assert ("--no-index" in text) == bool(wheelhouse)
    assert "EXPOSE" not in text  # host networking: nothing to publish
    if variant == "gpu":
        assert "FROM nvcr.io/nvidia/l4t-jetpack:r36.4.0" in text and "(jetpack6.txt)" in text
        assert "--extra-index-url https://pypi.jetson-ai-lab.io/jp6/cu126" in text
        assert "onnxruntime-gpu==1.23.0" in text and "[cpu]" not in text
        gstreamer = "gstreamer1.0-tools=* " + " ".join(f"gstreamer1.0-plugins-{p}=*" for p in ("base", "good", "bad"))
        assert gstreamer in text  # the streams' nvv4l2decoder pipeline runs gst-launch-1.0 (docs/streams.md)
    else:
        assert "FROM python:3.10-slim-bookworm" in text and "(cpu.txt)" in text
        assert "[cpu]" in text and "onnxruntime-gpu" not in text and "gstreamer" not in text


@pytest.mark.parametrize(("variant", "constraint_set"), [("gpu", "jetpack6.txt"), ("cpu", "cpu.txt")])
def test_each_variant_uses_its_targets_constraint_set(variant, constraint_set):
    chosen = Path(str(values(inference_container_variant=variant)["inference_container_constraints"]))
    assert chosen == ROOT / "constraints" / constraint_set
    assert chosen.is_file(), f"{chosen} missing: the role's preflight would stop on it"


def test_container_parameters_for_a_jetson():
    params = json.loads(render("container.json.j2", inference_container_variant="gpu"))
    assert params["runtime"] == "nvidia" and params["restart_policy"] == "unless-stopped"
    assert params["network_mode"] == "host" and "published_ports" not in params
    # host networking: the service listens on the host's loopback, behind the front's 18081 (TLS)
    assert params["env"]["FACEFLEET_HOST"] == "127.0.0.1" and params["env"]["FACEFLEET_PORT"] == "18083"
    assert params["image"] == "facefleet:0123456789ab"
    assert params["volumes"] == [
        "/var/lib/facefleet/models:/models:ro",
        "/var/lib/facefleet/cache:/cache",
        "/var/lib/facefleet/galleries:/galleries",
        "/var/lib/facefleet/metrics:/metrics",
        "/etc/facefleet/api-keys:/run/secrets/facefleet-api-keys:ro",
        TEGRA_MOUNT,
    ]
    assert params["memory"] == "4g" and params["env"]["FACEFLEET_PROVIDERS"] == "tensorrt,cuda,cpu"
    assert params["env"]["FACEFLEET_AUTH"] == "on"
    assert params["env"]["FACEFLEET_API_KEYS_FILE"] == "/run/secrets/facefleet-api-keys"


def test_container_parameters_of_the_cpu_variant_and_without_keys():
    cpu = json.loads(render("container.json.j2", inference_container_variant="cpu"))
    assert cpu["runtime"] == "runc" and cpu["network_mode"] == "host" and cpu["env"]["FACEFLEET_PROVIDERS"] == "cpu"
    assert TEGRA_MOUNT not in cpu["volumes"]  # only where the host has the file
    on_jetson = render(
        "container.json.j2", inference_container_variant="cpu", inference_container_tegra_release_found=True
    )
    assert TEGRA_MOUNT in json.loads(on_jetson)["volumes"]
    open_params = json.loads(render("container.json.j2", inference_container_auth=False))
    assert open_params["env"]["FACEFLEET_AUTH"] == "off"
    assert not any("api-keys" in volume for volume in open_params["volumes"])
    custom = json.loads(
        render("container.json.j2", inference_container_backend_port=19999, inference_container_env={"A": "1"})
    )
    # the service listens on loopback only: clients reach it through the front on inference_container_host_port
    assert custom["env"]["FACEFLEET_HOST"] == "127.0.0.1" and custom["env"]["FACEFLEET_PORT"] == "19999"
    assert custom["env"]["A"] == "1"


@pytest.mark.slow
@pytest.mark.ansible
def test_jetson_docker_configuration_makes_its_folder_and_restarts_docker_before_going_on(tmp_path):
    """A fresh JetPack 6 host has no /etc/docker yet: the folder is made before daemon.json, and
    the "Restart docker" handler runs right there, before any later task (build, run, health gate)."""
    daemon_json = tmp_path / "etc" / "docker" / "daemon.json"
    (tmp_path / "play.yml").write_text(
        "---\n- name: Docker's configuration on a Jetson\n  hosts: all\n  gather_facts: true\n  tasks:\n"
        "    - name: The jetson_host role's Docker tasks\n      ansible.builtin.include_role:\n"
        "        name: jetson_host\n        tasks_from: docker\n"
        "    - name: A later task\n      ansible.builtin.debug:\n        msg: later\n"
    )
    (tmp_path / "inventory.ini").write_text(
        f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    extra = {"jetson_host_docker_daemon_json": str(daemon_json), "jetson_host_docker_install": False}
    env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_ROLES_PATH": str(ROOT / "roles")}
    playbook = str(Path(sys.executable).parent / "ansible-playbook")
    result = subprocess.run(
        [playbook, "-i", str(tmp_path / "inventory.ini"), "-e", json.dumps(extra), str(tmp_path / "play.yml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    merged = json.loads(daemon_json.read_text())
    assert merged["default-runtime"] == "nvidia" and "nvidia" in merged["runtimes"]
    handler = result.stdout.index("RUNNING HANDLER [jetson_host : Restart docker]")
    assert handler < result.stdout.index("TASK [A later task]")
