"""Log lines a client cannot forge (issue 18): the real app (Flask's test client, the default
pack) with the service's own log configuration writing to a captured stderr. A path holding
`%0A` wrote a second line of the client's choosing; an X-Request-ID of spaces and `=` wrote
fields, or a whole fake entry, into the line. (gunicorn refuses CR, LF and other controls in
a header by itself: tests/test_bad_inputs.py has the path case through real gunicorn.)"""

from __future__ import annotations

import json
import logging
import re

import pytest

from facefleet.api import create_app, logs
from facefleet.settings import Settings

FAKE_ENTRY = "2026-12-03 12:00:00,000 INFO facefleet.request: GET /admin 200 0.1 ms id=admin"


@pytest.fixture(scope="module")
def client(default_pack, cache_dir):
    settings = Settings.of(models_dir=str(default_pack), cache_dir=str(cache_dir), providers=("cpu",), auth="off")
    return create_app(settings).test_client()


@pytest.fixture
def log_lines(capsys):
    """The service's log configuration (as create_app makes it) writing to the captured stderr:
    call it with a format, make requests, call the result for the lines written."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def lines() -> list[str]:
        return capsys.readouterr().err.splitlines()

    def configure(log_format: str = "text"):
        logs.configure(log_format, "INFO")
        capsys.readouterr()
        return lines

    yield configure
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_newline_in_the_path_writes_one_line_with_it_escaped(client, log_lines):
    read = log_lines()
    path = "/a%0A" + FAKE_ENTRY.replace(" ", "%20") + "%0D%1B[31m%E2%80%A8%5Cn"
    response = client.get(path)
    assert response.status_code == 404
    lines = read()
    assert len(lines) == 1, lines  # the fake entry did not become a line of its own
    expected = "GET /a\\n" + FAKE_ENTRY + "\\r\\x1b[31m\\u2028\\\\n 404 "
    assert expected in lines[0], lines[0]
    assert lines[0].endswith(f"id={response.headers['X-Request-ID']}")
    read = log_lines("json")  # JSON lines were safe already: the path stays whole, json.dumps escapes it
    client.get("/a%0Ab")
    [line] = read()
    assert json.loads(line)["path"] == "/a\nb"


FORGED = [f"x {FAKE_ENTRY}"[:64], "a b=c status=200", "x" * 65, "\xff", "id\x85x", "", "caf\u00e9"]
KEPT = ["3f2c9a1e-8b7d-4c2e-9f00-123456789abc", "trace:abc.def_1", "x" * 64]


def test_a_request_id_is_kept_only_when_it_looks_like_one(client, log_lines):
    """Forged: a fake entry after a space, fake fields, 65 characters, a latin-1 byte, NEL, empty,
    non-ASCII: each replaced by a fresh id, echoed and logged. A UUID or a trace id is kept."""
    read = log_lines()
    for forged in FORGED:
        given = client.get("/livez", headers={"X-Request-ID": forged}).headers["X-Request-ID"]
        assert given != forged and re.fullmatch(r"[0-9a-f]{16}", given), forged
        [line] = read()
        assert line.endswith(f" id={given}"), line
    for kept in KEPT:
        assert client.get("/livez", headers={"X-Request-ID": kept}).headers["X-Request-ID"] == kept
        [line] = read()
        assert line.endswith(f" id={kept}")
