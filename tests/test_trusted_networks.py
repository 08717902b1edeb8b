"""Trusted networks (FACEFLEET_TRUSTED_NETWORKS): clients that cannot send a key are served by their address,
keys staying on. The CIDR parsing and the address rule on their own; the real app (Flask's test client sets the
TCP peer); and a real `facefleet serve` with keys on behind the real nginx front (tests/front.py), where the
front's X-Forwarded-For is what names the client and a forged one is overwritten."""

from __future__ import annotations

import base64
import contextlib
import http.client
import ipaddress
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

from facefleet.api import create_app
from facefleet.api.auth import client_address, trusted_network, trusted_warning
from facefleet.errors import ConfigError
from facefleet.settings import Settings
from facefleet.settings.env import network_list

from .conftest import SHARED_IMAGES
from .front import Front
from .server import Service, keyed_cpu_service

KEY = "trusted-networks-test-key-0001"
PHOTO = SHARED_IMAGES / "two_people.jpg"


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


# ------------------------------------------------------------------ the setting
def test_networks_are_comma_separated_cidrs_of_either_family() -> None:
    parsed = network_list(" 10.0.0.0/8, 192.168.1.5,2001:db8::/32 , ::1 ,")
    assert parsed == (net("10.0.0.0/8"), net("192.168.1.5/32"), net("2001:db8::/32"), net("::1/128"))
    assert network_list("0.0.0.0/0,::/0") == (net("0.0.0.0/0"), net("::/0"))
    assert Settings.of().auth.trusted_networks == ()  # none unless the operator names them


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("10.1.2.3/8", "has host bits set (did you mean 10.0.0.0/8?)"),
        ("lab-net", "'lab-net' does not appear to be an IPv4 or IPv6 network"),
        ("10.0.0.0/33", "'10.0.0.0/33' does not appear"),
        ("10.0.0.0/8;192.168.0.0/16", "does not appear"),
        ("2001:db8::/129", "does not appear"),
    ],
)
def test_a_bad_network_stops_start_up_with_one_line_naming_the_variable(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({"FACEFLEET_TRUSTED_NETWORKS": value})
    message = str(raised.value)
    assert message.startswith(f"invalid FACEFLEET_TRUSTED_NETWORKS={value!r}: ") and fragment in message
    assert "\n" not in message


def test_the_config_file_takes_a_yaml_list(tmp_path: Path) -> None:
    config = tmp_path / "facefleet.yml"
    config.write_text("trusted_networks: [10.0.0.0/8, 'fd00::/8']\n")
    settings = Settings.from_env({"FACEFLEET_CONFIG": str(config)})
    assert settings.auth.trusted_networks == (net("10.0.0.0/8"), net("fd00::/8"))


def test_serve_with_a_bad_network_exits_with_one_line(default_pack: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "facefleet", "serve", "--models-dir", str(default_pack)],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("FACEFLEET_")},
            "FACEFLEET_API_KEYS": KEY,
            "FACEFLEET_TRUSTED_NETWORKS": "10.0.0.0/8,10.1.2.3/16",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "FACEFLEET_TRUSTED_NETWORKS" in lines[0] and "10.1.2.3/16" in lines[0], lines


# ------------------------------------------------------------------ the address rule
@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("192.0.2.7", None, "192.0.2.7"),  # no front: the TCP peer
        ("192.0.2.7", "10.0.0.1", "192.0.2.7"),  # a remote peer cannot claim an address
        ("2001:db8::7", "10.0.0.1", "2001:db8::7"),
        ("127.0.0.1", "192.0.2.7", "192.0.2.7"),  # the front on this host names its peer
        ("::1", "2001:db8::9", "2001:db8::9"),
        ("127.0.0.1", None, "127.0.0.1"),  # a local client on the backend port
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "10.0.0.1, 192.0.2.7", "192.0.2.7"),  # an appending proxy puts its own peer last
        ("127.0.0.1", " 192.0.2.7 ", "192.0.2.7"),
        ("127.0.0.1", "unknown", None),  # not an address: not trusted by network
        ("127.0.0.1", "192.0.2.7, garbage", None),
        ("::ffff:192.0.2.7", "10.0.0.1", "192.0.2.7"),  # a dual-stack socket's IPv4 peer, still remote
        ("::ffff:127.0.0.1", "192.0.2.7", "192.0.2.7"),
        ("", "10.0.0.1", None),  # a unix socket has no peer address
        (None, "10.0.0.1", None),
    ],
)
def test_the_client_is_the_peer_unless_the_peer_is_loopback(
    peer: str | None, forwarded: str | None, expected: str | None
) -> None:
    found = client_address(peer, forwarded)
    assert (str(found) if found else None) == expected


