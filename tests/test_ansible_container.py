"""The container install mode where no Docker daemon answers: the Dockerfiles it renders pass
hadolint, and the container's parameters are what a Jetson needs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

ROLE = Path(__file__).resolve().parent.parent / "roles" / "inference_container"


def render(template: str, **overrides: object) -> str:
    values = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    values.update(
        {
            "ansible_managed": "Ansible managed",
            "inference_container_wheel": "facefleet-0.1.0-py3-none-any.whl",
            "inference_container_tag": "0123456789ab",
        },
        **overrides,
    )
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(FilterModule().filters())  # Ansible's own filters: bool, combine, to_json
    return env.from_string((ROLE / "templates" / template).read_text()).render(**values)


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_rendered_dockerfiles_pass_hadolint(variant, tmp_path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(render("Dockerfile.j2", inference_container_variant=variant))
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = dockerfile.read_text()
    assert "HEALTHCHECK" in text and "/health" in text
    if variant == "gpu":
        assert text.startswith("# Ansible managed") and "FROM nvcr.io/nvidia/l4t-jetpack:r36.4.0" in text
        assert "--extra-index-url https://pypi.jetson-ai-lab.io/jp6/cu126" in text
        assert "onnxruntime-gpu==1.23.0" in text
    else:
        assert "[cpu]" in text and "onnxruntime-gpu" not in text


def test_container_parameters_for_a_jetson():
    params = json.loads(render("container.json.j2", inference_container_variant="gpu"))
    assert params["runtime"] == "nvidia" and params["restart_policy"] == "unless-stopped"
    assert params["published_ports"] == ["18081:18080"]
    assert params["image"] == "facefleet:0123456789ab"
    assert "/var/lib/facefleet/cache:/cache" in params["volumes"]
    assert "/var/lib/facefleet/metrics:/metrics" in params["volumes"]
    assert "/var/lib/facefleet/models:/models:ro" in params["volumes"]
    assert params["memory"] == "4g" and params["env"]["FACEFLEET_PROVIDERS"] == "tensorrt,cuda,cpu"
    assert json.loads(render("container.json.j2", inference_container_variant="cpu"))["runtime"] == "runc"
    assert "/etc/facefleet/api-keys:/run/secrets/facefleet-api-keys:ro" in params["volumes"]
    assert params["env"]["FACEFLEET_AUTH"] == "on"
    assert params["env"]["FACEFLEET_API_KEYS_FILE"] == "/run/secrets/facefleet-api-keys"
    open_params = json.loads(render("container.json.j2", inference_container_auth=False))
    assert open_params["env"]["FACEFLEET_AUTH"] == "off"
    assert not any("api-keys" in volume for volume in open_params["volumes"])
