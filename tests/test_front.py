"""The nginx front (roles/facefleet_front's own template, rendered by tests/front.py) in front of a real
`facefleet serve` with API keys on: slow and greedy clients are stopped at the front, plain HTTP to the TLS port
is a JSON 400, and the front's own refusals have the service's error shape."""

from __future__ import annotations

import base64
import json
import re
import select
import socket
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from bench import attack

from .front import TEMPLATE, Front, front_vars, nginx_argv, render
from .server import cpu_service, free_port, metric_samples

KEY = "front-test-key-of-the-fleet-01"
HEADER_TIMEOUT_S = 2
BODY_MB = 8
PER_CLIENT = 4
HEX_ID = re.compile(r"\A[0-9a-f]{32}\Z")


@pytest.fixture(scope="module")
def stack(default_pack: Path, cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    """One service (keys on, the 8 MB body limit) and one front for the module."""
    folder = tmp_path_factory.mktemp("front")
    keys = folder / "api-keys"
    keys.write_text(f"{KEY}\n")
    svc = cpu_service(
        default_pack,
        cache_dir,
        folder,
        FACEFLEET_AUTH="on",
        FACEFLEET_API_KEYS_FILE=str(keys),
        FACEFLEET_MAX_BODY_MB=str(BODY_MB),
    )
    try:
        front = Front(
            folder / "nginx",
            svc.port,
            facefleet_front_header_timeout_s=HEADER_TIMEOUT_S,
            facefleet_front_body_timeout_s=HEADER_TIMEOUT_S,
            facefleet_front_max_body_mb=float(BODY_MB),
            facefleet_front_per_client=PER_CLIENT,
        )
        try:
            yield front
        finally:
            front.stop()
    finally:
        svc.stop()


def tls_context(front: Front) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(front.pki.ca))


def connect(front: Front, tls: bool, source: str = "127.0.0.1") -> socket.socket:
    """A raw connection to the TLS port (`tls`) or the loopback plain port, from the loopback address `source`."""
    sock = socket.create_connection(
        ("127.0.0.1", front.port if tls else front.loopback_port), source_address=(source, 0)
    )
    sock.settimeout(10)
    return tls_context(front).wrap_socket(sock, server_hostname="127.0.0.1") if tls else sock


