"""Security checks of the service app, beyond tests/test_api.py's URL and path basics: every
internal address form, names that resolve to loopback, redirects into the appliance (with a
real listener that must never be reached), symlinks out of the images root, and the headers
of every kind of response."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facefleet.api import create_app
from facefleet.engine.pipeline import FaceEngine
from facefleet.settings import Settings

KEY = "a" * 20
LEAKS = ("Traceback", 'File "', "/work/", "site-packages")


class Listener:
    """A real HTTP server on a loopback address: `hits` counts every request it got, so a
    guard that let a URL through is caught even if the answer looked like a refusal."""

    def __init__(self, host: str, redirect_to: str = "", photo: bytes = b"") -> None:
        self.hits: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(self.path)
                if self.path == "/photo.jpg":
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(photo)
                    return
                self.send_response(302)
                target = self.path.removeprefix("/to/") if self.path.startswith("/to/") else redirect_to
                self.send_header("Location", target)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_port}"
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def photo(image_bytes) -> bytes:
    return image_bytes("biden.jpg")


@pytest.fixture(scope="module")
def folders(tmp_path_factory, photo) -> dict[str, Path]:
    """An images root, and a real photo outside it that a guard failure would let through."""
    base = tmp_path_factory.mktemp("security")
    root, outside = base / "root", base / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "sub" / "biden.jpg").write_bytes(photo)
    (outside / "secret.jpg").write_bytes(photo)
    (root / "escape.jpg").symlink_to(outside / "secret.jpg")
    (root / "escape_dir").symlink_to(outside, target_is_directory=True)
    (root / "inside_link.jpg").symlink_to(root / "sub" / "biden.jpg")
    return {"root": root, "outside": outside}


@pytest.fixture(scope="module")
def make_app(default_pack, cache_dir):
    def make(**overrides):
        values = {"models_dir": str(default_pack), "cache_dir": str(cache_dir), "providers": ("cpu",), "auth": "off"}
        return create_app(Settings.of(**{**values, **overrides}))

    return make


@pytest.fixture(scope="module")
def client(make_app, folders):
    """URLs on, only 127.0.0.2 allowed (the redirecting test server), images read from the root."""
    app = make_app(allow_urls=True, url_allow=("127.0.0.2",), url_timeout_s=5, images_root=str(folders["root"]))
    return app.test_client()


@pytest.fixture(scope="module")
def sentinel() -> Iterator[Listener]:
    """What an attacker would target inside the appliance: a server on 127.0.0.1."""
    listener = Listener("127.0.0.1")
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def redirector(photo) -> Iterator[Listener]:
    """An allowed, public-looking host (127.0.0.2, allow-listed) that redirects to /to/<target>."""
    listener = Listener("127.0.0.2", photo=photo)
    yield listener
    listener.close()


def results(client: Any, urls: list[str]) -> list[tuple[str, str]]:
    response = client.post("/extract", json={"images": {"urls": urls}})
    assert response.status_code == 200
    return [(r["status"], r.get("error", {}).get("message", "")) for r in response.get_json()["data"]]


def loopback_names() -> list[str]:
    """Names /etc/hosts maps to a loopback address (the machine's own name, often)."""
    names = {"localhost"}
    hosts = Path("/etc/hosts")
    for line in hosts.read_text().splitlines() if hosts.is_file() else []:
        fields = line.split("#")[0].split()
        if len(fields) > 1 and (fields[0].startswith("127.") or fields[0] == "::1"):
            names.update(fields[1:])
    return sorted(names)


# ----------------------------------------------------------------- URL guard
@pytest.mark.parametrize(
    "host",
    [
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "10.255.255.255",
        "100.64.0.1",  # shared address space (CGNAT): not private, not global either
        "0.0.0.0",
        "169.254.169.254",
        "[fd00::1]",
        "[fe80::1]",
        "[::ffff:169.254.169.254]",
        "[2002:a9fe:a9fe::]",  # 6to4 wrapping 169.254.169.254
    ],
)
def test_private_and_special_ranges_are_refused(client, host):
    [(status, message)] = results(client, [f"http://{host}/latest/meta-data/"])
    assert status == "failed" and "an internal address; refused" in message


def test_every_spelling_of_loopback_is_refused_and_never_connected(client, sentinel):
    """Names from /etc/hosts, decimal, hex, octal and short IPv4 forms, IPv4-mapped IPv6 and
    6to4: all refused before connecting, as the sentinel's empty hit list shows."""
    hosts = [*loopback_names(), "2130706433", "0x7f000001", "017700000001", "127.1", "[::ffff:127.0.0.1]", "[::1]"]
    urls = [f"http://{host}:{sentinel.port}/x.jpg" for host in hosts]
    outcome = results(client, urls)
    for host, (status, message) in zip(hosts, outcome, strict=True):
        assert status == "failed" and "an internal address; refused" in message, (host, message)
    assert sentinel.hits == []


def test_redirects_from_an_allowed_host_into_the_appliance_are_refused(client, redirector, sentinel):
    targets = {
        f"http://127.0.0.1:{sentinel.port}/admin": "resolves to 127.0.0.1, an internal address; refused",
        f"http://localhost:{sentinel.port}/admin": "resolves to 127.0.0.1, an internal address; refused",
        "http://169.254.169.254/latest/meta-data/": "resolves to 169.254.169.254, an internal address; refused",
        f"http://[::1]:{sentinel.port}/": "resolves to ::1, an internal address; refused",
        "file:///etc/passwd": "only http and https URLs are fetched",
        f"{redirector.url}/to/{redirector.url}/to/{redirector.url}/to/{redirector.url}/to/x": "more than 3 redirects",
    }
    urls = [f"{redirector.url}/to/{target}" for target in targets]
    *refused, followed = results(client, [*urls, f"{redirector.url}/to/{redirector.url}/photo.jpg"])
    for (status, message), expected in zip(refused, targets.values(), strict=True):
        assert status == "failed" and expected in message, (expected, message)
    assert followed[0] == "ok"  # a redirect inside the allowed host is followed: the guard is not blanket
    assert sentinel.hits == []


# ----------------------------------------------------------------- images root
def test_symlinks_and_paths_out_of_the_images_root_are_refused(client, folders):
    outside = folders["outside"] / "secret.jpg"
    refused = ["escape.jpg", "escape_dir/secret.jpg", str(outside), "../outside/secret.jpg", "sub/\x00.jpg"]
    *outcome, encoded, inside_link, dotted = results(
        client, [*refused, "%2e%2e/outside/secret.jpg", "inside_link.jpg", "sub/./biden.jpg"]
    )
    for path, (status, message) in zip(refused, outcome, strict=True):
        assert status == "failed", path
        assert "images root" in message or "NUL byte" in message, (path, message)
    assert encoded[0] == "failed" and "No such file" in encoded[1]  # taken literally, never decoded to '..'
    assert inside_link[0] == "ok" and dotted[0] == "ok"


def test_local_paths_are_refused_without_an_images_root(make_app, folders):
    client = make_app().test_client()
    [(status, message)] = results(client, [str(folders["root"] / "sub" / "biden.jpg")])
    assert status == "failed" and "local image paths are disabled" in message


# ----------------------------------------------------------------- cross-site requests
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
def test_bodies_a_web_page_may_send_without_preflight_are_refused(client, content_type):
    """A page of another origin can POST these (CORS "simple" requests) to an appliance whose
    authentication is off: the JSON inside must not be run."""
    body = b'{"images": {"urls": ["sub/biden.jpg"]}}'
    response = client.post("/extract", data=body, content_type=content_type)
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media"
    accepted = client.post("/extract", data=body, content_type="application/vnd.facefleet+json")
    assert accepted.status_code == 200 and accepted.get_json()["data"][0]["status"] == "ok"


# ----------------------------------------------------------------- headers of every response
@pytest.fixture(scope="module")
def keyed(make_app):
    """Keys on, a 0.5 MB body limit, one engine slot and no queue: 401, 413 and 503 on demand."""
    return make_app(auth="on", api_keys=(KEY,), max_body_mb=0.5, max_concurrent=1, queue_size=0)


def _every_kind_of_response(client: Any, keyed: Any, photo: bytes) -> list[Any]:
    """200 JSON, JPEG, msgpack, text, HTML, redirect, 400, 401, 404, 405, 413, 503."""
    data = {"images": {"data": [base64.b64encode(photo).decode()]}}
    key = {"X-API-Key": KEY, "Origin": "https://attacker.example"}
    other = keyed.test_client()
    with keyed.extensions["facefleet.admission"].slot("test"):  # the engine is busy
        overloaded = other.post("/extract", json=data, headers=key)
    return [
        client.post("/extract", json=data),
        client.post("/draw_detections", json=data),
        client.post("/extract", json={**data, "msgpack": True}),
        *(client.get(path) for path in ("/info", "/health", "/livez", "/metrics", "/openapi.json", "/docs/", "/")),
        client.get("/docs/swagger-ui.css"),
        client.post("/extract", data=b"{oops", content_type="application/json"),
        other.post("/extract", json=data, headers={"Origin": "https://attacker.example"}),
        client.get("/no/such/page"),
        client.get("/extract"),
        other.post("/extract", data=b" " * 600_000, content_type="application/json", headers=key),
        overloaded,
    ]


def test_every_response_says_nosniff_and_allows_no_other_origin(client, keyed, photo):
    responses = _every_kind_of_response(client, keyed, photo)
    assert sorted({r.status_code for r in responses}) == [200, 302, 400, 401, 404, 405, 413, 503]
    for response in responses:
        assert response.headers.get("X-Content-Type-Options") == "nosniff", response.status
        assert "Access-Control-Allow-Origin" not in response.headers, response.status
    preflight = client.options(
        "/extract", headers={"Origin": "https://attacker.example", "Access-Control-Request-Method": "POST"}
    )
    assert not [h for h in preflight.headers if h[0].lower().startswith("access-control-")]


def test_an_unexpected_failure_is_a_json_500_without_internals(keyed, photo):
    """A model that raises mid-run (a fake: no real model fails on demand) gives the client a
    request id to quote, never the traceback, which goes to the log."""
    settings = keyed.extensions["facefleet.engine"].settings

    def fake_failing_run(blob: np.ndarray) -> list[np.ndarray]:
        raise RuntimeError(f"fake model failure in {Path(__file__)}")

    failing = FaceEngine.from_settings(settings, extra={"detection": [lambda inner: fake_failing_run]})
    response = (
        create_app(settings, engine=failing)
        .test_client()
        .post(
            "/extract",
            json={"images": {"data": [base64.b64encode(photo).decode()]}},
            headers={"X-API-Key": KEY, "X-Request-ID": "req-42"},
        )
    )
    assert response.status_code == 500 and response.headers["X-Content-Type-Options"] == "nosniff"
    error = response.get_json()["error"]
    assert error["code"] == "internal" and "req-42" in error["message"]
    assert not [leak for leak in (*LEAKS, "RuntimeError", "fake model") if leak in response.get_data(as_text=True)]
