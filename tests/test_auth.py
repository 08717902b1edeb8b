"""API keys on the real app and the real `facefleet serve`: who gets in, what stays open, and
that a configuration which would leave the service open by accident does not start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facefleet.api import create_app
from facefleet.api.auth import key_matches
from facefleet.errors import ConfigError
from facefleet.settings import Settings

from .server import Service

KEY_A = "a-first-key-of-the-fleet-0001"
KEY_B = "b-second-key-of-the-fleet-002"


@pytest.fixture(scope="module")
def settings(default_pack, cache_dir, tmp_path_factory) -> Settings:
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"# written by the inference_service role\n{KEY_A}\n\n")
    return Settings.of(
        models_dir=str(default_pack),
        cache_dir=str(cache_dir),
        providers=("cpu",),
        api_keys=(KEY_B,),
        api_keys_file=str(keys),
    )


@pytest.fixture(scope="module")
def client(settings):
    return create_app(settings).test_client()


def test_keys_from_the_file_and_the_environment_both_open_the_service(client):
    assert client.get("/info", headers={"X-API-Key": KEY_A}).status_code == 200
    assert client.get("/info", headers={"Authorization": f"Bearer {KEY_B}"}).status_code == 200
    assert client.get("/info", headers={"authorization": f"bearer {KEY_A}"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": KEY_A[:-1]},
        {"X-API-Key": KEY_A + "x"},
        {"Authorization": f"Basic {KEY_A}"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "# written by the inference_service role"},
    ],
)
def test_a_missing_or_wrong_key_gets_a_401_json_answer(client, headers):
    for path, method in (("/info", "get"), ("/extract", "post"), ("/draw_detections", "post")):
        response = getattr(client, method)(path, headers=headers, json={"images": {"data": []}})
        assert response.status_code == 401, (path, headers)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        error = response.get_json()["error"]
        assert error["code"] == "unauthorized" and "API key" in error["message"]
        assert KEY_A not in response.get_data(as_text=True)


def test_livez_health_metrics_and_the_spec_stay_open(client):
    for path in ("/livez", "/health", "/metrics", "/openapi.json", "/docs/"):
        assert client.get(path).status_code == 200, path


def test_open_paths_are_configurable_but_livez_always_answers(settings):
    closed = create_app(settings.replace(auth_open_paths=())).test_client()
    assert closed.get("/livez").status_code == 200
    for path in ("/health", "/metrics", "/openapi.json"):
        assert closed.get(path).status_code == 401, path
    assert closed.get("/metrics", headers={"X-API-Key": KEY_B}).status_code == 200


def test_info_says_whether_auth_is_on(client, default_pack, cache_dir):
    info = client.get("/info", headers={"X-API-Key": KEY_A}).get_json()
    assert info["auth"]["enabled"] is True and "/livez" in info["auth"]["open_paths"]
    assert KEY_A not in str(info) and KEY_B not in str(info)
    open_app = create_app(
        Settings.of(models_dir=str(default_pack), cache_dir=str(cache_dir), providers=("cpu",), auth="off")
    )
    off = open_app.test_client().get("/info").get_json()["auth"]
    assert off["enabled"] is False and "authentication is off" in off["warning"]


def test_every_key_is_compared():
    keys = (b"x" * 20, b"y" * 20)
    assert key_matches(b"y" * 20, keys) and key_matches(b"x" * 20, keys)
    assert not key_matches(b"z" * 20, keys) and not key_matches(b"", keys)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({}, "no API keys: set FACEFLEET_API_KEYS_FILE"),
        ({"api_keys": ("short",)}, "at least 16 characters"),
        ({"api_keys_file": "/nonexistent/api-keys"}, "cannot read FACEFLEET_API_KEYS_FILE=/nonexistent/api-keys"),
    ],
)
def test_a_configuration_that_would_be_open_by_accident_is_refused(default_pack, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        create_app(Settings.of(models_dir=str(default_pack), providers=("cpu",), **overrides))


def test_serve_without_keys_exits_with_one_line(default_pack):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEFLEET_")}
    result = subprocess.run(
        [sys.executable, "-m", "facefleet", "serve", "--models-dir", str(default_pack)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "FACEFLEET_AUTH=off" in result.stderr


@pytest.mark.slow  # its own gunicorn, about 5 s; the Flask client tests above cover the rule
def test_the_real_service_under_gunicorn_requires_the_key(default_pack, tmp_path, image_bytes):
    import base64

    import requests

    body = {"images": {"data": [base64.b64encode(image_bytes("biden.jpg")).decode()]}}
    svc = Service(
        {"FACEFLEET_MODELS_DIR": str(default_pack), "FACEFLEET_AUTH": "on", "FACEFLEET_API_KEYS": KEY_A},
        tmp_path / "service.log",
    )
    try:
        svc.wait_ready()
        assert requests.post(f"{svc.url}/extract", json=body, timeout=60).status_code == 401
        answer = requests.post(f"{svc.url}/extract", json=body, headers={"X-API-Key": KEY_A}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["data"][0]["faces"]) == 1
    finally:
        svc.stop()
    assert KEY_A not in svc.log.read_text()


def test_the_dashboard_presents_the_first_key_of_an_appliance_key_file(tmp_path):
    from facefleet.settings import DashboardSettings

    keys = tmp_path / "api-keys"
    keys.write_text(f"# comment\n\n{KEY_A}\n{KEY_B}\n")
    from_file = DashboardSettings.from_env({"FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE": str(keys)})
    assert from_file.appliance_api_key == KEY_A
    both = {"FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE": str(keys), "FACEFLEET_DASHBOARD_APPLIANCE_API_KEY": KEY_B}
    assert DashboardSettings.from_env(both).appliance_api_key == KEY_B
    with pytest.raises(ConfigError, match="cannot read FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE"):
        DashboardSettings.from_env({"FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE": str(tmp_path / "none")})
    (tmp_path / "empty").write_text("# no key yet\n")
    with pytest.raises(ConfigError, match="holds no key"):
        DashboardSettings.from_env({"FACEFLEET_DASHBOARD_APPLIANCE_API_KEY_FILE": str(tmp_path / "empty")})


def test_the_root_redirects_to_the_docs_without_a_key(client):
    """README: `/` redirects to `/docs`; a browser gets there, not a 401 (issue 17)."""
    root = client.get("/")
    assert root.status_code == 302 and root.headers["Location"].endswith("/docs/")
    assert client.get("/docs/").status_code == 200
    assert client.get("/info").status_code == 401  # what the docs page describes still needs the key


def test_the_role_opens_the_same_paths_as_the_code():
    import yaml

    role = Path(__file__).resolve().parent.parent / "roles" / "inference_service"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    assert tuple(defaults["inference_service_auth_open_paths"]) == Settings().auth.open_paths
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    assert tuple(specs["inference_service_auth_open_paths"]["default"]) == Settings().auth.open_paths
    assert "/" in Settings().auth.open_paths


@pytest.mark.slow
@pytest.mark.ansible
def test_every_probe_of_verify_yml_sends_the_key(default_pack, tmp_path):
    """verify.yml against a real service whose only open path is /livez: its /health and /info
    probes both pass only if each presents the host's key (read from the keys file)."""
    keys = tmp_path / "api-keys"
    keys.write_text(f"# the role's file\n{KEY_A}\n")
    svc = Service(
        {
            "FACEFLEET_MODELS_DIR": str(default_pack),
            "FACEFLEET_AUTH": "on",
            "FACEFLEET_API_KEYS_FILE": str(keys),
            "FACEFLEET_AUTH_OPEN_PATHS": "/livez",
            "FACEFLEET_METRICS_DIR": str(tmp_path / "metrics"),
            "FACEFLEET_GALLERY_DB": str(tmp_path / "galleries.sqlite3"),
        },
        tmp_path / "service.log",
    )
    root = Path(__file__).resolve().parent.parent
    try:
        svc.wait_ready(key=KEY_A)
        # a bare `facefleet serve`, no front: plain HTTP (the roles' TLS path is test_ansible.py's verify test)
        extra = [f"facefleet_service_port={svc.port}", f"verify_api_keys_file={keys}", f"verify_report_dir={tmp_path}"]
        extra.append("facefleet_tls_mode=plain")
        playbook = [str(Path(sys.executable).parent / "ansible-playbook"), "verify.yml"]
        result = subprocess.run(
            [*playbook, *(arg for e in extra for arg in ("-e", e))],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "ANSIBLE_FORCE_COLOR": "0"},
        )
    finally:
        svc.stop()
    assert result.returncode == 0, result.stdout[-3000:]
    assert "yunet_2023mar_int8bq: cpu" in (tmp_path / "fleet-report.md").read_text()