def read_response(sock: socket.socket, data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length (what the front's own answers carry), `data` its start."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole response header: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def error_code(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"}
    return error["code"]


def test_the_template_renders_with_plain_jinja2_and_nginx_accepts_every_variant(tmp_path: Path) -> None:
    """The role's template needs no Ansible filter (a plain jinja2 Environment would fail to compile one) and
    every variable it uses is a role variable; nginx -t accepts it with and without TLS and loopback port."""
    source = TEMPLATE.read_text()
    used = set(re.findall(r"\bfacefleet_front_\w+", source))
    assert used == set(front_vars(tmp_path)), "front_vars() must list exactly the template's variables"
    defaults = yaml.safe_load((TEMPLATE.parent.parent / "defaults" / "main.yml").read_text())
    assert used <= set(defaults), f"role variables without a default: {used - set(defaults)}"
    for mode, loopback in (("fleet_ca", 18079), ("plain", 18079), ("own", 0)):
        tls = mode != "plain"
        folder = tmp_path / f"{mode}-{loopback}"
        (folder / "state").mkdir(parents=True)
        for name in ("host.crt", "host.key"):
            (folder / name).write_text("")
        values = front_vars(
            folder,
            facefleet_front_tls_mode=mode,
            facefleet_front_port=18080,
            facefleet_front_loopback_port=loopback,
            facefleet_front_backend_port=18078,
        )
        config = render(values)
        (folder / "front.conf").write_text(config)
        assert ("ssl_certificate" in config) is tls and ("18079" in config) is bool(loopback)
        # -t checks the syntax and opens the files; with empty certificate files only the TLS variants fail there
        checked = subprocess.run([*nginx_argv(folder)[:-2], "-t"], check=False, capture_output=True, text=True)
        assert checked.returncode == 0 or (tls and "PEM" in checked.stderr), checked.stderr


def test_tls_verifies_with_the_ca_and_plain_http_to_the_tls_port_is_a_json_400(stack: Front) -> None:
    answer = requests.get(f"{stack.url}/livez", verify=str(stack.pki.ca), timeout=10)
    assert answer.status_code == 200 and answer.json() == {"status": "alive"}
    assert requests.get(f"https://localhost:{stack.port}/livez", verify=str(stack.pki.ca), timeout=10).ok
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{stack.url}/livez", timeout=10)  # the system's CAs do not know the fleet CA
    plain = requests.get(f"http://127.0.0.1:{stack.port}/livez", timeout=10)
    assert plain.status_code == 400 and error_code(plain.content) == "tls_required"
    assert plain.headers["Content-Type"] == "application/json" and "https://" in plain.json()["error"]["message"]
    # keys stay on behind the front, over TLS and over the loopback port
    assert requests.get(f"{stack.url}/info", verify=str(stack.pki.ca), timeout=10).status_code == 401
    assert requests.get(f"{stack.plain_url}/info", headers={"X-API-Key": KEY}, timeout=10).status_code == 200


def test_slow_headers_are_closed_at_the_header_timeout(stack: Front) -> None:
    """Connections that send their header a byte at a time are closed once the header timeout has passed
    since the first byte, however steadily they trickle; meanwhile the service answers."""
    socks = [connect(stack, tls=i % 2 == 0) for i in range(30)]
    closed_after: dict[int, float] = {}
    start = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(b"GET /livez HTTP/1.1\r\n")
        while len(closed_after) < len(socks) and time.monotonic() - start < HEADER_TIMEOUT_S + 3:
            for i, sock in enumerate(socks):
                if i in closed_after:
                    continue
                try:
                    sock.sendall(b"X")
                except OSError:
                    closed_after[i] = time.monotonic() - start
            answer = requests.get(f"{stack.url}/livez", verify=str(stack.pki.ca), timeout=5)
            assert answer.status_code == 200
            time.sleep(0.25)
    finally:
        for sock in socks:
            sock.close()
    assert len(closed_after) == len(socks), f"still open after {HEADER_TIMEOUT_S + 3} s"
    assert min(closed_after.values()) >= HEADER_TIMEOUT_S - 0.5
    assert max(closed_after.values()) <= HEADER_TIMEOUT_S + 1.5


def test_a_slow_upload_never_holds_an_engine_slot(stack: Front) -> None:
    """Five uploads trickling their body: the front holds them, the service sees nothing of them (no request
    in its engine or its queue) and answers a normal request."""
    socks = [connect(stack, tls=True) for _ in range(5)]
    try:
        for sock in socks:
            sock.sendall(
                b"POST /extract HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode() + b"\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"images": '
            )
        time.sleep(1.0)
        metrics = requests.get(f"{stack.plain_url}/metrics", timeout=10).text
        assert sum(metric_samples(metrics, "facefleet_requests_in_progress").values()) == 0
        assert sum(metric_samples(metrics, "facefleet_queue_depth").values()) == 0
        info = requests.get(f"{stack.url}/info", headers={"X-API-Key": KEY}, verify=str(stack.pki.ca), timeout=10)
        assert info.status_code == 200
    finally:
        for sock in socks:
            sock.close()


def early_answer(sock: socket.socket) -> bytes:
    """What the front has answered so far, without waiting. Over TLS 1.3 the socket is also readable for the
    session tickets sent after the handshake, which are not an answer."""
    if not select.select([sock], [], [], 0)[0]:
        return b""
    sock.setblocking(False)
    try:
        return sock.recv(65536)
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    finally:
        sock.settimeout(10)


def send_until_answered(sock: socket.socket, head: bytes, chunks: Iterator[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send a request's header then its body piece by piece, stopping as soon as the front answers."""
    sock.sendall(head)
    for chunk in chunks:
        start = early_answer(sock)
        if start:
            return read_response(sock, start)
        try:
            sock.sendall(chunk)
        except OSError:
            break
    return read_response(sock)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_a_json_413(stack: Front, chunked: bool) -> None:
    size = BODY_MB * 1_000_000 + 1
    piece = b"x" * 65536
    framing = b"Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}".encode()
    head = b"POST /extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + framing + b"\r\n\r\n"
    body = (b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece for _ in range(size // len(piece) + 2))
    sock = connect(stack, tls=True)
    try:
        status, headers, answer = send_until_answered(sock, head, body)
    finally:
        sock.close()
    assert status == 413 and headers["content-type"] == "application/json"
    assert error_code(answer) == "too_large" and f"{BODY_MB} MB" in json.loads(answer)["error"]["message"]


def test_a_body_at_the_limit_reaches_the_service(stack: Front) -> None:
    """The front's limit is the service's, in the same decimal megabytes: a body of exactly the limit passes
    (the service answers it: here 400 for a body that is not JSON, not the front's 413)."""
    answer = requests.post(
        f"{stack.url}/extract",
        data=b"x" * (BODY_MB * 1_000_000),
        headers={"X-API-Key": KEY, "Content-Type": "application/json"},
        verify=str(stack.pki.ca),
        timeout=30,
    )
    assert answer.status_code == 400 and answer.headers["Server"] == "nginx"
    assert error_code(answer.content) != "too_large"


def test_a_chunked_upload_reaches_the_service_whole(stack: Front, image_bytes) -> None:
    """A chunked body (which gunicorn would read as it comes) is buffered by the front and reaches gunicorn
    whole, with a Content-Length (HTTP/1.0 upstream): the photo's faces come back."""
    body = json.dumps({"images": {"data": [base64.b64encode(image_bytes("two_people.jpg")).decode()]}}).encode()
    pieces = (body[i : i + 4096] for i in range(0, len(body), 4096))  # a generator: requests sends it chunked
    answer = requests.post(
        f"{stack.url}/extract",
        data=pieces,
        headers={"X-API-Key": KEY, "Content-Type": "application/json"},
        verify=str(stack.pki.ca),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"][0]["faces"]) == 2


def test_a_bad_chunk_size_is_a_json_400_from_the_front(stack: Front) -> None:
    sock = connect(stack, tls=False)
    try:
        sock.sendall(
            b"POST /extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
        )
        status, _, answer = read_response(sock)
    finally:
        sock.close()
    assert status == 400 and error_code(answer) == "bad_request"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"\x00\x01garbage\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET /livez HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 17000 + b"\r\n\r\n", 400, "header_too_large"),
        (b"GET /livez HTTP/9.9\r\nHost: x\r\n\r\n", 505, "http_version"),
        (b"POST /extract HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400, "bad_request"),
        (b"GET /_facefleet_front/bad_request HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
    ],
    ids=["garbage", "long-uri", "long-header", "http-9.9", "negative-length", "internal-page"],
)
def test_what_the_front_refuses_itself_has_the_service_error_shape(
    stack: Front, raw: bytes, status: int, code: str
) -> None:
    sock = connect(stack, tls=False)
    try:
        sock.sendall(raw)
        answer = read_response(sock)
    finally:
        sock.close()
    assert answer[0] == status and answer[1]["content-type"] == "application/json" and error_code(answer[2]) == code


def test_more_connections_than_the_per_client_limit_get_429_and_loopback_is_exempt(stack: Front) -> None:
    """127.0.0.2 holds the limit (full headers, bodies pending); its next request is a JSON 429, while
    127.0.0.3 (another client) and 127.0.0.1 (exempt, even holding more than the limit) are served, and
    /livez is never limited."""
    held = [connect(stack, tls=False, source=source) for source in ["127.0.0.2"] * PER_CLIENT + ["127.0.0.1"] * 6]
    try:
        for sock in held:
            sock.sendall(b"POST /extract HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        time.sleep(0.3)

        def status_from(source: str, path: str, tls: bool = False) -> tuple[int, bytes]:
            sock = connect(stack, tls=tls, source=source)
            try:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\r\n".encode())
                status, _, body = read_response(sock)
                return status, body
            finally:
                sock.close()

        status, body = status_from("127.0.0.2", "/info")
        assert status == 429 and error_code(body) == "too_many_connections"
        assert status_from("127.0.0.2", "/info", tls=True)[0] == 429  # one limit over both ports
        assert status_from("127.0.0.2", "/livez")[0] == 200
        assert status_from("127.0.0.3", "/info")[0] == 200
        assert status_from("127.0.0.1", "/info")[0] == 200
    finally:
        for sock in held:
            sock.close()


def test_a_forged_request_id_is_replaced_and_a_valid_one_kept(stack: Front) -> None:
    def echoed(request_id: str) -> str:
        headers = {"X-Request-ID": request_id}
        return requests.get(f"{stack.url}/livez", headers=headers, verify=str(stack.pki.ca), timeout=10).headers[
            "X-Request-ID"
        ]

    assert echoed("client-7.run:42") == "client-7.run:42"
    for forged in ("forged id\tINFO all good", "x" * 65, "a/b", '"},{"status":200'):
        assert HEX_ID.match(echoed(forged)), forged
    log = stack.access_log.read_text()
    assert "forged" not in log and "all good" not in log
    for line in log.splitlines():
        json.loads(line)  # the access log is JSON lines, escaped by nginx


def test_a_service_that_is_down_is_a_json_502(tmp_path: Path) -> None:
    front = Front(tmp_path / "nginx", free_port())
    try:
        answer = requests.get(f"{front.plain_url}/health", timeout=10)
    finally:
        front.stop()
    assert answer.status_code == 502 and error_code(answer.content) == "unavailable"


@pytest.mark.slow
def test_livez_answers_while_the_workers_are_saturated(stack: Front, image_bytes) -> None:
    """36 clients on the exempt loopback address post /extract back to back, more than the engine slots and
    the queue hold (the surplus is the service's 503 overloaded); /livez through the front still answers each
    probe within 1 s, because the front hands gunicorn whole requests and its spare threads stay free."""
    body = json.dumps({"images": {"data": [base64.b64encode(image_bytes("two_people.jpg")).decode()]}})
    stop = threading.Event()
    codes: list[int] = []

    def hammer() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                answer = session.post(
                    f"{stack.plain_url}/extract",
                    data=body,
                    headers={"X-API-Key": KEY, "Content-Type": "application/json"},
                    timeout=60,
                )
                codes.append(answer.status_code)

    threads = [threading.Thread(target=hammer) for _ in range(36)]
    for thread in threads:
        thread.start()
    probes: list[float] = []
    try:
        time.sleep(1.0)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            start = time.monotonic()
            answer = requests.get(f"{stack.url}/livez", verify=str(stack.pki.ca), timeout=5)
            probes.append(time.monotonic() - start)
            assert answer.status_code == 200
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert 503 in codes, "the load did not saturate the engine (no 503 overloaded)"
    assert max(probes) < 1.0, f"/livez took {max(probes):.2f} s (median {statistics.median(probes):.3f} s)"


def test_a_paused_upload_is_closed_at_the_body_timeout(stack: Front) -> None:
    """An upload that stops sending is dropped by the front once the body timeout has passed, without an
    answer (nginx ends a timed-out request without a response), and never reached the service."""
    sock = connect(stack, tls=True)
    try:
        sock.sendall(
            b"POST /extract HTTP/1.1\r\nHost: x\r\nX-API-Key: " + KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        start = time.monotonic()
        try:
            answer = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            answer = b""
        waited = time.monotonic() - start
    finally:
        sock.close()
    assert answer == b"" and HEADER_TIMEOUT_S - 0.5 <= waited <= HEADER_TIMEOUT_S + 1.5


@pytest.mark.slow
def test_the_attack_bench_runs_against_a_running_front(stack: Front) -> None:
    """bench/attack.py, small, against this module's front (--url): it keeps its deadline, closes its
    sockets and reports every figure; a short attack on a healthy front passes its /livez criteria."""
    report_file = stack.folder / "attack.json"
    argv = ["--url", stack.url, "--ca", str(stack.pki.ca), "--key", KEY, "--seconds", "60", "--attack-s", "3"]
    argv += ["--slow-headers", "10", "--slow-bodies", "3", "--extract-runs", "3", "--json", str(report_file)]
    start = time.monotonic()
    attack.main([*argv, "--no-bomb"])
    assert time.monotonic() - start < 60
    report = json.loads(report_file.read_text())
    assert report["attack"]["livez_codes"] == {"200": report["attack"]["livez_probes"]}
    assert report["attack"]["livez_max_s"] < 1.0 and report["attack"]["extract_codes"] == {"200": 3}
    assert report["bomb"] is None and report["idle"]["extract_runs"] == 3