def test_the_first_network_holding_the_address_is_named() -> None:
    networks = (net("10.0.0.0/8"), net("10.1.0.0/16"), net("2001:db8::/32"))
    assert trusted_network(ipaddress.ip_address("10.1.2.3"), networks) == net("10.0.0.0/8")
    assert trusted_network(ipaddress.ip_address("2001:db8::1"), networks) == net("2001:db8::/32")
    assert trusted_network(ipaddress.ip_address("11.0.0.1"), networks) is None
    assert trusted_network(None, networks) is None
    # a family never contains the other's addresses, not even the mapped ones
    assert trusted_network(ipaddress.ip_address("::ffff:10.0.0.1"), (net("10.0.0.0/8"),)) is None
    assert trusted_network(ipaddress.ip_address("10.0.0.1"), (net("::/0"),)) is None


def test_the_start_up_warning_names_the_networks_and_every_address() -> None:
    narrow = trusted_warning((net("10.0.0.0/8"), net("fd00::/8")))
    assert "10.0.0.0/8, fd00::/8" in narrow and "FACEFLEET_TRUSTED_NETWORKS" in narrow
    assert "every address" not in narrow
    wide = trusted_warning((net("0.0.0.0/0"), net("::/0")))
    assert "0.0.0.0/0 and ::/0 is every address" in wide


# ------------------------------------------------------------------ the real app
@pytest.fixture(scope="module")
def app_client(default_pack: Path, cache_dir: Path):
    settings = Settings.of(
        models_dir=str(default_pack),
        cache_dir=str(cache_dir),
        providers=("cpu",),
        api_keys=(KEY,),
        trusted_networks=network_list("10.0.0.0/8,2001:db8::/32"),
    )
    return create_app(settings).test_client()


def status(client, path: str, peer: str, headers: dict[str, str] | None = None) -> int:
    if path == "/extract":
        body = {"images": {"data": [base64.b64encode(PHOTO.read_bytes()).decode()]}}
        response = client.post(path, json=body, headers=headers, environ_base={"REMOTE_ADDR": peer})
    else:
        response = client.get(path, headers=headers, environ_base={"REMOTE_ADDR": peer})
    return response.status_code


@pytest.mark.parametrize("path", ["/info", "/extract"])
def test_a_keyless_request_from_a_trusted_network_is_served_and_from_elsewhere_refused(app_client, path) -> None:
    assert status(app_client, path, "10.20.30.40") == 200
    assert status(app_client, path, "2001:db8::1") == 200
    assert status(app_client, path, "192.0.2.7") == 401
    assert status(app_client, path, "2001:db9::1") == 401
    assert status(app_client, path, "192.0.2.7", {"X-API-Key": KEY}) == 200  # keys work from anywhere


def test_a_wrong_key_is_refused_even_from_a_trusted_network(app_client) -> None:
    assert status(app_client, "/info", "10.20.30.40", {"X-API-Key": KEY[:-1]}) == 401
    assert status(app_client, "/info", "10.20.30.40", {"Authorization": "Bearer nope"}) == 401


def test_forwarded_for_counts_only_from_loopback(app_client) -> None:
    forged = {"X-Forwarded-For": "10.20.30.40"}
    assert status(app_client, "/info", "192.0.2.7", forged) == 401
    assert status(app_client, "/info", "127.0.0.1", forged) == 200
    assert status(app_client, "/info", "127.0.0.1") == 401  # loopback itself is not a trusted network here


def test_info_lists_the_trusted_networks(app_client) -> None:
    auth = app_client.get("/info", headers={"X-API-Key": KEY}).get_json()["auth"]
    assert auth["enabled"] is True and auth["trusted_networks"] == ["10.0.0.0/8", "2001:db8::/32"]


# ------------------------------------------------------------------ a real service behind the real front
TRUSTED = "127.0.0.2"  # a loopback address of its own: the front's peer when a client connects from it


@dataclass
class Stack:
    service: Service
    front: Front


@pytest.fixture(scope="module")
def stack(default_pack: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One service (keys on, 127.0.0.2/32 trusted) and one front for the module."""
    folder = tmp_path_factory.mktemp("trusted")
    service = keyed_cpu_service(default_pack, cache_dir, folder, KEY, FACEFLEET_TRUSTED_NETWORKS=f"{TRUSTED}/32")
    try:
        front = Front(folder / "nginx", service.port)
        try:
            yield Stack(service, front)
        finally:
            front.stop()
    finally:
        service.stop()


def request(
    port: int, source: str, path: str = "/info", headers: dict[str, str] | None = None, tls: Front | None = None
) -> tuple[int, bytes]:
    """One request to 127.0.0.1:`port` from the loopback address `source` (TLS verified with `tls`'s CA)."""
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls.pki.ca))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=60, source_address=(source, 0), context=context
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(source, 0))
    try:
        if path == "/extract":
            body = json.dumps({"images": {"data": [base64.b64encode(PHOTO.read_bytes()).decode()]}})
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        else:
            conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_through_the_front_a_client_on_a_trusted_network_needs_no_key(stack: Stack) -> None:
    front = stack.front
    status_, body = request(front.loopback_port, TRUSTED)
    assert status_ == 200, body
    assert json.loads(body)["auth"]["trusted_networks"] == [f"{TRUSTED}/32"]
    assert request(front.port, TRUSTED, tls=front)[0] == 200  # the TLS port too
    status_, body = request(front.loopback_port, TRUSTED, "/extract")
    assert status_ == 200 and len(json.loads(body)["data"][0]["faces"]) == 2
    # the log says who was let in without a key, and the start-up warning named the network
    log = stack.service.log.read_text()
    assert f"trusted networks {TRUSTED}/32 (FACEFLEET_TRUSTED_NETWORKS)" in log
    assert "GET /info 200" in log and f"trusted_network={TRUSTED}/32" in log


