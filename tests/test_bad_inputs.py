"""A corpus of broken images and bodies, made here from a real photo (never committed), posted
to the real service under gunicorn: the good photo of a request is still answered with its
faces, each bad one fails alone with a clear error, nothing is a 5xx or leaks internals, and the
service answers a good request afterwards."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import struct
import zlib

import msgpack
import numpy as np
import pytest
import requests
from PIL import Image

from facefleet.settings import Settings

from .server import Service, cpu_service

GOOD = "two_people.jpg"  # two faces
# What a client must never see: a traceback, or where the code and its libraries live.
LEAKS = ("Traceback", 'File "', "/work/", "site-packages", "/usr/lib", ".py:")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_declaring(width: int, height: int) -> bytes:
    """A real PNG header (IHDR with a valid CRC) declaring width x height, with a tiny IDAT:
    decoding it would need width x height x 3 bytes, so only a refusal from the header is safe."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def bad_corpus(photo: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, the start of the error message the client must get)."""
    corpus = {
        f"JPEG cut at {p} %": (photo[: len(photo) * p // 100], "truncated or corrupt JPEG data")
        for p in range(10, 100, 10)
    }
    no_soi = bytearray(photo)
    no_soi[:16] = b"\0" * 16  # the JPEG start marker and JFIF header gone
    garbage_segments = bytearray(photo)
    garbage_segments[2:258] = bytes(range(256))  # start marker kept, the segments after it garbage
    corpus.update(
        {
            "header zeroed": (bytes(no_soi), "not a recognised image"),
            "segments overwritten": (bytes(garbage_segments), "not a recognised image"),
            "PNG declaring 50000x50000": (png_declaring(50000, 50000), "image of 50000x50000 = 2500.0 megapixels"),
            # formats Pillow reads and neither facefleet nor InsightFace-REST takes (GIF and TIFF are taken)
            "PCX": (encoded("PCX"), "unsupported image format PCX"),
            "ICO": (encoded("ICO"), "unsupported image format ICO"),
            "empty": (b"", "empty input"),
            "random bytes": (np.random.default_rng(8).bytes(3000), "not a recognised image"),
        }
    )
    return corpus


@pytest.fixture(scope="module")
def service(default_pack, cache_dir, tmp_path_factory) -> Service:
    svc = cpu_service(default_pack, cache_dir, tmp_path_factory.mktemp("bad-inputs"))
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def photo(image_bytes) -> bytes:
    return image_bytes(GOOD)


def assert_clean(response: requests.Response) -> None:
    """Not a 5xx, and nothing internal in the body."""
    assert response.status_code < 500, response.text[:300]
    for leak in LEAKS:
        assert leak not in response.text, (leak, response.text[:300])


def assert_json_error(response: requests.Response, status: int, codes: tuple[str, ...]) -> str:
    """A clear refusal: the status, `{"error": {"code", "message"}}` as JSON; returns the message."""
    assert_clean(response)
    assert response.status_code == status, response.text[:300]
    assert response.headers["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] in codes and error["message"], error
    return error["message"]


def assert_still_serves(service: Service, photo: bytes) -> None:
    """A good request is answered in full after the bad ones, and nothing hit the 500 handler."""
    response = requests.post(f"{service.url}/extract", json={"images": {"data": [b64(photo)]}}, timeout=60)
    assert response.status_code == 200 and len(response.json()["data"][0]["faces"]) == 2
    assert "unhandled error" not in service.log.read_text()


def assert_each_fails_alone(results: list[dict], corpus: dict[str, tuple[bytes, str]]) -> None:
    assert results[0]["status"] == "ok" and len(results[0]["faces"]) == 2
    for result, (name, (_, message)) in zip(results[1:], corpus.items(), strict=True):
        assert result["status"] == "failed" and result["faces"] == [], name
        assert result["error"]["message"].startswith(message), (name, result["error"])


def test_extract_answers_the_good_photo_and_a_clear_error_for_each_bad_one(service, photo):
    corpus = bad_corpus(photo)
    data = [b64(photo), *(b64(raw) for raw, _ in corpus.values())]
    response = requests.post(f"{service.url}/extract", json={"images": {"data": data}}, timeout=120)
    assert_clean(response)
    assert response.status_code == 200
    assert_each_fails_alone(response.json()["data"], corpus)
    codes = {r["error"]["code"] for r in response.json()["data"][1:]}
    assert codes == {"bad_image", "image_too_large"}
    assert_still_serves(service, photo)


def test_the_same_corpus_as_raw_msgpack_bytes(service, photo):
    corpus = bad_corpus(photo)
    body = msgpack.packb({"images": {"data": [photo, *(raw for raw, _ in corpus.values())]}}, use_bin_type=True)
    response = requests.post(
        f"{service.url}/extract", data=body, headers={"Content-Type": "application/msgpack"}, timeout=120
    )
    assert_clean(response)
    assert response.status_code == 200
    assert_each_fails_alone(response.json()["data"], corpus)
    assert_still_serves(service, photo)


def test_base64_garbage_fails_alone(service, photo):
    garbage = ["@@@ not base64 @@@", "data:image/jpeg;base64,***", "QUJD=" * 3, " " * 1000]
    response = requests.post(f"{service.url}/extract", json={"images": {"data": [b64(photo), *garbage]}}, timeout=60)
    assert response.status_code == 200
    results = response.json()["data"]
    assert results[0]["status"] == "ok" and len(results[0]["faces"]) == 2
    assert [r["error"]["message"] for r in results[1:]] == ["invalid base64 image data"] * len(garbage)


def test_a_one_pixel_image_is_an_image_without_faces(service, photo):
    response = requests.post(
        f"{service.url}/extract", json={"images": {"data": [b64(encoded("PNG", (1, 1)))]}}, timeout=60
    )
    assert response.status_code == 200
    [result] = response.json()["data"]
    assert result["status"] == "ok" and result["faces"] == []


def test_multipart_refuses_each_bad_upload_clearly_and_draws_the_good_one(service, photo):
    url = f"{service.url}/multipart/draw_detections"
    for name, (raw, message) in bad_corpus(photo).items():
        response = requests.post(url, files={"file": (f"{name}.bin", raw)}, timeout=60)
        text = assert_json_error(response, 400, ("bad_image", "image_too_large"))
        assert text.startswith(message), (name, text)
    drawn = requests.post(url, files={"file": (GOOD, photo)}, timeout=60)
    assert drawn.status_code == 200 and drawn.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(drawn.content)).size == Image.open(io.BytesIO(photo)).size
    assert_still_serves(service, photo)


def test_draw_detections_refuses_a_bad_first_image_clearly(service, photo):
    for name, (raw, message) in bad_corpus(photo).items():
        response = requests.post(f"{service.url}/draw_detections", json={"images": {"data": [b64(raw)]}}, timeout=60)
        assert assert_json_error(response, 400, ("bad_image", "image_too_large")).startswith(message), name


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[" * 1000 + b"]" * 1000, "application/json"),
        (b'{"images": {"data": ' + b"[" * 1000 + b"]" * 1000 + b"}}", "application/json"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (b"\x91" * 1000 + b"\x90", "application/msgpack"),
        (b"\x91" * 100_000 + b"\x90", "application/msgpack"),
        (b" " * 10_000_000, "application/json"),
        (b" \n\t" * 3_000_000, "application/json"),
        (b" " * 10_000_000, "application/msgpack"),
        (b'"just a string"', "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
    ],
    ids=[
        "JSON 1000 deep",
        "images.data 1000 deep",
        "JSON 100000 deep",
        "msgpack 1000 deep",
        "msgpack 100000 deep",
        "10 MB of spaces",
        "9 MB of whitespace",
        "10 MB of spaces as msgpack",
        "JSON string",
        "not UTF-8",
    ],
)
def test_malformed_bodies_are_a_clear_400(service, photo, body, content_type):
    response = requests.post(f"{service.url}/extract", data=body, headers={"Content-Type": content_type}, timeout=60)
    assert_json_error(response, 400, ("invalid_body", "invalid_request"))
    assert_still_serves(service, photo)


def test_a_msgpack_map_keyed_by_a_list_is_a_clear_400(service, photo):
    body = b"\x81\x91\x01\x01"  # {[1]: 1}: a key Python cannot hash
    response = requests.post(
        f"{service.url}/extract", data=body, headers={"Content-Type": "application/msgpack"}, timeout=60
    )
    assert "not valid msgpack" in assert_json_error(response, 400, ("invalid_body",))
    assert_still_serves(service, photo)


def test_a_lone_surrogate_in_a_path_fails_that_image_alone(service, photo):
    body = '{"images": {"data": ["' + b64(photo) + '"], "urls": ["/tmp/a\\ud800.jpg"]}}'  # JSON's own escape
    response = requests.post(
        f"{service.url}/extract", data=body.encode(), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert_clean(response)
    good, bad = response.json()["data"]
    assert good["status"] == "ok" and len(good["faces"]) == 2
    assert bad["status"] == "failed" and "lone surrogate" in bad["error"]["message"]
    assert_still_serves(service, photo)


def test_ten_megabytes_of_whitespace_as_an_image_fails_alone(service, photo):
    body = {"images": {"data": [b64(photo), " " * 10_000_000]}}
    response = requests.post(f"{service.url}/extract", json=body, timeout=60)
    assert response.status_code == 200
    good, spaces = response.json()["data"]
    assert good["status"] == "ok" and len(good["faces"]) == 2
    assert spaces["error"]["message"] == "invalid base64 image data"


@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10_000 + b"\r\n\r\n",
        b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /extract HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["not HTTP", "10 KB header", "9 KB request line", "negative Content-Length"],
)
def test_requests_gunicorn_refuses_get_the_same_json_error(service, photo, raw):
    """What never reaches the app (gunicorn's own refusals) answers like the app: JSON, nosniff."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert 400 <= status < 500 and b"X-Content-Type-Options: nosniff" in head
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"]["code"] == "bad_http"
    assert_still_serves(service, photo)


def test_threshold_zero_keeps_at_most_max_faces_per_image(service, photo):
    """At threshold 0 every anchor is a face: NMS over thousands of boxes and an embedding each
    took 184 s for one 1x1 image before FACEFLEET_MAX_FACES (default 100) capped it."""
    tiny = b64(encoded("PNG", (1, 1)))
    body = {"images": {"data": [tiny, b64(photo)]}, "threshold": 0, "extract_embedding": False}
    response = requests.post(f"{service.url}/extract", json=body, timeout=120)
    assert response.status_code == 200
    for result in response.json()["data"]:
        scores = [face["prob"] for face in result["faces"]]
        assert len(scores) == 100 and scores == sorted(scores, reverse=True)
    drawn = requests.post(f"{service.url}/draw_detections", json={**body, "images": {"data": [tiny]}}, timeout=120)
    assert drawn.status_code == 200 and drawn.headers["Content-Type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        (b'"limit_faces": 1000000000000000000000000000000', 200),
        (b'"min_face_size": 1' + b"0" * 400, 200),
        (b'"threshold": NaN', 400),
        (b'"min_face_size": Infinity', 400),
        (b'"limit_faces": 1e400', 400),
    ],
    ids=["limit_faces 10^30", "min_face_size 10^400", "threshold NaN", "min_face_size Infinity", "limit_faces 1e400"],
)
def test_numbers_beyond_a_float_are_answered_not_a_500(service, photo, fields, status):
    """JSON integers have no size limit and Python's parser takes NaN and Infinity: each one is a
    clear answer (a 10^400 integer used to end in OverflowError, a 500)."""
    body = b'{"images": {"data": ["' + b64(photo).encode() + b'"]}, ' + fields + b"}"
    response = requests.post(
        f"{service.url}/extract", data=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    if status == 400:
        assert_json_error(response, 400, ("invalid_request",))
    else:
        assert_clean(response)
        assert response.status_code == 200 and response.json()["data"][0]["status"] == "ok"


def test_verify_takes_huge_but_finite_vectors_and_refuses_infinite_ones(service):
    """1e300s still have a direction (scaled before the norm); an integer of 400 digits does not."""
    dim = 128  # the default pack's SFace
    big = requests.post(f"{service.url}/verify", json={"embeddings": [[1e300] * dim, [1e300] * dim]}, timeout=30)
    assert big.status_code == 200 and big.json()["similarity"] == pytest.approx(1.0)
    huge = b'{"embeddings": [[' + b",".join([b"1" + b"0" * 400] * dim) + b"], [" + b",".join([b"1"] * dim) + b"]]}"
    response = requests.post(
        f"{service.url}/verify", data=huge, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert "finite" in assert_json_error(response, 400, ("bad_embedding",))
    short = requests.post(f"{service.url}/verify", json={"embeddings": [[1.0], [1.0]]}, timeout=30)
    assert assert_json_error(short, 400, ("bad_embedding",)) == f"embeddings[0] must be a list of {dim} numbers"


# ----------------------------------------------------------------- chunked bodies (issue 18)
LIMIT = int(Settings.of().server.max_body_mb * 1e6)  # the service fixture keeps the default


def chunked(service: Service, head: str, body: bytes, piece: int = 1 << 20) -> tuple[int, dict]:
    """Send `body` with Transfer-Encoding: chunked over a raw socket (as curl -T - does), in 1 MB
    chunks, and read the one response: its status and JSON. A server that answers before the end
    may close the connection under the sender: the answer is read all the same."""
    framed = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in _pieces(body, piece)) + b"0\r\n\r\n"
    return raw_exchange(service, f"{head}\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + framed)


def _pieces(body: bytes, piece: int) -> list[bytes]:
    return [body[i : i + piece] for i in range(0, len(body), piece)]


def raw_exchange(service: Service, raw: bytes) -> tuple[int, dict]:
    with socket.create_connection(("127.0.0.1", service.port), timeout=60) as sock:
        with contextlib.suppress(OSError):  # answered and closed before the whole body was sent
            sock.sendall(raw)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head, head
    return int(head.split()[1]), json.loads(body)


def _length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 1 << 62


BAD_CHUNK = b"zz\r\n{}\r\n0\r\n\r\n"  # "zz" where the chunk's size in hex belongs


@pytest.mark.parametrize(
    "head",
    [
        "POST /extract HTTP/1.1\r\nContent-Type: application/json",
        "POST /extract HTTP/1.1\r\nContent-Type: application/msgpack",
        "POST /multipart/draw_detections HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=XyZ",
        "PUT /galleries/chunked/bundle HTTP/1.1\r\nContent-Type: application/zip",
    ],
    ids=["JSON", "msgpack", "multipart", "gallery bundle"],
)
def test_a_chunked_body_whose_chunk_size_is_not_hex_is_a_400(service, photo, head):
    """gunicorn raises its parse error while the app reads the body: it reached the 500 handler."""
    raw = f"{head}\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + BAD_CHUNK
    status, answer = raw_exchange(service, raw)
    assert (status, answer["error"]["code"]) == (400, "invalid_body"), answer
    assert answer["error"]["message"] == "malformed chunked request body: a chunk size is not a hexadecimal number"
    assert_still_serves(service, photo)


def test_a_chunked_json_body_over_the_limit_is_a_413_not_cut_and_parsed(service, photo):
    """Valid JSON padded with spaces past the limit: the first 64 MB alone are valid JSON too, and
    were answered 200 as if the body had ended there."""
    document = json.dumps({"images": {"data": [b64(photo)]}}).encode()
    head = "POST /extract HTTP/1.1\r\nContent-Type: application/json"
    status, answer = chunked(service, head, document + b" " * (LIMIT - len(document) + 1))
    assert (status, answer["error"]) == (
        413,
        {"code": "too_large", "message": "request body exceeds the limit of 64 MB"},
    )
    status, answer = chunked(service, head, document + b" " * (LIMIT - len(document)))  # exactly the limit: read
    assert status == 200 and len(answer["data"][0]["faces"]) == 2
    assert_still_serves(service, photo)


def test_a_chunked_bundle_over_the_limit_is_a_413(service, photo):
    """A bundle cut at the limit was read as if whole and refused for the wrong fault (not a zip).
    (A multipart form over the limit was already a 413: werkzeug's form parser reads past the end.)"""
    head = "PUT /galleries/chunked/bundle HTTP/1.1\r\nContent-Type: application/zip"
    status, answer = chunked(service, head, b"\0" * (LIMIT + 1))
    assert (status, answer["error"]["code"]) == (413, "too_large"), answer
    assert_still_serves(service, photo)


def test_a_newline_in_the_path_cannot_forge_a_log_line(service, photo):
    """Through real gunicorn: `%0A` in a path was decoded into the request's log line and wrote a
    second line of the client's choosing (tests/test_logs.py has the rest of the log rules)."""
    forged = "FORGED%20INFO%20facefleet.request:%20GET%20/admin%20200"
    response = requests.get(f"{service.url}/nowhere%0A{forged}%0D%0A{forged}", timeout=30)
    assert_json_error(response, 404, ("not_found",))
    lines = [line for line in service.log.read_text().splitlines() if "FORGED" in line]
    assert len(lines) == 1 and "facefleet.request: GET /nowhere\\nFORGED INFO" in lines[0], lines
    assert lines[0].endswith(f"id={response.headers['X-Request-ID']}")
