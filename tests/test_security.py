"""Security checks of the service app, beyond tests/test_api.py's URL and path basics: every
internal address form, names that resolve to loopback, redirects into the appliance (with a
real listener that must never be reached), symlinks out of the images root, and the headers
of every kind of response."""

from __future__ import annotations

import base64
import http.server
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
def refusal(url: str, rule: str) -> str:
    """The whole message for a refused URL: the host as the client wrote it and the rule, no address
    it resolved to (issue 18: those are the appliance's network)."""
    return f"{urlsplit(url).hostname} is an internal address ({rule}); refused (FACEFLEET_URL_ALLOW)"


@pytest.mark.parametrize(
    ("host", "rule"),
    [
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("10.255.255.255", "private"),
        ("100.64.0.1", "shared (100.64.0.0/10)"),  # CGNAT: not private, not global either
        ("0.0.0.0", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("[fd00::1]", "private"),
        ("[fe80::1]", "link-local"),
        ("[ff02::1]", "multicast"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("[2002:a9fe:a9fe::]", "link-local"),  # 6to4 wrapping 169.254.169.254
    ],
)
def test_private_and_special_ranges_are_refused_naming_the_rule(client, host, rule):
    url = f"http://{host}/latest/meta-data/"
    [(status, message)] = results(client, [url])
    assert status == "failed" and message == refusal(url, rule)


def test_every_spelling_of_loopback_is_refused_and_never_connected(client, sentinel):
    """Names from /etc/hosts, decimal, hex, octal and short IPv4 forms, IPv4-mapped IPv6 and
    6to4: all refused before connecting, as the sentinel's empty hit list shows."""
    hosts = [*loopback_names(), "2130706433", "0x7f000001", "017700000001", "127.1", "[::ffff:127.0.0.1]", "[::1]"]
    urls = [f"http://{host}:{sentinel.port}/x.jpg" for host in hosts]
    outcome = results(client, urls)
    for url, (status, message) in zip(urls, outcome, strict=True):
        assert status == "failed" and message == refusal(url, "loopback"), (url, message)
    assert sentinel.hits == []


def test_redirects_from_an_allowed_host_into_the_appliance_are_refused(client, redirector, sentinel):
    targets = {
        f"http://127.0.0.1:{sentinel.port}/admin": "127.0.0.1 is an internal address (loopback); refused",
        f"http://localhost:{sentinel.port}/admin": "localhost is an internal address (loopback); refused",
        "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is an internal address (link-local); refused",
        f"http://[::1]:{sentinel.port}/": "::1 is an internal address (loopback); refused",
        "file:///etc/passwd": "only http and https URLs are fetched",
        f"{redirector.url}/to/{redirector.url}/to/{redirector.url}/to/{redirector.url}/to/x": "more than 3 redirects",
    }
    urls = [f"{redirector.url}/to/{target}" for target in targets]
    *refused, followed = results(client, [*urls, f"{redirector.url}/to/{redirector.url}/photo.jpg"])
    for (status, message), expected in zip(refused, targets.values(), strict=True):
        assert status == "failed" and expected in message, (expected, message)
    assert "127.0.0.1" not in refused[1][1]  # localhost's DNS answer is not told
    assert followed[0] == "ok"  # a redirect inside the allowed host is followed: the guard is not blanket
    assert sentinel.hits == []


# ----------------------------------------------------------------- URL deadline
DEADLINE_S = 2.0
MARGIN_S = 1.0  # the good photo's own detection, and a loaded 2-core machine


class DaemonServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # a handler still trickling never holds the test run open


class Trickler:
    """A real server on 127.0.0.2 that answers as slowly as an attacker's: headers a byte at a
    time, a body 100 bytes at a time, redirects each trickled over about a second, and on a
    second port a TLS handshake a byte at a time. It gives up
    after 12 s, so a fetch without a working deadline still ends (and its test fails on time)."""

    def __init__(self, photo: bytes) -> None:
        photo_answer = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%b" % (
            len(photo),
            photo,
        )

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                path = self.rfile.readline().split()[1].decode()
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass
                give_up = time.monotonic() + 12
                if path == "/photo.jpg":
                    self.wfile.write(photo_answer)
                elif path == "/headers":  # a status line, then one header byte every 0.1 s
                    self._trickle(b"HTTP/1.1 200 OK\r\n" + b"X" * 1000, 1, 0.1, give_up)
                elif path == "/body":  # complete headers, then the body 100 bytes every 0.1 s
                    self._trickle(photo_answer, 100, 0.1, give_up)
                elif path.startswith("/hop/"):  # three redirects, each trickled over 1.2 s, then the photo
                    hop = int(path.removeprefix("/hop/"))
                    if hop == 3:
                        self.wfile.write(photo_answer)
                        return
                    redirect = b"HTTP/1.1 302 Found\r\nLocation: /hop/%d\r\nContent-Length: 0\r\n\r\n" % (hop + 1)
                    self._trickle(redirect, 1, 1.2 / len(redirect), give_up)

            def _trickle(self, data: bytes, step: int, pause: float, give_up: float) -> None:
                try:
                    for start in range(0, len(data), step):
                        if time.monotonic() > give_up:
                            return
                        self.wfile.write(data[start : start + step])
                        time.sleep(pause)
                except OSError:  # the fetch gave up and closed: what a deadline does
                    return

        class TLSHandler(socketserver.BaseRequestHandler):
            """Takes the ClientHello, then trickles a TLS handshake record a byte every 0.1 s."""

            def handle(self) -> None:
                self.request.recv(65536)
                record = b"\x16\x03\x03\x40\x00" + b"\x02" * 0x4000
                give_up = time.monotonic() + 12
                try:
                    for byte in record:
                        if time.monotonic() > give_up:
                            return
                        self.request.sendall(bytes([byte]))
                        time.sleep(0.1)
                except OSError:
                    return

        self.servers = [DaemonServer(("127.0.0.2", 0), kind) for kind in (Handler, TLSHandler)]
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.2:{self.servers[0].server_address[1]}"
        self.urls = {
            "headers": f"{self.url}/headers",
            "body": f"{self.url}/body",
            "redirect hops": f"{self.url}/hop/0",
            "TLS handshake": f"https://127.0.0.2:{self.servers[1].server_address[1]}/photo.jpg",
        }

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def trickler(photo) -> Iterator[Trickler]:
    server = Trickler(photo)
    yield server
    server.close()


@pytest.fixture(scope="module")
def hurried(make_app):
    """URLs on with a 2 s deadline, only the trickling server's 127.0.0.2 allowed."""
    return make_app(allow_urls=True, url_allow=("127.0.0.2",), url_timeout_s=DEADLINE_S).test_client()


@pytest.mark.parametrize("kind", ["headers", "body", "redirect hops", "TLS handshake"])
def test_a_trickling_url_is_cut_at_the_deadline_and_the_other_image_answered(hurried, trickler, kind):
    """One deadline for the whole fetch: a socket timeout restarts on every byte, so each of these
    held a fetch for as long as the server cared to trickle (60 s against 10 s in the attack round)."""
    url = trickler.urls[kind]
    start = time.monotonic()
    slow, good = results(hurried, [url, f"{trickler.url}/photo.jpg"])
    elapsed = time.monotonic() - start
    assert elapsed < DEADLINE_S + MARGIN_S, elapsed
    assert slow == ("failed", f"fetching {url} took longer than 2 s (FACEFLEET_URL_TIMEOUT_S)")
    assert good == ("ok", "")


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