def test_through_the_front_a_client_elsewhere_needs_its_key(stack: Stack) -> None:
    front = stack.front
    status_, body = request(front.loopback_port, "127.0.0.1")
    assert status_ == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    assert request(front.port, "127.0.0.1", tls=front)[0] == 401
    assert request(front.loopback_port, "127.0.0.1", headers={"X-API-Key": KEY})[0] == 200


def test_a_forged_forwarded_for_is_overwritten_by_the_front(stack: Stack) -> None:
    """A client claiming the trusted address through the front is still who the front saw: nginx sets the header."""
    forged = {"X-Forwarded-For": TRUSTED}
    assert request(stack.front.loopback_port, "127.0.0.1", headers=forged)[0] == 401
    assert request(stack.front.port, "127.0.0.1", headers=forged, tls=stack.front)[0] == 401
    appended = {"X-Forwarded-For": f"{TRUSTED}, {TRUSTED}"}
    assert request(stack.front.loopback_port, "127.0.0.1", headers=appended)[0] == 401


def test_the_boundary_a_local_process_on_the_backend_port_can_claim_an_address(stack: Stack) -> None:
    """The documented limit (docs/configuration.md): gunicorn listens on loopback only, so only a process on
    this host reaches it directly, and it is believed as the front is. Hosts with untrusted local users should
    not use trusted networks."""
    backend = stack.service.port
    assert request(backend, "127.0.0.1", headers={"X-Forwarded-For": TRUSTED})[0] == 200
    assert request(backend, "127.0.0.1")[0] == 401
    assert request(backend, TRUSTED)[0] == 200  # its own peer address, without a header


# ------------------------------------------------------------------ the roles
ROLES = Path(__file__).resolve().parent.parent / "roles"


def service_env(**overrides: object) -> dict[str, str]:
    """roles/inference_service's service.env, rendered as Ansible does (its filters, trim_blocks) from the role's
    defaults and `overrides`, read back as the variables systemd gives the service."""
    values = yaml.safe_load((ROLES / "inference_service" / "defaults" / "main.yml").read_text())
    # a CPU host's onnxruntime role (its mode decides the default chain: openvino,cpu in openvino mode)
    values.update({"ansible_managed": "Ansible managed", "onnxruntime_mode": "cpu", **overrides})
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    env.filters.update(FilterModule().filters())
    for name, value in list(values.items()):  # a default that is a template (the providers, per onnxruntime mode)
        if isinstance(value, str) and "{{" in value and name not in overrides:
            with contextlib.suppress(jinja2.UndefinedError):  # one that needs another role's variables stays as is
                values[name] = env.from_string(value).render(values)
    text = env.from_string((ROLES / "inference_service" / "templates" / "service.env.j2").read_text()).render(values)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.parametrize("given", [["10.20.0.0/16", "fd00::/8"], "10.20.0.0/16,fd00::/8"], ids=["list", "string"])
def test_the_service_role_writes_the_networks_the_service_reads(given: object) -> None:
    """A list from group_vars or a comma-separated string from an inventory line: the same setting."""
    environ = service_env(inference_service_trusted_networks=given)
    assert environ["FACEFLEET_TRUSTED_NETWORKS"] == "10.20.0.0/16,fd00::/8"
    assert Settings.from_env(environ).auth.trusted_networks == (net("10.20.0.0/16"), net("fd00::/8"))
    assert "FACEFLEET_TRUSTED_NETWORKS" not in service_env()  # the default: none, and the file as before


def test_the_container_role_passes_the_networks_in_the_containers_environment() -> None:
    from .test_ansible_container import render

    def networks(**overrides: object) -> str | None:
        return json.loads(render("container.json.j2", **overrides))["env"].get("FACEFLEET_TRUSTED_NETWORKS")

    assert networks() is None
    assert networks(inference_container_trusted_networks=["10.20.0.0/16", "fd00::/8"]) == "10.20.0.0/16,fd00::/8"
    # one inventory variable for both install modes; the container's own wins where set
    assert networks(inference_service_trusted_networks=["10.30.0.0/16"]) == "10.30.0.0/16"
    both = {"inference_service_trusted_networks": ["10.30.0.0/16"], "inference_container_trusted_networks": ["::1"]}
    assert networks(**both) == "::1"


def test_the_roles_default_is_the_codes() -> None:
    for role in ("inference_service", "inference_container"):
        name = f"{role}_trusted_networks"
        defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
        specs = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
        spec = specs["argument_specs"]["main"]["options"][name]
        assert defaults[name] == spec["default"] == list(Settings().auth.trusted_networks) == []
        assert spec["type"] == "list" and spec["elements"] == "str"
