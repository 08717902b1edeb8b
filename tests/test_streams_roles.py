"""The roles hand an appliance its cameras, broker and webhook (docs/streams.md), rendered as Ansible renders
them: the native service's environment file and the container's parameters, secrets only as file paths."""

from __future__ import annotations

import json

from .test_ansible_container import render
from .test_trusted_networks import service_env

SECRETS = ("broker-pw-123", "hmac-key-456", "user:camera-pw-789")  # in root-only files, never parameters
CAMERAS = [{"name": "door", "url": "rtsp://user:camera-pw-789@10.0.0.21/stream1", "fps": 5}]
# The inventory's values as Ansible resolves them: group_vars' facefleet_mqtt_* and facefleet_webhook_* reach the
# roles through inference_service_*'s defaults (`| default('')`), which these renderers (plain Jinja with
# Ansible's filters) cannot resolve from an undefined variable, so the resolved names are given.
NOTHING = {
    f"{prefix}_{name}": ""
    for prefix in ("facefleet", "inference_service")
    for name in ("mqtt_url", "mqtt_username", "mqtt_password", "webhook_url", "webhook_secret")
}
FLEET = {
    **NOTHING,
    "inference_service_cameras": CAMERAS,
    "inference_service_stream_gallery": "staff",
    "inference_service_mqtt_url": "mqtts://broker.example:8883",
    "inference_service_mqtt_username": "facefleet",
    "inference_service_mqtt_password": "broker-pw-123",
    "inference_service_webhook_url": "https://hooks.example/facefleet",
    "inference_service_webhook_secret": "hmac-key-456",
}


def test_the_native_service_reads_its_cameras_and_the_fleets_broker_from_files():
    env = service_env(**FLEET, inventory_hostname="orin-01")
    assert env["FACEFLEET_STREAMS_FILE"].endswith("/streams.yml")
    assert env["FACEFLEET_STREAMS_DIR"].endswith("/streams") and env["FACEFLEET_APPLIANCE_NAME"] == "orin-01"
    assert env["FACEFLEET_STREAM_GALLERY"] == "staff"
    assert env["FACEFLEET_MQTT_URL"] == "mqtts://broker.example:8883" and env["FACEFLEET_MQTT_USERNAME"] == "facefleet"
    assert env["FACEFLEET_MQTT_PASSWORD_FILE"].endswith("/mqtt-password")
    assert env["FACEFLEET_WEBHOOK_SECRET_FILE"].endswith("/webhook-secret")
    text = "\n".join(f"{k}={v}" for k, v in env.items())
    assert not any(secret in text for secret in SECRETS), text


def test_without_cameras_or_broker_the_service_gets_only_its_folder_and_name():
    env = service_env(**NOTHING, inventory_hostname="orin-01")
    streams = {k for k in env if k.startswith(("FACEFLEET_STREAM", "FACEFLEET_MQTT", "FACEFLEET_WEBHOOK"))}
    assert streams == {"FACEFLEET_STREAMS_DIR"}


def test_the_container_gets_the_same_through_read_only_mounts():
    params = json.loads(render("container.json.j2", **FLEET, inventory_hostname="orin-01"))
    env, volumes = params["env"], params["volumes"]
    assert env["FACEFLEET_STREAMS_FILE"] == "/run/secrets/facefleet-streams.yml"
    assert env["FACEFLEET_MQTT_PASSWORD_FILE"] == "/run/secrets/facefleet-mqtt-password"
    assert env["FACEFLEET_WEBHOOK_SECRET_FILE"] == "/run/secrets/facefleet-webhook-secret"
    assert env["FACEFLEET_STREAMS_DIR"] == "/cache/streams" and env["FACEFLEET_APPLIANCE_NAME"] == "orin-01"
    mounts = {v.split(":")[1]: v for v in volumes}
    for inside in ("facefleet-streams.yml", "facefleet-mqtt-password", "facefleet-webhook-secret"):
        assert mounts[f"/run/secrets/{inside}"].endswith(":ro")
    assert not any(secret in json.dumps(params) for secret in SECRETS)
